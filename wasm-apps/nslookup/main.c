/* nslookup NAME [SERVICE]: resolve NAME the way wasmedge_wasi_socket's nslookup() does (src/lib.rs, v0.5.5).
 *
 * - DNS_SERVER=ip:port set: connect to it over TCP (5 s send/receive timeouts), then ask one A query
 *   (recursion desired, class IN) for NAME exactly as given: IPv4 only, no resolv.conf, no search domains,
 *   so short Service names fail and FQDNs (<svc>.<ns>.svc.cluster.local) work. "localhost" is 127.0.0.1
 *   (after connecting, as the crate does). Any failure of the query or an answer without A records gives
 *   error 83 (__WASI_ERRNO_AINODATA), as the crate's unwrap_or_default() + "if r.is_empty()" does.
 * - DNS_SERVER unset: sock_getaddrinfo(NAME, SERVICE or "http"), i.e. the runtime's host resolver.
 *
 * Prints one "ip:port" per line (port 0 from DNS_SERVER, as the crate returns). On failure prints
 * "nslookup: NAME: <reason> (os error N)" on stderr and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#include "wasmedge_sock.h"

enum { TYPE_A = 1, CLASS_IN = 1, MAX_ADDRS = 16 };

static int fail(const char *name, int err) {
    fprintf(stderr, "nslookup: %s: %s (os error %d)\n", name, ws_strerror(err), err);
    return 1;
}

/* The query as dns-parser's Builder::new_query(id, true) + add_question(name, false, A, IN) writes it. */
static int build_query(const char *name, uint16_t id, uint8_t *out, size_t cap, size_t *len) {
    uint8_t header[12] = {id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t at = sizeof header;
    memcpy(out, header, at);
    const char *label = name;
    while (*label) {
        const char *dot = strchr(label, '.');
        size_t n = dot ? (size_t)(dot - label) : strlen(label);
        if (n == 0 || n > 63 || at + n + 6 > cap) return __WASI_ERRNO_INVAL;
        out[at++] = (uint8_t)n;
        memcpy(out + at, label, n);
        at += n;
        label += n + (dot ? 1 : 0);
    }
    uint8_t tail[5] = {0, 0, TYPE_A, 0, CLASS_IN};
    memcpy(out + at, tail, sizeof tail);
    *len = at + sizeof tail;
    return 0;
}

/* Skips a (possibly compressed) name; returns the offset after it, or 0 if malformed. */
static size_t skip_name(const uint8_t *p, size_t len, size_t at) {
    while (at < len) {
        uint8_t n = p[at];
        if (n == 0) return at + 1;
        if ((n & 0xc0) == 0xc0) return at + 2 <= len ? at + 2 : 0;
        if (n & 0xc0) return 0;
        at += 1u + n;
    }
    return 0;
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* The crate's resolve::<_, Ipv4Addr>(): returns how many A records it found, or -1 for any error. */
static int resolve(int fd, const char *name, uint8_t addrs[][4]) {
    static uint8_t reply[65535]; /* static: the default wasm stack is only 64 KiB */
    uint8_t query[512], size[2];
    size_t qlen, n;
    uint16_t id;
    if (__wasi_random_get((uint8_t *)&id, sizeof id) || build_query(name, id, query + 2, sizeof query - 2, &qlen))
        return -1;
    query[0] = (uint8_t)(qlen >> 8), query[1] = (uint8_t)qlen;
    if (ws_send_all(fd, query, qlen + 2)) return -1;
    /* like the crate: one read for the 2-byte length, one read for the message */
    if (ws_recv(fd, size, 2, &n) || n < 2) return -1;
    size_t psize = be16(size);
    if (ws_recv(fd, reply, psize, &n) || n != psize || psize < 12) return -1;
    if (be16(reply) != id || (reply[3] & 0x0f) != 0) return -1; /* "Illegal id", or an RCODE such as NXDOMAIN */
    size_t at = 12;
    for (uint16_t q = be16(reply + 4); q; q--) {
        if (!(at = skip_name(reply, psize, at)) || (at += 4) > psize) return -1;
    }
    int found = 0;
    for (uint16_t a = be16(reply + 6); a; a--) {
        if (!(at = skip_name(reply, psize, at)) || at + 10 > psize) return -1;
        uint16_t type = be16(reply + at), rdlen = be16(reply + at + 8);
        at += 10;
        if (at + rdlen > psize) return -1;
        if (type == TYPE_A && rdlen == 4 && found < MAX_ADDRS) memcpy(addrs[found++], reply + at, 4);
        at += rdlen;
    }
    return found;
}

static int with_dns_server(const char *server, const char *name) {
    uint8_t ip[4], addrs[MAX_ADDRS][4];
    uint16_t port;
    int fd, err;
    if (ws_parse_ipv4(server, ip, &port)) {
        fprintf(stderr, "nslookup: DNS_SERVER=%s: invalid socket address (want ip:port, e.g. 10.43.0.10:53)\n", server);
        return 1;
    }
    if ((err = ws_connect(ip, port, &fd))) return fail(name, err);
    ws_set_timeouts(fd, 5); /* errors ignored, as the crate's `let _ignore = ...` */
    if (!strcmp(name, "localhost")) {
        puts("127.0.0.1:0");
        return 0;
    }
    int found = resolve(fd, name, addrs);
    close(fd);
    if (found <= 0) return fail(name, WS_EAI_NODATA);
    for (int i = 0; i < found; i++) printf("%u.%u.%u.%u:0\n", addrs[i][0], addrs[i][1], addrs[i][2], addrs[i][3]);
    return 0;
}

static int with_host(const char *name, const char *service) {
    uint8_t ips[MAX_ADDRS][4];
    uint16_t ports[MAX_ADDRS];
    int count, err = ws_getaddrinfo(name, service, ips, ports, MAX_ADDRS, &count);
    if (err) return fail(name, err);
    for (int i = 0; i < count; i++) printf("%u.%u.%u.%u:%u\n", ips[i][0], ips[i][1], ips[i][2], ips[i][3], ports[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fputs("usage: nslookup NAME [SERVICE]   (env DNS_SERVER=ip:port queries that server over TCP)\n", stderr);
        return 2;
    }
    const char *server = getenv("DNS_SERVER");
    return server ? with_dns_server(server, argv[1]) : with_host(argv[1], argc > 2 ? argv[2] : "http");
}
