"""The sandbox's kube-proxy: every ``clusterIP:port`` a real listener that forwards to a random ready endpoint.

**Upstream.** kube-proxy watches Services and EndpointSlices and programs each node so that traffic to
``clusterIP:port`` reaches one of the Service's ready endpoints; in iptables mode the choice is uniformly
random (``-m statistic --mode random --probability 1/n`` chains, ``pkg/proxy/iptables/proxier.go``), a
Service without ready endpoints REJECTs (the client sees "connection refused"), and
``sessionAffinity: ClientIP`` pins a client IP to its endpoint for ``timeoutSeconds`` (10800 by default;
the ``-m recent`` module). A DNAT keeps the client's source address, so the backend sees the real client.

**Here** (no root, so no iptables): one asyncio process (``python -m labkit.sandbox.network``) listens on
``clusterIP:host_port(port)`` (ClusterIPs are loopback addresses, :mod:`labkit.sandbox.netmap`) and, per
connection, picks a ready endpoint at random (or the client's pinned one) and connects to
``podIP:host_port(targetPort)``, bound to the client's own address so the backend sees the client's IP as
behind a DNAT. A frontend listens only while it has ready endpoints: without any, nothing listens and the
client gets ``ECONNREFUSED``, as with kube-proxy's REJECT rule. UDP ports are proxied per client address
(a "conntrack entry" that expires after :data:`UDP_IDLE_S` idle seconds).

It also writes its table to a rules file that wasm pods' kubelets read (``kubelet/servicerules.py``): a wasm
pod's TCP connect to a ClusterIP picks the endpoint right in its kubelet, as the node's kernel applies
kube-proxy's rules, so wasm→wasm traffic takes no proxy hop.

**Bounds** (labkit's, so a hostile Service cannot exhaust the machine): at most :data:`MAX_PORTS_PER_SERVICE`
listeners for one Service and :data:`MAX_LISTENERS` in all; at most :data:`MAX_CONNECTIONS` proxied TCP
connections and :data:`MAX_UDP_SESSIONS` UDP flows at once. Beyond, the frontend is left out (logged once)
or the connection refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import random
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from labkit.fsutil import write_atomic
from labkit.sandbox.netmap import host_port

if TYPE_CHECKING:
    from labkit.sandbox.network.servicemap import Frontend

log = logging.getLogger("labkit.sandbox.network.proxy")

MAX_LISTENERS = 512
MAX_PORTS_PER_SERVICE = 64
MAX_CONNECTIONS = 1024
MAX_UDP_SESSIONS = 1024
UDP_IDLE_S = 30.0  # [inferred] the kernel's nf_conntrack_udp_timeout default, which kube-proxy leaves alone
HIGH_WATER = 256 * 1024  # bytes buffered towards one side before the other side stops being read
CONNECT_TIMEOUT_S = 5.0
RULES_VERSION = 1


class Listener:
    """One bound frontend; its :attr:`frontend` is replaced when the endpoints change (no rebind)."""

    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        self.server: asyncio.Server | None = None
        self.udp: UdpFront | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()


class ServiceProxy:
    """Reconciles listeners with the Services' frontends (:meth:`sync`) and forwards their traffic."""

    def __init__(self, rules_file: Path | None = None, skip_ips: Iterable[str] = ()) -> None:
        self.rules_file = rules_file
        self.skip_ips = set(skip_ips)  # addresses served directly (the cluster DNS), not proxied
        self.listeners: dict[tuple[str, int, str], Listener] = {}
        self.connections = 0
        self._affinity: dict[tuple[tuple[str, int, str], str], tuple[tuple[str, int], float]] = {}
        self._warned: set[str] = set()
        self._failed: dict[tuple[str, int, str], str] = {}

    # -- choosing ---------------------------------------------------------------------------------

    def pick(self, frontend: Frontend, client_ip: str) -> tuple[str, int] | None:
        """A ready endpoint, uniformly at random (iptables mode), or the client's pinned one (ClientIP affinity)."""
        if not frontend.backends:
            return None
        if frontend.affinity_s:
            pinned = self._affinity.get((frontend.key, client_ip))
            if pinned and pinned[1] > time.monotonic() and pinned[0] in frontend.backends:
                self._affinity[(frontend.key, client_ip)] = (pinned[0], time.monotonic() + frontend.affinity_s)
                return pinned[0]
        choice = random.choice(frontend.backends)
        if frontend.affinity_s:
            self._affinity[(frontend.key, client_ip)] = (choice, time.monotonic() + frontend.affinity_s)
        return choice

    # -- reconciling ------------------------------------------------------------------------------

    def wanted(self, frontends: Iterable[Frontend]) -> dict[tuple[str, int, str], Frontend]:
        """The frontends to listen on, within the bounds (a Service's extra ports and the overflow left out)."""
        out: dict[tuple[str, int, str], Frontend] = {}
        per_service: dict[str, int] = {}
        for frontend in frontends:
            if frontend.ip in self.skip_ips or not 0 < frontend.port < 65536:
                continue
            per_service[frontend.service] = per_service.get(frontend.service, 0) + 1
            if per_service[frontend.service] > MAX_PORTS_PER_SERVICE:
                self._warn(frontend.service, f"has more than {MAX_PORTS_PER_SERVICE} ports; the rest are not proxied")
                continue
            if len(out) >= MAX_LISTENERS:
                self._warn(frontend.service, f"left out: the proxy holds at most {MAX_LISTENERS} listeners")
                continue
            out[frontend.key] = frontend
        return out

    def _warn(self, service: str, what: str) -> None:
        if f"{service} {what}" not in self._warned:
            self._warned.add(f"{service} {what}")
            log.warning("service %s %s", service, what)

    async def sync(self, frontends: Iterable[Frontend]) -> None:
        wanted = self.wanted(frontends)
        self.write_rules(wanted.values())
        for key in [k for k, lst in self.listeners.items() if k not in wanted or not wanted[k].backends]:
            self.listeners.pop(key).close()  # gone, or no ready endpoint left: REJECT, i.e. nothing listens
        for pinned in [k for k in self._affinity if k[0] not in wanted]:
            del self._affinity[pinned]
        for key, frontend in wanted.items():
            listener = self.listeners.get(key)
            if listener is not None:
                listener.frontend = frontend
            elif frontend.backends:
                await self._listen(frontend)

    async def _listen(self, frontend: Frontend) -> None:
        listener = Listener(frontend)
        loop = asyncio.get_running_loop()
        address = (frontend.ip, host_port(frontend.port))
        try:
            if frontend.protocol == "TCP":
                listener.server = await loop.create_server(
                    lambda: TcpClient(self, listener), *address, reuse_address=True, backlog=128
                )
            else:
                udp = listener.udp = UdpFront(self, listener)
                await loop.create_datagram_endpoint(lambda: udp, local_addr=address)
        except OSError as err:
            if self._failed.get(frontend.key) != str(err):  # log each new failure once; retried on every sync
                log.warning("cannot listen on %s:%d/%s for %s: %s", *address, frontend.protocol, frontend.service, err)
            self._failed[frontend.key] = str(err)
            return
        self._failed.pop(frontend.key, None)
        self.listeners[frontend.key] = listener

    def write_rules(self, frontends: Iterable[Frontend]) -> None:
        """The TCP frontends for the kubelets' in-process DNAT (``kubelet/servicerules.py``), written atomically."""
        if self.rules_file is None:
            return
        rules: dict[str, Any] = {
            f"{f.ip}:{f.port}": {"backends": [list(b) for b in f.backends], "affinity": f.affinity_s}
            for f in frontends
            if f.protocol == "TCP"
        }
        write_atomic(self.rules_file, json.dumps({"version": RULES_VERSION, "tcp": rules}), mode=0o600)

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()


# -- TCP ------------------------------------------------------------------------------------------------


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes to :attr:`peer`, with flow control both ways."""

    transport: asyncio.Transport | None = None
    peer: _Side | None = None
    ended = False  # this side has sent its FIN

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.ended = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.ended:
            # Both directions have ended (or the other side is gone): the connection is over, so both sockets
            # close, as a NAT forgets a flow after the second FIN. Kept open, every such connection stayed
            # counted against MAX_CONNECTIONS, and a Service went dead after about a thousand requests.
            if peer is not None and peer.transport is not None:
                peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()  # half-close passes through, as through a NAT
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        peer, self.peer = self.peer, None
        if peer is not None and peer.transport is not None:
            peer.peer = None
            peer.transport.close()


class TcpClient(_Side):
    """The accepted connection: picks an endpoint, connects to it, then shuttles bytes."""

    def __init__(self, proxy: ServiceProxy, listener: Listener) -> None:
        self.proxy, self.listener = proxy, listener
        self.counted = False
        self.connecting: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        client_ip = str(transport.get_extra_info("peername")[0])
        backend = self.proxy.pick(self.listener.frontend, client_ip)
        if backend is None or self.proxy.connections >= MAX_CONNECTIONS:
            transport.abort()
            return
        self.proxy.connections += 1
        self.counted = True
        transport.pause_reading()
        transport.set_write_buffer_limits(HIGH_WATER)
        self.connecting = asyncio.ensure_future(self._connect(backend, client_ip))

    async def _connect(self, backend: tuple[str, int], client_ip: str) -> None:
        loop = asyncio.get_running_loop()
        address = (backend[0], host_port(backend[1]))
        upstream = _Side()
        upstream.peer = self
        try:
            try:  # from the client's own address, as a DNAT keeps it
                coro = loop.create_connection(lambda: upstream, *address, local_addr=(client_ip, 0))
                transport, _ = await asyncio.wait_for(coro, CONNECT_TIMEOUT_S)
            except OSError as err:
                if err.errno not in (errno.EADDRNOTAVAIL, errno.EINVAL):  # not a local address: connect from any
                    raise
                coro = loop.create_connection(lambda: upstream, *address)
                transport, _ = await asyncio.wait_for(coro, CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            if self.transport is not None:
                self.transport.abort()  # the endpoint refused: so does the Service, as after a DNAT
            return
        if self.transport is None or self.transport.is_closing():
            transport.close()
            return
        transport.set_write_buffer_limits(HIGH_WATER)
        self.peer = upstream
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.proxy.connections -= 1
            self.counted = False
        self.transport = None
        super().connection_lost(exc)


# -- UDP ------------------------------------------------------------------------------------------------


class UdpFront(asyncio.DatagramProtocol):
    """A UDP frontend: one connected socket per client address towards its endpoint, replies sent back."""

    def __init__(self, proxy: ServiceProxy, listener: Listener) -> None:
        self.proxy, self.listener = proxy, listener
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple[str, int], tuple[socket.socket, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)  # 3.11's selector transport is not a subclass
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE_S / 3, self._sweep)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        client = (str(addr[0]), int(addr[1]))
        session = self.sessions.get(client)
        if session is None:
            sock = self._open(client)
            if sock is None:
                return
        else:
            sock = session[0]
        self.sessions[client] = (sock, time.monotonic())
        with contextlib.suppress(OSError):  # ECONNREFUSED from an earlier datagram, a full buffer: UDP drops it
            sock.send(data)

    def _open(self, client: tuple[str, int]) -> socket.socket | None:
        total = sum(len(lst.udp.sessions) for lst in self.proxy.listeners.values() if lst.udp is not None)
        backend = self.proxy.pick(self.listener.frontend, client[0])
        if backend is None or total >= MAX_UDP_SESSIONS:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect((backend[0], host_port(backend[1])))
        except OSError:
            sock.close()
            return None
        asyncio.get_running_loop().add_reader(sock.fileno(), self._reply, sock, client)
        return sock

    def _reply(self, sock: socket.socket, client: tuple[str, int]) -> None:
        try:
            data = sock.recv(65535)
        except OSError:
            return
        if self.transport is not None:
            self.transport.sendto(data, client)

    def _drop(self, client: tuple[str, int]) -> None:
        sock, _ = self.sessions.pop(client)
        asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()

    def _sweep(self) -> None:
        cutoff = time.monotonic() - UDP_IDLE_S
        for client in [c for c, (_, seen) in self.sessions.items() if seen < cutoff]:
            self._drop(client)
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE_S / 3, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for client in list(self.sessions):
            self._drop(client)
        if self.transport is not None:
            self.transport.close()
