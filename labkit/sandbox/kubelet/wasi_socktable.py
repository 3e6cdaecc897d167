"""One container's guest sockets: the fd table, the confinement policy and kill-aware blocking (see wasi_sockets.py).

**Fds.** WasmEdge puts sockets in its one WASI fd table and draws their numbers
at random from [0, 0x7FFFFFFF] (``include/host/wasi/environ.h``,
``generateRandomFdToNode``). wasmtime's WASI table is not ours to add to, so
sockets live in this table instead and draw from the upper half,
[:data:`FD_BASE`, 0x7FFFFFFF], which wasmtime's lowest-free numbering never
reaches. A guest cannot tell the difference [inferred: no guest relies on a
socket fd being low].

**Blocking.** WasmEdge's sockets block unless ``fd_fdstat_set_flags`` sets
NONBLOCK (``lib/host/wasi/inode-linux.cpp``: plain ``::socket``/``::accept``).
Here every host socket is non-blocking and a blocking guest call waits with
``poll(2)`` in slices of :data:`SLICE` seconds; between slices it enters the
guest's engine (:meth:`SocketTable.interruptible`), so a kill (an epoch bump)
traps the guest within a slice instead of leaving it blocked in the host. The
receive/send timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``, which
wasmedge_wasi_socket's ``nslookup`` sets to 5 s) bound those waits, and expire
with ``EAGAIN`` as on Linux.

**Limits**: at most :data:`MAX_SOCKETS` sockets per container (``EMFILE``
beyond), and a guest pointer or length is checked before use (wasi_sockabi.Guest).

**Confinement** (a decision of labkit's, not WasmEdge's): a pod's sockets stay
on loopback. ``bind`` to the unspecified address binds the pod's IP
(``PodContext.pod_ip``, a loopback address) or ``::1``; a bind to a non-loopback
address fails with ``EADDRNOTAVAIL`` (the address is not on the pod's
interfaces), and ``connect``/``send_to`` a non-loopback address fails with
``ENETUNREACH``. So a manifest cannot expose a port on the learner's network or
reach past the machine; cluster addresses are mapped onto ``127.0.0.0/8``.
Pods' IPs are loopback addresses (kubelet/network.py), so a server binding
``0.0.0.0`` is reachable at its pod IP, as on k3s; unlike a pod's own network
namespace, ``127.0.0.1`` is the node's, shared by all pods.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import select
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from labkit.sandbox.kubelet.wasi_sockabi import AF_INET4, AF_INET6, BADF, RIGHTS_OPENED, Guest

if TYPE_CHECKING:
    import wasmtime

FD_BASE = 1 << 30
FD_MAX = 0x7FFFFFFF
SLICE = 0.05  # seconds a blocking call waits before checking for a kill
#: sockets one container may hold: beyond, EMFILE, as a process at its RLIMIT_NOFILE gets. The sockets are the
#: kubelet process's own fds, so without a cap one pod could exhaust them and break its node.
MAX_SOCKETS = 256
T = TypeVar("T")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WasiError(Exception):
    """A WASI errno to return to the guest."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class GuestSocket:
    """A host socket as the guest sees it: its WASI type, rights and blocking mode."""

    sock: socket.socket
    wasi_type: int
    rights: int = RIGHTS_OPENED
    nonblocking: bool = False
    recv_timeout: float | None = None
    send_timeout: float | None = None
    #: the (ClusterIP, port) a DNATed connect named: what getpeername shows (servicerules.py)
    peer: tuple[str, int] | None = None


def _close_all(sockets: dict[int, GuestSocket]) -> None:
    for guest in sockets.values():
        guest.sock.close()
    sockets.clear()


def host_address(family: int, data: bytes | bytearray) -> IPAddress:
    """The IP a guest address names (4 bytes for INET4, 16 for INET6)."""
    return ipaddress.IPv4Address(bytes(data[:4])) if family == AF_INET4 else ipaddress.IPv6Address(bytes(data[:16]))


def check_family(guest: GuestSocket, ip: IPAddress) -> None:
    """Linux's answer to an address of the other family: EAFNOSUPPORT on IPv4, EINVAL (too short) on IPv6."""
    if guest.sock.family == socket.AF_INET and ip.version == 6:
        raise OSError(errno.EAFNOSUPPORT, "address family not supported")
    if guest.sock.family == socket.AF_INET6 and ip.version == 4:
        raise OSError(errno.EINVAL, "invalid argument")


class SocketTable:
    """The sockets of one container and the policy they run under."""

    def __init__(self, pod_ip: str, tick: Callable[[wasmtime.Caller], object]) -> None:
        self.sockets: dict[int, GuestSocket] = {}
        ip = ipaddress.ip_address(pod_ip) if pod_ip else None
        self.pod_ip = str(ip) if isinstance(ip, ipaddress.IPv4Address) and ip.is_loopback else "127.0.0.1"
        self._tick = tick
        self._guest: Guest | None = None
        # the sockets close when the container's store (which holds this table through its host functions) goes
        weakref.finalize(self, _close_all, self.sockets)

    def guest(self, caller: wasmtime.Caller) -> Guest:
        """The calling guest's memory; looked up once (only the container's module calls us), refreshed per call."""
        if self._guest is None:
            self._guest = Guest(caller)
            return self._guest
        return self._guest.refresh(caller)

    def add(self, guest: GuestSocket) -> int:
        if len(self.sockets) >= MAX_SOCKETS:
            guest.sock.close()
            raise OSError(errno.EMFILE, "too many open files")
        while True:
            fd = random.randint(FD_BASE, FD_MAX)  # fd numbers, drawn as WasmEdge draws them
            if fd not in self.sockets:
                self.sockets[fd] = guest
                return fd

    def get(self, fd: int) -> GuestSocket:
        guest = self.sockets.get(fd)
        if guest is None:
            raise WasiError(BADF)
        return guest

    def close(self, fd: int) -> None:
        self.sockets.pop(fd).sock.close()

    def close_all(self) -> None:
        """Every socket of the container, at once (it ended: a killed process's descriptors close with it)."""
        _close_all(self.sockets)

    # -- policy --------------------------------------------------------------------------------

    def bind_address(self, ip: IPAddress) -> str:
        if ip.is_unspecified:
            return self.pod_ip if ip.version == 4 else "::1"
        if not ip.is_loopback:
            raise OSError(errno.EADDRNOTAVAIL, "cannot assign requested address")
        return str(ip)

    @staticmethod
    def peer_address(ip: IPAddress) -> str:
        if not ip.is_loopback:
            raise OSError(errno.ENETUNREACH, "network is unreachable (sandbox pods reach loopback only)")
        return str(ip)

    # -- waiting ---------------------------------------------------------------------------------

    def interruptible(self, caller: wasmtime.Caller) -> None:
        """Enter the guest's engine: traps (and so unwinds the guest) when its container is being killed.

        The sockets close right here, as a killed process's do: the trap's traceback
        holds this table in a reference cycle, so waiting for the store to let go of
        it would leave a killed server's port bound until the next garbage collection.
        """
        try:
            self._tick(caller)
        except Exception:
            _close_all(self.sockets)
            raise

    def wait(self, caller: wasmtime.Caller, masks: dict[int, int], timeout: float | None) -> list[tuple[int, int]]:
        """``poll(2)`` on host fds (fd → event mask) for up to *timeout* seconds (None: forever), kill-aware."""
        poller = select.poll()
        for fd, mask in masks.items():
            poller.register(fd, mask)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            ready = poller.poll(max(left, 0) * 1000)
            if ready or left <= 0:
                return ready
            self.interruptible(caller)

    def blocking(
        self, caller: wasmtime.Caller, guest: GuestSocket, mask: int, timeout: float | None, op: Callable[[], T]
    ) -> T:
        """Run *op* as a blocking socket call would: retry when ready, ``EAGAIN`` if non-blocking or timed out."""
        while True:
            try:
                return op()
            except (BlockingIOError, InterruptedError):
                if guest.nonblocking or not self.wait(caller, {guest.sock.fileno(): mask}, timeout):
                    raise OSError(errno.EAGAIN, "resource temporarily unavailable") from None


def sock_family(family: int) -> socket.AddressFamily:
    return socket.AF_INET if family == AF_INET4 else socket.AF_INET6


def wasi_family(family: int) -> int:
    return AF_INET6 if family == socket.AF_INET6 else AF_INET4
