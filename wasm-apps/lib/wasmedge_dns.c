/* wasmedge_dns.c: wasmedge_wasi_socket's nslookup() (src/lib.rs, v0.5.5) for the kit's C apps; see wasmedge_sock.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#include "wasmedge_sock.h"

enum { TYPE_A = 1, CLASS_IN = 1 };

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

/* The crate's resolve::<_, Ipv4Addr>(): returns how many A records it found (at most max), or -1 for any error. */
static int resolve(int fd, const char *name, uint8_t (*addrs)[4], int max) {
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
        if (type == TYPE_A && rdlen == 4 && found < max) memcpy(addrs[found++], reply + at, 4);
        at += rdlen;
    }
    return found;
}

int ws_nslookup(const char *node, const char *service, uint8_t (*ips)[4], uint16_t *ports, int max, int *count) {
    const char *server = getenv("DNS_SERVER");
    *count = 0;
    if (!server) return ws_getaddrinfo(node, service, ips, ports, max, count);
    uint8_t ip[4];
    uint16_t port;
    int fd, err;
    if (ws_parse_ipv4(server, ip, &port)) return WS_EBADDNSSERVER;
    if ((err = ws_connect(ip, port, &fd))) return err;
    ws_set_timeouts(fd, 5); /* errors ignored, as the crate's `let _ignore = ...` */
    int found = 1;
    if (!strcmp(node, "localhost")) {
        memcpy(ips[0], (uint8_t[4]){127, 0, 0, 1}, 4);
    } else {
        found = resolve(fd, node, ips, max);
    }
    close(fd);
    if (found <= 0) return WS_EAI_NODATA;
    for (int i = 0; i < found; i++) ports[i] = 0; /* the crate returns port 0: the caller's port applies */
    *count = found;
    return 0;
}
