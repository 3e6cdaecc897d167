"""``pods/exec`` through the pod's kubelet: the API server's :class:`~labkit.sandbox.api.podexec.ContainerCommands`.

As kube-apiserver does, the API server does not run the command: it finds the pod's node, dials that node's
kubelet at the Node's InternalIP and ``status.daemonEndpoints.kubeletEndpoint.Port`` (the port the kubelet
posted) with the API server's kubelet-client credential, and relays the stream (:mod:`labkit.sandbox.execwire`
for the wire and its simplifications). The kubelet decides everything about the container: whether it runs,
whether its runtime can exec (runwasi cannot), whether its image can run the argv (runc's words), and the
command lives and dies there, with the container. Deleting the pod ends the container, the command, then
this stream, whose last word is the command's exit code.

Every scheduled pod goes to its kubelet. An unscheduled pod has no kubelet to ask (kube-apiserver refuses
it, "pod … does not have a host assigned"). An API server without this (tests that run no kubelet) answers
every pod as a wasm pod (api/podexec.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from labkit.sandbox import execwire
from labkit.sandbox.api.podexec import UpgradeFailed
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError, bad_request

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

NODES = RESOURCES.served("", "nodes")
#: how long the kubelet may take to answer the dial and say whether the command started
START_TIMEOUT_S = 30.0


class KubeletCommands:
    """Runs exec through the kubelet of the pod's node."""

    def __init__(self, core: ApiCore, token_file: Path) -> None:
        self.core, self.token_file = core, token_file

    def runs(self, pod: dict[str, Any]) -> bool:
        """Every pod with a node: its kubelet answers. (Asked before the upgrade, so it can refuse.)"""
        if not (pod.get("spec") or {}).get("nodeName"):  # registry/core/pod/strategy.go streamLocation
            raise bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        return True

    def _endpoint(self, node_name: str) -> tuple[str, int]:
        try:
            node = self.core.get(NODES, None, node_name)
        except StatusError as err:
            raise UpgradeFailed(f'nodes "{node_name}" not found') from err
        status = node.get("status") or {}
        ip = next((a["address"] for a in status.get("addresses") or () if a.get("type") == "InternalIP"), "")
        port = int(((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0)
        if not ip or not port:
            raise UpgradeFailed(f"no preferred addresses found; known addresses: [] (node {node_name})")
        return ip, port

    async def start(
        self, pod: dict[str, Any], container: str, command: list[str], *, stdin: bool, tty: bool
    ) -> KubeletProcess:
        meta = pod["metadata"]
        ip, port = self._endpoint(pod["spec"]["nodeName"])
        path = execwire.exec_path(meta.get("namespace") or "default", meta["name"], meta.get("uid", ""), container)
        params = [("command", c) for c in command] + [("stdin", "1" if stdin else "0")]
        try:
            token = self.token_file.read_text().strip()
        except OSError as err:
            raise UpgradeFailed(f"error dialing backend: no kubelet-client credential ({err.strerror})") from None
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        try:
            ws = await session.ws_connect(
                f"http://{ip}:{port}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
            )
            first = await ws.receive(timeout=START_TIMEOUT_S)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            await session.close()
            raise UpgradeFailed(f"error dialing backend: dial tcp {ip}:{port}: {_reason(err)}") from None
        answer = json.loads(first.data) if first.type == aiohttp.WSMsgType.TEXT else {}
        if not answer.get("started"):
            await ws.close()
            await session.close()
            message = str(answer.get("error") or "the kubelet closed the exec stream")
            if answer.get("upgrade"):
                raise UpgradeFailed(f"unable to upgrade connection: {message}")
            raise RuntimeError(message)
        return KubeletProcess(session, ws)


def _reason(err: BaseException) -> str:
    if isinstance(err, aiohttp.WSServerHandshakeError):
        return f"the kubelet answered {err.status} {err.message}"
    if isinstance(err, aiohttp.ClientConnectorError) and isinstance(err.os_error, ConnectionRefusedError):
        return "connect: connection refused"
    return str(err) or type(err).__name__


class KubeletProcess:
    """The command as the API server sees it: a stream to the kubelet that runs it."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session, self.ws = session, ws
        self.exit_code: int | None = None

    async def read(self) -> tuple[int, bytes]:
        while True:
            message = await self.ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY and message.data[:1] in (b"\x01", b"\x02"):
                return message.data[0], message.data[1:]
            if message.type == aiohttp.WSMsgType.TEXT:
                self.exit_code = int(json.loads(message.data).get("exit", 1))
                continue
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                await self._close()
                return 0, b""

    async def write(self, data: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(bytes([execwire.STDIN]) + data)

    async def close_stdin(self) -> None:
        if not self.ws.closed:
            await self.ws.send_str(execwire.CLOSE_STDIN)

    async def wait(self) -> int:
        if self.exit_code is None:
            raise RuntimeError("the kubelet's exec stream ended without the command's exit code")
        return self.exit_code

    async def kill(self) -> None:
        await self._close()  # the kubelet kills the command when its stream closes

    async def _close(self) -> None:
        await self.ws.close()
        await self.session.close()
