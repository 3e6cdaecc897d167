"""``pods/portforward``: kubectl's and the Python client's port-forward, served by the API server itself.

Two wire protocols reach the same forwarder:

- **SPDY/3.1 tunnelled in a WebSocket** (``Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io``), what
  kubectl 1.31+ dials first (``PortForwardWebsockets``, beta and on since 1.31; kubectl
  ``pkg/cmd/portforward/portforward.go`` ``createDialer``; client-go ``tools/portforward/tunneling_dialer.go``).
  Per forwarded connection the client opens two SPDY streams with headers ``streamType`` (``error`` or
  ``data``), ``port`` and ``requestID``; the server replies to each, pairs them by ``requestID`` and copies
  bytes, and writes a failure as text on the error stream (kubelet
  ``pkg/kubelet/cri/streaming/portforward/httpstream.go``). kubectl prints it as
  ``an error occurred forwarding L -> R: <text>``. A plain ``Upgrade: SPDY/3.1`` (kubectl's fallback, older
  clients) is refused with a 400 that says so: kubectl 1.32 never needs it here.
- **WebSocket channels** (``v4.channel.k8s.io``), what the official Python client's ``portforward`` speaks:
  the ports come as ``?ports=80,8080``; port *i* has data channel ``2i`` and error channel ``2i+1``, and the
  server's first message on each is the port as 2 bytes little-endian (kubelet
  ``pkg/kubelet/cri/streaming/portforward/websocket.go``).

Sandbox simplification: a real API server hands the stream to the pod's kubelet, and containerd dials the
port inside the pod's network namespace. The sandbox's API server dials ``podIP:host_port(port)`` on loopback
itself (pods listen on their own 127.42.x.y address; :mod:`labkit.sandbox.netmap`), so no kubelet is involved.
A connection that cannot be made fails with containerd's wording (``internal/cri/server/
sandbox_portforward_linux.go``: ``failed to execute portforward in network namespace …``, after its dial to the
pod IP), wrapped as the kubelet wraps it (``error forwarding port P to pod …``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from labkit.sandbox.api import spdy
from labkit.sandbox.api.status import bad_request
from labkit.sandbox.netmap import host_port

log = logging.getLogger("labkit.sandbox.api.portforward")

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"  # constants.WebsocketsSPDYTunnelingPrefix + "portforward.k8s.io"
CHANNEL_PROTOCOL = "v4.channel.k8s.io"
DIAL_TIMEOUT = 5.0  # containerd's dialTimeout
CLOSE_GRACE = 1.0  # containerd waits 1 s for the second direction once the first has ended
READ_CHUNK = 64 * 1024
MAX_PAIRS = 128  # forwarded connections open at once on one session
MAX_PENDING = 1 << 20  # client bytes held for a connection still being dialled
MAX_BUFFERED = 16 << 20  # client bytes queued for a pod that reads slower than the client sends


def pod_address(pod: dict[str, Any]) -> str:
    """The running pod's IP; a pod without a node or not running cannot be forwarded to."""
    name = pod["metadata"]["name"]
    if not pod.get("spec", {}).get("nodeName"):
        # pkg/registry/core/pod/strategy.go PortForwardLocation (via getPod/streamLocation)
        raise bad_request(f"pod {name} does not have a host assigned")
    phase = pod.get("status", {}).get("phase", "Pending")
    ip = pod.get("status", {}).get("podIP")
    if phase != "Running" or not ip:
        # kubectl checks this itself before it dials, with these words (portforward.go RunPortForwardContext);
        # the sandbox answers the same for a client that does not check [inferred: the kubelet would fail later]
        raise bad_request(f"unable to forward port because pod is not running. Current status={phase}")
    return str(ip)


def dial_failure(pod: dict[str, Any], ip: str, port: int, error: OSError | TimeoutError) -> str:
    """The text the kubelet writes on the error stream when containerd cannot reach the port."""
    uid = pod["metadata"].get("uid", "")
    sandbox = hashlib.sha256(f"sandbox/{uid}".encode()).hexdigest()
    netns = "/var/run/netns/cni-" + hashlib.sha256(f"netns/{uid}".encode()).hexdigest()[:32]
    if isinstance(error, TimeoutError):
        reason = "i/o timeout"
    elif isinstance(error, ConnectionRefusedError):
        reason = "connect: connection refused"
    else:
        reason = f"connect: {error.strerror or error}".lower()
    # kubelet websocket.go/httpstream.go: "error forwarding port %d to pod %s, uid %v: %v", with the CRI
    # sandbox id as the pod and no uid on the CRI path [inferred]; containerd's Go dialer error names the
    # pod IP and the port as the manifest gives it
    return (
        f"error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network namespace "
        f'"{netns}": dial tcp {ip}:{port}: {reason}'
    )


async def dial(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(ip, host_port(port)), DIAL_TIMEOUT)


async def serve(request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
    """Answer one ``…/pods/{name}/portforward`` request (already authorized: ``create pods/portforward``)."""
    upgrade = request.headers.get("Upgrade", "").lower()
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if upgrade == "websocket":
        ip = pod_address(pod)
        if TUNNEL_PROTOCOL in offered:
            return await _spdy_over_websocket(request, pod, ip)
        if offered and CHANNEL_PROTOCOL not in offered:
            raise bad_request(
                f"port-forward subprotocols {offered} are not served; the sandbox serves {TUNNEL_PROTOCOL} "
                f"(kubectl) and {CHANNEL_PROTOCOL} (the Python client)"
            )
        return await _channels(request, pod, ip, _ports(request))
    if upgrade.startswith("spdy/"):
        raise bad_request(
            "labkit sandbox: port-forward over a plain SPDY/3.1 upgrade is not served; use kubectl 1.31 or later, "
            f"which dials WebSockets ({TUNNEL_PROTOCOL}) first"
        )
    raise bad_request("Upgrade request required")


def _ports(request: web.Request) -> list[int]:
    """``?ports=`` as kubelet's NewV4Options reads it (its wording for each failure)."""
    values = request.query.getall("ports", [])
    if not values:
        raise bad_request('query parameter "ports" is required')
    ports = []
    for value in values:
        if not value:
            raise bad_request('query parameter "ports" cannot be empty')
        for part in value.split(","):
            if not part.isdigit() or int(part) > 65535:
                raise bad_request(
                    f'unable to parse "{value}" as a port: strconv.ParseUint: parsing "{part}": '
                    + ("value out of range" if part.isdigit() else "invalid syntax")
                )
            if int(part) < 1:
                raise bad_request(f'port "{value}" must be > 0')
            ports.append(int(part))
    if len(ports) > 32:
        raise bad_request("labkit sandbox: at most 32 ports per port-forward request")
    return ports


async def _prepare(request: web.Request, protocols: tuple[str, ...]) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=protocols, max_msg_size=2 * spdy.MAX_FRAME, autoping=True)
    await ws.prepare(request)
    return ws


# ---------------------------------------------------------------- v4.channel.k8s.io (the Python client)
async def _channels(request: web.Request, pod: dict[str, Any], ip: str, ports: list[int]) -> web.StreamResponse:
    ws = await _prepare(request, (CHANNEL_PROTOCOL,))
    # The client may write as soon as it has read the port prefixes, before the dial to the pod is done;
    # each channel's data waits on its dial's outcome (None: the dial failed) instead of being dropped.
    dialled: dict[int, asyncio.Future[asyncio.StreamWriter | None]] = {
        index: asyncio.get_running_loop().create_future() for index in range(len(ports))
    }

    async def forward(index: int, port: int) -> None:
        try:
            reader, writer = await dial(ip, port)
        except (OSError, TimeoutError) as e:
            dialled[index].set_result(None)
            await ws.send_bytes(bytes([2 * index + 1]) + dial_failure(pod, ip, port, e).encode())
            return
        dialled[index].set_result(writer)
        try:
            while chunk := await reader.read(READ_CHUNK):
                await ws.send_bytes(bytes([2 * index]) + chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            writer.close()

    for index, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await ws.send_bytes(bytes([2 * index]) + prefix)
        await ws.send_bytes(bytes([2 * index + 1]) + prefix)
    tasks = [asyncio.create_task(forward(i, p)) for i, p in enumerate(ports)]

    async def all_done() -> None:
        await asyncio.gather(*tasks, return_exceptions=True)

    async def receive() -> None:
        async for message in ws:
            if message.type != WSMsgType.BINARY or len(message.data) < 2:
                continue
            channel = message.data[0]
            if channel % 2 or channel // 2 not in dialled:
                continue  # error channels are the server's to write; wsstream.Conn skips unknown channels too
            writer = await dialled[channel // 2]
            if writer is not None and not writer.is_closing():
                writer.write(message.data[1:])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

    receiving, finished = asyncio.create_task(receive()), asyncio.create_task(all_done())
    try:
        await asyncio.wait({receiving, finished}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        receiving.cancel()
        finished.cancel()
        for task in tasks:
            task.cancel()
        for outcome in dialled.values():
            if outcome.done() and (writer := outcome.result()) is not None:
                writer.close()
        await ws.close()  # the kubelet closes the connection once every port's forwarder has returned
    return ws


# ------------------------------------------------------------- SPDY/3.1 in a WebSocket (kubectl)
@dataclass
class _Pair:
    """One forwarded connection: its data and error streams, and the pod connection behind them."""

    request_id: str
    port: int
    data: int = 0
    error: int = 0
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    client_done: bool = False


class _SpdySession:
    def __init__(self, ws: web.WebSocketResponse, pod: dict[str, Any], ip: str) -> None:
        self.ws, self.pod, self.ip = ws, pod, ip
        self.out = spdy.HeaderCodec()
        self.reader = spdy.FrameReader(spdy.HeaderCodec())
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.lock = asyncio.Lock()  # frames go out whole and header blocks in order
        self.last_stream = 0

    async def send(self, *frames: bytes) -> None:
        async with self.lock:
            if not self.ws.closed:
                await self.ws.send_bytes(b"".join(frames))

    async def run(self) -> None:
        try:
            async for message in self.ws:
                if message.type != WSMsgType.BINARY:
                    continue
                for frame in self.reader.feed(message.data):
                    if not await self.handle(frame):
                        return
        except spdy.SpdyError as e:
            log.info("port-forward session ended: %s", e)
            await self.send(spdy.goaway(self.last_stream, 1))
        finally:
            for pair in list(self.pairs.values()):
                self.drop(pair)

    async def handle(self, frame: spdy.Frame) -> bool:
        if frame.kind == spdy.SYN_STREAM:
            await self.open_stream(frame)
        elif frame.kind == 0:
            await self.client_data(frame)
        elif frame.kind == spdy.RST_STREAM:
            pair = self.by_stream.get(frame.stream)
            if pair is not None:
                self.drop(pair)
        elif frame.kind == spdy.PING:
            await self.send(spdy.ping(frame.value))
        elif frame.kind == spdy.GOAWAY:
            return False
        return True

    async def open_stream(self, frame: spdy.Frame) -> None:
        stream, headers = frame.stream, frame.headers
        self.last_stream = max(self.last_stream, stream)
        kind, port_text = headers.get("streamtype", ""), headers.get("port", "")
        request_id = headers.get("requestid") or str(stream if kind == "error" else stream - 2)
        # httpstream.go httpStreamReceived: a stream without a valid port or stream type is refused (reset)
        valid = port_text.isdigit() and 0 < int(port_text) < 65536 and kind in ("data", "error")
        pair = self.pairs.get(request_id)
        if not valid or (pair is None and len(self.pairs) >= MAX_PAIRS) or (pair and getattr(pair, kind)):
            await self.send(spdy.rst_stream(stream, spdy.REFUSED_STREAM if valid else spdy.CANCEL))
            return
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id, int(port_text))
        setattr(pair, kind, stream)
        self.by_stream[stream] = pair
        async with self.lock:
            if not self.ws.closed:
                await self.ws.send_bytes(spdy.syn_reply(self.out, stream))
        if pair.data and pair.error:
            pair.task = asyncio.create_task(self.forward(pair))

    async def client_data(self, frame: spdy.Frame) -> None:
        pair = self.by_stream.get(frame.stream)
        if pair is None or frame.stream != pair.data:
            return  # the error stream is the server's to write; the client only closes its side
        if frame.data:
            if pair.writer is None:
                pair.pending.append(frame.data)
                pair.pending_bytes += len(frame.data)
                if pair.pending_bytes > MAX_PENDING:
                    await self.send(spdy.rst_stream(pair.data, spdy.CANCEL))
                    self.drop(pair)
                    return
            else:
                pair.writer.write(frame.data)
                if pair.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
                    # only then wait for the pod: waiting on every write stalls the session's one reader, and
                    # with it the replies the pod is blocked sending (kubectl reads and writes one connection)
                    with contextlib.suppress(ConnectionError):
                        await pair.writer.drain()
        if frame.fin:
            pair.client_done = True
            if pair.writer is not None:
                self.half_close(pair)

    def half_close(self, pair: _Pair) -> None:
        writer = pair.writer
        if writer is not None and writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        # containerd: once one direction is done, the other gets CLOSE_GRACE to finish
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self._expire, pair)

    def _expire(self, pair: _Pair) -> None:
        if pair.writer is not None:
            pair.writer.close()

    async def forward(self, pair: _Pair) -> None:
        try:
            reader, writer = await dial(self.ip, pair.port)
        except (OSError, TimeoutError) as e:
            message = dial_failure(self.pod, self.ip, pair.port, e).encode()
            await self.send(spdy.data(pair.error, message), spdy.data(pair.error, b"", fin=True))
            await self.send(spdy.data(pair.data, b"", fin=True))
            self.forget(pair)
            return
        pair.writer = writer
        for chunk in pair.pending:
            writer.write(chunk)
        pair.pending.clear()
        if pair.client_done:
            self.half_close(pair)
        try:
            while chunk := await reader.read(READ_CHUNK):
                await self.send(spdy.data(pair.data, chunk))
        except (ConnectionError, RuntimeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send(spdy.data(pair.data, b"", fin=True), spdy.data(pair.error, b"", fin=True))
            self.forget(pair)

    def forget(self, pair: _Pair) -> None:
        self.pairs.pop(pair.request_id, None)
        self.by_stream.pop(pair.data, None)
        self.by_stream.pop(pair.error, None)

    def drop(self, pair: _Pair) -> None:
        if pair.task is not None:
            pair.task.cancel()
        if pair.writer is not None:
            pair.writer.close()
        self.forget(pair)


async def _spdy_over_websocket(request: web.Request, pod: dict[str, Any], ip: str) -> web.StreamResponse:
    ws = await _prepare(request, (TUNNEL_PROTOCOL,))
    await _SpdySession(ws, pod, ip).run()
    await ws.close()
    return ws
