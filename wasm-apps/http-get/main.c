/* http-get URL: one HTTP/1.1 GET, as a wasm pod that calls a Service would make it.
 *
 * URL is http://HOST[:PORT][/PATH] (PORT 80 by default). HOST is an IPv4 address, or a name resolved as
 * wasmedge_wasi_socket's ToSocketAddrs does for (&str, u16): nslookup() (lib/wasmedge_dns.c), so with
 * DNS_SERVER set the name goes to that server as it is (no search domains), and without it to the runtime's
 * host resolver. It connects to the first address, sends the request with "Connection: close", and prints
 * the status line on stderr and the body on stdout. Exit 0 for a 2xx answer, 1 for any failure, which is
 * reported as "http-get: HOST: <reason> (os error N)" (the same shape as nslookup's), 2 for a bad URL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wasmedge_sock.h"

enum { MAX_ADDRS = 4, MAX_HOST = 253, MAX_RESPONSE = 1 << 20 };

static int fail(const char *host, int err) {
    fprintf(stderr, "http-get: %s: %s (os error %d)\n", host, ws_strerror(err), err);
    return 1;
}

/* Splits http://HOST[:PORT][/PATH]; 0 on success. */
static int parse_url(const char *url, char *host, uint16_t *port, const char **path) {
    if (strncmp(url, "http://", 7)) return -1;
    const char *start = url + 7, *slash = strchr(start, '/'), *end = slash ? slash : start + strlen(start);
    const char *colon = memchr(start, ':', (size_t)(end - start));
    size_t n = (size_t)((colon ? colon : end) - start);
    if (n == 0 || n > MAX_HOST) return -1;
    memcpy(host, start, n);
    host[n] = '\0';
    *port = 80;
    if (colon) {
        char *stop;
        long p = strtol(colon + 1, &stop, 10);
        if (stop != end || p <= 0 || p > 65535) return -1;
        *port = (uint16_t)p;
    }
    *path = slash ? slash : "/";
    return 0;
}

static int connect_to(const char *host, uint16_t port, int *fd) {
    uint8_t ips[MAX_ADDRS][4];
    uint16_t ports[MAX_ADDRS];
    int count = 1, err = 0;
    char service[8];
    if (ws_parse_ipv4(host, ips[0], NULL)) {
        snprintf(service, sizeof service, "%u", port);
        if ((err = ws_nslookup(host, service, ips, ports, MAX_ADDRS, &count))) return err;
        if (count == 0) return WS_EAI_NODATA;
    }
    return ws_connect(ips[0], port, fd);
}

int main(int argc, char **argv) {
    char host[MAX_HOST + 1], request[1024];
    uint16_t port;
    const char *path;
    if (argc != 2 || parse_url(argv[1], host, &port, &path)) {
        fputs("usage: http-get http://HOST[:PORT][/PATH]   (env DNS_SERVER=ip:port resolves HOST there)\n", stderr);
        return 2;
    }
    int fd, err = connect_to(host, port, &fd);
    if (err == WS_EBADDNSSERVER) {
        fprintf(stderr, "http-get: DNS_SERVER=%s: invalid socket address (want ip:port, e.g. 10.43.0.10:53)\n",
                getenv("DNS_SERVER"));
        return 1;
    }
    if (err) return fail(host, err);
    ws_set_timeouts(fd, 10);
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: http-get (wasm)\r\nConnection: close\r\n\r\n",
                     path, host, port);
    if (n < 0 || (size_t)n >= sizeof request) return fail(host, __WASI_ERRNO_NAMETOOLONG);
    if ((err = ws_send_all(fd, request, (size_t)n))) return fail(host, err);
    static char response[MAX_RESPONSE + 1]; /* static: the default wasm stack is only 64 KiB */
    size_t total = 0, got;
    while (total < MAX_RESPONSE) {
        if ((err = ws_recv(fd, response + total, MAX_RESPONSE - total, &got))) return fail(host, err);
        if (got == 0) break;
        total += got;
    }
    close(fd);
    response[total] = '\0';
    char *line_end = strstr(response, "\r\n"), *body = strstr(response, "\r\n\r\n");
    int status = 0;
    if (!line_end || !body || sscanf(response, "HTTP/%*d.%*d %d", &status) != 1) {
        fprintf(stderr, "http-get: %s: not an HTTP response\n", host);
        return 1;
    }
    fprintf(stderr, "%.*s\n", (int)(line_end - response), response);
    fputs(body + 4, stdout);
    return status >= 200 && status < 300 ? 0 : 1;
}
