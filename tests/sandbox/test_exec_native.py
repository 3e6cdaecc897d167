"""pods/exec's streaming protocol into a *native* container, with the real kubectl and the Python client.

The sandbox's real ``ContainerCommands`` dials the pod's kubelet (api/kubeletexec.py; end to end in
test_exec_kubelet.py), but the one program a native image can run (the echo server) reads no stdin and writes
one line. To test the channel protocol itself (stdin and its close over v5, stderr, v4 and v5) this test plugs in
a TEST DOUBLE for that one interface only: ``HostCommands`` runs the command as a host subprocess. Everything
else is real: an in-process ApiServer over HTTPS, kubectl 1.32 (WebSocket v5.channel.k8s.io), the official
Python client (v4/v5).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from labkit.sandbox import pki
from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.auth import TokenAuthority
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.server import ApiServer
from labkit.sandbox.api.serverthread import ServerThread
from labkit.sandbox.api.store import Store
from labkit.sandbox.daemon import bootstrap, write_kubeconfig
from labkit.sandbox.nodes import ensure_nodes
from tests.sandbox.conftest import KUBECTL

if TYPE_CHECKING:
    from labkit.sandbox.api.podexec import ExecProcess

PODS = RESOURCES.served("", "pods")


class HostProcess:
    """TEST DOUBLE: an ``ExecProcess`` that is a host subprocess."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.open = 2
        self.pumps = [asyncio.ensure_future(self._pump(c, s)) for c, s in ((1, process.stdout), (2, process.stderr))]

    async def _pump(self, channel: int, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while chunk := await stream.read(4096):
            await self.output.put((channel, chunk))
        self.open -= 1
        if not self.open:
            await self.output.put((0, b""))

    async def read(self) -> tuple[int, bytes]:
        return await self.output.get()

    async def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    async def wait(self) -> int:
        return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class HostCommands:
    """TEST DOUBLE for the native runtime's ``ContainerCommands``: pods labelled ``runtime=native`` are its own."""

    def runs(self, pod: dict[str, Any]) -> bool:
        return pod["metadata"].get("labels", {}).get("runtime") == "native"

    async def start(
        self, pod: dict[str, Any], container: str, command: list[str], *, stdin: bool, tty: bool
    ) -> ExecProcess:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return HostProcess(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An in-process API server with the double registered and one Running native pod; yields its kubeconfig."""
    root = tmp_path_factory.mktemp("exec-native")
    core = ApiCore(Store(root / "state.db"))
    bootstrap(core)
    ensure_nodes(core, 1, ready=True)
    ca, crt, key = pki.ensure_certificates(root)
    api = ApiServer(core, TokenAuthority(b"exec-secret", "exec-admin"), root / "pods")
    api.pod_streams.commands = HostCommands()
    thread = ServerThread(api, ssl_context=pki.server_context(crt, key)).start()
    write_kubeconfig(root / "kubeconfig", thread.url, "exec-admin", ca)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "native", "labels": {"runtime": "native"}},
        "spec": {"nodeName": "labkit-server-0", "containers": [{"name": "main", "image": "labkit/watcher"}]},
    }
    created, _ = core.create(PODS, "default", pod)
    status = {**created, "status": {"phase": "Running", "podIP": "127.42.0.9"}}
    core.replace(PODS, "default", "native", status, subresource="status")
    yield root / "kubeconfig"
    thread.stop()
    core.store.close()


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    return subprocess.run(
        [KUBECTL, *args], env=env, capture_output=True, text=True, input=stdin, timeout=60, check=False
    )


def test_kubectl_exec_streams_stdout_stderr_and_the_exit_code(server: Path) -> None:
    done = kubectl(server, "exec", "native", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.stdout == "out\n"
    assert done.stderr == "err\ncommand terminated with exit code 3\n"
    assert done.returncode == 3


def test_kubectl_exec_with_stdin_closes_it_over_v5(server: Path) -> None:
    done = kubectl(server, "exec", "-i", "native", "--", "sh", "-c", "tr a-z A-Z", stdin="hello\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "HELLO\n", "")


def test_kubectl_exec_into_a_container_the_pod_does_not_have(server: Path) -> None:
    done = kubectl(server, "exec", "native", "-c", "other", "--", "true")
    assert done.returncode == 1
    assert "container other is not valid for pod native" in done.stderr


def test_python_client_exec(server: Path) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(server)))
    out = stream(
        api.connect_get_namespaced_pod_exec,
        "native",
        "default",
        command=["echo", "from python"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
    )
    assert out == "from python\n"
