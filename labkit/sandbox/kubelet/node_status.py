"""The Node's status as its kubelet posts it: capacity, addresses, node info and the Ready condition.

Posted at (re)start and whenever the posted conditions differ from what the kubelet would say
(after the node lifecycle controller marked the node Unknown, for instance), like the kubelet's
``tryUpdateNodeStatus``. Ready says whether containerd runs: it does not when its config was rejected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path
from labkit.sandbox.nodes import ready_status

log = logging.getLogger("labkit.sandbox.kubelet.node_status")

#: How often the kubelet compares the Node's posted conditions with its own (upstream: 10 s).
CHECK_INTERVAL_S = 2.0


def desired_status(
    index: int, runtime_error: str | None, posted: dict[str, Any], kubelet_port: int = 10250
) -> dict[str, Any]:
    """The status to post; transition times kept for conditions whose status did not change."""
    status = ready_status(index, kubelet_port)
    previous = {c["type"]: c for c in posted.get("conditions") or ()}
    for cond in status["conditions"]:
        if cond["type"] == "Ready" and runtime_error is not None:
            cond.update(status="False", reason="KubeletNotReady", message=f"container runtime is down: {runtime_error}")
        old = previous.get(cond["type"])
        if old is not None and old.get("status") == cond["status"]:
            cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
    return status


def _differs(posted: dict[str, Any], wanted: dict[str, Any]) -> bool:
    seen = {c["type"]: (c.get("status"), c.get("reason")) for c in posted.get("conditions") or ()}
    return any(seen.get(c["type"]) != (c["status"], c["reason"]) for c in wanted["conditions"])


class NodeStatusReporter:
    """Posts one node's status through ``nodes/<name>/status``."""

    def __init__(self, client: KubeClient, name: str, index: int) -> None:
        self.client, self.name, self.index = client, name, index
        self.runtime_error: str | None = None
        self.node_uid: str | None = None
        #: where this kubelet serves exec (kubelet/execserver.py), posted as daemonEndpoints.kubeletEndpoint.Port
        self.kubelet_port = 10250

    async def fetch(self) -> dict[str, Any]:
        """The Node as stored (and its uid, which the Lease's owner reference names)."""
        node = await self.client.get(resource_path("v1", "nodes", None, self.name))
        self.node_uid = node["metadata"].get("uid")
        return node

    async def post(self, node: dict[str, Any] | None = None, only_if_changed: bool = False) -> None:
        """Post the status (against *node* as just fetched, or as fetched now)."""
        node = node if node is not None else await self.fetch()
        posted = node.get("status") or {}
        wanted = desired_status(self.index, self.runtime_error, posted, self.kubelet_port)
        if only_if_changed and not _differs(posted, wanted):
            return
        await self.client.patch(resource_path("v1", "nodes", None, self.name, "status"), {"status": wanted})

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                await self.post(only_if_changed=True)
            except ApiError as err:
                log.warning("status of node %s not posted: %s", self.name, err.problem)
