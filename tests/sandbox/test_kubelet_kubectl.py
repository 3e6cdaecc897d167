"""The sandbox kubelet through the real kubectl against a real 3-node sandbox daemon (issue 4's "Must show")."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.containerd import ContainerdPaths, RuntimeSpec, runtime_tables
from labkit.host import SandboxHost
from labkit.imagestore import ImageStore
from labkit.sandbox import client as daemon
from tests.sandbox.kubectl_harness import Kubectl, eventually, wasm_workload
from tests.sandboxes import sandbox_daemon


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubelet-home") / "sandbox"


@pytest.fixture(scope="module")
def kubectl(home: Path, kubectl_for: Callable[[Path], Kubectl]) -> Iterator[Kubectl]:
    """kubectl against a 3-node sandbox of its own (the session sandbox has 2 nodes)."""
    with sandbox_daemon(home.parent, nodes=3):
        yield kubectl_for(home)


DEPLOYMENT = wasm_workload("Deployment", "demo", replicas=3)


def test_wasmedge_deployment_rolls_out_over_three_nodes_and_logs(kubectl: Kubectl) -> None:
    assert kubectl("get", "runtimeclass", "wasmedge", "-o", "jsonpath={.handler}").stdout == "wasmedge"
    kubectl("apply", "-f", "-", input=DEPLOYMENT)
    out = kubectl("rollout", "status", "deployment/demo", "--timeout=30s").stdout
    assert 'deployment "demo" successfully rolled out' in out
    nodes = kubectl("get", "pods", "-l", "app=demo", "-o", "jsonpath={.items[*].spec.nodeName}").stdout.split()
    assert sorted(nodes) == ["labkit-agent-0", "labkit-agent-1", "labkit-server-0"]
    eventually(
        lambda: kubectl("logs", "deployment/demo").stdout,
        "[wasi-demo] heartbeat 1: still running inside a wasm sandbox.",
    )
    kubectl("delete", "deployment", "demo", "--wait=false")


JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: three}
spec:
  backoffLimit: 0
  template:
    spec:
      runtimeClassName: wasmedge
      restartPolicy: Never
      containers:
      - {name: demo, image: docker.io/labkit/wasi-demo:latest, args: [exit, "3"]}
"""


def test_job_exit_3_fails_with_exit_code_3(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=JOB)
    kubectl("wait", "--for=condition=Failed", "job/three", "--timeout=30s")
    described = kubectl("describe", "pod", "-l", "job-name=three").stdout
    assert re.search(r"^Status:\s+Failed$", described, re.MULTILINE), described
    assert re.search(r"Reason:\s+Error\n\s+Exit Code:\s+3\n", described), described


def _pod(name: str, spec: str) -> str:
    return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def test_describe_shows_the_k3s_wording_for_handler_and_arg0_failures(kubectl: Kubectl, home: Path) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: wasm}\nhandler: wasm\n",
    )
    kubectl(
        "apply",
        "-f",
        "-",
        input=_pod(
            "mismatch",
            """  runtimeClassName: wasm
  nodeSelector: {kubernetes.io/hostname: labkit-server-0}
  restartPolicy: Never
  containers: [{name: demo, image: docker.io/labkit/wasi-demo:latest, args: [echo, fixed]}]
""",
        ),
    )
    kubectl(
        "apply",
        "-f",
        "-",
        input=_pod(
            "arg0",
            """  runtimeClassName: wasmedge
  containers: [{name: demo, image: docker.io/labkit/wasi-demo:compat, command: [/wasi-demo]}]
""",
        ),
    )
    eventually(
        lambda: kubectl("describe", "pod", "mismatch").stdout,
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: "
        'no runtime for "wasm" is configured',
    )
    described = eventually(lambda: kubectl("describe", "pod", "arg0").stdout, "CrashLoopBackOff")
    assert "wasmedge executor can't handle spec" in described and "StartError" in described
    # the shim's note stays in the shim's log, and labkit's hints stay out of what the node reports
    assert "arg0 must be" not in described and "(labkit: " not in described
    # a container whose start failed was created: its log exists and is empty, as on k3s
    assert kubectl("logs", "arg0").stdout == ""

    # the fix, as on k3s: a runtime table named like the handler, then restart k3s on that node
    host = SandboxHost(home / "nodes" / "labkit-server-0", ImageStore(home / "images"), sandbox_home=home)
    ContainerdPaths(host.node_root).template_v3.write_text(
        '{{ template "base" . }}\n' + runtime_tables(3, "wasm", RuntimeSpec("io.containerd.wasmedge.v1"))
    )
    assert "wasm" in host.restart_k3s()["runtimes"]
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/mismatch", "--timeout=20s")
    # stdout and stderr both, as kubectl logs shows them (two pipes: their lines may interleave either way)
    assert sorted(kubectl("logs", "mismatch").stdout.splitlines()) == ["exiting", "fixed"]


def test_image_errors_and_previous_logs(kubectl: Kubectl) -> None:
    kubectl("run", "never", "--image=wasi-demo:latest", "--image-pull-policy=Never", "--restart=Never")
    eventually(lambda: kubectl("get", "pod", "never").stdout, "ErrImageNeverPull")
    # the kubelet's validateContainerLogStatus: a container that never started is waiting for its reason
    never = kubectl("logs", "never", check=False)
    assert never.returncode != 0
    assert 'container "never" in pod "never" is waiting to start: ErrImageNeverPull' in never.stderr
    kubectl(
        "apply",
        "-f",
        "-",
        input=_pod(
            "again",
            """  runtimeClassName: wasmedge
  containers: [{name: demo, image: docker.io/labkit/wasi-demo:latest, args: [echo, round]}]
""",
        ),
    )
    eventually(
        lambda: kubectl("get", "pod", "again").stdout, "CrashLoopBackOff"
    )  # Always restarts a completed container
    assert sorted(kubectl("logs", "again", "--previous").stdout.splitlines()) == ["exiting", "round"]


def test_logs_follow_ends_with_the_container(kubectl: Kubectl) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=_pod(
            "sleeper",
            """  runtimeClassName: wasmedge
  restartPolicy: Never
  containers: [{name: demo, image: docker.io/labkit/wasi-demo:latest, args: [sleep, "1"]}]
""",
        ),
    )
    kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=20s")
    started = time.monotonic()
    assert kubectl("logs", "-f", "sleeper").stdout == "exiting\n"
    assert time.monotonic() - started < 10


@pytest.mark.slow  # restarts a real daemon
def test_running_pods_come_back_after_a_daemon_restart(kubectl: Kubectl, home: Path) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=_pod(
            "survivor",
            """  runtimeClassName: wasmedge
  containers: [{name: demo, image: docker.io/labkit/wasi-demo:latest}]
""",
        ),
    )
    kubectl("wait", "--for=condition=Ready", "pod/survivor", "--timeout=20s")
    ip = kubectl("get", "pod", "survivor", "-o", "jsonpath={.status.podIP}").stdout
    daemon.stop(home=home)
    daemon.ensure_running(home=home)  # a node reboot for the pods: containers start again, restartCount + 1
    kubectl("wait", "--for=jsonpath={.status.containerStatuses[0].restartCount}=1", "pod/survivor", "--timeout=20s")
    kubectl("wait", "--for=condition=Ready", "pod/survivor", "--timeout=20s")
    assert kubectl("get", "pod", "survivor", "-o", "jsonpath={.status.podIP}").stdout == ip
    eventually(lambda: kubectl("logs", "survivor").stdout, "[wasi-demo] heartbeat 1")
