/* echo-server [PORT]: a TCP echo and tiny HTTP server on WasmEdge's socket ABI (wasmedge_sock.h).
 *
 * Listens on 0.0.0.0:PORT (default 8080) and serves up to 32 clients at once with ws_poll. A connection
 * whose first bytes are an HTTP GET or HEAD gets one "HTTP/1.1 200 OK" answer naming the request path and
 * is closed; any other connection has every byte echoed back until the client closes. Logs one line per
 * connection on stdout, so `kubectl logs` shows the traffic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wasmedge_sock.h"

enum { MAX_CLIENTS = 32, BUF = 16384 };

static int answer_http(int fd, const char *request, size_t len) {
    char path[256] = "/", body[512], head[256];
    sscanf(request, "%*s %255s", path);
    int n = snprintf(body, sizeof body, "hello from echo-server (wasm): %s\n", path);
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", n);
    (void)len;
    int err = ws_send_all(fd, head, (size_t)h);
    return err || !strncmp(request, "HEAD ", 5) ? err : ws_send_all(fd, body, (size_t)n);
}

int main(int argc, char **argv) {
    const uint8_t any[4] = {0, 0, 0, 0};
    long port = argc > 1 ? strtol(argv[1], NULL, 10) : 8080;
    int listener, err;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "echo-server: bad port %s\n", argv[1]);
        return 2;
    }
    if ((err = ws_listen(any, (uint16_t)port, 128, &listener))) {
        fprintf(stderr, "echo-server: listen on port %ld: %s (os error %d)\n", port, ws_strerror(err), err);
        return 1;
    }
    printf("echo-server listening on 0.0.0.0:%ld\n", port);
    fflush(stdout);
    ws_pollfd fds[MAX_CLIENTS + 1] = {{listener, WS_POLLIN, 0}};
    int fresh[MAX_CLIENTS + 1] = {0}; /* no bytes read yet: the first read decides echo or HTTP */
    int nfds = 1;
    static char buf[BUF];
    for (;;) {
        int ready;
        fds[0].events = nfds <= MAX_CLIENTS ? WS_POLLIN : 0; /* full: leave new clients in the backlog */
        if ((err = ws_poll(fds, nfds, -1, &ready))) {
            fprintf(stderr, "echo-server: poll: %s\n", ws_strerror(err));
            return 1;
        }
        if (fds[0].revents & WS_POLLIN) {
            int client;
            if (!ws_accept(listener, &client)) {
                fds[nfds] = (ws_pollfd){client, WS_POLLIN, 0};
                fresh[nfds++] = 1;
                printf("connection accepted\n");
                fflush(stdout);
            }
        }
        for (int i = nfds - 1; i >= 1; i--) {
            if (!fds[i].revents) continue;
            size_t n = 0;
            int done = ws_recv(fds[i].fd, buf, sizeof buf, &n) || n == 0;
            if (!done && fresh[i] && (!strncmp(buf, "GET ", 4) || !strncmp(buf, "HEAD ", 5))) {
                answer_http(fds[i].fd, buf, n);
                done = 1;
            } else if (!done) {
                done = ws_send_all(fds[i].fd, buf, n) != 0;
            }
            fresh[i] = 0;
            if (done) {
                close(fds[i].fd);
                fds[i] = fds[--nfds];
                fresh[i] = fresh[nfds];
            }
        }
    }
}
