/* wasmedge_sock.c: the helpers of wasmedge_sock.h, over WasmEdge's sock_* imports and WASI's poll_oneoff. */
#include "wasmedge_sock.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static ws_address v4(const uint8_t ip[4], uint8_t copy[4]) {
    memcpy(copy, ip, 4);
    ws_address addr = {copy, 4};
    return addr;
}

static int open_tcp(int *fd) {
    uint32_t raw;
    int err = (int)ws_sock_open(WS_AF_INET4, WS_SOCK_STREAM, &raw);
    *fd = (int)raw;
    return err;
}

int ws_connect(const uint8_t ip[4], uint16_t port, int *fd) {
    uint8_t copy[4];
    ws_address addr = v4(ip, copy);
    int err = open_tcp(fd);
    if (err) return err;
    err = (int)ws_sock_connect((uint32_t)*fd, &addr, port);
    if (err) close(*fd);
    return err;
}

int ws_listen(const uint8_t ip[4], uint16_t port, int backlog, int *fd) {
    uint8_t copy[4];
    ws_address addr = v4(ip, copy);
    int32_t one = 1;
    int err = open_tcp(fd);
    if (err) return err;
    /* as wasmedge_wasi_socket's TcpListener::bind: SO_REUSEADDR, bind, listen */
    err = (int)ws_sock_setsockopt((uint32_t)*fd, WS_SOL_SOCKET, WS_SO_REUSEADDR, &one, sizeof one);
    if (!err) err = (int)ws_sock_bind((uint32_t)*fd, &addr, port);
    if (!err) err = (int)ws_sock_listen((uint32_t)*fd, (uint32_t)backlog);
    if (err) close(*fd);
    return err;
}

int ws_accept(int listener, int *fd) {
    uint32_t raw;
    int err = (int)ws_sock_accept((uint32_t)listener, &raw);
    *fd = (int)raw;
    return err;
}

int ws_send(int fd, const void *buf, size_t len, size_t *sent) {
    ws_iovec vec = {(void *)buf, (uint32_t)len};
    uint32_t n = 0;
    int err = (int)ws_sock_send((uint32_t)fd, &vec, 1, 0, &n);
    *sent = n;
    return err;
}

int ws_send_all(int fd, const void *buf, size_t len) {
    const char *at = buf;
    while (len) {
        size_t sent;
        int err = ws_send(fd, at, len, &sent);
        if (err) return err;
        at += sent;
        len -= sent;
    }
    return 0;
}

int ws_recv(int fd, void *buf, size_t len, size_t *received) {
    ws_iovec vec = {buf, (uint32_t)len};
    uint32_t n = 0;
    uint16_t oflags = 0;
    int err = (int)ws_sock_recv((uint32_t)fd, &vec, 1, 0, &n, &oflags);
    *received = n;
    return err;
}

int ws_set_timeouts(int fd, int seconds) {
    /* wasm32-wasi struct timeval: two 64-bit fields, passed to the host's setsockopt as they are */
    int64_t tv[2] = {seconds, 0};
    int err = (int)ws_sock_setsockopt((uint32_t)fd, WS_SOL_SOCKET, WS_SO_RCVTIMEO, tv, sizeof tv);
    return err ? err : (int)ws_sock_setsockopt((uint32_t)fd, WS_SOL_SOCKET, WS_SO_SNDTIMEO, tv, sizeof tv);
}

#define WS_POLL_MAX 64

int ws_poll(ws_pollfd *fds, int nfds, int timeout_ms, int *ready) {
    __wasi_subscription_t subs[WS_POLL_MAX * 2 + 1];
    __wasi_event_t events[WS_POLL_MAX * 2 + 1];
    __wasi_size_t nsubs = 0, nevents = 0;
    if (nfds > WS_POLL_MAX) return __WASI_ERRNO_INVAL;
    for (int i = 0; i < nfds; i++) {
        fds[i].revents = 0;
        for (int kind = 0; kind < 2; kind++) {
            if (!(fds[i].events & (kind ? WS_POLLOUT : WS_POLLIN))) continue;
            __wasi_subscription_t *s = &subs[nsubs++];
            memset(s, 0, sizeof *s);
            s->userdata = (uint64_t)i;
            s->u.tag = kind ? __WASI_EVENTTYPE_FD_WRITE : __WASI_EVENTTYPE_FD_READ;
            s->u.u.fd_read.file_descriptor = (__wasi_fd_t)fds[i].fd;
        }
    }
    if (timeout_ms >= 0) {
        __wasi_subscription_t *s = &subs[nsubs++];
        memset(s, 0, sizeof *s);
        s->userdata = UINT64_MAX;
        s->u.tag = __WASI_EVENTTYPE_CLOCK;
        s->u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
        s->u.u.clock.timeout = (uint64_t)timeout_ms * 1000000u;
    }
    int err = (int)__wasi_poll_oneoff(subs, events, nsubs, &nevents);
    if (err) return err;
    *ready = 0;
    for (__wasi_size_t k = 0; k < nevents; k++) {
        if (events[k].userdata == UINT64_MAX || events[k].error) continue;
        ws_pollfd *p = &fds[events[k].userdata];
        if (!p->revents) ++*ready;
        p->revents |= events[k].type == __WASI_EVENTTYPE_FD_WRITE ? WS_POLLOUT : WS_POLLIN;
        if (events[k].fd_readwrite.flags & __WASI_EVENTRWFLAGS_FD_READWRITE_HANGUP) p->revents |= WS_POLLHUP;
    }
    return 0;
}

int ws_getaddrinfo(const char *node, const char *service, uint8_t (*ips)[4], uint16_t *ports, int max, int *count) {
    enum { SLOTS = 10 }; /* nslookup_with_host asks for 10 */
    ws_addrinfo infos[SLOTS];
    ws_sockaddr addrs[SLOTS];
    uint8_t data[SLOTS][26];
    char canon[SLOTS][32];
    memset(infos, 0, sizeof infos);
    for (int i = 0; i < SLOTS; i++) {
        addrs[i].sa_data_len = sizeof data[i];
        addrs[i].sa_data = data[i];
        infos[i].ai_addr = &addrs[i];
        infos[i].ai_canonname = canon[i];
        infos[i].ai_canonname_len = sizeof canon[i];
        infos[i].ai_next = i + 1 < SLOTS ? &infos[i + 1] : NULL;
    }
    /* hints as the crate's WasiAddrinfo::default(): flags 0, INET4, STREAM, TCP */
    ws_addrinfo hints = {0, WS_AF_INET4, WS_SOCK_STREAM, 1, 0, NULL, NULL, 0, NULL};
    ws_addrinfo *res = infos;
    uint32_t n = 0;
    /* the crate passes NUL-terminated strings and counts the NUL */
    int err = (int)ws_sock_getaddrinfo(node, strlen(node) + 1, service, strlen(service) + 1, &hints, &res, SLOTS, &n);
    *count = 0;
    if (err) return err;
    for (uint32_t i = 0; i < n && *count < max; i++) {
        if (infos[i].ai_addrlen == 0 || addrs[i].sa_family != WS_AF_INET4) continue;
        ports[*count] = (uint16_t)(data[i][0] << 8 | data[i][1]);
        memcpy(ips[*count], &data[i][2], 4);
        ++*count;
    }
    return 0;
}

int ws_parse_ipv4(const char *text, uint8_t ip[4], uint16_t *port) {
    unsigned a, b, c, d, p = 0;
    char tail;
    int fields = port ? sscanf(text, "%3u.%3u.%3u.%3u:%5u%c", &a, &b, &c, &d, &p, &tail)
                      : sscanf(text, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail);
    if (fields != (port ? 5 : 4) || a > 255 || b > 255 || c > 255 || d > 255 || p > 65535) return __WASI_ERRNO_INVAL;
    ip[0] = (uint8_t)a, ip[1] = (uint8_t)b, ip[2] = (uint8_t)c, ip[3] = (uint8_t)d;
    if (port) *port = (uint16_t)p;
    return 0;
}

const char *ws_strerror(int err) {
    static const char *const ai[] = {"Address family for hostname not supported", "Temporary failure in name resolution",
                                     "Bad value for ai_flags", "Non-recoverable failure in name resolution",
                                     "ai_family not supported", "Memory allocation failure",
                                     "No address associated with hostname", "Name or service not known",
                                     "Servname not supported for ai_socktype", "ai_socktype not supported",
                                     "System error"};
    if (err >= 77 && err <= 87) return ai[err - 77];
    return strerror(err);
}
