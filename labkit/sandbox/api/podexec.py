"""``pods/exec``: kubectl's and the Python client's exec, over the WebSocket channel protocols.

kubectl 1.32 execs over a WebSocket first (``TranslateStreamCloseWebsocketRequests``, on since 1.30),
offering ``v5.channel.k8s.io`` then ``v4.channel.k8s.io``…; the Python client offers v5 and v4 as well. Every
message starts with its channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (one ``Status`` as JSON at the
end), 4 terminal resize; v5 adds ``[255, n]``, "channel n is closed" (``k8s.io/apimachinery/pkg/util/
httpstream/wsstream``; kubelet ``pkg/kubelet/cri/streaming/remotecommand/exec.go`` ServeExec writes the
Status: Success, ``NonZeroExitCode`` with the exit code as a cause, or ``InternalError``
"error executing command in container: …").

**Into a wasm container** the answer is runwasi's. Its task service (``containerd-shim-wasm``
``src/sandbox/shim/local.rs``) does not implement ``Exec``, so the generated ttrpc default answers
``NOT_FOUND`` "/containerd.task.v2.Task/Exec is not supported" (containerd-shim-protos' generated
``Task::exec``); ``task_start`` with an exec id answers "exec is not supported". containerd's CRI plugin wraps
the error as ``failed to create exec "<id>": …`` (``internal/cri/server/container_execsync.go`` execInternal)
and its streaming server as ``failed to exec in container: …``; errdefs adds ``: not found`` to a NOT_FOUND
[inferred: the composition of those wrappers into one line was read in source, not observed on a node].
kubectl prints ``error: Internal error occurred: error executing command in container: failed to exec in
container: failed to create exec "<id>": /containerd.task.v2.Task/Exec is not supported: not found``.

**Through the kubelet.** The daemon registers a :class:`ContainerCommands` (``ApiServer.pod_streams.commands``):
api/kubeletexec.py, which dials the pod's kubelet as kube-apiserver does; the kubelet runs the command in a
native container (labkit's Python images) and answers for a wasm container with runwasi's words above. An
error the kubelet gives before any command (:class:`UpgradeFailed`: "container not found", a node that does
not answer) is reported as kube-apiserver reports a failed dial or upgrade, without the "error executing
command" prefix. Without a registered ``ContainerCommands`` (an API server run without kubelets, in tests)
every pod is answered as a wasm pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from labkit.sandbox.api.status import StatusError, bad_request


class UpgradeFailed(RuntimeError):
    """The kubelet could not be reached or refused the exec before running anything; the message is the whole
    error, as kube-apiserver reports ``unable to upgrade connection: …`` / ``error dialing backend: …``."""


PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
RUNWASI_EXEC = "/containerd.task.v2.Task/Exec is not supported: not found"


class ExecProcess(Protocol):
    """A command started in a container."""

    async def read(self) -> tuple[int, bytes]:
        """The next output: ``(1, bytes)`` for stdout, ``(2, bytes)`` for stderr; ``(0, b"")`` once both end."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def wait(self) -> int:
        """The exit code (after the output has ended)."""
        ...

    async def kill(self) -> None: ...


class ContainerCommands(Protocol):
    """What the native-pod runtime offers exec: run a command inside one of its containers."""

    def runs(self, pod: dict[str, Any]) -> bool:
        """Whether exec into *pod* goes through this (not answered as a wasm pod here); called before the
        WebSocket upgrade, so it may raise a ``StatusError`` for a pod it cannot serve."""
        ...

    async def start(
        self, pod: dict[str, Any], container: str, command: list[str], *, stdin: bool, tty: bool
    ) -> ExecProcess:
        """Start *command*; raise ``OSError``/``RuntimeError`` with the runtime's words when it cannot."""
        ...


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _container(pod: dict[str, Any], wanted: str) -> str:
    """The container exec targets, checked as kube-apiserver's streamLocation checks it."""
    name, spec = pod["metadata"]["name"], pod.get("spec", {})
    phase = pod.get("status", {}).get("phase", "Pending")
    if phase in ("Succeeded", "Failed"):  # pkg/registry/core/pod/strategy.go ExecLocation
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    names = [c["name"] for key in ("containers", "initContainers", "ephemeralContainers") for c in spec.get(key) or []]
    if not wanted:
        if len(spec.get("containers") or []) == 1:
            return str(spec["containers"][0]["name"])
        listed = " ".join(c["name"] for c in spec.get("containers") or [])
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{listed}]")
    if wanted not in names:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def internal_error(message: str) -> dict[str, Any]:
    """``apierrors.NewInternalError(err)`` as the kubelet writes it on the error channel."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def exit_status(command: list[str], code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    # containerd's streaming Exec: exec.CodeExitError{Err: "error executing command %v, exit code %d"} [inferred]
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command [{' '.join(command)}], "
        f"exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def wasm_refusal(pod: dict[str, Any]) -> dict[str, Any]:
    exec_id = hashlib.sha256(f"exec/{pod['metadata'].get('uid', '')}".encode()).hexdigest()
    return internal_error(
        f'error executing command in container: failed to exec in container: failed to create exec "{exec_id}": '
        + RUNWASI_EXEC
    )


async def serve(request: web.Request, pod: dict[str, Any], commands: ContainerCommands | None) -> web.StreamResponse:
    """Answer one ``…/pods/{name}/exec`` request (already authorized: ``create pods/exec``)."""
    container = _container(pod, request.query.get("container", ""))
    command = request.query.getall("command", [])
    streams = {n: _flag(request, n) for n in ("stdin", "stdout", "stderr", "tty")}
    if not (streams["stdin"] or streams["stdout"] or streams["stderr"]):  # remotecommand createStreams
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if not command:
        raise bad_request("labkit sandbox: exec needs a command (?command=…, one parameter per argument)")
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade.startswith("spdy/"):
        raise bad_request(
            "labkit sandbox: exec over a SPDY/3.1 upgrade is not served; use kubectl 1.30 or later, which execs "
            "over WebSockets (v5.channel.k8s.io)"
        )
    if upgrade != "websocket":
        raise bad_request("Upgrade request required")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if not set(offered) & set(PROTOCOLS):
        raise bad_request(f"exec subprotocols {offered} are not served; the sandbox serves {list(PROTOCOLS)}")
    native = commands is not None and commands.runs(pod)  # may refuse with a Status, before the upgrade
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=1 << 20, autoping=True)
    await ws.prepare(request)
    try:
        if native and commands is not None:
            status = await _run(ws, commands, pod, container, command, streams)
        else:
            status = wasm_refusal(pod)
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
    except (ConnectionError, RuntimeError):
        pass
    await ws.close()
    return ws


async def _run(
    ws: web.WebSocketResponse,
    commands: ContainerCommands,
    pod: dict[str, Any],
    container: str,
    command: list[str],
    streams: dict[str, bool],
) -> dict[str, Any]:
    try:
        process = await commands.start(pod, container, command, stdin=streams["stdin"], tty=streams["tty"])
    except UpgradeFailed as e:
        return internal_error(str(e))
    except (OSError, RuntimeError, StatusError) as e:
        return internal_error(f"error executing command in container: {e}")

    async def pump_input() -> None:
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[0], message.data[1:]
            if channel == STDIN and payload and streams["stdin"]:
                await process.write(payload)
            elif channel == CLOSE and ws.ws_protocol == PROTOCOLS[0] and payload[:1] == bytes([STDIN]):
                await process.close_stdin()
        await process.kill()  # the client went away: the command goes with it

    reading = asyncio.create_task(pump_input())
    try:
        while True:
            channel, data = await process.read()
            if channel == 0:
                break
            if (channel == STDOUT and streams["stdout"]) or (channel == STDERR and streams["stderr"]):
                await ws.send_bytes(bytes([channel]) + data)
        try:
            code = await process.wait()
        except (OSError, RuntimeError) as e:
            return internal_error(f"error executing command in container: {e}")
        return exit_status(command, code)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
