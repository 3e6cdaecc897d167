/* wasmedge_sock.h: TCP for the kit's C apps over WasmEdge's socket ABI.
 *
 * WasmEdge adds sock_* functions to the wasi_snapshot_preview1 import module
 * (WasmEdge lib/host/wasi/wasimodule.cpp); Rust's wasmedge_wasi_socket crate
 * (src/socket.rs) is built on them. This header declares the same imports with
 * the same types, so a module built with it runs on real WasmEdge (wasmedge
 * app.wasm, or the runwasi WasmEdge shim on k3s) and in labkit's sandbox alike.
 * Building against the ABI, not against the sandbox: nothing here is labkit's.
 *
 * Errors: every ws_* function returns a WASI errno (0 = success). wasi-libc's
 * errno values are the WASI ones, so strerror() works for 1..76; WasmEdge adds
 * getaddrinfo errors 77..87 (__WASI_ERRNO_AIADDRFAMILY .. AISYSTEM), e.g.
 * WS_EAI_NODATA (83), what wasmedge_wasi_socket's nslookup returns for an empty
 * answer.
 */
#ifndef WASMEDGE_SOCK_H
#define WASMEDGE_SOCK_H

#include <stddef.h>
#include <stdint.h>

#define WS_IMPORT(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(name)))

/* __wasi_address_family_t and __wasi_sock_type_t (WasmEdge thirdparty/wasi/api.hpp) */
enum { WS_AF_INET4 = 1, WS_AF_INET6 = 2 };
enum { WS_SOCK_DGRAM = 1, WS_SOCK_STREAM = 2 };
/* __wasi_sock_opt_level_t / __wasi_sock_opt_so_t */
enum { WS_SOL_SOCKET = 0, WS_SO_REUSEADDR = 0, WS_SO_RCVTIMEO = 11, WS_SO_SNDTIMEO = 12 };
/* getaddrinfo errors WasmEdge adds after __WASI_ERRNO_NOTCAPABLE (76) */
enum { WS_EAI_AGAIN = 78, WS_EAI_FAIL = 80, WS_EAI_NODATA = 83, WS_EAI_NONAME = 84, WS_EAI_SERVICE = 85 };
/* not a WASI errno: ws_nslookup's "DNS_SERVER is no ip:port" */
enum { WS_EBADDNSSERVER = 1000 };

/* __wasi_address_t: a pointer to 4 (IPv4) or 16 (IPv6) address bytes and their length */
typedef struct { uint8_t *buf; uint32_t buf_len; } ws_address;
/* __wasi_iovec_t / __wasi_ciovec_t */
typedef struct { void *buf; uint32_t buf_len; } ws_iovec;
/* __wasi_sockaddr_t: sa_data holds the host sockaddr from sin_port on (14 bytes for IPv4, 26 for IPv6) */
typedef struct { uint8_t sa_family; uint32_t sa_data_len; uint8_t *sa_data; } ws_sockaddr;
/* __wasi_addrinfo_t (28 bytes, align 4) */
typedef struct ws_addrinfo {
    uint16_t ai_flags;
    uint8_t ai_family, ai_socktype, ai_protocol;
    uint32_t ai_addrlen;
    ws_sockaddr *ai_addr;
    char *ai_canonname;
    uint32_t ai_canonname_len;
    struct ws_addrinfo *ai_next;
} ws_addrinfo;

/* The imports, V1 signatures as wasmedge_wasi_socket 0.5 declares them (src/socket.rs mod wasi_sock). */
WS_IMPORT("sock_open") uint32_t ws_sock_open(uint32_t family, uint32_t type, uint32_t *fd);
WS_IMPORT("sock_bind") uint32_t ws_sock_bind(uint32_t fd, ws_address *addr, uint32_t port);
WS_IMPORT("sock_listen") uint32_t ws_sock_listen(uint32_t fd, uint32_t backlog);
WS_IMPORT("sock_accept") uint32_t ws_sock_accept(uint32_t fd, uint32_t *new_fd);
WS_IMPORT("sock_connect") uint32_t ws_sock_connect(uint32_t fd, ws_address *addr, uint32_t port);
WS_IMPORT("sock_recv")
uint32_t ws_sock_recv(uint32_t fd, ws_iovec *bufs, uint32_t nbufs, uint16_t flags, uint32_t *received,
                      uint16_t *oflags);
WS_IMPORT("sock_send")
uint32_t ws_sock_send(uint32_t fd, const ws_iovec *bufs, uint32_t nbufs, uint16_t flags, uint32_t *sent);
WS_IMPORT("sock_shutdown") uint32_t ws_sock_shutdown(uint32_t fd, uint8_t how);
WS_IMPORT("sock_setsockopt")
uint32_t ws_sock_setsockopt(uint32_t fd, uint32_t level, uint32_t name, const void *value, uint32_t size);
WS_IMPORT("sock_getaddrinfo")
uint32_t ws_sock_getaddrinfo(const char *node, uint32_t node_len, const char *service, uint32_t service_len,
                             const ws_addrinfo *hints, ws_addrinfo **res, uint32_t max_res, uint32_t *res_len);

/* The library: small blocking TCP helpers (ws_sock.c). fds are closed with close(). */
int ws_connect(const uint8_t ip[4], uint16_t port, int *fd);
int ws_listen(const uint8_t ip[4], uint16_t port, int backlog, int *fd);
int ws_accept(int listener, int *fd);
int ws_send(int fd, const void *buf, size_t len, size_t *sent);
int ws_send_all(int fd, const void *buf, size_t len);
int ws_recv(int fd, void *buf, size_t len, size_t *received); /* *received == 0: the peer closed */
int ws_set_timeouts(int fd, int seconds);                     /* SO_RCVTIMEO and SO_SNDTIMEO */

/* ws_poll: poll_oneoff on fds for reading (events WS_POLLIN) or writing (WS_POLLOUT); timeout_ms < 0 waits
 * forever. Sets revents and *ready (how many fds have events); 0 ready means the timeout passed. */
enum { WS_POLLIN = 1, WS_POLLOUT = 2, WS_POLLHUP = 4 };
typedef struct { int fd; int events; int revents; } ws_pollfd;
int ws_poll(ws_pollfd *fds, int nfds, int timeout_ms, int *ready);

/* ws_getaddrinfo: IPv4 TCP addresses of node for service (e.g. "http"), through the runtime's host resolver
 * (sock_getaddrinfo), as wasmedge_wasi_socket's nslookup_with_host asks: hints INET4, STREAM, TCP, at most
 * max results. ports[i] is the service's port. */
int ws_getaddrinfo(const char *node, const char *service, uint8_t (*ips)[4], uint16_t *ports, int max, int *count);

/* ws_nslookup: node's IPv4 addresses as wasmedge_wasi_socket's nslookup() finds them (src/lib.rs, v0.5.5).
 * - env DNS_SERVER=ip:port set: connect to it over TCP (5 s send/receive timeouts), then one A query (recursion
 *   desired, class IN) for node exactly as given: IPv4 only, no resolv.conf, no search domains, so short Service
 *   names fail and FQDNs (<svc>.<ns>.svc.cluster.local) work. "localhost" is 127.0.0.1 (after connecting, as the
 *   crate does). A failed query or an answer without A records is WS_EAI_NODATA (83), as the crate's
 *   unwrap_or_default() + "if r.is_empty()"; ports are 0 (the caller's port applies). A DNS_SERVER that is no
 *   ip:port is WS_EBADDNSSERVER (the crate panics on parse(); here the caller reports it).
 * - DNS_SERVER unset: ws_getaddrinfo(node, service), the runtime's host resolver. */
int ws_nslookup(const char *node, const char *service, uint8_t (*ips)[4], uint16_t *ports, int max, int *count);

/* ws_parse_ipv4: "a.b.c.d" and optionally ":port" (port may be NULL: then no port is allowed). 0 or EINVAL. */
int ws_parse_ipv4(const char *text, uint8_t ip[4], uint16_t *port);
/* ws_strerror: strerror(), plus WasmEdge's getaddrinfo errnos */
const char *ws_strerror(int err);

#endif
