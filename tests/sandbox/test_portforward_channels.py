"""The v4.channel.k8s.io port-forward (the Python client's) against a real TCP server, with a slow dial.

A client writes as soon as it has read the port prefixes; the dial to the pod may not be done yet. Those
bytes once fell on the floor and the request never reached the pod (a hung CI run); now they wait.
"""

from __future__ import annotations

import asyncio
import struct

import aiohttp
from aiohttp import web

from labkit.sandbox.api import portforward


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()


async def _forward_through_a_slow_dial(monkeypatch) -> tuple[list[bytes], bool]:
    pod_server = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
    pod_port = pod_server.sockets[0].getsockname()[1]

    async def slow_dial(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await asyncio.sleep(0.3)  # the client's first bytes arrive while this is still pending
        return await asyncio.open_connection("127.0.0.1", pod_port)

    monkeypatch.setattr(portforward, "dial", slow_dial)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await portforward._channels(request, {}, "127.42.0.9", [8080])

    app = web.Application()
    app.router.add_get("/pf", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/pf"
    frames: list[bytes] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws,
    ):
        for _ in range(2):  # the data and error channels' port prefixes
            frames.append((await ws.receive(timeout=5)).data)
        await ws.send_bytes(b"\x00hello pod\n")
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                frames.append(message.data)
        closed = ws.closed
    await runner.cleanup()
    pod_server.close()
    return frames, closed


def test_bytes_written_before_the_dial_completes_reach_the_pod(monkeypatch) -> None:
    frames, closed = asyncio.run(asyncio.wait_for(_forward_through_a_slow_dial(monkeypatch), 10))
    prefix = struct.pack("<H", 8080)
    assert frames[:2] == [b"\x00" + prefix, b"\x01" + prefix]
    assert b"".join(f[1:] for f in frames[2:] if f[0] == 0) == b"HELLO POD\n"
    assert closed  # the pod closed its side, every forwarder returned, so the server closed the WebSocket
