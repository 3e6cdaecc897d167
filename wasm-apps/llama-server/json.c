/* json.c: see json.h. Error texts follow serde_json's (what llama-api-server's 400s quote). */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jdoc *doc;
    char *text;
    size_t len, pos;
    int cap;
} parser;

static int fail(parser *p, const char *what) {
    if (!p->doc->error[0]) {
        size_t line = 1, col = 0, end = p->pos < p->len ? p->pos + 1 : p->len;
        for (size_t i = 0; i < end; i++) {
            if (p->text[i] == '\n') line++, col = 0;
            else col++;
        }
        snprintf(p->doc->error, sizeof p->doc->error, "%s at line %zu column %zu", what, line, col);
    }
    return -1;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int new_node(parser *p, jtype type) {
    jdoc *d = p->doc;
    if (d->count >= JSON_MAX_NODES) return fail(p, "too many values"), -1;
    if (d->count == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        jnode *nodes = realloc(d->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return fail(p, "out of memory"), -1;
        d->nodes = nodes;
        p->cap = cap;
    }
    jnode *n = &d->nodes[d->count];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->next = n->child = -1;
    return d->count++;
}

size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return *cp = c, 1;
    size_t need;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) need = 2, min = 0x80, c &= 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, min = 0x800, c &= 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, min = 0x10000, c &= 0x07;
    else return 0;
    if (n < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return *cp = c, need;
}

static size_t utf8_encode(unsigned cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(parser *p, unsigned *out) {
    unsigned v = 0;
    if (p->len - p->pos < 4) return p->pos = p->len, fail(p, "EOF while parsing a string");
    for (int i = 0; i < 4; i++) {
        char c = p->text[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(p, "invalid escape");
    }
    return *out = v, 0;
}

/* A string at p->pos (the opening quote), decoded in place: the result is *start, *out_len bytes. */
static int parse_string(parser *p, const char **start, size_t *out_len) {
    char *out = p->text + ++p->pos, *w = out;
    for (;;) {
        if (p->pos >= p->len) return fail(p, "EOF while parsing a string");
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c == '"') {
            p->pos++;
            *start = out;
            *out_len = (size_t)(w - out);
            return 0;
        }
        if (c < 0x20) return fail(p, "control character (\\u0000-\\u001F) found while parsing a string");
        if (c == '\\') {
            if (++p->pos >= p->len) return fail(p, "EOF while parsing a string");
            char e = p->text[p->pos++];
            switch (e) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case '/': *w++ = '/'; break;
            case 'b': *w++ = '\b'; break;
            case 'f': *w++ = '\f'; break;
            case 'n': *w++ = '\n'; break;
            case 'r': *w++ = '\r'; break;
            case 't': *w++ = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (hex4(p, &cp)) return -1;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone leading surrogate in hex escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->len - p->pos < 2 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u')
                        return fail(p, "lone leading surrogate in hex escape");
                    p->pos += 2;
                    if (hex4(p, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "lone leading surrogate in hex escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                w += utf8_encode(cp, w); /* 6 or 12 source bytes become at most 4 */
                break;
            }
            default: return fail(p, "invalid escape");
            }
            continue;
        }
        unsigned cp;
        size_t n = utf8_decode((const unsigned char *)p->text + p->pos, p->len - p->pos, &cp);
        if (!n) return fail(p, "invalid unicode code point");
        memmove(w, p->text + p->pos, n);
        w += n;
        p->pos += n;
    }
}

static int digits(parser *p) {
    size_t at = p->pos;
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
    return p->pos > at;
}

static int parse_number(parser *p, double *out) {
    size_t start = p->pos;
    if (p->text[p->pos] == '-') p->pos++;
    if (p->pos < p->len && p->text[p->pos] == '0') p->pos++;
    else if (!digits(p)) return fail(p, "invalid number");
    if (p->pos < p->len && p->text[p->pos] == '.') {
        p->pos++;
        if (!digits(p)) return fail(p, "invalid number");
    }
    if (p->pos < p->len && (p->text[p->pos] == 'e' || p->text[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->text[p->pos] == '+' || p->text[p->pos] == '-')) p->pos++;
        if (!digits(p)) return fail(p, "invalid number");
    }
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) { /* long numbers: keep sign, first digits and the exponent's magnitude roughly */
        char *copy = malloc(n + 1);
        if (!copy) return fail(p, "out of memory");
        memcpy(copy, p->text + start, n);
        copy[n] = 0;
        *out = strtod(copy, NULL);
        free(copy);
    } else {
        memcpy(tmp, p->text + start, n);
        tmp[n] = 0;
        *out = strtod(tmp, NULL);
    }
    return 0;
}

static int literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n)) return fail(p, "expected value");
    p->pos += n;
    return 0;
}

static int parse_value(parser *p, int depth, int *out) {
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "EOF while parsing a value");
    char c = p->text[p->pos];
    int id;
    if (c == '{' || c == '[') {
        if (depth >= JSON_MAX_DEPTH) return fail(p, "recursion limit exceeded");
        int obj = c == '{';
        if ((id = new_node(p, obj ? J_OBJ : J_ARR)) < 0) return -1;
        p->pos++;
        skip_ws(p);
        char close = obj ? '}' : ']';
        if (p->pos < p->len && p->text[p->pos] == close) {
            p->pos++;
            return *out = id, 0;
        }
        int last = -1;
        for (;;) {
            const char *key = NULL;
            size_t key_len = 0;
            int child;
            if (obj) {
                skip_ws(p);
                if (p->pos >= p->len) return fail(p, "EOF while parsing an object");
                if (p->text[p->pos] != '"') return fail(p, "key must be a string");
                if (parse_string(p, &key, &key_len)) return -1;
                skip_ws(p);
                if (p->pos >= p->len) return fail(p, "EOF while parsing an object");
                if (p->text[p->pos++] != ':') return fail(p, "expected `:`");
            }
            if (parse_value(p, depth + 1, &child)) return -1;
            p->doc->nodes[child].key = key;
            p->doc->nodes[child].key_len = key_len;
            if (last < 0) p->doc->nodes[id].child = child;
            else p->doc->nodes[last].next = child;
            last = child;
            skip_ws(p);
            if (p->pos >= p->len) return fail(p, obj ? "EOF while parsing an object" : "EOF while parsing a list");
            char sep = p->text[p->pos++];
            if (sep == close) return *out = id, 0;
            if (sep != ',') return fail(p, obj ? "expected `,` or `}`" : "expected `,` or `]`");
        }
    }
    if (c == '"') {
        const char *s;
        size_t n;
        if ((id = new_node(p, J_STR)) < 0 || parse_string(p, &s, &n)) return -1;
        p->doc->nodes[id].str = s;
        p->doc->nodes[id].len = n;
        return *out = id, 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        double v;
        if ((id = new_node(p, J_NUM)) < 0 || parse_number(p, &v)) return -1;
        p->doc->nodes[id].num = v;
        return *out = id, 0;
    }
    if (c == 't' || c == 'f') {
        if ((id = new_node(p, J_BOOL)) < 0 || literal(p, c == 't' ? "true" : "false")) return -1;
        p->doc->nodes[id].num = c == 't';
        return *out = id, 0;
    }
    if (c == 'n') {
        if ((id = new_node(p, J_NULL)) < 0 || literal(p, "null")) return -1;
        return *out = id, 0;
    }
    return fail(p, "expected value");
}

int json_parse(jdoc *doc, char *text, size_t len) {
    memset(doc, 0, sizeof *doc);
    parser p = {doc, text, len, 0, 0};
    int root;
    if (parse_value(&p, 0, &root)) return -1;
    skip_ws(&p);
    if (p.pos != p.len) return fail(&p, "trailing characters");
    return 0;
}

void json_free(jdoc *doc) {
    free(doc->nodes);
    doc->nodes = NULL;
    doc->count = 0;
}

const jnode *json_at(const jdoc *doc, int index) { return index < 0 ? NULL : &doc->nodes[index]; }

const jnode *json_get(const jdoc *doc, const jnode *obj, const char *key) {
    const jnode *found = NULL;
    size_t n = strlen(key);
    if (!obj || obj->type != J_OBJ) return NULL;
    for (const jnode *m = json_at(doc, obj->child); m; m = json_at(doc, m->next))
        if (m->key_len == n && !memcmp(m->key, key, n)) found = m;
    return found;
}

/* -- writer -------------------------------------------------------------------------------------- */

static int jb_reserve(jbuf *b, size_t more) {
    if (b->failed) return -1;
    if (b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) return b->failed = 1, -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

void jb_put(jbuf *b, const void *data, size_t len) {
    if (jb_reserve(b, len)) return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_printf(jbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || jb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void jb_str(jbuf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    jb_put(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        }
        if (esc) {
            jb_puts(b, esc);
            i++;
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jb_put(b, u, 6);
            i++;
        } else if (c < 0x80) {
            size_t run = i;
            while (run < len && (unsigned char)s[run] >= 0x20 && (unsigned char)s[run] < 0x80 && s[run] != '"' &&
                   s[run] != '\\')
                run++;
            jb_put(b, s + i, run - i);
            i = run;
        } else {
            unsigned cp;
            size_t n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
            if (n) jb_put(b, s + i, n), i += n;
            else jb_put(b, "\xEF\xBF\xBD", 3), i++; /* U+FFFD, as String::from_utf8_lossy */
        }
    }
    jb_put(b, "\"", 1);
}

void jb_free(jbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* -- Rust's char::is_whitespace (Unicode White_Space) ------------------------------------------------ */

static int is_white(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

void utf8_trim(const char *s, size_t len, size_t *start, size_t *end) {
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, z = len;
    unsigned cp;
    for (;;) {
        size_t n = utf8_decode(u + a, z - a, &cp);
        if (!n || !is_white(cp)) break;
        a += n;
    }
    while (z > a) {
        size_t b = z - 1;
        while (b > a && (u[b] & 0xC0) == 0x80 && z - b < 4) b--;
        size_t n = utf8_decode(u + b, z - b, &cp);
        if (n != z - b || !is_white(cp)) break;
        z = b;
    }
    *start = a;
    *end = z;
}
