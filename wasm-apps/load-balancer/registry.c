/* registry.c: see registry.h. A small strict JSON reader (RFC 8259) for one object; nothing here allocates. */
#include "registry.h"

#include <stdio.h>
#include <string.h>

#include "wasmedge_sock.h"

typedef struct {
    const char *at, *end;
    const char *why;
} reader;

static void ws(reader *r) {
    while (r->at < r->end && (*r->at == ' ' || *r->at == '\t' || *r->at == '\n' || *r->at == '\r')) r->at++;
}

static int fail(reader *r, const char *why) {
    if (!r->why) r->why = why;
    return -1;
}

static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (unsigned)d;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n || (len == 2 && p[0] < 0xC2)) return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (len == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0; /* overlong, surrogate */
    if (len == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || p[0] > 0xF4 || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;
    return len;
}

/* A string into out (cap bytes incl. NUL; out may be NULL to skip). Decodes escapes to UTF-8. *outlen is the
 * decoded length; when it is cap or more, out holds only what fit (the caller decides whether that is an error). */
static int string(reader *r, char *out, size_t cap, size_t *outlen) {
    size_t n = 0;
    if (r->at >= r->end || *r->at != '"') return fail(r, "expected a string");
    r->at++;
    if (out && cap) out[0] = '\0';
    while (r->at < r->end && *r->at != '"') {
        unsigned char c = (unsigned char)*r->at;
        char tmp[4];
        size_t len = 0;
        if (c < 0x20) return fail(r, "control character in a string");
        if (c == '\\') {
            if (r->end - r->at < 2) return fail(r, "unterminated string");
            char e = r->at[1];
            r->at += 2;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                tmp[0] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"], len = 1;
            } else if (e == 'u') {
                unsigned cp, lo;
                if (r->end - r->at < 4 || hex4(r->at, &cp)) return fail(r, "bad \\u escape");
                r->at += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (r->end - r->at < 6 || r->at[0] != '\\' || r->at[1] != 'u' || hex4(r->at + 2, &lo) || lo < 0xDC00 ||
                        lo > 0xDFFF)
                        return fail(r, "lone surrogate in \\u escape");
                    r->at += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return fail(r, "lone surrogate in \\u escape");
                }
                if (cp == 0) return fail(r, "NUL in a string");
                if (cp < 0x80) tmp[0] = (char)cp, len = 1;
                else if (cp < 0x800) tmp[0] = (char)(0xC0 | cp >> 6), tmp[1] = (char)(0x80 | (cp & 0x3F)), len = 2;
                else if (cp < 0x10000)
                    tmp[0] = (char)(0xE0 | cp >> 12), tmp[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
                    tmp[2] = (char)(0x80 | (cp & 0x3F)), len = 3;
                else
                    tmp[0] = (char)(0xF0 | cp >> 18), tmp[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
                    tmp[2] = (char)(0x80 | (cp >> 6 & 0x3F)), tmp[3] = (char)(0x80 | (cp & 0x3F)), len = 4;
            } else {
                return fail(r, "bad escape in a string");
            }
        } else {
            len = utf8_len((const unsigned char *)r->at, (size_t)(r->end - r->at));
            if (!len) return fail(r, "invalid UTF-8 in a string");
            memcpy(tmp, r->at, len);
            r->at += len;
        }
        if (out && n + len < cap) memcpy(out + n, tmp, len), out[n + len] = '\0';
        n += len;
    }
    if (r->at >= r->end) return fail(r, "unterminated string");
    r->at++;
    if (out && n < cap) out[n] = '\0';
    if (outlen) *outlen = n;
    return 0;
}

/* A JSON number; *is_uint and *value say whether it is an integer without sign, fraction or exponent that fits. */
static int number(reader *r, int *is_uint, uint64_t *value) {
    const char *start = r->at;
    int plain = 1, overflow = 0;
    uint64_t v = 0;
    if (r->at < r->end && *r->at == '-') r->at++, plain = 0;
    if (r->at >= r->end || *r->at < '0' || *r->at > '9') return fail(r, "bad number");
    if (*r->at == '0' && r->end - r->at > 1 && r->at[1] >= '0' && r->at[1] <= '9') return fail(r, "leading zero in a number");
    while (r->at < r->end && *r->at >= '0' && *r->at <= '9') {
        unsigned d = (unsigned)(*r->at++ - '0');
        if (v > (UINT64_MAX - d) / 10) overflow = 1;
        else v = v * 10 + d;
    }
    if (r->at < r->end && *r->at == '.') {
        r->at++, plain = 0;
        if (r->at >= r->end || *r->at < '0' || *r->at > '9') return fail(r, "bad number");
        while (r->at < r->end && *r->at >= '0' && *r->at <= '9') r->at++;
    }
    if (r->at < r->end && (*r->at == 'e' || *r->at == 'E')) {
        r->at++, plain = 0;
        if (r->at < r->end && (*r->at == '+' || *r->at == '-')) r->at++;
        if (r->at >= r->end || *r->at < '0' || *r->at > '9') return fail(r, "bad number");
        while (r->at < r->end && *r->at >= '0' && *r->at <= '9') r->at++;
    }
    (void)start;
    *is_uint = plain && !overflow;
    *value = v;
    return 0;
}

static int literal(reader *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->at) < n || memcmp(r->at, word, n)) return fail(r, "bad value");
    r->at += n;
    return 0;
}

/* Skips any value, nesting at most 32 deep (arrays and objects of unknown keys). */
static int skip_value(reader *r, int depth) {
    int is_uint;
    uint64_t v;
    ws(r);
    if (r->at >= r->end) return fail(r, "missing value");
    if (depth > 32) return fail(r, "nesting too deep");
    switch (*r->at) {
    case '"': return string(r, NULL, 0, NULL);
    case 't': return literal(r, "true");
    case 'f': return literal(r, "false");
    case 'n': return literal(r, "null");
    case '[':
    case '{': {
        char close = *r->at == '[' ? ']' : '}';
        int object = close == '}';
        r->at++;
        ws(r);
        if (r->at < r->end && *r->at == close) return r->at++, 0;
        for (;;) {
            if (object) {
                ws(r);
                if (string(r, NULL, 0, NULL)) return -1;
                ws(r);
                if (r->at >= r->end || *r->at++ != ':') return fail(r, "expected ':'");
            }
            if (skip_value(r, depth + 1)) return -1;
            ws(r);
            if (r->at < r->end && *r->at == ',') {
                r->at++;
                continue;
            }
            if (r->at < r->end && *r->at == close) return r->at++, 0;
            return fail(r, "expected ',' or a closing bracket");
        }
    }
    default: return number(r, &is_uint, &v);
    }
}

static int uint_field(reader *r, uint64_t max, uint64_t *out, const char *why) {
    int is_uint;
    ws(r);
    if (r->at >= r->end || (*r->at != '-' && (*r->at < '0' || *r->at > '9'))) return fail(r, why);
    if (number(r, &is_uint, out)) return -1;
    if (!is_uint || *out > max) return fail(r, why);
    return 0;
}

int reg_parse(const char *body, size_t len, lb_backend *out, const char **why) {
    reader r = {body, body + len, NULL};
    enum { NAME = 1, WEIGHT = 2, IP = 4, PORT = 8 };
    int seen = 0;
    char key[32], ip[32];
    uint64_t v;
    memset(out, 0, sizeof *out);
    ws(&r);
    if (r.at >= r.end || *r.at++ != '{') return *why = "expected a JSON object", -1;
    ws(&r);
    if (r.at < r.end && *r.at == '}') r.at++;
    else
        for (;;) {
            size_t klen = 0;
            int bit;
            ws(&r);
            if (string(&r, key, sizeof key, &klen)) break;
            if (klen >= sizeof key) key[0] = '\0'; /* a long key is no field of ours */
            bit = !strcmp(key, "name") ? NAME : !strcmp(key, "weight") ? WEIGHT : !strcmp(key, "ip") ? IP : !strcmp(key, "port") ? PORT : 0;
            ws(&r);
            if (r.at >= r.end || *r.at++ != ':') {
                fail(&r, "expected ':'");
                break;
            }
            if (bit & seen) {
                fail(&r, "duplicate field");
                break;
            }
            seen |= bit;
            ws(&r);
            if (bit == NAME) {
                size_t n;
                if (string(&r, out->name, sizeof out->name, &n)) break;
                if (n > REG_NAME_MAX) {
                    fail(&r, "name longer than 253 bytes");
                    break;
                }
                if (n == 0) {
                    fail(&r, "name is empty");
                    break;
                }
            } else if (bit == WEIGHT) {
                if (uint_field(&r, UINT32_MAX, &v, "weight must be an integer 0..4294967295")) break;
                out->weight = (uint32_t)v;
            } else if (bit == PORT) {
                if (uint_field(&r, 65535, &v, "port must be an integer 1..65535") || (v == 0 && fail(&r, "port must be an integer 1..65535")))
                    break;
                out->port = (uint16_t)v;
            } else if (bit == IP) {
                size_t n;
                if (string(&r, ip, sizeof ip, &n) || n >= sizeof ip || ws_parse_ipv4(ip, out->ip, NULL)) {
                    r.why = "ip must be an IPv4 address a.b.c.d";
                    break;
                }
            } else if (skip_value(&r, 1)) {
                break;
            }
            ws(&r);
            if (r.at < r.end && *r.at == ',') {
                r.at++;
                continue;
            }
            if (r.at < r.end && *r.at == '}') {
                r.at++;
                break;
            }
            fail(&r, "expected ',' or '}'");
            break;
        }
    if (r.why) return *why = r.why, -1;
    ws(&r);
    if (r.at != r.end) return *why = "trailing characters after the object", -1;
    if (seen != (NAME | WEIGHT | IP | PORT))
        return *why = !(seen & NAME) ? "missing field name" : !(seen & WEIGHT) ? "missing field weight" : !(seen & IP) ? "missing field ip" : "missing field port", -1;
    return 0;
}

int reg_upsert(lb_registry *reg, const lb_backend *b) {
    for (int i = 0; i < reg->count; i++)
        if (!strcmp(reg->items[i].name, b->name)) {
            reg->items[i] = *b;
            reg->generation++;
            return 0;
        }
    if (reg->count == REG_MAX) return -1;
    reg->items[reg->count++] = *b;
    reg->generation++;
    return 0;
}

int reg_remove(lb_registry *reg, const char *name) {
    for (int i = 0; i < reg->count; i++)
        if (!strcmp(reg->items[i].name, name)) {
            memmove(&reg->items[i], &reg->items[i + 1], (size_t)(reg->count - i - 1) * sizeof reg->items[0]);
            reg->count--;
            reg->generation++;
            return 0;
        }
    return -1;
}

/* name as a JSON string: quotes, backslashes and control characters escaped, UTF-8 as it is */
static size_t json_string(const char *s, char *out, size_t cap) {
    size_t n = 0;
    if (cap < 3) return 0;
    out[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t len = 1;
        if (c == '"' || c == '\\') esc[0] = '\\', esc[1] = (char)c, len = 2;
        else if (c < 0x20) len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
        else esc[0] = (char)c;
        if (n + len + 2 > cap) return 0;
        memcpy(out + n, esc, len);
        n += len;
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

size_t reg_json(const lb_registry *reg, char *out, size_t cap) {
    size_t n = 0;
    char name[REG_NAME_MAX * 6 + 3];
    if (cap < 3) return 0;
    out[n++] = '[';
    for (int i = 0; i < reg->count; i++) {
        const lb_backend *b = &reg->items[i];
        if (!json_string(b->name, name, sizeof name)) return 0;
        int w = snprintf(out + n, cap - n, "%s{\"name\":%s,\"weight\":%u,\"ip\":\"%u.%u.%u.%u\",\"port\":%u}", i ? "," : "",
                         name, (unsigned)b->weight, b->ip[0], b->ip[1], b->ip[2], b->ip[3], (unsigned)b->port);
        if (w < 0 || (size_t)w >= cap - n) return 0;
        n += (size_t)w;
    }
    if (n + 2 > cap) return 0;
    out[n++] = ']';
    out[n] = '\0';
    return n;
}

int reg_pick(const lb_registry *reg, uint64_t random, const uint8_t *skip) {
    uint64_t total = 0;
    int first = -1;
    for (int i = 0; i < reg->count; i++) {
        if (skip && skip[i]) continue;
        if (first < 0) first = i;
        total += reg->items[i].weight;
    }
    if (first < 0 || total == 0) return first;
    uint64_t r = random % total;
    for (int i = 0; i < reg->count; i++) {
        if (skip && skip[i]) continue;
        if (r < reg->items[i].weight) return i;
        r -= reg->items[i].weight;
    }
    return first;
}
