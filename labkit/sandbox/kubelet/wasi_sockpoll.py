"""The WASI functions that must know socket fds: poll_oneoff, fd_close, fd_fdstat_get/set_flags (see wasi_sockets.py).

**poll_oneoff** (``WasiPollOneoff::body`` in ``lib/host/wasi/wasifunc.cpp``, the
poller in ``lib/host/wasi/inode-linux.cpp``): socket fds are waited on with
``poll(2)``; other fd subscriptions are ready at once and clocks sleep, as the
container's own ``poll_oneoff`` does (wasmrun.py), and a kill wakes the guest
within a slice. Per WasmEdge, a read event's ``nbytes`` is 1 (its ``FIONREAD``
check is inverted, so it always takes the "unknown" branch), a write event's is
``SO_SNDBUF`` minus the bytes queued (``TIOCOUTQ``), and a hang-up sets
``FD_READWRITE_HANGUP``; an unknown event type or clock gives an event with
``EINVAL``. ``epoll_oneoff`` (WasmEdge's edge-triggered variant) is answered
level-triggered [inferred: edge-triggered callers drain to ``EAGAIN`` and
tolerate a spurious wake-up].

**fd_close, fd_fdstat_get, fd_fdstat_set_flags**: a socket fd is closed, reports
``SOCKET_STREAM`` with NONBLOCK and WasmEdge's socket rights
(``VINode::sockOpen``/``sockAccept``), or toggles NONBLOCK; any other fd goes to
wasmtime's own function through :data:`ADAPTER_WAT`, an instance whose own
memory satisfies wasmtime's need for a ``memory`` export (``fd_fdstat_get``'s
24 bytes are copied from it into the guest's memory).
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import time
from collections.abc import Callable

import wasmtime

from labkit.sandbox.kubelet.wasi_sockabi import (
    EVENT,
    EVENTRWFLAGS_HANGUP,
    EVENTTYPE_CLOCK,
    EVENTTYPE_FD_READ,
    EVENTTYPE_FD_WRITE,
    FDFLAGS_NONBLOCK,
    FDSTAT,
    FILETYPE_SOCKET_STREAM,
    INVAL,
    SUBSCRIPTION,
    SUCCESS,
    U32,
    u32,
)
from labkit.sandbox.kubelet.wasi_socktable import SocketTable

WASI = "wasi_snapshot_preview1"
ADAPTER_WAT = f"""(module
  (import "{WASI}" "fd_close" (func $close (param i32) (result i32)))
  (import "{WASI}" "fd_fdstat_get" (func $stat (param i32 i32) (result i32)))
  (import "{WASI}" "fd_fdstat_set_flags" (func $setfl (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "fd_close") (param i32) (result i32) (call $close (local.get 0)))
  (func (export "fd_fdstat_get") (param i32) (result i32) (call $stat (local.get 0) (i32.const 0)))
  (func (export "fd_fdstat_set_flags") (param i32 i32) (result i32) (call $setfl (local.get 0) (local.get 1)))
  (func (export "tick")))"""
CLOCKS: dict[int, Callable[[], int]] = {
    0: time.time_ns,
    1: time.monotonic_ns,
    2: time.process_time_ns,
    3: time.thread_time_ns,
}
_POLL_READ = select.POLLIN | select.POLLPRI
_POLL_DONE = select.POLLHUP | select.POLLERR
_adapter_artifact: list[bytes] = []


class UnalignedAccess(Exception):
    """poll_oneoff's misaligned pointers: a trap in WasmEdge (``ErrCode::UnalignedAtomicAccess``), not an errno."""


def adapter_module(engine: wasmtime.Engine) -> wasmtime.Module:
    """The adapter, compiled once per process and deserialised into each container's engine (~0.2 ms, not ~12)."""
    if _adapter_artifact:
        try:
            return wasmtime.Module.deserialize(engine, _adapter_artifact[0])
        except wasmtime.WasmtimeError:
            pass  # an engine configured differently: compile for it
    module = wasmtime.Module(engine, ADAPTER_WAT)
    _adapter_artifact[:] = [bytes(module.serialize())]
    return module


class FdFunctions:
    """The four replaced WASI functions of one container."""

    def __init__(self, linker: wasmtime.Linker, store: wasmtime.Store, pod_ip: str) -> None:
        exports = linker.instantiate(store, adapter_module(linker.engine)).exports(store)
        funcs = {name: exports[name] for name in ("fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", "tick")}
        memory = exports["memory"]
        if not all(isinstance(f, wasmtime.Func) for f in funcs.values()) or not isinstance(memory, wasmtime.Memory):
            raise TypeError("the WASI adapter module lost its exports")
        self._wasi: dict[str, wasmtime.Func] = funcs  # type: ignore[assignment]
        self._memory = memory
        self.table = SocketTable(pod_ip, self._wasi["tick"])

    def fd_close(self, caller: wasmtime.Caller, fd: int) -> int:
        if fd in self.table.sockets:
            self.table.close(fd)
            return SUCCESS
        return int(self._wasi["fd_close"](caller, fd))

    def fd_fdstat_get(self, caller: wasmtime.Caller, fd: int, out: int) -> int:
        g = self.table.guest(caller)
        guest = self.table.sockets.get(fd)
        if guest is None:
            status = int(self._wasi["fd_fdstat_get"](caller, fd))
            if status == SUCCESS:
                g.write(out, self._memory.read(caller, 0, FDSTAT.size))
            return status
        flags = FDFLAGS_NONBLOCK if guest.nonblocking else 0
        g.put(FDSTAT, g.aligned(out, 8), FILETYPE_SOCKET_STREAM, flags, guest.rights, guest.rights)
        return SUCCESS

    def fd_fdstat_set_flags(self, caller: wasmtime.Caller, fd: int, flags: int) -> int:
        guest = self.table.sockets.get(fd)
        if guest is None:
            return int(self._wasi["fd_fdstat_set_flags"](caller, fd, flags))
        guest.nonblocking = bool(flags & FDFLAGS_NONBLOCK)
        return SUCCESS

    def poll_oneoff(self, caller: wasmtime.Caller, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> int:
        g = self.table.guest(caller)
        if u32(in_ptr) % 8 or u32(out_ptr) % 8 or u32(nevents_ptr) % 4:
            raise UnalignedAccess("unaligned atomic access")
        nsubs = u32(nsubs)
        if nsubs == 0:
            return INVAL  # as wasmtime's own and the container's poll_oneoff answer
        raw = g.read(in_ptr, nsubs * SUBSCRIPTION.size)
        g.check(out_ptr, nsubs * EVENT.size)
        g.check(nevents_ptr, 4)
        ready: list[bytes] = []
        clocks: list[tuple[int, float]] = []  # (userdata, monotonic deadline)
        watched: list[tuple[int, int, socket.socket]] = []  # (userdata, event type, socket)
        for k in range(nsubs):
            userdata, tag, clock_or_fd, timeout, _precision, flags = SUBSCRIPTION.unpack_from(
                raw, k * SUBSCRIPTION.size
            )
            if tag == EVENTTYPE_CLOCK:
                clock = CLOCKS.get(clock_or_fd)
                if clock is None:
                    ready.append(EVENT.pack(userdata, INVAL, tag, 0, 0))
                    continue
                delay = timeout - clock() if flags & 1 else timeout  # SUBSCRIPTION_CLOCK_ABSTIME
                clocks.append((userdata, time.monotonic() + max(delay, 0) / 1e9))
            elif tag in (EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE):
                guest = self.table.sockets.get(clock_or_fd)
                if guest is None:  # files and the empty stdin are always ready
                    ready.append(EVENT.pack(userdata, SUCCESS, tag, 0, 0))
                else:
                    watched.append((userdata, tag, guest.sock))
            else:
                ready.append(EVENT.pack(userdata, INVAL, tag & 0xFF, 0, 0))
        ready += self._wait(caller, ready, clocks, watched)
        g.write(out_ptr, b"".join(ready))
        g.put(U32, nevents_ptr, len(ready))
        return SUCCESS

    def _wait(
        self,
        caller: wasmtime.Caller,
        ready: list[bytes],
        clocks: list[tuple[int, float]],
        watched: list[tuple[int, int, socket.socket]],
    ) -> list[bytes]:
        """The events that occur: at once if some are *ready*, else by the first clock or socket."""
        masks: dict[int, int] = {}
        for _, tag, sock in watched:
            masks[sock.fileno()] = masks.get(sock.fileno(), 0) | (
                _POLL_READ if tag == EVENTTYPE_FD_READ else select.POLLOUT
            )
        timeout: float | None = None  # only sockets: until one is ready
        if ready:
            timeout = 0.0
        elif clocks:
            timeout = max(min(deadline for _, deadline in clocks) - time.monotonic(), 0.0)
        revents = dict(self.table.wait(caller, masks, timeout))
        now = time.monotonic()
        events = [EVENT.pack(u, SUCCESS, EVENTTYPE_CLOCK, 0, 0) for u, deadline in clocks if deadline <= now]
        for userdata, tag, sock in watched:
            got = revents.get(sock.fileno(), 0)
            if got & ((_POLL_READ if tag == EVENTTYPE_FD_READ else select.POLLOUT) | _POLL_DONE):
                hangup = EVENTRWFLAGS_HANGUP if got & select.POLLHUP else 0
                events.append(EVENT.pack(userdata, SUCCESS, tag, _nbytes(sock, tag), hangup))
        return events


def _nbytes(sock: socket.socket, tag: int) -> int:
    """An fd event's nbytes as WasmEdge's poller computes it (1 where it cannot tell)."""
    if tag == EVENTTYPE_FD_READ:
        return 1
    try:
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 1
    return max(int(size) - int(queued), 0)
