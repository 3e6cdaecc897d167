/* echo-client IP:PORT [ROUNDS] [SIZE]: TCP echo round trips against an echo server, on WasmEdge's socket ABI.
 *
 * Connects to IP:PORT (a Service's ClusterIP works as on k3s: the node picks one of its endpoints), prints
 * "connected to IP:PORT" as the socket reports its peer (sock_getpeeraddr), then sends SIZE bytes (default
 * 64) and reads them back, ROUNDS times (default 1), and prints the round trips' p50 and p99 in
 * microseconds: "rounds N p50 X us p99 Y us". Exits 1 on any failure, with the reason on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#include "wasmedge_sock.h"

enum { MAX_SIZE = 65536, MAX_ROUNDS = 100000 };

/* V1 sock_getpeeraddr as wasmedge_wasi_socket 0.5 imports it: address buffer, its kind (4 or 6), the port */
WS_IMPORT("sock_getpeeraddr")
uint32_t ws_sock_getpeeraddr(uint32_t fd, ws_address *addr, uint32_t *addr_type, uint32_t *port);

static int fail(const char *what, int err) {
    fprintf(stderr, "echo-client: %s: %s (os error %d)\n", what, ws_strerror(err), err);
    return 1;
}

static uint64_t now_ns(void) {
    __wasi_timestamp_t t = 0;
    __wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t);
    return t;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    uint8_t ip[4], peer[4];
    uint16_t port = 0;
    if (argc < 2 || ws_parse_ipv4(argv[1], ip, &port) || !port) {
        fprintf(stderr, "usage: echo-client IP:PORT [ROUNDS] [SIZE]\n");
        return 2;
    }
    long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 1, size = argc > 3 ? strtol(argv[3], NULL, 10) : 64;
    if (rounds < 1 || rounds > MAX_ROUNDS || size < 1 || size > MAX_SIZE) {
        fprintf(stderr, "echo-client: ROUNDS 1..%d, SIZE 1..%d\n", MAX_ROUNDS, MAX_SIZE);
        return 2;
    }
    int fd, err;
    if ((err = ws_connect(ip, port, &fd))) return fail(argv[1], err);
    ws_address addr = {peer, 4};
    uint32_t kind = 0, peer_port = 0;
    if ((err = (int)ws_sock_getpeeraddr((uint32_t)fd, &addr, &kind, &peer_port))) return fail("getpeeraddr", err);
    printf("connected to %u.%u.%u.%u:%u\n", peer[0], peer[1], peer[2], peer[3], peer_port);
    fflush(stdout);
    static char out[MAX_SIZE], in[MAX_SIZE];
    memset(out, 'x', (size_t)size);
    uint64_t *times = malloc(sizeof(uint64_t) * (size_t)rounds);
    if (!times) return fail("malloc", __WASI_ERRNO_NOMEM);
    for (long k = 0; k < rounds; k++) {
        uint64_t started = now_ns();
        if ((err = ws_send_all(fd, out, (size_t)size))) return fail("send", err);
        size_t got = 0;
        while (got < (size_t)size) {
            size_t n = 0;
            if ((err = ws_recv(fd, in + got, (size_t)size - got, &n))) return fail("recv", err);
            if (n == 0) return fail("recv", __WASI_ERRNO_CONNRESET);
            got += n;
        }
        if (memcmp(in, out, (size_t)size)) return fail("echo differs", __WASI_ERRNO_IO);
        times[k] = now_ns() - started;
    }
    qsort(times, (size_t)rounds, sizeof(uint64_t), by_value);
    printf("rounds %ld p50 %.1f us p99 %.1f us\n", rounds, times[rounds / 2] / 1e3, times[(rounds * 99) / 100] / 1e3);
    close(fd);
    return 0;
}
