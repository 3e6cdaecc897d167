/* lb.h: the load balancer's connections, shared by main.c (requests, admin, backends) and relay.c (the poll
 * loop and the response relay). */
#ifndef LB_LB_H
#define LB_LB_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "registry.h"

enum {
    LB_MAX_CONNS = 100,          /* clients at once; each may have one backend connection: 201 sockets */
    LB_MAX_ATTEMPTS = 16,        /* tries for one request, over rounds of every registered backend */
    LB_IN_START = 32768,         /* request buffer; grows to the head plus Content-Length */
    LB_OUT_CAP = 65536,          /* bytes for the client: a local answer, or one relayed read plus a head */
    LB_READ = 16384,             /* one read from a backend */
    LB_IDLE_MS = 60000,          /* a kept-alive connection without a request */
    LB_REQUEST_MS = 30000,       /* a request that is not complete */
    LB_BACKEND_MS = 600000,      /* a backend that sends nothing (an LLM may think for minutes) */
    LB_LINGER_MS = 2000,         /* after the last answer on a closing connection, what the client still sends */
    LB_POOL = 64,                /* idle kept-alive backend connections, over all backends */
    LB_POOL_IDLE_MS = 5000,      /* an idle backend connection is closed after this (backends close theirs too) */
};

/* a connection's state */
enum { LB_REQUEST, LB_LOCAL, LB_UPSTREAM, LB_DRAIN };
/* the backend's response: its head, its body, or all relayed */
enum { LB_HEAD, LB_BODY, LB_DONE };
/* how the response body ends */
enum { LB_NO_BODY, LB_LENGTH, LB_CHUNKED, LB_UNTIL_CLOSE };

typedef struct {
    int used, state, cfd, bfd;
    int close;     /* the client connection ends after this exchange */
    int continued; /* 100 Continue sent */
    uint64_t deadline, started;
    /* the request */
    char *in;
    size_t in_len, in_cap;
    http_request req;
    /* bytes for the client */
    char *out;
    size_t out_len, out_off;
    /* the backend: the request for it, the attempts, its answer */
    char *up;
    size_t up_len, up_off, up_cap;
    lb_backend backend;
    uint8_t tried[REG_MAX];
    uint32_t tried_generation;
    int attempts, connected, phase, body_mode;
    int reused; /* bfd came from the pool: failing before any answer means the backend had closed it meanwhile */
    int keep;   /* the response leaves bfd reusable: no "Connection: close", exact framing, no extra bytes */
    uint64_t body_left, resp_bytes;
    http_chunks chunks;
    char rhead[HTTP_MAX_HEAD];
    size_t rhead_len;
    int status;
    char note[200], failures[512];
} lb_conn;

extern size_t lb_max_body;

/* the time of the last lb_clock_tick (one clock call per loop turn, not one per use) */
uint64_t lb_now_ms(void);
void lb_clock_tick(void);
/* text safe for one log line: control characters and non-ASCII as '?', at most 200 bytes (a few rotating buffers) */
const char *lb_printable(const char *text);
void lb_log(lb_conn *c);

/* main.c */
void lb_request_progress(lb_conn *c);
void lb_status_error(lb_conn *c, int status);
void lb_backend_failed(lb_conn *c, const char *why);
void lb_finish(lb_conn *c);
void lb_close(lb_conn *c);

/* pool.c: idle backend connections by address. take: an fd or -1. put: keep fd (the oldest idle one is closed if
 * the pool is full). watch: each slot's fd (-1 if free) for polling, and the earliest expiry into *deadline.
 * readable: the backend closed the idle slot (or sent what nobody asked for): close it. expire: close old ones. */
void lb_pool_init(void);
int lb_pool_take(const uint8_t ip[4], uint16_t port);
void lb_pool_put(int fd, const uint8_t ip[4], uint16_t port);
int lb_pool_watch(int *fds, uint64_t *deadline);
void lb_pool_readable(int slot);
void lb_pool_expire(uint64_t now);

/* relay.c: one poll_oneoff over the listener and every connection (counts the used ones into *active; returns
 * whether the listener has clients waiting), then lb_service does what the events allow: reads, writes, relays,
 * timeouts. */
int lb_poll(lb_conn *conns, int n, int listener, int *active);
void lb_service(lb_conn *conns, int n);
/* sends what is pending to the backend (a kept-alive connection takes the request at once, without a poll) */
void lb_upstream_write(lb_conn *c);

#endif
