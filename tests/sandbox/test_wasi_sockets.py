"""WasmEdge's socket ABI in the sandbox: the kit's C apps (built against the ABI) on real loopback TCP, in wasmtime."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import wasmtime

from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.wasi_sockabi import ERRNO, RIFLAGS_WAITALL, wasi_errno
from labkit.sandbox.kubelet.wasi_sockets import WasiSockets
from labkit.sandbox.kubelet.wasi_socktable import FD_BASE, MAX_SOCKETS
from labkit.sandbox.kubelet.wasinn import WasiNN
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.wasm.apps import module_path
from tests.sandbox.test_kubelet import Cluster

CLUSTER_NAME = "kube-dns.kube-system.svc.cluster.local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_app(app: str, *args: str, env: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, list[str]]:
    """Run a shipped app to completion: (exit code, stdout + stderr lines)."""
    lines: list[str] = []
    container = start_app(app, *args, env=env, sink=lines)
    code = container.wait(timeout)
    assert code is not None, f"{app} still running after {timeout}s: {lines}"
    return code, lines


def start_app(app: str, *args: str, env: dict[str, str] | None = None, sink: list[str] | None = None) -> WasmContainer:
    context = PodContext(name=app, env=env or {})
    spec = ContainerSpec(module_path(app).read_bytes(), [f"/{app}.wasm", *args], env or {}, name=app)
    out = sink if sink is not None else []
    container = WasmContainer(spec, None, out.append, out.append, extensions_for(context), context)
    container.start()
    return container


@pytest.fixture
def echo_server() -> Iterator[tuple[int, WasmContainer, list[str]]]:
    port, lines = free_port(), list[str]()
    container = start_app("echo-server", str(port), sink=lines)
    deadline = time.monotonic() + 10
    while not any("listening" in line for line in lines):
        assert time.monotonic() < deadline and container.running, lines
        time.sleep(0.02)
    yield port, container, lines
    container.kill()
    container.wait(5)


def test_every_pod_gets_the_socket_functions() -> None:
    # WASI-NN is considered for every pod too, and defines its functions only when the pod sees the plugin
    assert [type(e) for e in extensions_for(PodContext(name="any"))] == [WasiSockets, WasiNN]


def test_wasm_echo_server_serves_tcp_and_http_on_loopback(echo_server: tuple[int, WasmContainer, list[str]]) -> None:
    port, _, lines = echo_server
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as a,
        socket.create_connection(("127.0.0.1", port), timeout=5) as b,
    ):
        a.sendall(b"one")
        b.sendall(b"two")  # two clients at once: the app polls both
        assert (a.recv(100), b.recv(100)) == (b"one", b"two")
        big = bytes(range(256)) * 1024
        a.sendall(big)
        echoed = b""
        while len(echoed) < len(big):
            echoed += a.recv(65536)
        assert echoed == big
    with socket.create_connection(("127.0.0.1", port), timeout=5) as h:
        h.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := h.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"hello from echo-server (wasm): /hello\n")
    assert lines.count("connection accepted") == 3


def test_a_killed_server_stops_at_once_and_frees_its_port(echo_server: tuple[int, WasmContainer, list[str]]) -> None:
    port, container, _ = echo_server
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        started = time.monotonic()
        container.kill()  # the guest is blocked in poll_oneoff on its sockets
        assert container.wait(5) == 137 and container.outcome == "killed"
        assert time.monotonic() - started < 1.0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_guest_that_exits_leaves_no_listening_socket_behind() -> None:
    """A module that listens and exits: its sockets close with its store, as a process's close when it exits."""
    port = free_port()
    wat = f"""(module
      (import "wasi_snapshot_preview1" "sock_open" (func $open (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_bind" (func $bind (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_listen" (func $listen (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "\\18\\00\\00\\00\\04\\00\\00\\00\\7f\\00\\00\\01")  ;; address {{24, 4}} = 127.0.0.1
      (func (export "_start")
        (drop (call $open (i32.const 1) (i32.const 2) (i32.const 0)))
        (call $exit (i32.add  ;; exit 0 only if the socket was bound and listening
          (call $bind (i32.load (i32.const 0)) (i32.const 16) (i32.const {port}))
          (call $listen (i32.load (i32.const 0)) (i32.const 8))))))"""
    context = PodContext(name="returns")
    container = WasmContainer(
        ContainerSpec(wasmtime.wat2wasm(wat), ["/m.wasm"]), None, None, None, extensions_for(context), context
    )
    container.start()
    assert container.wait(10) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_port_in_use_is_the_guests_eaddrinuse(echo_server: tuple[int, WasmContainer, list[str]]) -> None:
    code, lines = run_app("echo-server", str(echo_server[0]))
    assert code == 1
    assert lines == [f"echo-server: listen on port {echo_server[0]}: Address in use (os error {ERRNO['ADDRINUSE']})"]


def test_a_wasm_pod_serves_on_its_pod_ip_through_the_kubelet(tmp_path: Path) -> None:
    """The kubelet links the sockets into every pod: echo-server binds 0.0.0.0, which is the pod's IP."""
    cluster, port = Cluster(tmp_path), free_port()  # free on 127.0.0.1 too: nothing else answers there
    try:
        cluster.run_pod("echo", image="labkit/echo-server:latest", args=[str(port)], restartPolicy="Always")
        pod = cluster.wait_phase("echo", "Running", timeout=20)
        ip = pod["status"]["podIP"]
        cluster.wait_for(lambda: f"listening on 0.0.0.0:{port}" in cluster.log("echo"), "the server's start")
        with socket.create_connection((ip, port), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"ping"
        with pytest.raises(ConnectionRefusedError):  # not on the node's 127.0.0.1: on the pod's address only
            socket.create_connection(("127.0.0.1", port), timeout=2)
        cluster.delete_pod("echo")
        cluster.wait_for(lambda: cluster.pod("echo") is None, "the pod to go", timeout=20)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, port), timeout=2)
    finally:
        cluster.close()


# -- name resolution -------------------------------------------------------------------------------


def test_getaddrinfo_resolves_localhost_through_the_host_resolver() -> None:
    code, lines = run_app("nslookup", "localhost")
    assert code == 0 and "127.0.0.1:80" in lines  # service "http", as the crate's ToSocketAddrs asks


def test_a_cluster_name_fails_as_the_nodes_resolver_fails_it() -> None:
    """Without DNS_SERVER the guest asks the node's libc, which knows no cluster names (WasmEdge #1987)."""
    with pytest.raises(socket.gaierror) as host:
        socket.getaddrinfo(CLUSTER_NAME, "http", socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    code, lines = run_app("nslookup", CLUSTER_NAME)
    expected = wasi_errno(host.value)
    assert code == 1
    assert lines[-1].startswith(f"nslookup: {CLUSTER_NAME}: ") and lines[-1].endswith(f"(os error {expected})")
    assert expected in (ERRNO["AINONAME"], ERRNO["AIAGAIN"], ERRNO["AIFAIL"], ERRNO["AINODATA"])


class DnsHandler(socketserver.BaseRequestHandler):
    """DNS over TCP (RFC 1035 §4.2.2), answers hand-built: A records for the names in ``records``, else NXDOMAIN."""

    records: ClassVar[dict[str, str]] = {}
    questions: ClassVar[list[tuple[str, int, int, int]]] = []  # (name, qtype, qclass, RD flag)

    def handle(self) -> None:
        size = struct.unpack(">H", self.request.recv(2))[0]
        query = self.request.recv(size)
        labels, at = [], 12
        while query[at]:
            labels.append(query[at + 1 : at + 1 + query[at]].decode())
            at += 1 + query[at]
        name = ".".join(labels)
        qtype, qclass = struct.unpack(">HH", query[at + 1 : at + 5])
        self.questions.append((name, qtype, qclass, query[2] & 1))
        ip = self.records.get(name)
        rcode = 3 if ip is None and name != "empty.example" else 0  # NXDOMAIN; empty.example: NOERROR, no answer
        answers = struct.pack(">HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton(ip) if ip else b""
        header = query[:2] + struct.pack(">HHHHH", 0x8180 | rcode, 1, 1 if ip else 0, 0, 0)
        reply = header + query[12 : at + 5] + answers
        self.request.sendall(struct.pack(">H", len(reply)) + reply)


@pytest.fixture
def dns_server() -> Iterator[str]:
    DnsHandler.records = {"web.default.svc.cluster.local": "10.43.0.7"}
    DnsHandler.questions = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), DnsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_nslookup_with_dns_server_asks_one_tcp_a_query_for_the_name_as_given(dns_server: str) -> None:
    code, lines = run_app("nslookup", "web.default.svc.cluster.local", env={"DNS_SERVER": dns_server})
    assert (code, lines) == (0, ["10.43.0.7:0"])
    assert DnsHandler.questions == [("web.default.svc.cluster.local", 1, 1, 1)]  # A, IN, recursion desired


def test_nslookup_uses_no_search_domains_and_maps_failures_to_83(dns_server: str) -> None:
    for name in ("web", "empty.example"):  # NXDOMAIN for the short name; an empty NOERROR answer
        code, lines = run_app("nslookup", name, env={"DNS_SERVER": dns_server})
        assert (code, lines) == (1, [f"nslookup: {name}: No address associated with hostname (os error 83)"])
    assert [q[0] for q in DnsHandler.questions] == ["web", "empty.example"]


def test_nslookup_localhost_short_circuits_after_connecting(dns_server: str) -> None:
    assert run_app("nslookup", "localhost", env={"DNS_SERVER": dns_server}) == (0, ["127.0.0.1:0"])
    assert DnsHandler.questions == []
    closed = f"127.0.0.1:{free_port()}"  # the crate connects first, so a dead server fails even localhost
    code, lines = run_app("nslookup", "localhost", env={"DNS_SERVER": closed})
    assert (code, lines) == (1, [f"nslookup: localhost: Connection refused (os error {ERRNO['CONNREFUSED']})"])


def test_http_get_reaches_a_wasm_server_by_address_and_by_a_name_its_dns_server_knows(
    echo_server: tuple[int, WasmContainer, list[str]], dns_server: str
) -> None:
    port = echo_server[0]
    code, lines = run_app("http-get", f"http://127.0.0.1:{port}/by-ip")
    assert code == 0 and lines[-2:] in (
        ["HTTP/1.1 200 OK", "hello from echo-server (wasm): /by-ip"],
        ["hello from echo-server (wasm): /by-ip", "HTTP/1.1 200 OK"],  # stdout and stderr interleave freely
    )
    DnsHandler.records = {"web.default.svc.cluster.local": "127.0.0.1"}
    fqdn = f"http://web.default.svc.cluster.local:{port}/by-name"
    code, lines = run_app("http-get", fqdn, env={"DNS_SERVER": dns_server})
    assert code == 0 and "hello from echo-server (wasm): /by-name" in lines
    code, lines = run_app("http-get", f"http://web:{port}/", env={"DNS_SERVER": dns_server})
    assert (code, lines) == (1, ["http-get: web: No address associated with hostname (os error 83)"])
    assert [q[0] for q in DnsHandler.questions] == ["web.default.svc.cluster.local", "web"]  # as given: no search


def test_http_get_refuses_a_bad_url_and_names_a_bad_dns_server() -> None:
    assert run_app("http-get", "ftp://x/")[0] == 2
    assert run_app("http-get", "http://x:99999/")[0] == 2
    code, lines = run_app("http-get", "http://web/", env={"DNS_SERVER": "10.43.0.10"})
    assert code == 1 and lines == [
        "http-get: DNS_SERVER=10.43.0.10: invalid socket address (want ip:port, e.g. 10.43.0.10:53)"
    ]


@pytest.mark.slow
def test_a_silent_dns_server_times_out_after_5s_into_83() -> None:
    """SO_RCVTIMEO bounds a blocking sock_recv (the crate sets 5 s); its EAGAIN becomes 83 like any failure."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        started = time.monotonic()
        code, lines = run_app(
            "nslookup", "web.default.svc.cluster.local", env={"DNS_SERVER": f"127.0.0.1:{silent.getsockname()[1]}"}
        )
        elapsed = time.monotonic() - started
    assert (code, lines) == (
        1,
        ["nslookup: web.default.svc.cluster.local: No address associated with hostname (os error 83)"],
    )
    assert 4.5 < elapsed < 10


# -- hostile guests ----------------------------------------------------------------------------------

SIGNATURES = {
    "sock_open": 3,
    "sock_bind": 3,
    "sock_connect": 3,
    "sock_accept": 2,
    "sock_recv": 6,
    "sock_recv_from": 8,
    "sock_send": 5,
    "sock_send_to": 7,
    "sock_getsockopt": 5,
    "sock_setsockopt": 5,
    "sock_getlocaladdr": 4,
    "sock_getpeeraddr_v2": 3,
    "sock_getaddrinfo": 8,
    "poll_oneoff": 4,
    "sock_listen": 2,
    "fd_fdstat_get": 2,
    "fd_fdstat_set_flags": 2,
    "fd_close": 1,
}


class Guest:
    """A wasm module that calls the socket functions with whatever arguments a test gives."""

    def __init__(self) -> None:
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        linker.allow_shadowing = True
        WasiSockets().define(linker, self.store, PodContext(name="hostile"))
        imports, funcs = [], []
        for name, arity in SIGNATURES.items():
            params = " ".join(["i32"] * arity)
            gets = " ".join(f"(local.get {k})" for k in range(arity))
            imports.append(f'(import "wasi_snapshot_preview1" "{name}" (func ${name} (param {params}) (result i32)))')
            funcs.append(f'(func (export "{name}") (param {params}) (result i32) (call ${name} {gets}))')
        wat = "\n".join(["(module", *imports, '(memory (export "memory") 1)', *funcs, ")"])
        self.instance = linker.instantiate(self.store, wasmtime.Module(engine, wat))
        self.memory = self.instance.exports(self.store)["memory"]
        assert isinstance(self.memory, wasmtime.Memory)

    def __call__(self, name: str, *args: int) -> int:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return int(func(self.store, *args))

    def write(self, ptr: int, data: bytes) -> None:
        self.memory.write(self.store, data, ptr)

    def u32(self, ptr: int) -> int:
        return int(struct.unpack("<I", self.memory.read(self.store, ptr, ptr + 4))[0])

    def tcp(self) -> int:
        assert self("sock_open", 1, 2, 0) == 0
        return self.u32(0)


FAULT, INVAL, ADDRNOTAVAIL, BADF = ERRNO["FAULT"], ERRNO["INVAL"], ERRNO["ADDRNOTAVAIL"], ERRNO["BADF"]
PAGE = 65536


def test_hostile_pointers_get_errnos_not_a_crashed_kubelet() -> None:
    g = Guest()
    fd = g.tcp()
    assert fd >= FD_BASE
    cases = [
        ("sock_open", 1, 2, PAGE),  # out of memory
        ("sock_open", 1, 2, -4),  # i32 -4 is 0xfffffffc
        ("sock_bind", fd, PAGE - 4, 80),  # the address struct straddles the end
        ("sock_connect", fd, 0x7FFFFFF8, 80),
        ("sock_recv", fd, 64, 1, 0, PAGE + 8, 16),
        ("sock_send", fd, PAGE * 4, 1, 0, 16),
        ("sock_getsockopt", fd, 0, 0, PAGE, 32),
        ("sock_setsockopt", fd, 0, 0, 100, PAGE),
        ("sock_getaddrinfo", 100, PAGE, 200, 1, 256, 300, 1, 304),
        ("poll_oneoff", 512, 1024, 0x10000000, 8),
        ("fd_fdstat_get", fd, PAGE),
    ]
    g.write(32, struct.pack("<I", 2000))  # getsockopt's size: 2000 bytes at PAGE - ... leaves memory
    for name, *args in cases:
        assert g(name, *args) == FAULT, (name, args)
    # an address pointing out of memory, an iovec array pointing out of memory, a huge iovec count
    g.write(64, struct.pack("<II", PAGE - 2, 4))
    assert g("sock_bind", fd, 64, 80) == FAULT
    g.write(72, struct.pack("<II", 0xFFFFFFF0, 100))
    assert g("sock_send", fd, 72, 1, 0, 16) == FAULT
    assert g("sock_send", fd, 72, 100000, 0, 16) == INVAL  # more than kIOVMax iovecs
    # getaddrinfo: a result chain whose second struct lies outside memory
    g.write(400, b"localhost\0http\0")
    g.write(420, struct.pack("<HBBB3xIIIII", 0, 1, 2, 1, 0, 0, 0, 0, 0))  # hints
    g.write(460, struct.pack("<HBBB3xIIIII", 0, 0, 0, 0, 0, 500, 600, 0, PAGE + 100))
    g.write(500, struct.pack("<B3xII", 0, 26, 520))
    g.write(452, struct.pack("<I", 460))
    assert g("sock_getaddrinfo", 400, 10, 410, 5, 420, 452, 2, 456) == FAULT
    assert g("sock_getaddrinfo", 400, 10, 410, 5, 420, 452, 1, 456) == 0 and g.u32(456) == 1
    assert g.memory.read(g.store, 522, 526) == bytearray(b"\x7f\0\0\x01")  # sa_data: port, then 127.0.0.1
    # misaligned pointers get WasmEdge's ADDRNOTAVAIL; unknown fds EBADF; bad enums EINVAL
    assert g("sock_open", 1, 2, 2) == ADDRNOTAVAIL
    assert g("sock_recv", fd, 66, 1, 0, 16, 20) == ADDRNOTAVAIL
    assert g("sock_accept", 12345, 16) == BADF
    assert g("sock_open", 9, 2, 0) == INVAL
    assert g("sock_recv", fd, 64, 1, 0xFF, 16, 20) == INVAL
    assert g("fd_close", fd) == 0
    assert g("fd_close", fd) == BADF  # now unknown to both tables


def test_pod_sockets_stay_on_loopback() -> None:
    g = Guest()
    fd = g.tcp()
    g.write(64, struct.pack("<II", 80, 4))
    g.write(80, socket.inet_aton("192.0.2.1"))  # TEST-NET-1: not an address of this pod
    assert g("sock_bind", fd, 64, 0) == ADDRNOTAVAIL
    assert g("sock_connect", fd, 64, 80) == ERRNO["NETUNREACH"]
    g.write(80, socket.inet_aton("0.0.0.0"))  # the unspecified address binds the pod's IP
    assert g("sock_bind", fd, 64, 0) == 0
    g.write(96, struct.pack("<II", 112, 4))
    assert g("sock_getlocaladdr", fd, 96, 120, 124) == 0
    assert bytes(g.memory.read(g.store, 112, 116)) == socket.inet_aton("127.0.0.1") and g.u32(120) == 4
    refused = g.tcp()
    g.write(80, socket.inet_aton("127.0.0.1"))
    assert g("sock_connect", refused, 64, free_port()) == ERRNO["CONNREFUSED"]


def test_nonblocking_fdstat_and_v2_addresses_as_wasmedge_reports_them() -> None:
    g = Guest()
    listener = g.tcp()
    g.write(64, struct.pack("<II", 80, 4))
    g.write(80, socket.inet_aton("127.0.0.1"))
    assert g("sock_bind", listener, 64, 0) == 0 and g("sock_listen", listener, 8) == 0
    assert g("fd_fdstat_set_flags", listener, 4) == 0  # NONBLOCK, as fcntl(F_SETFL, O_NONBLOCK) sets it
    assert g("sock_accept", listener, 16) == ERRNO["AGAIN"]
    assert g("fd_fdstat_get", listener, 128) == 0
    filetype, flags, base, inheriting = struct.unpack("<BxH4xQQ", g.memory.read(g.store, 128, 152))
    assert (filetype, flags) == (6, 4) and base == inheriting and base & (1 << 29)  # SOCKET_STREAM, SOCK_OPEN right
    assert g("fd_fdstat_get", 1, 128) == 0  # stdout: wasmtime's own answer, through the adapter
    assert g.memory.read(g.store, 128, 129)[0] != 6
    # a V2 address: a 128-byte WasiAddrStorage gets the family (u16) and the address; the port is a u32
    g.write(96, struct.pack("<II", 160, 4))
    assert g("sock_getlocaladdr", listener, 96, 120, 124) == 0
    port = g.u32(124)
    client = g.tcp()
    assert g("sock_connect", client, 64, port) == 0
    g.write(96, struct.pack("<II", 200, 128))
    assert g("sock_getpeeraddr_v2", client, 96, 124) == 0
    assert g.memory.read(g.store, 200, 206) == bytearray(b"\x01\x00\x7f\x00\x00\x01") and g.u32(124) == port
    g.write(96, struct.pack("<II", 200, 16))
    assert g("sock_getpeeraddr_v2", client, 96, 124) == INVAL  # V2 wants exactly 128 bytes


def test_a_guest_cannot_exhaust_the_kubelets_fds() -> None:
    g = Guest()
    fds = [g.tcp() for _ in range(MAX_SOCKETS)]
    assert len(set(fds)) == MAX_SOCKETS
    assert g("sock_open", 1, 2, 0) == ERRNO["MFILE"]
    assert g("fd_close", fds[0]) == 0
    assert g("sock_open", 1, 2, 0) == 0


def test_recv_fills_several_buffers_in_place_and_follows_a_grown_memory() -> None:
    # sock_recv reads straight into the guest's buffers (no host copy); the memory's address is cached between
    # calls and must be looked up again once the guest grows its memory
    g = Guest()
    with socket.create_server(("127.0.0.1", 0)) as server:
        fd = g.tcp()
        g.write(100, bytes([127, 0, 0, 1]))
        g.write(64, struct.pack("<II", 100, 4))
        assert g("sock_connect", fd, 64, server.getsockname()[1]) == 0
        peer, _ = server.accept()
        with peer:
            g.write(200, struct.pack("<6I", 1000, 5, 2000, 0, 3000, 7))  # 5 bytes, none, 7 bytes
            peer.sendall(b"hello")
            later = threading.Timer(0.2, peer.sendall, [b"wasm-ok"])
            later.start()
            assert g("sock_recv", fd, 200, 3, RIFLAGS_WAITALL, 16, 20) == 0
            later.join()
            assert g.u32(16) == 12
            assert (g.memory.read(g.store, 1000, 1005), g.memory.read(g.store, 3000, 3007)) == (b"hello", b"wasm-ok")
            assert isinstance(g.memory, wasmtime.Memory)
            g.memory.grow(g.store, 1)
            g.write(200, struct.pack("<II", PAGE + 10, 4))
            peer.sendall(b"more")
            assert g("sock_recv", fd, 200, 1, 0, 16, 20) == 0
            assert g.u32(16) == 4 and g.memory.read(g.store, PAGE + 10, PAGE + 14) == b"more"
            g.write(PAGE + 100, b"sent from the new page")
            g.write(200, struct.pack("<II", PAGE + 100, 22))
            assert g("sock_send", fd, 200, 1, 0, 16) == 0 and g.u32(16) == 22
            assert peer.recv(100) == b"sent from the new page"
