/* relay.c: the load balancer's poll loop and the backend response relay (see lb.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#include "lb.h"
#include "wasmedge_sock.h"

enum { WHO_BACKEND = 2, WHO_WRITE = 1, SUBS = 4 * LB_MAX_CONNS + LB_POOL + 2 };
/* userdata: a connection's index * 4 | WHO_*, POOLED + a pool slot, the listener, the clock */
static const uint64_t POOLED = (uint64_t)1 << 32, LISTENER = UINT64_MAX - 1, CLOCK = UINT64_MAX;

/* readiness from the last poll, per connection: bit 0 client read, 1 client write, 2 backend read, 3 backend write */
static uint8_t ready[LB_MAX_CONNS];

const char *lb_printable(const char *text) {
    static char bufs[4][201];
    static int next;
    char *out = bufs[next++ & 3];
    size_t n = 0;
    for (; *text && n < 200; text++) out[n++] = *text > 0x20 && *text < 0x7F ? *text : *text == ' ' ? ' ' : '?';
    out[n] = '\0';
    return out;
}

void lb_log(lb_conn *c) {
    const lb_backend *b = &c->backend;
    char where[300] = "-";
    if (b->name[0])
        snprintf(where, sizeof where, "%s %u.%u.%u.%u:%u", lb_printable(b->name), b->ip[0], b->ip[1], b->ip[2], b->ip[3],
                 (unsigned)b->port);
    printf("%s %s -> %s %d %llums%s%s\n", c->req.method[0] ? c->req.method : "-", lb_printable(c->req.target), where,
           c->status, (unsigned long long)(lb_now_ms() - c->started), c->note[0] ? " " : "", c->note);
}

static void subscribe(__wasi_subscription_t *s, uint64_t userdata, int fd, int write) {
    memset(s, 0, sizeof *s);
    s->userdata = userdata;
    s->u.tag = write ? __WASI_EVENTTYPE_FD_WRITE : __WASI_EVENTTYPE_FD_READ;
    s->u.u.fd_read.file_descriptor = (__wasi_fd_t)fd;
}

int lb_poll(lb_conn *conns, int n, int listener, int *active) {
    static __wasi_subscription_t subs[SUBS];
    static __wasi_event_t events[SUBS];
    __wasi_size_t nsubs = 0, nevents = 0;
    uint64_t now = lb_now_ms(), wait_ms = 1000;
    *active = 0;
    for (int i = 0; i < n; i++) {
        lb_conn *c = &conns[i];
        ready[i] = 0;
        if (!c->used) continue;
        ++*active;
        uint64_t base = (uint64_t)i * 4;
        if (c->state == LB_REQUEST || c->state == LB_DRAIN) subscribe(&subs[nsubs++], base, c->cfd, 0);
        if (c->out_off < c->out_len) subscribe(&subs[nsubs++], base | WHO_WRITE, c->cfd, 1);
        if (c->state == LB_UPSTREAM && c->up_off < c->up_len) subscribe(&subs[nsubs++], base | WHO_BACKEND | WHO_WRITE, c->bfd, 1);
        else if (c->state == LB_UPSTREAM && c->phase != LB_DONE && c->out_off == c->out_len)
            subscribe(&subs[nsubs++], base | WHO_BACKEND, c->bfd, 0);
        if (c->deadline <= now) wait_ms = 0;
        else if (c->deadline - now < wait_ms) wait_ms = c->deadline - now;
    }
    if (*active < n) subscribe(&subs[nsubs++], LISTENER, listener, 0);
    int idle[LB_POOL];
    uint64_t expiry = now + wait_ms;
    for (int slot = 0, count = lb_pool_watch(idle, &expiry); slot < count; slot++)
        if (idle[slot] >= 0) subscribe(&subs[nsubs++], POOLED + (uint64_t)slot, idle[slot], 0);
    wait_ms = expiry > now ? expiry - now : 0;
    memset(&subs[nsubs], 0, sizeof subs[nsubs]);
    subs[nsubs].userdata = CLOCK;
    subs[nsubs].u.tag = __WASI_EVENTTYPE_CLOCK;
    subs[nsubs].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    subs[nsubs++].u.u.clock.timeout = wait_ms * 1000000u;
    int incoming = 0;
    fflush(stdout); /* this turn's log lines, in one write */
    int failed = __wasi_poll_oneoff(subs, events, nsubs, &nevents);
    lb_clock_tick();
    if (failed) return 1; /* let accept tell */
    for (__wasi_size_t k = 0; k < nevents; k++) {
        uint64_t u = events[k].userdata;
        incoming |= u == LISTENER;
        if (u >= LISTENER) continue;
        if (u >= POOLED) {
            lb_pool_readable((int)(u - POOLED));
            continue;
        }
        ready[u / 4] |= (uint8_t)(1u << (u & 3)); /* an error event too: the next call on the socket reports it */
    }
    return incoming;
}

static void append(lb_conn *c, const char *p, size_t n) {
    if (c->out_len + n > LB_OUT_CAP) n = LB_OUT_CAP - c->out_len; /* cannot happen: reads wait for an empty buffer */
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* Body bytes of the response: pass those that belong to it, notice its end. */
static void body(lb_conn *c, const char *p, size_t n) {
    if (c->phase != LB_BODY) return;
    if (c->body_mode == LB_LENGTH) {
        size_t take = n < c->body_left ? n : (size_t)c->body_left;
        if (take < n) c->keep = 0; /* bytes after the response: the connection is not clean to reuse */
        append(c, p, take);
        c->body_left -= take;
        if (!c->body_left) c->phase = LB_DONE;
    } else if (c->body_mode == LB_CHUNKED) {
        long take = http_chunks_feed(&c->chunks, p, n);
        if (take < 0) {
            c->close = 1, c->phase = LB_DONE;
            snprintf(c->note, sizeof c->note, "(backend sent bad chunked framing)");
            return;
        }
        append(c, p, (size_t)take);
        if ((size_t)take < n) c->keep = 0;
        if (http_chunks_done(&c->chunks)) c->phase = LB_DONE;
    } else if (c->body_mode == LB_UNTIL_CLOSE) {
        append(c, p, n);
    } else {
        if (n) c->keep = 0;
        c->phase = LB_DONE;
    }
}

static void gateway_error(lb_conn *c, int status, const char *why);
static void bad_gateway(lb_conn *c, const char *why) { gateway_error(c, 502, why); }

static void gateway_error(lb_conn *c, int status, const char *why) {
    char extra[200];
    snprintf(c->note, sizeof c->note, "(%s)", why);
    snprintf(extra, sizeof extra, "{\"error\":{\"message\":\"backend %s\",\"type\":\"%s\",\"code\":%d}}", why,
             status == 504 ? "gateway_timeout" : "bad_gateway", status);
    c->close = 1, c->phase = LB_DONE, c->status = status;
    close(c->bfd);
    c->bfd = -1;
    c->out_len = c->out_off = 0;
    int n = snprintf(c->out, LB_OUT_CAP,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, status == 504 ? "Gateway Timeout" : "Bad Gateway", strlen(extra), extra);
    c->out_len = (size_t)n;
}

/* The response head is complete (len bytes of rhead): pass it on without hop-by-hop headers. */
static void start_body(lb_conn *c, const http_response *r) {
    const char *at = c->rhead, *end = c->rhead + r->head_len - 2;
    int head = !strcmp(c->req.method, "HEAD");
    c->status = r->status;
    c->body_mode = head || r->status == 204 || r->status == 304 ? LB_NO_BODY
                   : r->chunked                                 ? LB_CHUNKED
                   : r->has_length                              ? LB_LENGTH
                                                                : LB_UNTIL_CLOSE;
    if (c->body_mode == LB_UNTIL_CLOSE) c->close = 1;
    c->keep = !r->close && c->body_mode != LB_UNTIL_CLOSE;
    c->body_left = (uint64_t)r->content_length;
    memset(&c->chunks, 0, sizeof c->chunks);
    while (at < end) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        size_t line = (size_t)((nl ? nl : end) - at), text = line && at[line - 1] == '\r' ? line - 1 : line;
        if (text && (at == c->rhead || !http_hop_by_hop(at, text))) {
            append(c, at, text);
            append(c, "\r\n", 2);
        }
        at = nl ? nl + 1 : end;
    }
    if (c->close) append(c, "Connection: close\r\n", 19);
    append(c, "\r\n", 2);
    c->phase = LB_BODY;
    if (c->body_mode == LB_NO_BODY || (c->body_mode == LB_LENGTH && !c->body_left)) c->phase = LB_DONE;
}

/* Bytes from the backend: the head (interim 1xx heads passed on as they are), then the body. */
static void relay(lb_conn *c, const char *p, size_t n) {
    while (n && c->phase == LB_HEAD) {
        size_t take = sizeof c->rhead - c->rhead_len < n ? sizeof c->rhead - c->rhead_len : n;
        memcpy(c->rhead + c->rhead_len, p, take);
        c->rhead_len += take, p += take, n -= take;
        for (;;) {
            http_response r;
            int end = http_parse_response(c->rhead, c->rhead_len, &r);
            if (end == 0 && c->rhead_len < sizeof c->rhead) break;
            if (end <= 0) return bad_gateway(c, end == 0 || end == -2 ? "sent a response head over 16 KiB" : "sent a malformed response");
            if (r.status == 101) return bad_gateway(c, "switched protocols (not supported)");
            if (r.status >= 100 && r.status < 200) { /* 103 Early Hints and the like: relay, read on */
                append(c, c->rhead, (size_t)end);
                memmove(c->rhead, c->rhead + end, c->rhead_len - (size_t)end);
                c->rhead_len -= (size_t)end;
                continue;
            }
            start_body(c, &r);
            body(c, c->rhead + end, c->rhead_len - (size_t)end);
            break;
        }
    }
    if (n) body(c, p, n);
}

/* Sends what is pending for the client; the exchange finishes when its last byte is out. */
static void client_write(lb_conn *c) {
    if (c->out_off >= c->out_len) return;
    size_t sent = 0;
    int err = ws_send(c->cfd, c->out + c->out_off, c->out_len - c->out_off, &sent);
    if (err == EAGAIN) return;
    if (err) {
        if (c->state != LB_REQUEST) {
            snprintf(c->note, sizeof c->note, "(client gone: %s)", ws_strerror(err));
            lb_log(c);
        }
        return lb_close(c);
    }
    c->out_off += sent;
    if (c->state == LB_UPSTREAM) c->deadline = lb_now_ms() + LB_BACKEND_MS;
    if (c->out_off < c->out_len) return;
    c->out_len = c->out_off = 0;
    if (c->state == LB_LOCAL || (c->state == LB_UPSTREAM && c->phase == LB_DONE)) lb_finish(c);
}

void lb_upstream_write(lb_conn *c) {
    if (c->up_off >= c->up_len) return;
    size_t sent = 0;
    int err = ws_send(c->bfd, c->up + c->up_off, c->up_len - c->up_off, &sent);
    if (err == EAGAIN) return;
    if (err) return lb_backend_failed(c, ws_strerror(err));
    c->up_off += sent;
    c->connected = 1;
    c->deadline = lb_now_ms() + LB_BACKEND_MS;
}

static void client_events(lb_conn *c, uint8_t r) {
    if (r & 1 && (c->state == LB_REQUEST || c->state == LB_DRAIN)) {
        static char sink[LB_READ];
        int drain = c->state == LB_DRAIN;
        size_t got = 0, room = drain ? sizeof sink : c->in_cap - c->in_len;
        if (!room) return;
        int err = ws_recv(c->cfd, drain ? sink : c->in + c->in_len, room, &got);
        if (err == EAGAIN) return;
        if (err || !got) return lb_close(c); /* the client went away (or finished, when draining) */
        if (drain) return;
        c->in_len += got;
        lb_request_progress(c);
    }
    if (r & 2 && c->used) client_write(c);
}

static void backend_events(lb_conn *c, uint8_t r) {
    if (r & 8 && c->up_off < c->up_len) {
        lb_upstream_write(c);
    } else if (r & 4) {
        static char buf[LB_READ];
        size_t got = 0;
        int err = ws_recv(c->bfd, buf, sizeof buf, &got);
        if (err == EAGAIN) return;
        if (err || !got) {
            if (!c->resp_bytes) return lb_backend_failed(c, err ? ws_strerror(err) : "closed the connection without answering");
            if (c->phase == LB_HEAD) return bad_gateway(c, "closed the connection in the response head");
            if (c->body_mode != LB_UNTIL_CLOSE) {
                c->close = 1;
                snprintf(c->note, sizeof c->note, "(backend closed mid-response)");
            }
            c->phase = LB_DONE;
            close(c->bfd);
            c->bfd = -1;
        } else {
            c->resp_bytes += got;
            c->deadline = lb_now_ms() + LB_BACKEND_MS;
            relay(c, buf, got);
        }
        if (c->phase == LB_DONE && c->out_off == c->out_len) lb_finish(c);
    }
}

static void timeout(lb_conn *c) {
    if (c->state == LB_REQUEST && c->in_len) {
        c->close = 1, c->req.content_length = 0;
        snprintf(c->note, sizeof c->note, "(request incomplete after %d s)", LB_REQUEST_MS / 1000);
        if (!c->req.method[0]) strcpy(c->req.method, "-");
        lb_status_error(c, 408);
        c->deadline = lb_now_ms() + LB_LINGER_MS;
    } else if (c->state == LB_UPSTREAM && !c->connected) {
        lb_backend_failed(c, "connect timed out");
    } else if (c->state == LB_UPSTREAM && !c->resp_bytes) {
        gateway_error(c, 504, "sent nothing in time");
        c->deadline = lb_now_ms() + LB_LINGER_MS;
    } else {
        if (c->state == LB_UPSTREAM || c->state == LB_LOCAL) {
            snprintf(c->note, sizeof c->note, "(timed out)");
            lb_log(c);
        }
        lb_close(c);
    }
}

void lb_service(lb_conn *conns, int n) {
    uint64_t now = lb_now_ms();
    lb_pool_expire(now);
    for (int i = 0; i < n; i++) {
        lb_conn *c = &conns[i];
        if (!c->used) continue;
        if (ready[i] & 3) client_events(c, ready[i] & 3);
        if (c->used && c->state == LB_UPSTREAM && ready[i] & 12) backend_events(c, ready[i] & 12);
        /* an answer relayed from the backend goes out now: a socket is almost always writable, and waiting for
         * the next poll to say so would cost a turn of the loop per response */
        if (c->used && c->out_off < c->out_len && !(ready[i] & 2)) client_write(c);
        if (c->used && c->deadline <= now) timeout(c);
    }
}
