"""``kubectl drain``, PodDisruptionBudgets and NoExecute taints with the real kubectl 1.32, on a 3-node sandbox of
its own (draining changes nodes, which the session sandbox shares). Wording: kubectl's drain, the API server's
eviction.go, the taint eviction controller's TaintManagerEviction."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sandbox.kubectl_harness import Kubectl, wasm_workload
from tests.sandboxes import sandbox_daemon

APPS = wasm_workload("Deployment", "demo", replicas=3) + "---\n" + wasm_workload("DaemonSet", "agent")

BUDGET = """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: demo}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: demo}}
"""


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory, kubectl_for: Callable[[Path], Kubectl]) -> Iterator[Kubectl]:
    home = tmp_path_factory.mktemp("drain-home") / "sandbox"
    with sandbox_daemon(home.parent, nodes=3):
        run = kubectl_for(home)
        run("apply", "-f", "-", input=APPS)
        run("rollout", "status", "deployment/demo", "--timeout=60s")
        run("rollout", "status", "daemonset/agent", "--timeout=60s")
        yield run


def placement(kubectl: Kubectl, app: str) -> dict[str, str]:
    """Pod name → node, for the app's pods that are not being deleted."""
    out = json.loads(kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)
    return {
        p["metadata"]["name"]: p["spec"].get("nodeName", "")
        for p in out["items"]
        if not p["metadata"].get("deletionTimestamp")
    }


def until(what: str, probe: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_drain_cordons_and_moves_the_pods_but_not_the_daemonset_ones(kubectl: Kubectl) -> None:
    node = "labkit-agent-1"
    assert node in placement(kubectl, "demo").values()  # the scheduler spread 3 replicas over 3 nodes
    out = kubectl("drain", node, "--ignore-daemonsets", "--timeout=60s")
    text = out.stdout + out.stderr
    assert f"node/{node} cordoned" in text and f"node/{node} drained" in text
    assert "Warning: ignoring DaemonSet-managed Pods: default/agent-" in text
    assert "evicted" in text
    assert "SchedulingDisabled" in kubectl("get", "node", node).stdout
    until("3 replicas elsewhere", lambda: sorted(placement(kubectl, "demo").values()).count(node) == 0
          and len(placement(kubectl, "demo")) == 3)  # fmt: skip
    kubectl("rollout", "status", "deployment/demo", "--timeout=60s")
    assert node in placement(kubectl, "agent").values()  # the daemon pod tolerates the cordon and stays
    kubectl("uncordon", node)


def test_a_disruption_budget_stops_the_drain_with_429_and_lets_it_go_when_relaxed(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=BUDGET)
    until(
        "budget observed",
        lambda: (
            json.loads(kubectl("get", "pdb", "demo", "-o", "json").stdout).get("status", {}).get("currentHealthy") == 3
        ),
    )
    node = sorted(placement(kubectl, "demo").values())[0]
    blocked = kubectl("drain", node, "--ignore-daemonsets", "--timeout=7s", check=False)
    assert blocked.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in blocked.stdout + blocked.stderr
    assert len(placement(kubectl, "demo")) == 3  # nothing was evicted
    kubectl("patch", "pdb", "demo", "--type=merge", "-p", '{"spec":{"minAvailable":2}}')
    out = kubectl("drain", node, "--ignore-daemonsets", "--timeout=60s")
    assert f"node/{node} drained" in out.stdout + out.stderr
    kubectl("uncordon", node)
    kubectl("delete", "pdb", "demo")


def test_a_noexecute_taint_evicts_the_pods_that_do_not_tolerate_it(kubectl: Kubectl) -> None:
    kubectl("rollout", "status", "deployment/demo", "--timeout=60s")
    node = sorted(placement(kubectl, "demo").values())[-1]
    victims = [pod for pod, on in placement(kubectl, "demo").items() if on == node]
    kubectl("taint", "node", node, "maintenance=now:NoExecute")
    try:
        until("pods leave the tainted node", lambda: node not in placement(kubectl, "demo").values())
        events = kubectl("get", "events", "--field-selector", "reason=TaintManagerEviction", "-o", "json").stdout
        messages = {e["message"] for e in json.loads(events)["items"]}
        assert {f"Marking for deletion Pod default/{pod}" for pod in victims} <= messages
        until("the daemon pod leaves too", lambda: node not in placement(kubectl, "agent").values())
    finally:
        kubectl("taint", "node", node, "maintenance=now:NoExecute-")
