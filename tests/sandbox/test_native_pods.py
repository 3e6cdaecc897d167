"""Native pods through the real kubectl against a real 1-node sandbox: the echo server Running and Ready on its
pod IP, its logs, in-cluster config with the official kubernetes client and RBAC, crash back-off, delete, and an
ELF image failing as it always did."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.apps import build_app_image
from labkit.imagestore import ImageStore, default_platform
from labkit.wasm.oci import OCI_LAYER_GZIP, descriptor, deterministic_gzip, deterministic_tar, image_archive
from tests.sandboxes import is_pod_ip, sandbox_daemon

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
pytestmark = pytest.mark.slow
IMAGE = "labkit.local/echo-server:0.1.0"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("native-home") / "sandbox"


@pytest.fixture(scope="module")
def kubectl(home: Path, kubectl_for: Callable[[Path], Kubectl]) -> Iterator[Kubectl]:
    with sandbox_daemon(home.parent, nodes=1):
        store = ImageStore(home / "images")
        store.import_archive(build_app_image("echo-server", "0.1.0", home.parent / "echo.tar").path)
        store.import_archive(_elf_image(home.parent / "elf.tar"))
        yield kubectl_for(home)


def _elf_image(output: Path) -> Path:
    """An ordinary Linux image: an ELF binary as its entrypoint."""
    tar = deterministic_tar({"bin/app": (Path("/bin/true").read_bytes(), 0o755)})
    layer = deterministic_gzip(tar)
    os_name, arch = default_platform().split("/")
    config = {"architecture": arch, "os": os_name, "config": {"Entrypoint": ["/bin/app"]}, "rootfs": {"type": "layers"}}
    ref = "docker.io/library/elf-app:1"
    archive, _ = image_archive(
        ref, "1", config, descriptor(OCI_LAYER_GZIP, layer), layer, {"io.containerd.image.name": ref}, {}
    )
    output.write_bytes(archive)
    return output


def eventually(check: Callable[[], str], expected: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = check()
        if expected in out or time.monotonic() > deadline:
            assert expected in out, out
            return out
        time.sleep(0.3)


def _pod(name: str, args: list[str], extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  containers:
  - name: echo
    image: {IMAGE}
    imagePullPolicy: Never
    args: {json.dumps(args)}
{extra}"""


def _native_pids(container_id: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and container_id.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_echo_pod_serves_logs_and_goes_with_its_deletion(kubectl: Kubectl) -> None:
    port = random.randint(30000, 32000)
    kubectl("apply", "-f", "-", input=_pod("echo", ["--port", str(port)]))
    kubectl("wait", "--for=condition=Ready", "pod/echo", "--timeout=60s")
    ip = kubectl("get", "pod", "echo", "-o", "jsonpath={.status.podIP}").stdout
    assert is_pod_ip(ip)
    # Ready without a readiness probe means started, not listening: wait for the server's own line
    eventually(lambda: kubectl("logs", "echo").stdout, f"echo-server listening on {ip}:{port}")
    with urllib.request.urlopen(f"http://{ip}:{port}/hi", timeout=10) as answer:
        assert json.loads(answer.read())["pod"] == "echo"
    logs = eventually(lambda: kubectl("logs", "echo").stdout, '"GET /hi HTTP/1.1" 200')
    assert f"echo-server listening on {ip}:{port}" in logs
    cid = kubectl("get", "pod", "echo", "-o", "jsonpath={.status.containerStatuses[0].containerID}").stdout
    pids = _native_pids(cid.split("://")[1])
    assert pids
    kubectl("delete", "pod", "echo", "--timeout=60s")
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def test_in_cluster_config_with_the_official_client_and_rbac(kubectl: Kubectl) -> None:
    port = random.randint(32001, 34000)
    kubectl("create", "namespace", "native-rbac")
    kubectl("-n", "native-rbac", "create", "service", "clusterip", "backend", "--tcp=80:8080")
    kubectl("-n", "native-rbac", "apply", "-f", "-", input=_pod("watcher", ["--port", str(port)]))
    kubectl("-n", "native-rbac", "wait", "--for=condition=Ready", "pod/watcher", "--timeout=60s")
    ip = kubectl("-n", "native-rbac", "get", "pod", "watcher", "-o", "jsonpath={.status.podIP}").stdout

    def services() -> str:
        with urllib.request.urlopen(f"http://{ip}:{port}/incluster", timeout=30) as answer:
            return answer.read().decode()

    assert "403" in services()  # a real token of system:serviceaccount:native-rbac:default, which may not list
    kubectl("-n", "native-rbac", "create", "role", "svc-reader", "--verb=get,list,watch", "--resource=services")
    kubectl("-n", "native-rbac", "create", "rolebinding", "svc-reader", "--role=svc-reader",
            "--serviceaccount=native-rbac:default")  # fmt: skip
    listed = json.loads(eventually(services, '"services"'))
    assert listed == {"namespace": "native-rbac", "services": ["backend"]}
    kubectl("delete", "namespace", "native-rbac", "--wait=false")


def test_crash_restarts_with_back_off(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=_pod("crasher", ["--port", "0", "--exit-after", "0.2", "--exit-code", "3"]))
    jsonpath = "jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].lastState}"
    out = eventually(lambda: kubectl("get", "pod", "crasher", "-o", jsonpath).stdout, "CrashLoopBackOff", 60)
    assert '"exitCode":3' in out
    assert int(kubectl("get", "pod", "crasher", "-o", "jsonpath={.status.containerStatuses[0].restartCount}").stdout)
    kubectl("delete", "pod", "crasher", "--wait=false")


def test_an_elf_image_still_fails_as_before(kubectl: Kubectl) -> None:
    kubectl("run", "elf", "--image=docker.io/library/elf-app:1", "--image-pull-policy=Never", "--restart=Never")
    jsonpath = "jsonpath={.status.containerStatuses[0].state.terminated.message}"
    out = eventually(lambda: kubectl("get", "pod", "elf", "-o", jsonpath).stdout, "cannot start Linux")
    assert "the labkit sandbox cannot start Linux (non-wasm) image docker.io/library/elf-app:1" in out
    kubectl("delete", "pod", "elf", "--wait=false")
