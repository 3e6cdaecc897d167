"""``sock_getaddrinfo``: WasmEdge's name lookup, answered by the node's resolver (see wasi_sockets.py).

WasmEdge calls its libc's ``getaddrinfo(3)`` (``lib/host/wasi/inode-linux.cpp``
``INode::getAddrinfo``), i.e. the resolver configuration of the machine the
runtime runs on, not the pod's (WasmEdge #1987). So does this
kubelet process, so ``<svc>.<ns>.svc.cluster.local`` fails here as it fails for
a wasm pod on k3s without ``DNS_SERVER``.

The guest passes a chain of result structs it allocated (``res`` points to the
first ``__wasi_addrinfo_t``; each has ``ai_addr`` → ``__wasi_sockaddr_t`` →
``sa_data`` and ``ai_next``), and WasmEdge fills up to ``max_res_len`` of them.
Each ``sa_data`` receives the host ``sockaddr`` from ``sin_port`` on: 14 bytes
for IPv4 (port big-endian, address, zeros), 26 for IPv6; ``sa_family`` is the
WASI family (1 or 2). Every pointer in the chain is checked before the lookup,
as WasmEdge walks the chain first; unlike WasmEdge, a write never leaves the
guest's memory, and at most :data:`ADDRINFO_CAP` results are filled.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, Any

from labkit.sandbox.kubelet.wasi_sockabi import (
    ADDRINFO,
    AF_INET4,
    AF_INET6,
    AIFLAGS,
    ERRNO,
    NOSYS,
    PROTOCOLS,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOCKADDR,
    SUCCESS,
    U32,
    Guest,
    u32,
)
from labkit.sandbox.kubelet.wasi_socktable import SocketTable, wasi_family

if TYPE_CHECKING:
    import wasmtime

ADDRINFO_CAP = 64  # results filled at most, whatever max_res_len says (WasmEdge allocates max_res_len slots)
_HOST_TYPES = {0: 0, socket.SOCK_DGRAM: SOCK_DGRAM, socket.SOCK_STREAM: SOCK_STREAM}
Slot = tuple[int, tuple[int, ...]]


def sock_getaddrinfo(
    table: SocketTable,
    caller: wasmtime.Caller,
    node_ptr: int,
    node_len: int,
    service_ptr: int,
    service_len: int,
    hints_ptr: int,
    res_ptr: int,
    max_len: int,
    res_len_ptr: int,
) -> int:
    """WasiSockGetAddrinfo::body's checks, in its order, then the host lookup."""
    g = table.guest(caller)
    hints_at, res_at, res_len_at = g.aligned(hints_ptr, 4), g.aligned(res_ptr, 4), g.aligned(res_len_ptr, 4)
    node = bytes(g.read(node_ptr, node_len)).split(b"\0")[0]  # the crate passes NUL-terminated names
    service = bytes(g.read(service_ptr, service_len)).split(b"\0")[0]
    flags, family, sock_type, protocol, *_ = g.unpack(ADDRINFO, hints_at)
    first = g.unpack(U32, res_at)[0]
    g.check(res_len_at, 4)
    if not node and not service:
        return ERRNO["AINONAME"]
    if u32(max_len) < 1:
        return ERRNO["AIMEMORY"]
    if flags & ~0x7F or (flags & 2 and not node):  # unknown flags; AI_CANONNAME without a node
        return ERRNO["AIBADFLAG"]
    if family not in (0, AF_INET4, AF_INET6):
        return ERRNO["AIFAMILY"]
    if protocol >= len(PROTOCOLS) or sock_type > SOCK_STREAM:
        return NOSYS
    slots = _slots(g, first, min(u32(max_len), ADDRINFO_CAP))
    query = (
        node or None,
        service or None,
        {AF_INET4: socket.AF_INET, AF_INET6: socket.AF_INET6}.get(family, socket.AF_UNSPEC),
        {SOCK_DGRAM: socket.SOCK_DGRAM, SOCK_STREAM: socket.SOCK_STREAM}.get(sock_type, 0),
        PROTOCOLS[protocol],
        sum(host for wasi, host in AIFLAGS if flags & wasi),
    )
    results = [r for r in _resolve(table, caller, query) if r[1] in _HOST_TYPES and r[2] in PROTOCOLS]
    for (ai_at, ai), (res_family, res_type, res_proto, canonname, sockaddr) in zip(slots, results, strict=False):
        _, _, _, _, _, addr_at, canon_at, _, next_at = ai
        canon = canonname.encode() if canonname else b""
        if canon:
            g.write(canon_at, canon + b"\0")
        wasi_fam = wasi_family(res_family)
        fields = (
            flags,
            wasi_fam,
            _HOST_TYPES[res_type],
            PROTOCOLS.index(res_proto),
            16 if wasi_fam == AF_INET4 else 28,
        )
        g.put(ADDRINFO, ai_at, *fields, addr_at, canon_at, len(canon), next_at)
        sa_data = _sa_data(res_family, sockaddr)
        sa_ptr = g.unpack(SOCKADDR, addr_at)[2]
        g.put(SOCKADDR, addr_at, wasi_fam, len(sa_data), sa_ptr)
        g.write(sa_ptr, sa_data)
    g.put(U32, res_len_at, min(len(slots), len(results)))
    return SUCCESS


def _slots(g: Guest, first: int, count: int) -> list[Slot]:
    """The guest's chain of result structs, each pointer checked."""
    slots, at = [], first
    for _ in range(count):
        ai = g.unpack(ADDRINFO, g.aligned(at, 4))
        _, _, _, _, _, addr_at, canon_at, canon_len, next_at = ai
        g.check(canon_at, canon_len)
        _, sa_len, sa_ptr = g.unpack(SOCKADDR, g.aligned(addr_at, 4))
        g.check(sa_ptr, sa_len)
        slots.append((at, ai))
        at = next_at
    return slots


def _sa_data(family: int, sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> bytes:
    """The host sockaddr's bytes from sin_port on, as WasmEdge copies them: 14 for IPv4, 26 for IPv6."""
    if family == socket.AF_INET6 and len(sockaddr) == 4:
        ip, port, flow, scope = sockaddr
        return struct.pack(">HI", port, flow) + socket.inet_pton(family, ip) + struct.pack("=I", scope)
    return struct.pack(">H", sockaddr[1]) + socket.inet_pton(socket.AF_INET, sockaddr[0]) + bytes(8)


AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr), as socket.getaddrinfo gives them


def _resolve(
    table: SocketTable, caller: wasmtime.Caller, query: tuple[bytes | None, bytes | None, int, int, int, int]
) -> list[AddrInfo]:
    """getaddrinfo(3) on a helper thread, so a kill need not wait for a slow resolver."""
    outcome: list[list[AddrInfo] | OSError] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(socket.getaddrinfo(*query))
        except OSError as err:
            outcome.append(err)
        done.set()

    threading.Thread(target=run, name="wasm-getaddrinfo", daemon=True).start()
    while not done.wait(0.05):
        table.interruptible(caller)
    if isinstance(outcome[0], OSError):
        raise outcome[0]
    return outcome[0]
