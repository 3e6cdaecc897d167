"""The node lifecycle controller: a node whose kubelet stops renewing its Lease goes NotReady, as upstream.

Every :data:`MONITOR_PERIOD_S` it compares each node's Lease (``kube-node-lease/<node>``) with what
it saw before. A Lease that has not moved for :data:`NODE_MONITOR_GRACE_PERIOD_S` (as observed on
this controller's clock, like upstream's ``nodeHealthData``) makes the node's conditions ``Unknown``
(reason ``NodeStatusUnknown``), taints it ``node.kubernetes.io/unreachable`` (NoSchedule and
NoExecute) and marks its pods not Ready (``MarkPodsNotReady``). Once the kubelet is back, its own
status post makes the node Ready and this controller removes the taints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from labkit.sandbox.api.apicore import ApiCore, now_rfc3339
from labkit.sandbox.api.events import record_event
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError

log = logging.getLogger("labkit.sandbox.controllers.nodelifecycle")

NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")
LEASES = RESOURCES.served("coordination.k8s.io", "leases")
LEASE_NAMESPACE = "kube-node-lease"
#: Upstream ``--node-monitor-grace-period`` is 40 s. Sandbox kubelets renew every 2 s, so 8 s (four missed
#: renewals) is as safe, and a learner who kills a node sees it go NotReady while still looking.
NODE_MONITOR_GRACE_PERIOD_S = 8.0
#: Upstream ``--node-monitor-period`` is 5 s.
MONITOR_PERIOD_S = 1.0
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
COMPONENT = "node-controller"
MERGE = "application/merge-patch+json"


def _ready(node: dict[str, Any]) -> str:
    """The node's Ready condition status: True, False or Unknown (no condition yet: Unknown)."""
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return str(cond.get("status", "Unknown"))
    return "Unknown"


def unreachable_taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in (node.get("spec") or {}).get("taints") or () if t.get("key") == UNREACHABLE_TAINT]


class NodeLifecycle:
    """Remembers when each node's Lease last moved, and acts on the nodes whose Lease stopped."""

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        #: node -> (the Lease's renewTime last seen, monotonic time it was first seen)
        self.seen: dict[str, tuple[str, float]] = {}

    def monitor(self) -> None:
        nodes = self.core.list(NODES, None)["items"]
        leases = {
            lease["metadata"]["name"]: (lease.get("spec") or {}).get("renewTime") or ""
            for lease in self.core.list(LEASES, LEASE_NAMESPACE)["items"]
        }
        now = time.monotonic()
        for name in set(self.seen) - {n["metadata"]["name"] for n in nodes}:
            del self.seen[name]
        for node in nodes:
            name = node["metadata"]["name"]
            renewed = leases.get(name, "")
            previous = self.seen.get(name)
            if previous is None or previous[0] != renewed:
                self.seen[name] = previous = (renewed, now)
            try:
                if now - previous[1] > NODE_MONITOR_GRACE_PERIOD_S:
                    if _ready(node) != "Unknown" or not unreachable_taints(node):
                        self.mark_unknown(node)
                elif _ready(node) == "True" and unreachable_taints(node):
                    self.set_taints(node, [])
            except StatusError as err:  # the node went away meanwhile; the next round sees it gone
                log.debug("node %s: %s", name, err.message)

    def mark_unknown(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        now = now_rfc3339()
        conditions = []
        was_ready = _ready(node)
        for posted in (node.get("status") or {}).get("conditions") or ():
            cond = posted
            if posted.get("status") != "Unknown":
                cond = {
                    **posted,
                    "status": "Unknown",
                    "reason": UNKNOWN_REASON,
                    "message": UNKNOWN_MESSAGE,
                    "lastTransitionTime": now,
                }
            conditions.append(cond)
        if was_ready != "Unknown":
            self._patch(NODES, None, name, {"status": {"conditions": conditions}}, "status")
            record_event(
                self.core, node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady", COMPONENT
            )
            self.mark_pods_not_ready(name)
        if not unreachable_taints(node):
            self.set_taints(
                node,
                [
                    {"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now},
                    {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": now},
                ],
            )
        log.info("node %s: lease not renewed for %.0f s, marked NotReady", name, NODE_MONITOR_GRACE_PERIOD_S)

    def set_taints(self, node: dict[str, Any], unreachable: list[dict[str, Any]]) -> None:
        """Replace the node's unreachable taints with *unreachable*, keeping every other taint."""
        others = [t for t in (node.get("spec") or {}).get("taints") or () if t.get("key") != UNREACHABLE_TAINT]
        taints = others + unreachable
        self._patch(NODES, None, node["metadata"]["name"], {"spec": {"taints": taints or None}})

    def mark_pods_not_ready(self, node: str) -> None:
        """Upstream's ``MarkPodsNotReady``: each pod on the node gets Ready=False (and a NodeNotReady event)."""
        pods = self.core.list(PODS, None, field_selector=f"spec.nodeName={node}")["items"]
        now = now_rfc3339()
        for pod in pods:
            conditions = (pod.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                continue
            updated = [
                {**c, "status": "False", "lastTransitionTime": now} if c.get("type") == "Ready" else c
                for c in conditions
            ]
            meta = pod["metadata"]
            try:
                self._patch(PODS, meta.get("namespace"), meta["name"], {"status": {"conditions": updated}}, "status")
            except StatusError as err:
                log.debug("pod %s not marked: %s", meta["name"], err.message)
                continue
            record_event(
                self.core,
                {"kind": "Pod", "apiVersion": "v1", **pod},
                "Warning",
                "NodeNotReady",
                "Node is not ready",
                COMPONENT,
            )

    def _patch(self, res: Any, ns: str | None, name: str, body: dict[str, Any], subresource: str = "") -> None:
        self.core.patch(res, ns, name, MERGE, json.dumps(body).encode(), subresource=subresource, manager=COMPONENT)


async def run_node_lifecycle_controller(core: ApiCore) -> None:
    lifecycle = NodeLifecycle(core)
    while True:
        try:
            lifecycle.monitor()
        except Exception:  # a bug must not end the loop (the next round tries again); the log says what happened
            log.exception("node lifecycle round failed")
        await asyncio.sleep(MONITOR_PERIOD_S)
