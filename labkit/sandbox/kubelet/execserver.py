"""The kubelet's exec endpoint (upstream's :10250 ``/exec``): ``kubectl exec`` runs here, in the node process.

**Why here.** A native container's process, its spec (argv rules, env, working dir, files, network view)
and its lifetime live in this process (kubelet/native.py). Running the command here, through
:func:`~labkit.sandbox.kubelet.native.run_in_container`, keeps those rules in one place and makes the command
what it is upstream: a process of the node's runtime, in the container, that ends with the container (the
container's end kills it, as the end of a PID namespace's init does) and with the node. The API server only
dials the kubelet and translates the stream (api/kubeletexec.py), as kube-apiserver proxies to a kubelet.
The alternative, the daemon launching the shim itself from a launch description on disk, would have put a
second copy of the rules and a second owner of the container's processes in another process.

**What it answers** (the wire: :mod:`labkit.sandbox.execwire`):

- no valid bearer token: 401 (only the API server holds it);
- the pod is not this node's, or the container is not running: the kubelet's ``container not found
  ("<name>")`` (pkg/kubelet/kubelet_pods.go GetExec → findContainer looks at running containers only), which
  kube-apiserver reports as "unable to upgrade connection: …";
- a wasm container: runwasi's answer (its shim implements no ``Exec``, kubelet/probe_handlers.py
  :class:`WasmExec` has the chain of wrappers);
- an argv the image cannot run: runc's words (:class:`~labkit.sandbox.kubelet.native.ExecRefused`), wrapped
  as containerd's CRI wraps a failed start: ``failed to exec in container: failed to start exec "<id>": …``;
- otherwise the command's stdout, stderr and exit code (a signal ``n`` is ``128+n``); stdin when asked for.
  ``tty`` is not served: the command gets pipes, never a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
from pathlib import Path
from typing import IO, TYPE_CHECKING

from aiohttp import WSMsgType, web

from labkit.sandbox import execwire
from labkit.sandbox.kubelet.native import ExecRefused, NativeContainer, run_in_container

if TYPE_CHECKING:
    from collections.abc import Mapping

    from labkit.sandbox.kubelet.pod_workers import PodWorker

log = logging.getLogger("labkit.sandbox.kubelet.execserver")

WASM_EXEC = "/containerd.task.v2.Task/Exec is not supported: not found"


class ExecServer:
    """One node's exec endpoint on ``host_ip``; :meth:`start` returns the port it listens on."""

    def __init__(self, workers: Mapping[str, PodWorker], host_ip: str, token_file: Path) -> None:
        self.workers, self.host_ip, self.token_file = workers, host_ip, token_file
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get(execwire.ROUTE, self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host_ip, 0))  # a free port: two sandboxes on one machine share the loopback addresses
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        try:
            expected = self.token_file.read_text().strip()
        except OSError:
            return False
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())

    def _container(self, request: web.Request) -> object | None:
        """The running container the request names (any runtime), or None."""
        m = request.match_info
        worker = self.workers.get(m["uid"])
        if worker is None or worker.ns != m["namespace"] or worker.name != m["pod"]:
            return None
        c = next((c for c in worker.containers if c.name == m["container"]), None)
        if c is None or "running" not in c.state or c.process is None or not c.process.running:
            return None
        return c.process

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text="Unauthorized")
        command = request.query.getall("command", [])
        stdin = request.query.get("stdin", "") in ("1", "true")
        ws = web.WebSocketResponse(max_msg_size=1 << 20, autoping=True)
        await ws.prepare(request)
        container = self._container(request)
        try:
            if container is None:
                await _refuse(ws, f'container not found ("{request.match_info["container"]}")', upgrade=True)
            elif not isinstance(container, NativeContainer):
                exec_id = secrets.token_hex(32)
                await _refuse(ws, f'failed to exec in container: failed to create exec "{exec_id}": {WASM_EXEC}')
            else:
                await self._run(ws, container, command, stdin)
        except (ConnectionError, RuntimeError):
            pass  # the API server went away; _run has killed the command
        await ws.close()
        return ws

    async def _run(
        self, ws: web.WebSocketResponse, container: NativeContainer, command: list[str], stdin: bool
    ) -> None:
        try:
            process = await asyncio.to_thread(run_in_container, container, command, stdin)
        except ExecRefused as err:
            exec_id = secrets.token_hex(32)
            await _refuse(ws, f'failed to exec in container: failed to start exec "{exec_id}": {err.problem}')
            return
        except OSError as err:
            await _refuse(ws, f"failed to exec in container: {err}")
            return
        await ws.send_str(json.dumps({"started": True}))
        inputs = asyncio.ensure_future(_pump_input(ws, process))
        try:
            outputs = [
                _pump_output(ws, execwire.STDOUT, process.stdout),
                _pump_output(ws, execwire.STDERR, process.stderr),
            ]
            await asyncio.gather(*outputs)
            code = await asyncio.to_thread(process.wait)
            await ws.send_str(json.dumps({"exit": 128 - code if code < 0 else code}))
        finally:
            inputs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await inputs
            _kill(process)  # what it left behind, or all of it when the API server went away


async def _refuse(ws: web.WebSocketResponse, message: str, *, upgrade: bool = False) -> None:
    await ws.send_str(json.dumps({"error": message, "upgrade": upgrade}))


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _pump_output(ws: web.WebSocketResponse, channel: int, pipe: IO[bytes] | None) -> None:
    if pipe is None:
        return
    with pipe:
        while chunk := await asyncio.to_thread(pipe.read1, 65536):  # type: ignore[attr-defined]
            await ws.send_bytes(bytes([channel]) + chunk)


async def _pump_input(ws: web.WebSocketResponse, process: subprocess.Popen[bytes]) -> None:
    """stdin from the API server; when the API server closes the stream, the command is killed."""
    async for message in ws:
        if message.type == WSMsgType.BINARY and message.data[:1] == bytes([execwire.STDIN]) and process.stdin:
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(_write, process.stdin, message.data[1:])
        elif message.type == WSMsgType.TEXT and message.data == execwire.CLOSE_STDIN and process.stdin:
            with contextlib.suppress(OSError):
                process.stdin.close()
    _kill(process)


def _write(pipe: IO[bytes], data: bytes) -> None:
    pipe.write(data)
    pipe.flush()
