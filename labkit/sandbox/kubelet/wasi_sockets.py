"""WasmEdge's socket functions in ``wasi_snapshot_preview1``, over real host sockets (docs/architecture.md, §2).

WasmEdge adds ``sock_*`` functions to WASI (``lib/host/wasi/wasimodule.cpp``);
``wasmedge_wasi_socket``, ``tokio_wasi`` and LlamaEdge are built on them. Every
pod gets them here, as every WasmEdge run has them. Signatures and bodies follow
``lib/host/wasi/wasifunc.cpp`` (argument checks, errno values) and
``lib/host/wasi/inode-linux.cpp`` (what each does on the host); the layouts and
errno table are in :mod:`~labkit.sandbox.kubelet.wasi_sockabi`, the fd table,
blocking and the loopback confinement in :mod:`~labkit.sandbox.kubelet.wasi_socktable`.

**V1 and V2.** WasmEdge exports each socket function twice, ``sock_x`` (V1, the
ABI before 0.12) and ``sock_x_v2``, and links whichever matches the type the
module imports under ``sock_x`` (``lib/executor/instantiate/import.cpp``). A
wasmtime linker holds one type per name, and a host extension is defined before
it sees the module, so here ``sock_x`` has the type ``wasmedge_wasi_socket``
0.5 imports: V1 everywhere except ``sock_recv_from``, whose 8-argument V2 form
the crate imports under the V1 name. ``sock_x_v2`` are there too. A module
importing ``sock_accept``, ``sock_getlocaladdr`` or ``sock_getpeeraddr`` with the
V2 type, or the 7-argument V1 ``sock_recv_from``, fails to link in the sandbox
("incompatible import type") where WasmEdge would run it.

**Sharing WASI's names.** wasmtime's WASI owns ``wasi_snapshot_preview1``; the
container's linker allows shadowing, so the ``sock_*`` names are simply added,
and four existing names are replaced to know socket fds: ``poll_oneoff`` (and
WasmEdge's ``epoll_oneoff``, level-triggered here), ``fd_close``,
``fd_fdstat_get`` and ``fd_fdstat_set_flags`` (what ``close()`` and
``fcntl(O_NONBLOCK)`` call). For other fds they call wasmtime's own functions
through a tiny adapter module (``wasi_sockpoll.ADAPTER_WAT``): wasmtime's WASI functions
need a calling instance with a ``memory`` export, which a host function cannot
give them. ``fd_read``/``fd_write`` on a socket fd give ``EBADF`` here (WasmEdge
would read the socket); the crate and the kit's C library use ``sock_recv``/``sock_send``.

**poll_oneoff** keeps the container's rules for other fds (ready at once) and
clocks, waits on socket fds with ``poll(2)``, and stays kill-aware.

**Cluster addresses** (kubelet/servicerules.py): ports below 1024 of pod and Service IPs are moved on the
wire and shown as the manifest's port; a TCP connect to a ClusterIP goes straight to a ready endpoint.

**sock_getaddrinfo** asks the node's resolver (``getaddrinfo(3)`` in this
process, as WasmEdge calls its libc's), so cluster names fail as they do for
WasmEdge run by crun or the shim, whose resolver is the host's (WasmEdge #1987).
"""

from __future__ import annotations

import errno
import functools
import select
import socket
import struct
from collections.abc import Callable
from typing import Protocol

import wasmtime

from labkit.sandbox.kubelet import hostfunc
from labkit.sandbox.kubelet.servicerules import RULES, seen_port, wire_port
from labkit.sandbox.kubelet.wasi_sockabi import (
    ADDR_STORAGE,
    ADDRESS,
    ADDRNOTAVAIL,
    AF_INET4,
    AF_INET6,
    ERRNO,
    FAULT,
    FDFLAGS_NONBLOCK,
    INPROGRESS,
    INVAL,
    NOSYS,
    RIFLAGS_PEEK,
    RIFLAGS_WAITALL,
    RIGHTS_ACCEPTED,
    ROFLAGS_TRUNCATED,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOCKOPTS,
    SUCCESS,
    U16,
    U32,
    Fault,
    Guest,
    Misaligned,
    u32,
    wasi_errno,
)
from labkit.sandbox.kubelet.wasi_sockpoll import WASI, FdFunctions, adapter_module
from labkit.sandbox.kubelet.wasi_sockresolve import sock_getaddrinfo
from labkit.sandbox.kubelet.wasi_socktable import (
    GuestSocket,
    IPAddress,
    WasiError,
    check_family,
    host_address,
    sock_family,
)

IO_CAP = 1 << 20  # bytes one sock_recv/sock_send moves at most (a short read or write, which streams allow)
HostFunc = Callable[..., int]


class PodAddress(Protocol):
    """What the extension needs of a pod (``extensions.PodContext`` has it)."""

    @property
    def pod_ip(self) -> str: ...


def _errno_call(func: HostFunc) -> HostFunc:
    """A host function's failures as WASI errnos; only a kill (a wasmtime trap) unwinds the guest."""

    @functools.wraps(func)
    def call(*args: int) -> int:
        try:
            return func(*args)
        except WasiError as err:
            return err.code
        except Fault:
            return FAULT
        except Misaligned:
            return ADDRNOTAVAIL
        except (ValueError, OverflowError):
            return INVAL
        except OSError as err:
            return wasi_errno(err)

    return call


def _after(views: list[memoryview], skip: int) -> list[memoryview]:
    """The buffers left once *skip* bytes have been filled."""
    rest = []
    for view in views:
        if skip >= len(view):
            skip -= len(view)
        else:
            rest.append(view[skip:])
            skip = 0
    return rest


class SocketHost(FdFunctions):
    """The socket functions of one container (one store)."""

    def define(self, linker: wasmtime.Linker) -> None:
        for name, arity, func in self.functions():
            hostfunc.define(linker, WASI, name, [hostfunc.I32] * arity, _errno_call(func))

    def functions(self) -> list[tuple[str, int, HostFunc]]:
        return [
            ("sock_open", 3, self.sock_open),
            ("sock_open_v2", 3, self.sock_open),
            ("sock_bind", 3, functools.partial(self.sock_bind, storage=False)),
            ("sock_bind_v2", 3, self.sock_bind),
            ("sock_listen", 2, self.sock_listen),
            ("sock_listen_v2", 2, self.sock_listen),
            ("sock_accept", 2, lambda c, fd, ro_fd: self.sock_accept_v2(c, fd, 0, ro_fd)),
            ("sock_accept_v2", 3, self.sock_accept_v2),
            ("sock_connect", 3, functools.partial(self.sock_connect, storage=False)),
            ("sock_connect_v2", 3, self.sock_connect),
            ("sock_recv", 6, self.sock_recv),
            ("sock_recv_v2", 6, self.sock_recv),
            ("sock_recv_from", 8, self.sock_recv_from),
            ("sock_recv_from_v2", 8, self.sock_recv_from),
            ("sock_send", 5, self.sock_send),
            ("sock_send_v2", 5, self.sock_send),
            ("sock_send_to", 7, functools.partial(self.sock_send_to, storage=False)),
            ("sock_send_to_v2", 7, self.sock_send_to),
            ("sock_shutdown", 2, self.sock_shutdown),
            ("sock_getsockopt", 5, self.sock_getsockopt),
            ("sock_setsockopt", 5, self.sock_setsockopt),
            ("sock_getlocaladdr", 4, functools.partial(self.sock_addr_v1, peer=False)),
            ("sock_getpeeraddr", 4, functools.partial(self.sock_addr_v1, peer=True)),
            ("sock_getlocaladdr_v2", 3, functools.partial(self.sock_addr_v2, peer=False)),
            ("sock_getpeeraddr_v2", 3, functools.partial(self.sock_addr_v2, peer=True)),
            ("sock_getaddrinfo", 8, functools.partial(sock_getaddrinfo, self.table)),
            ("poll_oneoff", 4, self.poll_oneoff),
            ("epoll_oneoff", 4, self.poll_oneoff),
            ("fd_close", 1, self.fd_close),
            ("fd_fdstat_get", 2, self.fd_fdstat_get),
            ("fd_fdstat_set_flags", 2, self.fd_fdstat_set_flags),
        ]

    # -- helpers -------------------------------------------------------------------------------

    def _guest_ip(self, g: Guest, ptr: int, storage: bool) -> IPAddress:
        """The IP of a ``__wasi_address_t``: 4 or 16 bytes, or (V2) a 128-byte WasiAddrStorage."""
        data = g.address(ptr)
        if len(data) == 4:
            return host_address(AF_INET4, data)
        if len(data) == 16:
            return host_address(AF_INET6, data)
        if storage and len(data) == ADDR_STORAGE:
            family = U16.unpack_from(data)[0]
            if family in (AF_INET4, AF_INET6):
                return host_address(family, data[2:])
        raise WasiError(INVAL)

    def _socket_for(self, fd: int, ip: IPAddress) -> GuestSocket:
        """Socket *fd*, to bind, connect or send to *ip*: refused as Linux refuses an address of the other family."""
        guest = self.table.get(fd)
        check_family(guest, ip)
        return guest

    # -- sockets -------------------------------------------------------------------------------

    def sock_open(self, caller: wasmtime.Caller, family: int, sock_type: int, ro_fd: int) -> int:
        g = self.table.guest(caller)
        ptr = g.aligned(ro_fd, 4)
        g.check(ptr, 4)
        if family == 3:  # AF_UNIX: refused unless WasmEdge runs with --allow-af-unix (AllowAFUNIX)
            return NOSYS
        if family not in (AF_INET4, AF_INET6) or sock_type not in (SOCK_DGRAM, SOCK_STREAM):
            return INVAL
        kind = socket.SOCK_STREAM if sock_type == SOCK_STREAM else socket.SOCK_DGRAM
        sock = socket.socket(sock_family(family), kind)
        sock.setblocking(False)
        g.put(U32, ptr, self.table.add(GuestSocket(sock, sock_type)))
        return SUCCESS

    def sock_bind(self, caller: wasmtime.Caller, fd: int, addr: int, port: int, storage: bool = True) -> int:
        ip = self._guest_ip(self.table.guest(caller), addr, storage)
        guest = self._socket_for(fd, ip)
        address = self.table.bind_address(ip)
        guest.sock.bind((address, wire_port(address, port & 0xFFFF)))
        return SUCCESS

    def sock_listen(self, _caller: wasmtime.Caller, fd: int, backlog: int) -> int:
        self.table.get(fd).sock.listen(backlog)
        return SUCCESS

    def sock_accept_v2(self, caller: wasmtime.Caller, fd: int, flags: int, ro_fd: int) -> int:
        g = self.table.guest(caller)
        ptr = g.aligned(ro_fd, 4)
        g.check(ptr, 4)
        if u32(flags) & ~0x1F:  # cast<__wasi_fdflags_t>
            return INVAL
        guest = self.table.get(fd)
        conn, _ = self.table.blocking(caller, guest, select.POLLIN, guest.recv_timeout, guest.sock.accept)
        conn.setblocking(False)
        accepted = GuestSocket(conn, SOCK_STREAM, RIGHTS_ACCEPTED, bool(flags & FDFLAGS_NONBLOCK))
        g.put(U32, ptr, self.table.add(accepted))
        return SUCCESS

    def sock_connect(self, caller: wasmtime.Caller, fd: int, addr: int, port: int, storage: bool = True) -> int:
        ip = self._guest_ip(self.table.guest(caller), addr, storage)
        guest = self._socket_for(fd, ip)
        peer, port = self.table.peer_address(ip), port & 0xFFFF
        target = RULES.dnat(peer, port, self.table.pod_ip) if guest.sock.type == socket.SOCK_STREAM else None
        guest.peer = (peer, port) if target else None
        dest = target or (peer, port)
        code = guest.sock.connect_ex((dest[0], wire_port(*dest)))
        if code == errno.EINPROGRESS and guest.sock.type == socket.SOCK_STREAM:
            if guest.nonblocking:
                return INPROGRESS
            if not self.table.wait(caller, {guest.sock.fileno(): select.POLLOUT}, guest.send_timeout):
                return INPROGRESS  # Linux: a blocking connect that outlives SO_SNDTIMEO
            code = guest.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return wasi_errno(OSError(code, "")) if code else SUCCESS

    def _recv(
        self, caller: wasmtime.Caller, g: Guest, fd: int, ri_data: int, ri_len: int, flags: int
    ) -> tuple[int, int, tuple[str, int] | None]:
        """Receive into the guest's iovecs: (bytes, roflags, sender)."""
        if u32(flags) & ~(RIFLAGS_PEEK | RIFLAGS_WAITALL):
            raise WasiError(INVAL)
        vecs = g.iovecs(ri_data, ri_len, IO_CAP)
        guest = self.table.get(fd)
        host_flags = socket.MSG_PEEK if flags & RIFLAGS_PEEK else 0
        views = [g.view(ptr, length) for ptr, length in vecs]  # the kernel copies straight into the guest
        total = sum(len(v) for v in views)

        def once() -> tuple[int, list[object], int, tuple[str, int] | None]:
            return guest.sock.recvmsg_into(views, 0, host_flags)  # type: ignore[return-value]

        received, _, msg_flags, sender = self.table.blocking(caller, guest, select.POLLIN, guest.recv_timeout, once)
        while flags & RIFLAGS_WAITALL and 0 < received < total and not host_flags & socket.MSG_PEEK:
            try:  # MSG_WAITALL: keep reading until full, EOF, or (then a short read) an error
                read_more = functools.partial(guest.sock.recvmsg_into, _after(views, received))
                more = self.table.blocking(caller, guest, select.POLLIN, guest.recv_timeout, read_more)[0]
            except OSError:
                break
            if not more:
                break
            received += more
        return received, ROFLAGS_TRUNCATED if msg_flags & socket.MSG_TRUNC else 0, sender

    def sock_recv(
        self, caller: wasmtime.Caller, fd: int, ri_data: int, ri_len: int, flags: int, ro_len: int, ro_flags: int
    ) -> int:
        g = self.table.guest(caller)
        g.aligned(ri_data, 4)
        len_ptr, flags_ptr = g.aligned(ro_len, 4), g.aligned(ro_flags, 2)
        g.check(len_ptr, 4)
        g.check(flags_ptr, 2)
        received, roflags, _ = self._recv(caller, g, fd, ri_data, ri_len, flags)
        g.put(U32, len_ptr, received)
        g.put(U16, flags_ptr, roflags)
        return SUCCESS

    def sock_recv_from(
        self,
        caller: wasmtime.Caller,
        fd: int,
        ri_data: int,
        ri_len: int,
        addr: int,
        flags: int,
        port_ptr: int,
        ro_len: int,
        ro_flags: int,
    ) -> int:
        """WasiSockRecvFromV2: the sender's address into a 4-, 16- or 128-byte buffer, its port into a u16."""
        g = self.table.guest(caller)
        g.aligned(ri_data, 4)
        port_at, len_ptr, flags_ptr = g.aligned(port_ptr, 2), g.aligned(ro_len, 4), g.aligned(ro_flags, 2)
        buf, size = g.unpack(ADDRESS, g.aligned(addr, 4))
        g.check(buf, size)
        if size not in (4, 16, ADDR_STORAGE):
            return INVAL
        for ptr, length in ((port_at, 2), (len_ptr, 4), (flags_ptr, 2)):
            g.check(ptr, length)
        received, roflags, sender = self._recv(caller, g, fd, ri_data, ri_len, flags)
        if sender:
            ip = socket.inet_pton(socket.AF_INET6 if ":" in sender[0] else socket.AF_INET, sender[0])
            if size == ADDR_STORAGE:
                g.put(U16, buf, AF_INET6 if len(ip) == 16 else AF_INET4)
                g.write(buf + 2, ip)
            elif size >= len(ip):
                g.write(buf, ip)
            # upstream stores sin_port as is, in network byte order (inode-linux.cpp sockRecvFrom)
            g.write(port_at, struct.pack(">H", seen_port(sender[0], sender[1])))
        g.put(U32, len_ptr, received)
        g.put(U16, flags_ptr, roflags)
        return SUCCESS

    def _send(
        self, caller: wasmtime.Caller, g: Guest, fd: int, si_data: int, si_len: int, flags: int, to: object
    ) -> int:
        if u32(flags):  # __wasi_siflags_t has no flags
            raise WasiError(INVAL)
        payload = [g.view(ptr, length) for ptr, length in g.iovecs(si_data, si_len, IO_CAP)]
        guest = self.table.get(fd)
        args: tuple[object, ...] = (payload, [], socket.MSG_NOSIGNAL) + ((to,) if to else ())
        return self.table.blocking(
            caller,
            guest,
            select.POLLOUT,
            guest.send_timeout,
            lambda: guest.sock.sendmsg(*args),  # type: ignore[arg-type]
        )

    def sock_send(self, caller: wasmtime.Caller, fd: int, si_data: int, si_len: int, flags: int, so_len: int) -> int:
        g = self.table.guest(caller)
        g.aligned(si_data, 4)
        len_ptr = g.aligned(so_len, 4)
        g.check(len_ptr, 4)
        g.put(U32, len_ptr, self._send(caller, g, fd, si_data, si_len, flags, None))
        return SUCCESS

    def sock_send_to(
        self,
        caller: wasmtime.Caller,
        fd: int,
        si_data: int,
        si_len: int,
        addr: int,
        port: int,
        flags: int,
        so_len: int,
        storage: bool = True,
    ) -> int:
        g = self.table.guest(caller)
        g.aligned(si_data, 4)
        len_ptr = g.aligned(so_len, 4)
        ip = self._guest_ip(g, addr, storage)
        g.check(len_ptr, 4)
        self._socket_for(fd, ip)
        peer = self.table.peer_address(ip)
        to = (peer, wire_port(peer, port & 0xFFFF))
        g.put(U32, len_ptr, self._send(caller, g, fd, si_data, si_len, flags, to))
        return SUCCESS

    def sock_shutdown(self, _caller: wasmtime.Caller, fd: int, how: int) -> int:
        if u32(how) & ~3:
            return INVAL
        # RD → SHUT_RD, WR → SHUT_WR, both → SHUT_RDWR; 0 leaves SysFlags at 0, which is SHUT_RD (upstream as is)
        self.table.get(fd).sock.shutdown({2: socket.SHUT_WR, 3: socket.SHUT_RDWR}.get(how, socket.SHUT_RD))
        return SUCCESS

    def _option(self, level: int, name: int) -> int:
        if level != 0 or not 0 <= name < len(SOCKOPTS):  # cast<__wasi_sock_opt_level_t>, <__wasi_sock_opt_so_t>
            raise WasiError(INVAL)
        return SOCKOPTS[name]

    def sock_getsockopt(self, caller: wasmtime.Caller, fd: int, level: int, name: int, flag: int, size_ptr: int) -> int:
        g = self.table.guest(caller)
        size_at = g.aligned(size_ptr, 4)
        option = self._option(level, name)
        size = g.unpack(U32, size_at)[0]
        g.check(flag, size)
        guest = self.table.get(fd)
        if not 0 < size <= 1024:
            return INVAL
        value = guest.sock.getsockopt(socket.SOL_SOCKET, option, size)
        if option == socket.SO_ERROR and len(value) == 4:
            value = struct.pack(
                "<i", wasi_errno(OSError(struct.unpack("<i", value)[0], "")) if value != bytes(4) else 0
            )
        elif option == socket.SO_TYPE and len(value) == 4:
            value = struct.pack("<i", SOCK_STREAM if guest.sock.type == socket.SOCK_STREAM else SOCK_DGRAM)
        g.write(flag, value)
        g.put(U32, size_at, len(value))
        return SUCCESS

    def sock_setsockopt(self, caller: wasmtime.Caller, fd: int, level: int, name: int, flag: int, size: int) -> int:
        g = self.table.guest(caller)
        option = self._option(level, name)
        value = bytes(g.read(flag, size))
        guest = self.table.get(fd)
        if len(value) > 1024:
            return INVAL
        guest.sock.setsockopt(socket.SOL_SOCKET, option, value)
        if option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO) and len(value) == 16:
            seconds, micros = struct.unpack("<qq", value)  # wasm32 struct timeval: two 64-bit fields
            timeout = seconds + micros / 1e6 or None  # 0 means no timeout
            if option == socket.SO_RCVTIMEO:
                guest.recv_timeout = timeout
            else:
                guest.send_timeout = timeout
        return SUCCESS

    def _sockname(self, fd: int, peer: bool) -> tuple[int, bytes, int]:
        guest = self.table.get(fd)
        sock = guest.sock
        name = sock.getpeername() if peer else sock.getsockname()
        if peer and guest.peer:
            name = guest.peer  # the ClusterIP the guest connected to, as conntrack shows it
        family = AF_INET6 if sock.family == socket.AF_INET6 else AF_INET4
        return family, socket.inet_pton(sock.family, name[0]), seen_port(name[0], name[1])

    def sock_addr_v1(
        self, caller: wasmtime.Caller, fd: int, addr: int, type_ptr: int, port_ptr: int, peer: bool
    ) -> int:
        g = self.table.guest(caller)
        addr_at, type_at, port_at = g.aligned(addr, 4), g.aligned(type_ptr, 4), g.aligned(port_ptr, 4)
        buf, size = g.unpack(ADDRESS, addr_at)
        g.check(buf, size)
        if size not in (4, 16):
            return INVAL
        g.check(type_at, 4)
        g.check(port_at, 4)
        family, ip, port = self._sockname(fd, peer)
        if size < len(ip):
            return ERRNO["NOMEM"]
        g.write(buf, ip)
        g.put(U32, type_at, 4 if family == AF_INET4 else 6)  # V1 reports 4/6, not the family (a kept workaround)
        g.put(U32, port_at, port)
        return SUCCESS

    def sock_addr_v2(self, caller: wasmtime.Caller, fd: int, addr: int, port_ptr: int, peer: bool) -> int:
        g = self.table.guest(caller)
        addr_at, port_at = g.aligned(addr, 4), g.aligned(port_ptr, 4)
        buf, size = g.unpack(ADDRESS, addr_at)
        g.check(buf, size)
        g.check(port_at, 4)
        if size != ADDR_STORAGE:
            return INVAL
        family, ip, port = self._sockname(fd, peer)
        g.put(U16, buf, family)
        g.write(buf + 2, ip)
        g.put(U32, port_at, port)
        return SUCCESS


class WasiSockets:
    """The host extension: WasmEdge's socket functions for every pod (WasmEdge always has them)."""

    name = "wasmedge-sockets"
    import_module = WASI

    def __init__(self) -> None:
        # compile the adapter now (when the kubelet registers the extension), not in the first pod's start;
        # containers' engines enable epoch interruption (wasmrun.engine_config), so their artifact is this one
        config = wasmtime.Config()
        config.epoch_interruption = True
        adapter_module(wasmtime.Engine(config))

    def applies(self, context: PodAddress) -> bool:
        return True

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store, context: PodAddress) -> Callable[[], None]:
        host = SocketHost(linker, store, context.pod_ip)
        host.define(linker)
        return host.table.close_all
