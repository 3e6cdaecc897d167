"""``kubectl exec`` into a *native* pod, the real path: kubectl 1.32 and the official Python client → the sandbox
API server → the pod's kubelet (its exec endpoint, kubelet/execserver.py) → the command in the container.

A real 2-node sandbox daemon runs labkit's echo-server image as a native pod; the only program its image can
run is the echo server, so the commands are the echo server with arguments (``--help``, an argparse error, a
server that exits with a code, one that runs until the pod goes).
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from labkit.apps import build_app_image
from labkit.imagestore import ImageStore
from tests.sandboxes import is_pod_ip

if TYPE_CHECKING:
    from tests.sandbox.conftest import Kubectl

pytestmark = pytest.mark.slow
IMAGE = "labkit.local/echo-server:0.1.0"
PROGRAM = "/app/echo_server.py"
NS = "t-exec-native"


def _pod(name: str, port: int) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: echo
    image: {IMAGE}
    imagePullPolicy: Never
    args: ["--port", "{port}"]
"""


@pytest.fixture(scope="module")
def native(kubectl: Kubectl, sandbox_home: Path) -> Iterator[str]:
    """A running native echo-server pod in a namespace of its own; yields the pod's name."""
    home = sandbox_home / "sandbox"
    ImageStore(home / "images").import_archive(
        build_app_image("echo-server", "0.1.0", sandbox_home / "exec-echo.tar").path
    )
    kubectl("create", "namespace", NS)
    kubectl("apply", "-n", NS, "-f", "-", input=_pod("echo", random.randint(34001, 36000)))
    kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/echo", "--timeout=60s")
    yield "echo"
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_kubectl_exec_runs_the_program_with_its_output_and_exit_code(kubectl: Kubectl, native: str) -> None:
    done = kubectl("exec", "-n", NS, native, "--", PROGRAM, "--help")
    assert done.stdout.startswith("usage: echo-server [-h]") and "--exit-after SECONDS" in done.stdout
    via_interpreter = kubectl("exec", "-n", NS, native, "--", "python3", PROGRAM, "--help")
    assert via_interpreter.stdout == done.stdout
    bad = kubectl("exec", "-n", NS, native, "--", PROGRAM, "--no-such-flag", check=False)
    assert bad.returncode == 2  # argparse's exit code, through the kubelet, the API server and kubectl
    assert "echo-server: error: unrecognized arguments: --no-such-flag" in bad.stderr
    assert "command terminated with exit code 2" in bad.stderr
    port = str(random.randint(36001, 38000))
    ended = kubectl(
        "exec", "-n", NS, native, "--", PROGRAM, "--port", port, "--exit-after", "0.2", "--exit-code", "3", check=False
    )
    assert ended.returncode == 3
    listening = ended.stdout.removeprefix("echo-server listening on ")
    assert is_pod_ip(listening.rsplit(":", 1)[0])  # the pod's IP: the container's network view


def test_an_argv_the_image_cannot_run_gets_runcs_words(kubectl: Kubectl, native: str) -> None:
    done = kubectl("exec", "-n", NS, native, "--", "sh", "-c", "id", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: Internal error occurred: error executing command in container: failed to exec in container: "
        'failed to start exec "'
    )
    assert done.stderr.rstrip().endswith(
        'OCI runtime exec failed: exec failed: unable to start container process: exec: "sh": '
        "executable file not found in $PATH: unknown"
    )
    code = kubectl("exec", "-n", NS, native, "--", "python3", "-c", "print(1)", check=False)
    assert code.returncode == 1 and "runs only the image's program with its interpreter" in code.stderr


def test_python_client_stream_reads_output_and_exit_code(api_client, native: str) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    api = client.CoreV1Api(api_client)
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        native,
        NS,
        command=[PROGRAM, "--port", "x"],
        stdout=True,
        stderr=True,
        stdin=True,
        tty=False,
        _preload_content=False,
    )
    ws.write_stdin("ignored\n")
    ws.run_forever(timeout=20)
    assert "argument --port: invalid int value: 'x'" in ws.read_stderr()
    assert ws.returncode == 2
    status = json.loads(ws.read_channel(3) or "{}") or {}
    assert status == {} or status.get("reason") == "NonZeroExitCode"


def test_rbac_create_pods_exec_is_still_enforced(kubectl: Kubectl, native: str) -> None:
    kubectl("create", "serviceaccount", "reader", "-n", NS)
    kubectl("create", "role", "reader", "--verb=get,list,watch", "--resource=pods", "-n", NS)
    kubectl("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={NS}:reader", "-n", NS)
    token = kubectl("create", "token", "reader", "-n", NS).stdout.strip()
    denied = kubectl("--token", token, "exec", "-n", NS, native, "--", PROGRAM, "--help", check=False)
    assert denied.returncode == 1
    assert f'cannot create resource "pods/exec" in API group "" in the namespace "{NS}"' in denied.stderr
    kubectl("create", "role", "execer", "--verb=create", "--resource=pods/exec", "-n", NS)
    kubectl("create", "rolebinding", "execer", "--role=execer", f"--serviceaccount={NS}:reader", "-n", NS)
    allowed = kubectl("--token", token, "exec", "-n", NS, native, "--", PROGRAM, "--help")
    assert allowed.stdout.startswith("usage: echo-server")


def test_the_kubelet_endpoint_refuses_a_caller_without_the_api_servers_token(kubectl: Kubectl, native: str) -> None:
    import urllib.error
    import urllib.request

    node = kubectl("get", "pod", "-n", NS, native, "-o", "jsonpath={.spec.nodeName}").stdout
    ip = kubectl("get", "node", node, "-o", "jsonpath={.status.addresses[0].address}").stdout
    port = kubectl("get", "node", node, "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}").stdout
    assert port != "10250"  # the port the kubelet serves, as it posted it
    uid = kubectl("get", "pod", "-n", NS, native, "-o", "jsonpath={.metadata.uid}").stdout
    url = f"http://{ip}:{port}/exec/{NS}/{native}/{uid}/echo?command={PROGRAM}&command=--help"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401


def test_deleting_the_pod_ends_the_exec_session(kubectl: Kubectl, native: str) -> None:
    kubectl("apply", "-n", NS, "-f", "-", input=_pod("doomed", random.randint(38001, 40000)))
    kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/doomed", "--timeout=60s")
    port = str(random.randint(40001, 42000))
    session = subprocess.Popen(
        [kubectl.binary, "exec", "-n", NS, "doomed", "--", PROGRAM, "--port", port],
        env=kubectl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout = session.stdout
        assert stdout is not None
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        assert first and first[0].startswith("echo-server listening on ") and first[0].rstrip().endswith(port)
        assert is_pod_ip(first[0].removeprefix("echo-server listening on ").rsplit(":", 1)[0])
        started = time.monotonic()
        kubectl("delete", "pod", "-n", NS, "doomed", "--wait=false")
        code = session.wait(30)
        assert time.monotonic() - started < 30
        assert code == 137, session.stderr.read() if session.stderr else ""  # SIGKILLed with its container
    finally:
        if session.poll() is None:
            session.kill()


def test_exec_into_a_container_that_is_not_running_gets_the_kubelets_error(kubectl: Kubectl, native: str) -> None:
    port = random.randint(42001, 44000)
    crashing = _pod("crashing", port).replace(f'"{port}"]', f'"{port}", "--exit-after", "0", "--exit-code", "1"]')
    kubectl("apply", "-n", NS, "-f", "-", input=crashing)
    deadline = time.monotonic() + 60
    while "terminated" not in kubectl("get", "pod", "-n", NS, "crashing", "-o", "json").stdout:
        assert time.monotonic() < deadline, "the crashing pod never ended once"
        time.sleep(0.5)
    done = None
    for _ in range(20):  # between two restarts (back-off), the container is not running
        done = kubectl("exec", "-n", NS, "crashing", "--", PROGRAM, "--help", check=False)
        if done.returncode != 0 and "container not found" in done.stderr:
            break
        time.sleep(0.5)
    assert done is not None and done.stderr.strip() == (
        'error: Internal error occurred: unable to upgrade connection: container not found ("echo")'
    )


def test_kubectl_exec_into_a_wasm_pod_still_gets_runwasis_answer(kubectl: Kubectl, native: str) -> None:
    """The kubelet answers for its wasm container as runwasi's shim does (no Exec in its task service)."""
    kubectl("apply", "-n", NS, "-f", "-", input=WASM_ECHO)
    kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/wasm", "--timeout=60s")
    done = kubectl("exec", "-n", NS, "wasm", "--", "sh", "-c", "echo hi", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: Internal error occurred: error executing command in container: failed to exec in container: "
        'failed to create exec "'
    )
    assert done.stderr.rstrip().endswith('": /containerd.task.v2.Task/Exec is not supported: not found')


WASM_ECHO = """
apiVersion: v1
kind: Pod
metadata: {name: wasm}
spec:
  runtimeClassName: wasmedge
  containers:
  - name: echo
    image: docker.io/labkit/echo-server:latest
    args: ["8080"]
"""
