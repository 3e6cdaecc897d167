/* load-balancer [IP:PORT]: the weighted HTTP load balancer of the seed's load-bal-llamaedge-demo, in C on
 * WasmEdge's socket ABI (wasmedge_sock.h), one thread, poll_oneoff over non-blocking sockets.
 *
 * Admin API, as the seed's:  POST /api/register {name, weight, ip, port} (upsert by name) -> 200 Registered,
 * 400 Invalid JSON;  DELETE /api/unregister/{name} -> 200 Unregistered, 404 Service not found;  GET /api/services
 * -> the JSON array.  Every /v1/... request goes to a backend chosen as the seed chooses (random in [0, total
 * weight), walk subtracting); none registered -> 503 with a JSON error.  Beyond the seed (and its bugs): the
 * whole request is read (Content-Length over any number of reads; 16 KiB head -> 431, LB_MAX_BODY bytes of body,
 * default 1 MiB -> 413), the response is relayed as it arrives (Content-Length, chunked and SSE streams, or until
 * the backend closes), a backend that refuses, times out or closes without answering is skipped and the next one
 * tried, round after round up to 16 tries (a dead backend costs no request; all dead -> 502), GET /healthz, one log
 * line per request, keep-alive towards clients and towards backends (pool.c).
 * Env: LB_MAX_BODY (bytes), LB_SEED (fixed random seed, for reproducible splits), LB_CONNECT_TIMEOUT_MS (3000).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

#include "http.h"
#include "lb.h"
#include "registry.h"
#include "wasmedge_sock.h"

static lb_registry registry;
static lb_conn conns[LB_MAX_CONNS];
static uint64_t rng_state;
size_t lb_max_body = 1 << 20;
static uint64_t connect_timeout_ms = 3000;

static uint64_t now_ms;

uint64_t lb_now_ms(void) { return now_ms; }

void lb_clock_tick(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t next_random(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static int nonblocking(int fd) { return fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ? errno : 0; }

/* ------------------------------------------------------------------ local answers */

static int respond(lb_conn *c, int status, const char *reason, const char *type, const char *body, size_t len,
                   const char *extra) {
    int n = snprintf(c->out, LB_OUT_CAP, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                     reason, type, len, extra ? extra : "", c->close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n + len > LB_OUT_CAP) return -1;
    if (!strcmp(c->req.method, "HEAD")) len = 0; /* the same head, no body */
    memcpy(c->out + n, body, len);
    c->out_len = (size_t)n + len, c->out_off = 0;
    c->status = status;
    c->state = LB_LOCAL;
    return 0;
}

static void respond_text(lb_conn *c, int status, const char *reason, const char *text) {
    respond(c, status, reason, "text/plain", text, strlen(text), NULL);
}

static void respond_error(lb_conn *c, int status, const char *reason, const char *type, const char *message) {
    char body[1400], text[1100];
    size_t t = 0;
    for (; *message && t + 2 < sizeof text; message++) { /* a JSON string: names may hold quotes */
        if (*message == '"' || *message == '\\') text[t++] = '\\';
        text[t++] = (unsigned char)*message < 0x20 ? '?' : *message;
    }
    text[t] = '\0';
    int n = snprintf(body, sizeof body, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":%d}}", text, type, status);
    respond(c, status, reason, "application/json", body, (size_t)n < sizeof body ? (size_t)n : sizeof body - 1, NULL);
}

/* %XX in a path segment, as the name was written into the URL */
static int percent_decode(const char *in, char *out, size_t cap) {
    size_t n = 0;
    for (; *in && *in != '?'; in++) {
        char ch = *in;
        if (ch == '%') {
            unsigned v;
            if (sscanf(in + 1, "%2x", &v) != 1 || !in[1] || !in[2] || v == 0) return -1;
            ch = (char)v, in += 2;
        }
        if (n + 1 >= cap) return -1;
        out[n++] = ch;
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

static void admin(lb_conn *c, const char *body, size_t len) {
    const char *m = c->req.method, *t = c->req.target;
    if (!strcmp(m, "POST") && !strcmp(t, "/api/register")) {
        lb_backend b;
        const char *why = NULL;
        char extra[160];
        if (reg_parse(body, len, &b, &why)) {
            snprintf(extra, sizeof extra, "X-LB-Error: %s\r\n", why);
            snprintf(c->note, sizeof c->note, "(%s)", why);
            respond(c, 400, "Bad Request", "text/plain", "Invalid JSON", 12, extra);
        } else if (reg_upsert(&registry, &b)) {
            snprintf(c->note, sizeof c->note, "(registry full: %d services)", REG_MAX);
            respond_text(c, 507, "Insufficient Storage", "Registry full");
        } else {
            snprintf(c->note, sizeof c->note, "%s weight %u %u.%u.%u.%u:%u", lb_printable(b.name), (unsigned)b.weight,
                     b.ip[0], b.ip[1], b.ip[2], b.ip[3], (unsigned)b.port);
            respond_text(c, 200, "OK", "Registered");
        }
    } else if (!strcmp(m, "DELETE") && !strncmp(t, "/api/unregister/", 16)) {
        char name[REG_NAME_MAX + 1];
        int found = !percent_decode(t + 16, name, sizeof name) && !reg_remove(&registry, name);
        snprintf(c->note, sizeof c->note, "%s", found ? lb_printable(name) : "");
        if (found) respond_text(c, 200, "OK", "Unregistered");
        else respond_text(c, 404, "Not Found", "Service not found");
    } else if (!strcmp(m, "GET") && !strcmp(t, "/api/services")) {
        static char json[LB_OUT_CAP - 256];
        size_t n = reg_json(&registry, json, sizeof json);
        respond(c, 200, "OK", "application/json", json, n, NULL);
    } else if ((!strcmp(m, "GET") || !strcmp(m, "HEAD")) && !strcmp(t, "/healthz")) {
        respond_text(c, 200, "OK", "ok\n");
    } else {
        respond_text(c, 404, "Not Found", "Not Found");
    }
}

/* ------------------------------------------------------------------ backends */

/* Starts the request on c->backend: over an idle kept-alive connection to it if there is one (sent at once), else
 * over a new non-blocking connection (sent when it is writable). 0, or the errno of opening or connecting. */
static int start_upstream(lb_conn *c, int fresh) {
    c->up_off = 0, c->resp_bytes = 0, c->phase = LB_HEAD, c->rhead_len = 0, c->keep = 0;
    c->state = LB_UPSTREAM;
    int fd = fresh ? -1 : lb_pool_take(c->backend.ip, c->backend.port);
    if (fd >= 0) {
        c->bfd = fd, c->reused = 1, c->connected = 1;
        c->deadline = lb_now_ms() + LB_BACKEND_MS;
        lb_upstream_write(c);
        return 0;
    }
    uint32_t raw;
    uint8_t ip[4];
    memcpy(ip, c->backend.ip, 4);
    ws_address addr = {ip, 4};
    int err = (int)ws_sock_open(WS_AF_INET4, WS_SOCK_STREAM, &raw);
    if (!err && (err = nonblocking((int)raw))) close((int)raw);
    if (!err) {
        err = (int)ws_sock_connect(raw, &addr, c->backend.port);
        if (err == EINPROGRESS || err == EAGAIN) err = 0;
        if (err) close((int)raw);
    }
    if (err) return err;
    c->bfd = (int)raw, c->reused = 0, c->connected = 0;
    c->deadline = lb_now_ms() + connect_timeout_ms;
    return 0;
}

/* Sends the request to the next backend not tried yet in this round; falls back to 502 after LB_MAX_ATTEMPTS
 * tries. A round tries every backend once, in weighted random order, and a new round starts when all have
 * failed: a registered backend is a Service's ClusterIP whose proxy picks a pod per connection, so the same
 * address again may reach a live pod (one on a lost node stays in the endpoints until the node is marked
 * NotReady). A request then fails only if every try lands on a dead pod. */
static void try_backend(lb_conn *c) {
    for (;;) {
        int round_over = registry.count > 0 && reg_pick(&registry, 0, c->tried) < 0;
        if (c->tried_generation != registry.generation || round_over) { /* a new round, or new indexes */
            memset(c->tried, 0, sizeof c->tried);
            c->tried_generation = registry.generation;
        }
        int i = c->attempts < LB_MAX_ATTEMPTS ? reg_pick(&registry, next_random(), c->tried) : -1;
        if (i < 0) {
            if (registry.count == 0) {
                snprintf(c->note, sizeof c->note, "(no backends registered)");
                respond_error(c, 503, "Service Unavailable", "no_backend",
                              "no backends registered with the load balancer (POST /api/register, or run the service-watcher)");
            } else {
                char message[600];
                snprintf(message, sizeof message, "all backends unreachable (%d tries): %s", c->attempts, c->failures);
                snprintf(c->note, sizeof c->note, "(all backends unreachable)");
                respond_error(c, 502, "Bad Gateway", "backend_unreachable", message);
            }
            return;
        }
        c->tried[i] = 1, c->attempts++;
        c->backend = registry.items[i];
        int err = start_upstream(c, 0);
        if (!err) return;
        lb_backend_failed(c, ws_strerror(err));
    }
}

void lb_backend_failed(lb_conn *c, const char *why) {
    const lb_backend *b = &c->backend;
    if (c->bfd >= 0) close(c->bfd);
    c->bfd = -1;
    if (c->reused) { /* the backend closed this idle connection before our request came: not a failure of it */
        c->reused = 0;
        int err = start_upstream(c, 1);
        if (!err) return;
        why = ws_strerror(err);
    }
    size_t used = strlen(c->failures);
    printf("%s %s -> %s %u.%u.%u.%u:%u failed: %s, trying another backend\n", c->req.method, lb_printable(c->req.target),
           lb_printable(b->name), b->ip[0], b->ip[1], b->ip[2], b->ip[3], (unsigned)b->port, why);
    if (c->attempts <= registry.count) /* the first round: the 502 names each backend once */
        snprintf(c->failures + used, sizeof c->failures - used, "%s%s %u.%u.%u.%u:%u (%s)", used ? ", " : "",
                 lb_printable(b->name), b->ip[0], b->ip[1], b->ip[2], b->ip[3], (unsigned)b->port, why);
    try_backend(c);
}

/* The request is complete in c->in: answer it here or start forwarding it. */
static void dispatch(lb_conn *c) {
    const char *body = c->in + c->req.head_len;
    size_t len = (size_t)c->req.content_length;
    c->started = lb_now_ms();
    c->note[0] = c->failures[0] = '\0';
    c->backend.name[0] = '\0';
    if (strncmp(c->req.target, "/v1/", 4)) {
        admin(c, body, len);
        return;
    }
    /* the request for the backend: its head without hop-by-hop headers, then the body; the connection to the
     * backend is ours and stays open for the next request (HTTP/1.1's default), whatever the client asked */
    size_t need = c->req.head_len + len;
    if (need > c->up_cap) {
        char *grown = realloc(c->up, need);
        if (!grown) {
            c->close = 1;
            respond_text(c, 503, "Service Unavailable", "out of memory");
            return;
        }
        c->up = grown, c->up_cap = need;
    }
    const char *at = c->in, *end = c->in + c->req.head_len - 2;
    size_t n = 0;
    while (at < end) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        size_t line = (size_t)((nl ? nl : end) - at);
        size_t text = line && at[line - 1] == '\r' ? line - 1 : line;
        if (text && (at == c->in || !http_hop_by_hop(at, text))) {
            memcpy(c->up + n, at, text);
            n += text;
            memcpy(c->up + n, "\r\n", 2);
            n += 2;
        }
        at = nl ? nl + 1 : end;
    }
    memcpy(c->up + n, "\r\n", 2);
    n += 2;
    memcpy(c->up + n, body, len);
    c->up_len = n + len;
    c->attempts = 0;
    memset(c->tried, 0, sizeof c->tried);
    c->tried_generation = registry.generation;
    try_backend(c);
}

/* ------------------------------------------------------------------ the loop */

static lb_conn *new_conn(int fd) {
    for (int i = 0; i < LB_MAX_CONNS; i++) {
        lb_conn *c = &conns[i];
        if (c->used) continue;
        if (!c->in && !(c->in = malloc(LB_IN_START))) return NULL;
        if (!c->out && !(c->out = malloc(LB_OUT_CAP))) return NULL;
        c->in_cap = c->in_cap ? c->in_cap : LB_IN_START;
        c->used = 1, c->cfd = fd, c->bfd = -1, c->in_len = 0, c->out_len = c->out_off = 0;
        c->state = LB_REQUEST, c->close = 0, c->continued = 0;
        c->deadline = lb_now_ms() + LB_IDLE_MS;
        return c;
    }
    return NULL;
}

void lb_close(lb_conn *c) {
    if (c->cfd >= 0) close(c->cfd);
    if (c->bfd >= 0) close(c->bfd);
    c->cfd = c->bfd = -1;
    c->used = 0;
    if (c->in_cap > LB_IN_START) { /* give a big request's memory back */
        free(c->in);
        c->in = NULL, c->in_cap = 0;
    }
    if (c->up_cap > LB_IN_START) {
        free(c->up);
        c->up = NULL, c->up_cap = 0;
    }
}

/* One exchange finished and its answer is sent: log it, then the next request or the end. */
void lb_finish(lb_conn *c) {
    lb_log(c);
    if (c->bfd >= 0 && c->keep && c->phase == LB_DONE) lb_pool_put(c->bfd, c->backend.ip, c->backend.port);
    else if (c->bfd >= 0) close(c->bfd);
    c->bfd = -1;
    if (c->close) { /* end our side, then read what the client still sends (an unread body) so it sees the answer */
        ws_sock_shutdown((uint32_t)c->cfd, 2 /* __WASI_SDFLAGS_WR */);
        c->state = LB_DRAIN, c->in_len = 0;
        c->deadline = lb_now_ms() + LB_LINGER_MS;
        return;
    }
    size_t used = c->req.head_len + (size_t)c->req.content_length;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->state = LB_REQUEST, c->continued = 0, c->out_len = c->out_off = 0;
    c->deadline = lb_now_ms() + LB_IDLE_MS;
    lb_request_progress(c);
}

/* Look at what the client sent so far: a complete request is dispatched, a bad one answered. */
void lb_request_progress(lb_conn *c) {
    while (c->in_len && (c->in[0] == '\r' || c->in[0] == '\n')) memmove(c->in, c->in + 1, --c->in_len);
    if (!c->in_len) return;
    int r = http_parse_request(c->in, c->in_len, &c->req);
    if (r == 0) return;
    if (r < 0) {
        c->close = 1, c->req.content_length = 0;
        if (!c->req.method[0]) strcpy(c->req.method, "-");
        snprintf(c->note, sizeof c->note, "(%s)", c->req.why);
        lb_status_error(c, -r);
        return;
    }
    c->close |= c->req.close;
    if ((uint64_t)c->req.content_length > lb_max_body) {
        c->close = 1;
        snprintf(c->note, sizeof c->note, "(body of %lld bytes, limit %zu)", (long long)c->req.content_length, lb_max_body);
        c->req.content_length = 0;
        respond_error(c, 413, "Content Too Large", "request_too_large", "request body larger than LB_MAX_BODY");
        return;
    }
    size_t total = c->req.head_len + (size_t)c->req.content_length;
    if (total > c->in_cap) {
        char *grown = realloc(c->in, total);
        if (!grown) {
            c->close = 1, c->req.content_length = 0;
            respond_text(c, 503, "Service Unavailable", "out of memory");
            return;
        }
        c->in = grown, c->in_cap = total;
    }
    if (c->in_len < total) {
        if (c->req.expect_continue && !c->continued) {
            memcpy(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            c->out_len = 25, c->out_off = 0, c->continued = 1;
        }
        c->deadline = lb_now_ms() + LB_REQUEST_MS;
        return;
    }
    dispatch(c);
}

void lb_status_error(lb_conn *c, int status) {
    const char *reason = status == 431 ? "Request Header Fields Too Large" : status == 414 ? "URI Too Long"
                         : status == 501 ? "Not Implemented" : status == 505 ? "HTTP Version Not Supported"
                         : status == 417 ? "Expectation Failed" : status == 408 ? "Request Timeout" : "Bad Request";
    c->started = lb_now_ms();
    respond_text(c, status, reason, reason);
}

int main(int argc, char **argv) {
    uint8_t ip[4] = {0, 0, 0, 0};
    uint16_t port = 8080;
    const char *listen_on = argc > 1 ? argv[1] : "0.0.0.0:8080";
    const char *env;
    int listener, err;
    if (ws_parse_ipv4(listen_on, ip, &port) || port == 0) {
        fprintf(stderr, "load-balancer: listen address must be IP:PORT, e.g. 0.0.0.0:8080 (got %s)\n", listen_on);
        return 2;
    }
    lb_clock_tick();
    if ((env = getenv("LB_MAX_BODY")) && atol(env) > 0) lb_max_body = (size_t)atol(env);
    if ((env = getenv("LB_CONNECT_TIMEOUT_MS")) && atol(env) > 0) connect_timeout_ms = (uint64_t)atol(env);
    if ((env = getenv("LB_SEED")) && *env) rng_state = (uint64_t)strtoull(env, NULL, 10) * 2 + 1;
    else if (__wasi_random_get((uint8_t *)&rng_state, sizeof rng_state)) rng_state = lb_now_ms();
    if (!rng_state) rng_state = 88172645463325252ull;
    if ((err = ws_listen(ip, port, 128, &listener)) || (err = nonblocking(listener))) {
        fprintf(stderr, "load-balancer: listen on %s: %s (os error %d)\n", listen_on, ws_strerror(err), err);
        return 1;
    }
    printf("load-balancer listening on %s\n", listen_on);
    fflush(stdout);
    setvbuf(stdout, NULL, _IOFBF, 1 << 15); /* log lines go out once per loop turn, before it waits (lb_poll) */
    lb_pool_init();
    for (;;) {
        int active = 0, client;
        int incoming = lb_poll(conns, LB_MAX_CONNS, listener, &active);
        while (incoming && active < LB_MAX_CONNS && !ws_accept(listener, &client)) {
            lb_conn *c = nonblocking(client) ? NULL : new_conn(client);
            if (!c) close(client);
            active++;
        }
        lb_service(conns, LB_MAX_CONNS);
    }
}
