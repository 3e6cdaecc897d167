"""What the in-process controller tests share: a real ApiCore over SQLite, the controllers on an asyncio
loop, and the test playing the kubelet by writing pod status through the status subresource.

Test modules take the ``core`` fixture as ``core = harness.core``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.events import EVENTS
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.store import Store
from labkit.sandbox.controllers.conditions import condition
from labkit.sandbox.controllers.deployment import DEPLOYMENTS, run_deployment_controller
from labkit.sandbox.controllers.endpoints import run_endpoints_controller
from labkit.sandbox.controllers.job import run_job_controller
from labkit.sandbox.controllers.podutil import PODS, controller_of
from labkit.sandbox.controllers.replicaset import REPLICASETS, run_replicaset_controller

T = TypeVar("T")

NS = "lab"
SERVICES = RESOURCES.served("", "services")


@pytest.fixture
def core(tmp_path: Path) -> Iterator[ApiCore]:
    core = ApiCore(Store(tmp_path / "state.db"))
    core.create(RESOURCES.served("", "namespaces"), None, {"metadata": {"name": NS}})
    yield core
    core.store.close()


def must(value: T | None) -> T:
    """*value*, failing the test when it is None (a condition or timestamp the test needs)."""
    assert value is not None
    return value


def run(core: ApiCore, body: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    """Run *body* with all four controllers on one loop (job back-off shortened to 50 ms)."""

    async def main() -> None:
        tasks = [
            asyncio.ensure_future(c)
            for c in (
                run_deployment_controller(core),
                run_replicaset_controller(core),
                run_job_controller(core, backoff_base=0.05),
                run_endpoints_controller(core),
            )
        ]
        try:
            await asyncio.wait_for(body(), timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


async def until(what: str, probe: Callable[[], Any], within: float = 4.0) -> Any:
    """Wait for *probe()* to be truthy; fail naming *what* and the last value."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.01)


async def settle() -> None:
    """Give the controllers a moment to react to the last write (used before asserting nothing changes)."""
    await asyncio.sleep(0.15)


# ------------------------------------------------------------------------------------------------------ helpers
def workload(kind: str, name: str, pod_spec: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """An apps/v1 *kind* named *name* whose pods (*pod_spec*) are labelled and selected ``app: name``; *spec* adds
    fields (replicas, strategy)."""
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template, **spec},
    }


def deployment(name: str = "web", replicas: int = 3, image: str = "demo:1", **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "containerPort": 8080}]
    pod_spec = {"containers": [{"name": "main", "image": image, "ports": ports}]}
    return workload("Deployment", name, pod_spec, replicas=replicas, **spec)


def job(name: str = "calc", restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": "demo:1"}]}},
            **spec,
        },
    }


def pods(core: ApiCore, **labels: str) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return list(core.list(PODS, NS, label_selector=selector)["items"])


def exactly(n: int, items: list[Any]) -> list[Any] | None:
    """*items* when there are *n* of them (for ``until``)."""
    return items if len(items) == n else None


def replica_sets(core: ApiCore) -> dict[str, dict[str, Any]]:
    return {rs["metadata"]["name"]: rs for rs in core.list(REPLICASETS, NS)["items"]}


def spec_replicas(core: ApiCore) -> dict[str, int]:
    """ReplicaSet name → spec.replicas, by revision annotation order."""
    return {name: rs["spec"]["replicas"] for name, rs in replica_sets(core).items()}


def pods_per_replica_set(core: ApiCore) -> dict[str, int]:
    """ReplicaSet name → its pods not being deleted (what the RS controller has caught up with)."""
    counts = dict.fromkeys(replica_sets(core), 0)
    for pod in pods(core):
        owner = controller_of(pod)
        if owner and owner["kind"] == "ReplicaSet" and not pod["metadata"].get("deletionTimestamp"):
            counts[owner["name"]] = counts.get(owner["name"], 0) + 1
    return counts


def events(core: ApiCore, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in core.list(EVENTS, NS)["items"] if e["involvedObject"]["name"] == name]


_next_ip = iter(range(10, 250))


def kubelet(
    core: ApiCore,
    pod: dict[str, Any],
    *,
    phase: str = "Running",
    ready: bool = True,
    restarts: int = 0,
    exit_code: int | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """Write the status a kubelet would: phase, podIP, Ready condition and one container status."""
    live = core.get(PODS, NS, pod["metadata"]["name"])
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        }
    status = {
        "phase": phase,
        "podIP": ip or live["status"].get("podIP") or f"10.42.0.{next(_next_ip)}",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ],
        "containerStatuses": [
            {
                "name": "main",
                "ready": ready,
                "restartCount": restarts,
                "state": state,
                "image": "demo:1",
                "imageID": "",
                "started": ready,
            }
        ],
    }
    return core.replace(PODS, NS, live["metadata"]["name"], {**live, "status": status}, subresource="status")[0]


def ready_all(core: ApiCore, **labels: str) -> None:
    for pod in pods(core, **labels):
        if not pod["metadata"].get("deletionTimestamp") and condition(pod, "Ready") is None:
            kubelet(core, pod)


def rolled_out(core: ApiCore, name: str = "web") -> dict[str, Any] | None:
    """The Deployment when ``kubectl rollout status`` would call it done (its own checks), else None."""
    d = core.get(DEPLOYMENTS, NS, name)
    status = d.get("status") or {}
    replicas = d["spec"]["replicas"]
    done = (
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
    )
    return d if done else None


def with_condition(core: ApiCore, res: Any, name: str, type_: str, reason: str | None = None) -> dict[str, Any] | None:
    """The object when its condition *type_* is True (or has *reason*), else None."""
    obj = core.get(res, NS, name)
    c = condition(obj, type_) or {}
    return obj if (c.get("reason") == reason if reason else c.get("status") == "True") else None


def update_template(core: ApiCore, name: str, image: str) -> None:
    d = core.get(DEPLOYMENTS, NS, name)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = image
    core.replace(DEPLOYMENTS, NS, name, d)
