"""Evictions and PodDisruptionBudgets, and the taint eviction controller, in process.

Expected wording: pkg/registry/core/pod/storage/eviction.go (429 and its DisruptionBudget cause),
pkg/controller/tainteviction/taint_eviction.go (TaintManagerEviction)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pytest

import tests.sandbox.controllers_harness as harness
from labkit.sandbox.api.eviction import PDBS, evict
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.conditions import condition
from labkit.sandbox.controllers.disruption import run_disruption_controller
from labkit.sandbox.controllers.podutil import PODS
from labkit.sandbox.controllers.taints import NODES, run_taint_eviction_controller
from labkit.sandbox.nodes import ensure_nodes
from tests.sandbox.controllers_harness import NS, events, kubelet, until

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes


def running(
    core: ApiCore, body: Callable[[], Awaitable[None]], loop: Callable[[ApiCore], Coroutine[Any, Any, None]]
) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(loop(core))
        try:
            await asyncio.wait_for(body(), 15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def ready_pod(core: ApiCore, name: str, node: str | None = None, **spec: Any) -> dict[str, Any]:
    pod = {
        "metadata": {"name": name, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "main", "image": "demo:1"}], **spec},
    }
    core.create(PODS, NS, pod)
    if node:
        core.bind(NS, name, {"target": {"name": node}})
    return kubelet(core, core.get(PODS, NS, name))


def eviction(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}}


def pdb_status(core: ApiCore) -> dict[str, Any]:
    status: dict[str, Any] = core.get(PDBS, NS, "db").get("status") or {}
    return status


def test_an_eviction_that_would_break_the_budget_is_refused_with_429(core: ApiCore) -> None:
    for i in range(3):
        ready_pod(core, f"db-{i}")
    core.create(
        PDBS, NS, {"metadata": {"name": "db"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}}
    )

    async def body() -> None:
        await until("budget", lambda: pdb_status(core).get("disruptionsAllowed") == 1)
        assert {k: pdb_status(core)[k] for k in ("currentHealthy", "desiredHealthy", "expectedPods")} == {
            "currentHealthy": 3,
            "desiredHealthy": 2,
            "expectedPods": 3,
        }
        assert evict(core, NS, "db-0", eviction("db-0"))["status"] == "Success"
        assert pdb_status(core)["disruptionsAllowed"] == 0 and "db-0" in pdb_status(core)["disruptedPods"]
        await until("db-0 gone", lambda: len(core.list(PODS, NS)["items"]) == 2)
        await until("budget recomputed", lambda: pdb_status(core).get("currentHealthy") == 2)
        with pytest.raises(StatusError) as refused:
            evict(core, NS, "db-1", eviction("db-1"))
        e = refused.value
        assert (e.code, e.reason, e.message) == (
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
        assert e.details == {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget db needs 2 healthy pods and has 2 currently",
                }
            ]
        }
        assert core.get(PODS, NS, "db-1")  # still there
        assert (condition(core.get(PDBS, NS, "db"), "DisruptionAllowed") or {}).get("reason") == "InsufficientPods"

    running(core, body, run_disruption_controller)


def test_eviction_without_a_budget_deletes_and_a_wrong_name_or_second_budget_is_refused(core: ApiCore) -> None:
    ready_pod(core, "db-0")
    with pytest.raises(StatusError) as wrong:
        evict(core, NS, "db-0", eviction("other"))
    assert (wrong.value.code, wrong.value.message) == (400, "name in URL does not match name in Eviction object")
    for name in ("a", "b"):
        core.create(
            PDBS,
            NS,
            {"metadata": {"name": name}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}},
        )
    with pytest.raises(StatusError) as two:
        evict(core, NS, "db-0", eviction("db-0"))
    assert two.value.code == 500 and "more than one PodDisruptionBudget" in two.value.message
    # a budget not yet processed by the disruption controller answers 429, as upstream
    core.delete(PDBS, NS, "b")
    with pytest.raises(StatusError) as pending:
        evict(core, NS, "db-0", eviction("db-0"))
    assert pending.value.code == 429
    assert (
        pending.value.details
        and "is still being processed by the server" in pending.value.details["causes"][0]["message"]
    )
    core.delete(PDBS, NS, "a")
    assert evict(core, NS, "db-0", eviction("db-0"))["status"] == "Success"
    with pytest.raises(StatusError) as gone:
        core.get(PODS, NS, "db-0")
    assert gone.value.code == 404


def taint(core: ApiCore, node: str, key: str = "maintenance") -> None:
    body = {"spec": {"taints": [{"key": key, "value": "true", "effect": "NoExecute"}]}}
    core.patch(NODES, None, node, "application/merge-patch+json", json.dumps(body).encode())


def test_a_noexecute_taint_evicts_pods_that_do_not_tolerate_it(core: ApiCore) -> None:
    (node,) = ensure_nodes(core, 1)
    ready_pod(core, "plain", node)
    brief = {"key": "maintenance", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}
    ready_pod(core, "brief", node, tolerations=[brief])
    ready_pod(core, "forever", node, tolerations=[{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}])

    def terminating() -> set[str]:
        return {p["metadata"]["name"] for p in core.list(PODS, NS)["items"] if p["metadata"].get("deletionTimestamp")}

    async def body() -> None:
        await asyncio.sleep(0.2)
        assert terminating() == set()  # no taint, no eviction
        taint(core, node)
        await until("plain evicted", lambda: terminating() == {"plain"})
        assert ("TaintManagerEviction", f"Marking for deletion Pod {NS}/plain") in events(core, "plain")
        target = condition(core.get(PODS, NS, "plain"), "DisruptionTarget")
        assert target is not None and target["reason"] == "DeletionByTaintManager"
        await until("brief evicted after its tolerationSeconds", lambda: terminating() == {"plain", "brief"}, within=3)
        await asyncio.sleep(0.3)
        assert "forever" not in terminating()

    running(core, body, run_taint_eviction_controller)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"gracePeriodSeconds": "0; rm -rf /"}, "DeleteOptions.deleteOptions.gracePeriodSeconds of type int64"),
        ({"gracePeriodSeconds": True}, "gracePeriodSeconds"),
        ({"propagationPolicy": ["Orphan"]}, "propagationPolicy"),
        ({"preconditions": "uid"}, "preconditions"),
        ("everything", "Eviction.deleteOptions of type v1.DeleteOptions"),
    ],
)
def test_an_eviction_with_mistyped_delete_options_is_a_400_and_deletes_nothing(
    core: ApiCore, options: Any, field: str
) -> None:
    ready_pod(core, "db-0")
    with pytest.raises(StatusError) as refused:
        evict(core, NS, "db-0", {**eviction("db-0"), "deleteOptions": options})
    assert refused.value.code == 400 and field in refused.value.message
    assert not core.get(PODS, NS, "db-0")["metadata"].get("deletionTimestamp")
