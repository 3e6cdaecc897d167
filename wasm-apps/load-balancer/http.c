/* http.c: see http.h. Strict where a mistake could desynchronise framing (Content-Length, chunk sizes), lenient
 * about bare LF line ends as RFC 9112 2.2 allows a recipient to be. */
#include "http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The end of the head: offset just past the blank line, 0 if not there yet. */
static size_t head_end(const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static int is_tchar(char c) { return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c)); }

/* The next line in [*at, end): sets line/len (without CR LF) and advances. */
static void next_line(const char **at, const char *end, const char **line, size_t *len) {
    const char *nl = memchr(*at, '\n', (size_t)(end - *at));
    const char *stop = nl ? nl : end;
    *line = *at;
    *len = (size_t)(stop - *at);
    if (*len && (*line)[*len - 1] == '\r') --*len;
    *at = nl ? nl + 1 : end;
}

/* Header name is name (case-insensitive)? Sets value/vlen (trimmed). -1 for a malformed line. */
static int header(const char *line, size_t len, const char **name, size_t *nlen, const char **value, size_t *vlen) {
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line) return -1;
    for (const char *p = line; p < colon; p++)
        if (!is_tchar(*p)) return -1; /* also refuses "Name :" and obs-fold lines starting with space */
    *name = line, *nlen = (size_t)(colon - line);
    const char *v = colon + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    for (const char *p = v; p < e; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t') return -1;
    *value = v, *vlen = (size_t)(e - v);
    return 0;
}

static int named(const char *name, size_t nlen, const char *want) { return strlen(want) == nlen && !strncasecmp(name, want, nlen); }

/* Whether the comma-separated list value has token (case-insensitive). */
static int has_token(const char *v, size_t vlen, const char *token) {
    size_t t = strlen(token);
    const char *end = v + vlen;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
        const char *s = v;
        while (v < end && *v != ',') v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if ((size_t)(e - s) == t && !strncasecmp(s, token, t)) return 1;
    }
    return 0;
}

/* Content-Length: digits only, at most 18 of them (RFC 9110 8.6); a list of equal values is one value. */
static int content_length(const char *v, size_t vlen, int64_t *out) {
    int64_t value = -1;
    const char *end = v + vlen;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        int64_t n = 0;
        int digits = 0;
        while (v < end && *v >= '0' && *v <= '9') {
            if (++digits > 18) return -1;
            n = n * 10 + (*v++ - '0');
        }
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        if (!digits || (v < end && *v != ',') || (value >= 0 && n != value)) return -1;
        value = n;
        if (v < end) v++;
    }
    if (value < 0) return -1;
    *out = value;
    return 0;
}

static int version(const char *p, size_t n, int *minor) {
    if (n != 8 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1')) return -1;
    *minor = p[7] - '0';
    return 0;
}

int http_parse_request(const char *buf, size_t len, http_request *req) {
    memset(req, 0, sizeof *req);
    size_t end = head_end(buf, len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD);
    if (!end) {
        if (len >= HTTP_MAX_HEAD) return req->why = "request head larger than 16 KiB", -431;
        return 0;
    }
    const char *at = buf, *stop = buf + end, *line, *name, *value;
    size_t llen, nlen, vlen;
    next_line(&at, stop, &line, &llen);
    if (llen == 0) return req->why = "empty request line", -400;
    const char *sp1 = memchr(line, ' ', llen), *sp2 = sp1 ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - line)) : NULL;
    if (!sp1 || !sp2 || sp1 == line) return req->why = "bad request line", -400;
    size_t mlen = (size_t)(sp1 - line), tlen = (size_t)(sp2 - sp1 - 1);
    if (mlen >= sizeof req->method) return req->why = "method too long", -501;
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar(line[i])) return req->why = "bad method", -400;
    if (tlen == 0 || sp1[1] != '/') return req->why = "request target must be a path", -400;
    if (tlen >= sizeof req->target) return req->why = "request target longer than 2 KiB", -414;
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)sp1[1 + i] <= 0x20 || (unsigned char)sp1[1 + i] >= 0x7F) return req->why = "bad request target", -400;
    if (version(sp2 + 1, llen - (size_t)(sp2 + 1 - line), &req->minor)) return req->why = "not HTTP/1.0 or HTTP/1.1", -505;
    memcpy(req->method, line, mlen);
    memcpy(req->target, sp1 + 1, tlen);
    int keep_alive = 0, close = 0, has_length = 0;
    for (;;) {
        next_line(&at, stop, &line, &llen);
        if (llen == 0) break;
        if (header(line, llen, &name, &nlen, &value, &vlen)) return req->why = "malformed header line", -400;
        if (named(name, nlen, "Content-Length")) {
            int64_t n;
            if (content_length(value, vlen, &n) || (has_length && n != req->content_length))
                return req->why = "bad Content-Length", -400;
            req->content_length = n, has_length = 1;
        } else if (named(name, nlen, "Transfer-Encoding")) {
            return req->why = "chunked request bodies are not supported: send Content-Length", -501;
        } else if (named(name, nlen, "Connection")) {
            close |= has_token(value, vlen, "close");
            keep_alive |= has_token(value, vlen, "keep-alive");
        } else if (named(name, nlen, "Expect")) {
            if (!has_token(value, vlen, "100-continue")) return req->why = "unsupported Expect", -417;
            req->expect_continue = 1;
        }
    }
    req->close = close || (req->minor == 0 && !keep_alive);
    req->head_len = end;
    return (int)end;
}

int http_parse_response(const char *buf, size_t len, http_response *resp) {
    memset(resp, 0, sizeof *resp);
    size_t end = head_end(buf, len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD);
    if (!end) return len >= HTTP_MAX_HEAD ? -2 : 0;
    const char *at = buf, *stop = buf + end, *line, *name, *value;
    size_t llen, nlen, vlen;
    next_line(&at, stop, &line, &llen);
    if (llen < 12 || version(line, 8, &resp->minor) || line[8] != ' ') return -1;
    for (int i = 9; i < 12; i++)
        if (line[i] < '0' || line[i] > '9') return -1;
    if (llen > 12 && line[12] != ' ') return -1;
    resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    int keep_alive = 0;
    for (;;) {
        next_line(&at, stop, &line, &llen);
        if (llen == 0) break;
        if (header(line, llen, &name, &nlen, &value, &vlen)) return -1;
        if (named(name, nlen, "Content-Length")) {
            int64_t n;
            if (content_length(value, vlen, &n) || (resp->has_length && n != resp->content_length)) return -1;
            resp->content_length = n, resp->has_length = 1;
        } else if (named(name, nlen, "Transfer-Encoding")) {
            resp->chunked = has_token(value, vlen, "chunked");
            if (!resp->chunked) resp->close = 1; /* another coding: the body ends when the connection does */
        } else if (named(name, nlen, "Connection")) {
            resp->close |= has_token(value, vlen, "close");
            keep_alive |= has_token(value, vlen, "keep-alive");
        }
    }
    if (resp->chunked) resp->has_length = 0; /* RFC 9112 6.3: Transfer-Encoding overrides Content-Length */
    if (resp->minor == 0 && !keep_alive) resp->close = 1;
    resp->head_len = end;
    return (int)end;
}

int http_hop_by_hop(const char *line, size_t len) {
    static const char *const names[] = {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade", "Expect"};
    const char *colon = memchr(line, ':', len);
    if (!colon) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (named(line, (size_t)(colon - line), names[i])) return 1;
    return 0;
}

enum { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER, CK_TRAILER_LINE, CK_END_LF, CK_DONE };

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

long http_chunks_feed(http_chunks *c, const char *p, size_t n) {
    size_t i = 0;
    while (i < n && c->state != CK_DONE) {
        char ch = p[i];
        switch (c->state) {
        case CK_SIZE: {
            int d = hexval(ch);
            if (d >= 0) {
                if (++c->digits > 15) return -1;
                c->left = c->left << 4 | (uint64_t)d;
            } else if (!c->digits) {
                return -1;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = CK_EXT;
            } else if (ch == '\r') {
                c->state = CK_SIZE_LF;
            } else if (ch == '\n') {
                c->state = c->left ? CK_DATA : CK_TRAILER;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case CK_EXT:
            if (ch == '\n') c->state = c->left ? CK_DATA : CK_TRAILER;
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n') return -1;
            c->state = c->left ? CK_DATA : CK_TRAILER;
            i++;
            break;
        case CK_DATA: {
            size_t take = n - i < c->left ? n - i : (size_t)c->left;
            i += take;
            c->left -= take;
            if (!c->left) c->state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (ch == '\r') c->state = CK_DATA_LF;
            else if (ch == '\n') c->state = CK_SIZE, c->digits = 0;
            else return -1;
            i++;
            break;
        case CK_DATA_LF:
            if (ch != '\n') return -1;
            c->state = CK_SIZE, c->digits = 0;
            i++;
            break;
        case CK_TRAILER:
            c->state = ch == '\r' ? CK_END_LF : ch == '\n' ? CK_DONE : CK_TRAILER_LINE;
            i++;
            break;
        case CK_TRAILER_LINE:
            if (ch == '\n') c->state = CK_TRAILER;
            i++;
            break;
        case CK_END_LF:
            if (ch != '\n') return -1;
            c->state = CK_DONE;
            i++;
            break;
        }
    }
    return (long)i;
}

int http_chunks_done(const http_chunks *c) { return c->state == CK_DONE; }
