"""The scheduler in process: spreading, FailedScheduling in kube-scheduler's words, and a retry when a node
changes. Real ApiCore over SQLite; the nodes are sandbox node objects with no kubelet behind them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import controllers_harness as harness
from controllers_harness import NS, must, until

from labkit.sandbox.api.events import EVENTS
from labkit.sandbox.controllers.scheduler import NODES, PODS, run_scheduler
from labkit.sandbox.nodes import ensure_nodes

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes


def pod(name: str, **spec: object) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "demo:1"}], **spec}}


def node_of(core: ApiCore, name: str) -> str | None:
    node: str | None = core.get(PODS, NS, name)["spec"].get("nodeName")
    return node


def scheduling(core: ApiCore, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(run_scheduler(core))
        try:
            await asyncio.wait_for(body(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_pods_spread_over_the_nodes_and_each_gets_a_scheduled_event(core: ApiCore) -> None:
    nodes = ensure_nodes(core, 2)
    for i in range(4):
        core.create(PODS, NS, pod(f"p{i}"))

    async def body() -> None:
        await until("all bound", lambda: all(node_of(core, f"p{i}") for i in range(4)))
        placed = [must(node_of(core, f"p{i}")) for i in range(4)]
        assert sorted(placed) == sorted(nodes * 2)
        scheduled = [e for e in core.list(EVENTS, NS)["items"] if e["reason"] == "Scheduled"]
        assert len(scheduled) == 4 and scheduled[0]["source"]["component"] == "default-scheduler"

    scheduling(core, body)


def test_an_unschedulable_pod_says_why_and_is_retried_when_a_node_changes_in_a_way_that_fits(core: ApiCore) -> None:
    (name,) = ensure_nodes(core, 1)
    core.create(PODS, NS, pod("picky", nodeSelector={"disktype": "ssd"}))

    def failed() -> list[str]:
        return [e["message"] for e in core.list(EVENTS, NS)["items"] if e["reason"] == "FailedScheduling"]

    async def body() -> None:
        await until("FailedScheduling", failed)
        assert failed()[0].startswith("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
        assert node_of(core, "picky") is None
        heartbeat = core.get(NODES, None, name)
        heartbeat["status"]["conditions"][-1]["lastHeartbeatTime"] = "2030-01-01T00:00:00Z"
        core.replace(NODES, None, name, heartbeat, subresource="status")
        await asyncio.sleep(0.1)
        (event,) = [e for e in core.list(EVENTS, NS)["items"] if e["reason"] == "FailedScheduling"]
        assert event["count"] == 1  # a heartbeat cannot make room: the pod is not tried again
        node = core.get(NODES, None, name)
        node["metadata"]["labels"]["disktype"] = "ssd"
        core.replace(NODES, None, name, node)
        await until("bound after the node changed", lambda: node_of(core, "picky") == name)

    scheduling(core, body)
