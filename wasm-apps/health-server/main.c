/* health-server [PORT] [FILE]: an HTTP server for liveness, readiness and startup probes, on WasmEdge's socket ABI.
 *
 * Listens on 0.0.0.0:PORT (default 8080), up to 32 clients at once with ws_poll, one request per connection:
 *   GET /healthz        200 "ok" while FILE exists (always, without FILE), else 500 "unhealthy"
 *   GET /status/CODE    that status code
 *   GET /redirect       302 to /healthz (same host)
 *   GET /elsewhere      302 to http://192.0.2.1/ (another host)
 *   GET /big            200 with a 256 KiB body
 *   GET /slow           no answer: the connection stays open until the client closes it
 *   anything else       404
 * Logs one line per request on stdout: the request line and its User-Agent, so `kubectl logs` shows the probes.
 * FILE lives in a volume the pod mounts, so whoever can write that directory turns the health on and off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wasmedge_sock.h"

enum { MAX_CLIENTS = 32, BUF = 8192, BIG = 256 * 1024 };

static const char *health_file;

static int respond(int fd, int code, const char *extra, const char *body, size_t body_len) {
    char head[512];
    const char *reason = code == 200 ? "OK" : code == 302 ? "Found" : code == 404 ? "Not Found" : "Status";
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     code, reason, body_len, extra);
    int err = ws_send_all(fd, head, (size_t)h);
    return err ? err : ws_send_all(fd, body, body_len);
}

static int healthy(void) {
    if (!health_file) return 1;
    FILE *f = fopen(health_file, "r");
    if (f) fclose(f);
    return f != NULL;
}

/* Answers the request in buf; returns 1 when the connection is done, 0 to keep it open (/slow). */
static int answer(int fd, char *buf) {
    char path[256] = "/";
    const char *agent = strstr(buf, "User-Agent: ");
    char ua[128] = "-";
    if (agent) sscanf(agent + 12, "%127[^\r\n]", ua);
    sscanf(buf, "%*s %255s", path);
    printf("GET %s (User-Agent: %s)\n", path, ua);
    fflush(stdout);
    if (!strcmp(path, "/healthz")) {
        if (healthy()) respond(fd, 200, "", "ok\n", 3);
        else respond(fd, 500, "", "unhealthy\n", 10);
    } else if (!strncmp(path, "/status/", 8)) {
        respond(fd, atoi(path + 8), "", "status\n", 7);
    } else if (!strcmp(path, "/redirect")) {
        respond(fd, 302, "Location: /healthz\r\n", "", 0);
    } else if (!strcmp(path, "/elsewhere")) {
        respond(fd, 302, "Location: http://192.0.2.1/\r\n", "", 0);
    } else if (!strcmp(path, "/big")) {
        static char big[BIG];
        memset(big, 'a', sizeof big);
        respond(fd, 200, "", big, sizeof big);
    } else if (!strcmp(path, "/slow")) {
        return 0;
    } else {
        respond(fd, 404, "", "not found\n", 10);
    }
    return 1;
}

int main(int argc, char **argv) {
    const uint8_t any[4] = {0, 0, 0, 0};
    long port = argc > 1 ? strtol(argv[1], NULL, 10) : 8080;
    int listener, err;
    health_file = argc > 2 ? argv[2] : NULL;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "health-server: bad port %s\n", argv[1]);
        return 2;
    }
    if ((err = ws_listen(any, (uint16_t)port, 128, &listener))) {
        fprintf(stderr, "health-server: listen on port %ld: %s (os error %d)\n", port, ws_strerror(err), err);
        return 1;
    }
    printf("health-server listening on 0.0.0.0:%ld\n", port);
    fflush(stdout);
    ws_pollfd fds[MAX_CLIENTS + 1] = {{listener, WS_POLLIN, 0}};
    int answered[MAX_CLIENTS + 1] = {0}; /* a /slow client: read and drop its bytes until it closes */
    int nfds = 1;
    static char buf[BUF];
    for (;;) {
        int ready;
        fds[0].events = nfds <= MAX_CLIENTS ? WS_POLLIN : 0;
        if ((err = ws_poll(fds, nfds, -1, &ready))) {
            fprintf(stderr, "health-server: poll: %s\n", ws_strerror(err));
            return 1;
        }
        if (fds[0].revents & WS_POLLIN) {
            int client;
            if (!ws_accept(listener, &client)) {
                fds[nfds] = (ws_pollfd){client, WS_POLLIN, 0};
                answered[nfds++] = 0;
            }
        }
        for (int i = nfds - 1; i >= 1; i--) {
            if (!fds[i].revents) continue;
            size_t n = 0;
            int done = ws_recv(fds[i].fd, buf, sizeof buf - 1, &n) || n == 0;
            if (!done && !answered[i]) {
                buf[n] = 0;
                done = answer(fds[i].fd, buf);
                answered[i] = 1;
            }
            if (done) {
                close(fds[i].fd);
                fds[i] = fds[--nfds];
                answered[i] = answered[nfds];
            }
        }
    }
}
