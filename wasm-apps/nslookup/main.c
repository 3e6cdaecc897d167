/* nslookup NAME [SERVICE]: resolve NAME the way wasmedge_wasi_socket's nslookup() does (src/lib.rs, v0.5.5),
 * through ws_nslookup (lib/wasmedge_dns.c):
 *
 * - DNS_SERVER=ip:port set: one A query over TCP for NAME exactly as given (no search domains), failures → 83;
 * - DNS_SERVER unset: sock_getaddrinfo(NAME, SERVICE or "http"), i.e. the runtime's host resolver.
 *
 * Prints one "ip:port" per line (port 0 from DNS_SERVER, as the crate returns). On failure prints
 * "nslookup: NAME: <reason> (os error N)" on stderr and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "wasmedge_sock.h"

enum { MAX_ADDRS = 16 };

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fputs("usage: nslookup NAME [SERVICE]   (env DNS_SERVER=ip:port queries that server over TCP)\n", stderr);
        return 2;
    }
    uint8_t ips[MAX_ADDRS][4];
    uint16_t ports[MAX_ADDRS];
    int count, err = ws_nslookup(argv[1], argc > 2 ? argv[2] : "http", ips, ports, MAX_ADDRS, &count);
    if (err == WS_EBADDNSSERVER) {
        fprintf(stderr, "nslookup: DNS_SERVER=%s: invalid socket address (want ip:port, e.g. 10.43.0.10:53)\n",
                getenv("DNS_SERVER"));
        return 1;
    }
    if (err) {
        fprintf(stderr, "nslookup: %s: %s (os error %d)\n", argv[1], ws_strerror(err), err);
        return 1;
    }
    for (int i = 0; i < count; i++) printf("%u.%u.%u.%u:%u\n", ips[i][0], ips[i][1], ips[i][2], ips[i][3], ports[i]);
    return 0;
}
