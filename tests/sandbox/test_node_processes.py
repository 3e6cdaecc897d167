"""Kubelets as processes: a node that dies goes NotReady alone, and ``sandbox up`` brings it back with its pods.

A private daemon per test (these tests kill its nodes), real kubelet processes, real kubectl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.containerd import ContainerdPaths, RuntimeSpec, runtime_tables
from labkit.errors import SandboxError
from labkit.sandbox import client as daemon

pytestmark = pytest.mark.slow
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
KubectlFor = Callable[[Path], Kubectl]

AGENT = "labkit-agent-0"
RUNNING_POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: steady}}
spec:
  runtimeClassName: wasmedge
  nodeName: {AGENT}
  containers: [{{name: demo, image: labkit/wasi-demo:latest}}]
"""


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "sandbox"
    yield home
    daemon.stop(home=home)


def node_pid(info: daemon.SandboxInfo, name: str) -> int:
    pid = next(p.pid for p in info.node_processes if p.name == name)
    assert pid is not None
    return pid


def ready_condition(kubectl: Kubectl, node: str) -> dict[str, Any]:
    conditions = json.loads(kubectl("get", "node", node, "-o", "json").stdout)["status"]["conditions"]
    return dict(next(c for c in conditions if c["type"] == "Ready"))


def test_a_killed_node_goes_not_ready_alone_and_sandbox_up_brings_it_back_with_its_pods(
    home: Path, kubectl_for: KubectlFor
) -> None:
    info = daemon.ensure_running(nodes=2, home=home)
    kubectl = kubectl_for(home)
    assert [(p.name, p.state) for p in info.node_processes] == [("labkit-server-0", "Ready"), (AGENT, "Ready")]
    assert len({info.pid, *(p.pid for p in info.node_processes)}) == 3  # three processes
    kubectl("apply", "-f", "-", input=RUNNING_POD)
    wait_for(
        lambda: "true" in kubectl("get", "pod", "steady", "-o", "jsonpath={.status.containerStatuses[0].ready}").stdout,
        "steady Ready",
    )
    lease = json.loads(kubectl("get", "lease", AGENT, "-n", "kube-node-lease", "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == AGENT and lease["spec"]["leaseDurationSeconds"] > 0

    with pytest.raises(SandboxError, match="the sandbox has no node 'labkit-agent-9'"):
        daemon.kill_node("labkit-agent-9", home=home)
    assert daemon.kill_node(AGENT, home=home) == node_pid(info, AGENT)  # SIGKILL, as a power cut
    ready = wait_for(lambda: (c := ready_condition(kubectl, AGENT))["status"] == "Unknown" and c, "NotReady")
    assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    assert ready_condition(kubectl, "labkit-server-0")["status"] == "True"  # the other node and the API serve on
    taints = json.loads(kubectl("get", "node", AGENT, "-o", "jsonpath={.spec.taints}").stdout)
    assert {(t["key"], t["effect"]) for t in taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    pod_ready = kubectl("get", "pod", "steady", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
    assert pod_ready.stdout == "False"  # MarkPodsNotReady
    down = daemon.status(home=home)
    assert down is not None and [p.state for p in down.node_processes] == ["Ready", "missing"]
    with pytest.raises(SandboxError, match=f"node {AGENT} is not running"):
        daemon.kill_node(AGENT, home=home)

    up = daemon.ensure_running(home=home)  # labkit sandbox up
    assert [p.state for p in up.node_processes] == ["Ready", "Ready"] and node_pid(up, AGENT) != node_pid(info, AGENT)
    wait_for(lambda: not kubectl("get", "node", AGENT, "-o", "jsonpath={.spec.taints}").stdout, "the taints to go")
    restarted = wait_for(
        lambda: (
            (s := json.loads(kubectl("get", "pod", "steady", "-o", "json").stdout)["status"]["containerStatuses"][0])[
                "ready"
            ]
            and s
        ),
        "steady running again",
    )
    assert restarted["restartCount"] == 1 and "running" in restarted["state"]


def test_the_oom_killer_takes_a_node_process_before_the_daemon(home: Path) -> None:
    # a node out of memory dies alone: the kernel picks the highest oom_score_adj, and a SIGKILLed node leaves
    # the API server serving (the test above)
    info = daemon.ensure_running(nodes=1, home=home)

    def score(pid: int) -> int:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text())

    node = node_pid(info, "labkit-server-0")
    assert score(node) == 1000 and score(info.pid) < 1000


def test_status_lists_the_processes_and_resizing_starts_and_stops_node_processes(home: Path) -> None:
    daemon.ensure_running(nodes=1, home=home)
    two = daemon.ensure_running(nodes=2, home=home)
    assert [p.name for p in two.node_processes] == ["labkit-server-0", AGENT]
    agent_pid = node_pid(two, AGENT)
    env = {**os.environ, "LABKIT_HOME": str(home.parent)}
    shown = subprocess.run(
        [sys.executable, "-m", "labkit.cli", "sandbox", "status", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    status = json.loads(shown.stdout)
    assert status["apiServerPid"] == two.pid
    assert [(n["name"], n["pid"], n["state"]) for n in status["node_processes"]] == [
        ("labkit-server-0", node_pid(two, "labkit-server-0"), "Ready"),
        (AGENT, agent_pid, "Ready"),
    ]
    one = daemon.ensure_running(nodes=1, home=home)
    assert [p.name for p in one.node_processes] == ["labkit-server-0"]
    wait_for(lambda: not Path(f"/proc/{agent_pid}").exists() or "Z" in _proc_state(agent_pid), "the node to stop")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def test_restarting_a_node_process_rereads_containerd_and_reports_a_config_it_rejects(
    home: Path, kubectl_for: KubectlFor
) -> None:
    daemon.ensure_running(nodes=1, home=home)
    node = "labkit-server-0"
    paths = ContainerdPaths(home / "nodes" / node)
    paths.template_v3.write_text(
        '{{ template "base" . }}\n' + runtime_tables(3, "wasmedge", RuntimeSpec("io.containerd.wasmedge.v1"))
    )
    with pytest.raises(SandboxError, match=r"containerd did not start: .*declared twice"):
        daemon.restart_node(node, home=home)  # the daemon SIGHUPs the node's kubelet and answers 422
    kubectl = kubectl_for(home)
    ready = wait_for(lambda: (c := ready_condition(kubectl, node))["status"] == "False" and c, "the runtime down")
    assert ready["reason"] == "KubeletNotReady"
    started = time.monotonic()
    again = daemon.ensure_running(home=home)  # labkit.connect() meanwhile: answered at once, the node as it is
    assert time.monotonic() - started < 5 and [p.state for p in again.node_processes] == ["NotReady"]
    paths.template_v3.unlink()
    assert "wasmedge" in daemon.restart_node(node, home=home)["runtimes"]
    wait_for(lambda: ready_condition(kubectl, node)["status"] == "True", "Ready again")


def test_a_node_that_was_only_stalled_comes_back_by_itself_with_its_pods_ready(
    home: Path, kubectl_for: KubectlFor
) -> None:
    info = daemon.ensure_running(nodes=2, home=home)
    kubectl = kubectl_for(home)
    kubectl("apply", "-f", "-", input=RUNNING_POD)
    ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    wait_for(lambda: kubectl("get", "pod", "steady", "-o", ready).stdout == "True", "steady Ready")
    pid = node_pid(info, AGENT)
    os.kill(pid, signal.SIGSTOP)  # a node that stops answering without dying (a hung machine, a paused VM)
    try:
        wait_for(lambda: ready_condition(kubectl, AGENT)["status"] == "Unknown", "NotReady")
        wait_for(lambda: kubectl("get", "pod", "steady", "-o", ready).stdout == "False", "the pod marked not Ready")
    finally:
        os.kill(pid, signal.SIGCONT)
    # its kubelet renews the Lease, posts Ready again and writes its pod's status again: no restart needed
    wait_for(lambda: ready_condition(kubectl, AGENT)["status"] == "True", "Ready again")
    wait_for(lambda: kubectl("get", "pod", "steady", "-o", ready).stdout == "True", "the pod Ready again")
    wait_for(lambda: not kubectl("get", "node", AGENT, "-o", "jsonpath={.spec.taints}").stdout, "the taints to go")
    assert kubectl("get", "pod", "steady", "-o", "jsonpath={.status.containerStatuses[0].restartCount}").stdout == "0"


def test_a_node_process_leaves_certificate_making_to_the_daemon() -> None:
    """cryptography (~15 MB of RSS) makes the CA once, in the daemon; a kubelet only trusts it (an ssl context)."""
    code = "import sys, labkit.sandbox.kubelet.__main__; print(sorted(m for m in sys.modules if 'cryptography' in m))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"


def test_a_daemon_that_cannot_start_its_nodes_is_stopped_not_left_half_up(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nodes_fail(*_: object) -> None:
        raise SandboxError("the nodes did not start", "read the log")

    monkeypatch.setattr(daemon, "_ensure_nodes", nodes_fail)
    with pytest.raises(SandboxError, match="the nodes did not start"):
        daemon.ensure_running(nodes=1, home=home)
    assert daemon.status(home) is None and not (home / "server.json").exists()
    assert not [line for line in _daemons() if str(home) in line]  # no daemon of this home survives
    monkeypatch.undo()
    running = daemon.ensure_running(nodes=1, home=home)
    monkeypatch.setattr(daemon, "_ensure_nodes", nodes_fail)
    with pytest.raises(SandboxError):
        daemon.ensure_running(nodes=1, home=home)
    assert daemon.status(home) is not None and daemon.status(home).pid == running.pid  # one it did not start stays


def test_node_counts_are_bounded_on_both_sides_of_the_daemon(home: Path) -> None:
    from labkit.sandbox import netmap

    with pytest.raises(SandboxError, match=f"at most {netmap.MAX_NODES} nodes"):
        daemon.ensure_running(nodes=netmap.MAX_NODES + 1, home=home)
    assert daemon.status(home) is None  # refused before anything started
    info = daemon.ensure_running(nodes=1, home=home)
    paths = daemon.sandbox_paths(home)
    for count in (500, -1, "3", True, 2.5):
        with pytest.raises(urllib.error.HTTPError) as refused:
            daemon._api(info.server, paths, "POST", "/labkit/nodes", {"count": count})
        assert refused.value.code == 422, count
    assert [p.name for p in daemon.status(home).node_processes] == ["labkit-server-0"]


def _daemons() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "labkit.sandbox.daemon" in line]
