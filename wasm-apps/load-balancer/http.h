/* http.h: the HTTP/1.x the load balancer needs: request heads, response heads, chunked framing (RFC 9112). */
#ifndef LB_HTTP_H
#define LB_HTTP_H

#include <stddef.h>
#include <stdint.h>

enum { HTTP_MAX_HEAD = 16384, HTTP_MAX_TARGET = 2048 };

/* A parsed request head. Offsets point into the caller's buffer. */
typedef struct {
    char method[16];
    char target[HTTP_MAX_TARGET];
    int minor;                /* HTTP/1.<minor> */
    int64_t content_length;   /* 0 without the header */
    int close;                /* the connection ends after this exchange (Connection: close, or HTTP/1.0 without keep-alive) */
    int expect_continue;      /* Expect: 100-continue */
    size_t head_len;          /* bytes up to and including the blank line */
    const char *why;          /* for an error: what was wrong */
} http_request;

/* Parses the request head at buf[0..len). 0: incomplete (need more bytes); >0: complete (the head's length);
 * <0: the HTTP status to answer with, negated (-400 malformed, -431 head too large, -501 chunked body, ...). */
int http_parse_request(const char *buf, size_t len, http_request *req);

/* A parsed response head. */
typedef struct {
    int status;
    int minor;
    int chunked;
    int has_length;
    int64_t content_length;
    int close; /* Connection: close, or HTTP/1.0 without keep-alive */
    size_t head_len;
} http_response;

/* As http_parse_request, for a response head: 0 incomplete, >0 its length, -1 malformed, -2 too large. */
int http_parse_response(const char *buf, size_t len, http_response *resp);

/* Whether a header line (without CRLF) is one a proxy must not pass on: Connection and what it governs
 * (RFC 9110 7.6.1: Connection, Keep-Alive, Proxy-Connection, TE, Upgrade, Trailer is kept), and Expect (the
 * load balancer answers 100-continue itself and forwards the whole body). */
int http_hop_by_hop(const char *line, size_t len);

/* Chunked body framing, fed the bytes as they pass (RFC 9112 7.1). */
typedef struct {
    int state;
    int digits;
    uint64_t left;
} http_chunks;

/* Feeds n bytes; returns how many belong to the body (all of them until its end), or -1 for bad framing.
 * http_chunks_done tells when the final chunk and trailers went by. */
long http_chunks_feed(http_chunks *c, const char *p, size_t n);
int http_chunks_done(const http_chunks *c);

#endif
