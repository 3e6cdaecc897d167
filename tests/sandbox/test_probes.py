"""Probes end to end: a real daemon, the node's kubelet, real wasm health-servers on their pod addresses.

The health-server answers ``/healthz`` with 200 while a file exists in its hostPath volume, else 500, so a test
turns a pod's health on and off by writing under the node's root, as an operator would on the node.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.sandbox.kubeclient.https import resource_path
from tests.sandbox.test_kubelet import PODS, Cluster

IMAGE = "labkit/health-server:latest"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("probes"))
    yield c
    c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health_pod(
    cluster: Cluster, name: str, probes: Callable[[int], dict[str, Any]], restart: str = "Always"
) -> tuple[int, Path]:
    """A health-server pod labelled app=<name> with *probes(port)*; returns its port and the node directory that
    holds its health file (absent at first)."""
    port = free_port()
    container = {"name": "demo", "image": IMAGE, "args": [str(port), "/health/ok"], **probes(port)}
    container["volumeMounts"] = [{"name": "health", "mountPath": "/health"}]
    volume = {"name": "health", "hostPath": {"path": f"/var/lib/probes/{name}", "type": "DirectoryOrCreate"}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "runtimeClassName": "wasmedge",
            "restartPolicy": restart,
            "containers": [container],
            "volumes": [volume],
        },
    }
    cluster.create(PODS, pod)
    return port, cluster.node_root() / "var/lib/probes" / name


def http_get(port: int, path: str = "/healthz", **more: Any) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 1, **more}


def condition(cluster: Cluster, name: str, kind: str) -> str | None:
    conditions = (cluster.pod(name) or {}).get("status", {}).get("conditions") or ()
    return next((c["status"] for c in conditions if c["type"] == kind), None)


def messages(cluster: Cluster, name: str, reason: str) -> list[str]:
    return [m for _, r, m in cluster.events(name) if r == reason]


def endpoints(cluster: Cluster, name: str) -> tuple[list[str], list[str]]:
    subsets = (cluster.get(resource_path("v1", "endpoints", "default", name)) or {}).get("subsets") or [{}]
    return (
        [a["ip"] for a in subsets[0].get("addresses") or ()],
        [a["ip"] for a in subsets[0].get("notReadyAddresses") or ()],
    )


def test_readiness_probe_drives_ready_and_the_endpoints(cluster: Cluster) -> None:
    port, health = health_pod(cluster, "web", lambda p: {"readinessProbe": http_get(p, failureThreshold=1)})
    cluster.create(
        resource_path("v1", "services", "default"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": port}]},
        },
    )
    ip = cluster.wait_phase("web", "Running", timeout=20)["status"]["podIP"]
    # running, but not ready: the probe fails (no health file), so the address is not ready
    cluster.wait_for(lambda: endpoints(cluster, "web") == ([], [ip]), "a not-ready address", timeout=10)
    status = cluster.container("web")
    assert (status["started"], status["ready"], condition(cluster, "web", "Ready")) == (True, False, "False")
    failed = "Readiness probe failed: HTTP probe failed with statuscode: 500"  # once the server listens
    cluster.wait_for(lambda: failed in messages(cluster, "web", "Unhealthy"), "a failed readiness probe")
    health.mkdir(parents=True, exist_ok=True)
    (health / "ok").write_text("ok")
    cluster.wait_for(lambda: endpoints(cluster, "web") == ([ip], []), "the address to be ready", timeout=10)
    assert condition(cluster, "web", "Ready") == condition(cluster, "web", "ContainersReady") == "True"
    assert cluster.container("web")["ready"] is True
    (health / "ok").unlink()
    cluster.wait_for(lambda: endpoints(cluster, "web") == ([], [ip]), "the address to be not ready again", timeout=10)
    assert condition(cluster, "web", "Ready") == "False"
    assert cluster.container("web")["restartCount"] == 0  # readiness never restarts anything
    assert "GET /healthz (User-Agent: kube-probe/1.32)" in cluster.log("web")


def test_liveness_failure_kills_and_restarts_the_container(cluster: Cluster) -> None:
    health_pod(cluster, "alive", lambda p: {"livenessProbe": http_get(p, failureThreshold=1)})
    cluster.wait_for(lambda: cluster.container("alive").get("restartCount", 0) >= 1, "a restart", timeout=20)
    assert "Container demo failed liveness probe, will be restarted" in messages(cluster, "alive", "Killing")
    assert "Liveness probe failed: HTTP probe failed with statuscode: 500" in messages(cluster, "alive", "Unhealthy")
    last = cluster.container("alive")["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error"


def test_liveness_kill_with_restart_policy_never_leaves_the_container_dead(cluster: Cluster) -> None:
    health_pod(cluster, "once", lambda p: {"livenessProbe": http_get(p, failureThreshold=1)}, restart="Never")
    cluster.wait_phase("once", "Failed", timeout=20)
    assert messages(cluster, "once", "Killing") == ["Container demo failed liveness probe"]
    assert cluster.container("once")["restartCount"] == 0


def test_startup_probe_gates_liveness_and_readiness(cluster: Cluster) -> None:
    def probes(port: int) -> dict[str, Any]:
        return {
            "startupProbe": http_get(port, failureThreshold=100),
            "livenessProbe": http_get(port, "/status/500", failureThreshold=100),
            "readinessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 1},
        }

    _, health = health_pod(cluster, "slowstart", probes)
    cluster.wait_phase("slowstart", "Running", timeout=20)
    cluster.wait_for(lambda: len(messages(cluster, "slowstart", "Unhealthy")) >= 1, "a startup failure", timeout=10)
    unhealthy = messages(cluster, "slowstart", "Unhealthy")
    assert unhealthy == ["Startup probe failed: HTTP probe failed with statuscode: 500"]  # nothing else ran
    assert (cluster.container("slowstart")["started"], cluster.container("slowstart")["ready"]) == (False, False)
    health.mkdir(parents=True, exist_ok=True)
    (health / "ok").write_text("ok")
    cluster.wait_for(lambda: cluster.container("slowstart")["started"], "the container to start", timeout=10)
    ip = cluster.live("slowstart")["status"]["podIP"]
    cluster.wait_for(
        lambda: (
            {
                "Liveness probe failed: HTTP probe failed with statuscode: 500",
                f"Readiness probe failed: dial tcp {ip}:1: connect: connection refused",
            }
            <= set(messages(cluster, "slowstart", "Unhealthy"))
        ),
        "liveness and readiness to run once started",
        timeout=10,
    )
    assert cluster.container("slowstart")["ready"] is False
    assert not messages(cluster, "slowstart", "Killing")  # 100 failures allowed


def test_an_exec_probe_in_a_wasm_pod_errors_with_the_runtimes_words(cluster: Cluster) -> None:
    health_pod(
        cluster,
        "execed",
        lambda p: {"readinessProbe": {"exec": {"command": ["cat", "/health/ok"]}, "periodSeconds": 1}},
    )
    message = cluster.wait_event("execed", "Unhealthy", timeout=20)
    assert message.startswith(
        "Readiness probe errored and resulted in unknown state: rpc error: code = NotFound desc = "
        "failed to exec in container: failed to create exec "
    )
    assert message.endswith("/containerd.task.v2.Task/Exec is not supported: not found")
    assert cluster.container("execed")["ready"] is False and condition(cluster, "execed", "Ready") == "False"
