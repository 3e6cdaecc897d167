"""The node lifecycle controller: a node whose kubelet stops renewing its Lease goes NotReady, as upstream.

It watches Nodes and their Leases (``kube-node-lease/<node>``) and notes, on its own clock, when each
Lease last moved (upstream's ``nodeHealthData``). A Lease that has not moved for
:data:`NODE_MONITOR_GRACE_PERIOD_S` makes the node's conditions ``Unknown`` (reason
``NodeStatusUnknown``), taints it ``node.kubernetes.io/unreachable`` (NoSchedule and NoExecute) and
marks its pods not Ready (``MarkPodsNotReady``). Once the kubelet is back, its own status post makes
the node Ready and this controller removes the taints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.store import WatchEvent

NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")
LEASES = RESOURCES.served("coordination.k8s.io", "leases")
LEASE_NAMESPACE = "kube-node-lease"
#: Upstream ``--node-monitor-grace-period`` is 40 s. Sandbox kubelets renew every 2 s, so 8 s (four missed
#: renewals) is as safe, and a learner who kills a node sees it go NotReady while still looking.
NODE_MONITOR_GRACE_PERIOD_S = 8.0
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
MERGE = "application/merge-patch+json"


def _ready(node: dict[str, Any]) -> str:
    """The node's Ready condition status: True, False or Unknown (no condition yet: Unknown)."""
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return str(cond.get("status", "Unknown"))
    return "Unknown"


def unreachable_taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in (node.get("spec") or {}).get("taints") or () if t.get("key") == UNREACHABLE_TAINT]


class NodeLifecycleController(Controller):
    """Keyed by node name; a Lease's events queue its node, and a node is looked at again when its grace ends."""

    name = "node-controller"
    primary = NODES

    def __init__(self, core: ApiCore) -> None:
        super().__init__(core)
        #: node -> (the Lease's renewTime last seen, monotonic time it was first seen)
        self.renewals: dict[str, tuple[str, float]] = {}

    def sources(self) -> Sequence[Source]:
        return (Source(LEASES, self._lease_moved),)

    def _lease_moved(self, event: WatchEvent) -> Iterable[Key]:
        meta = event.object["metadata"]
        if meta.get("namespace") != LEASE_NAMESPACE:
            return []
        renewed = (event.object.get("spec") or {}).get("renewTime") or ""
        seen = self.renewals.get(meta["name"])
        if event.type != "DELETED" and (seen is None or seen[0] != renewed):
            self.renewals[meta["name"]] = (renewed, time.monotonic())
        return [("", meta["name"])]

    def sync(self, key: Key) -> float | None:
        name = key[1]
        node = self.get(NODES, None, name)
        if node is None:
            self.renewals.pop(name, None)
            return None
        # a node without a Lease yet gets its grace from the moment this controller first saw it
        renewed = self.renewals.setdefault(name, ("", time.monotonic()))
        quiet = time.monotonic() - renewed[1]
        if quiet > NODE_MONITOR_GRACE_PERIOD_S:
            if _ready(node) != "Unknown" or not unreachable_taints(node):
                self.mark_unknown(node)
            return None  # nothing changes until the Lease moves, and that event queues the node
        if _ready(node) == "True" and unreachable_taints(node):
            self.set_taints(node, [])
        return NODE_MONITOR_GRACE_PERIOD_S - quiet + 0.1

    def mark_unknown(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        now = format_rfc3339()
        if _ready(node) != "Unknown":
            conditions = [
                c
                if c.get("status") == "Unknown"
                else {**c, "status": "Unknown", "reason": UNKNOWN_REASON, "message": UNKNOWN_MESSAGE}
                | {"lastTransitionTime": now}
                for c in (node.get("status") or {}).get("conditions") or ()
            ]
            self._patch(NODES, None, name, {"status": {"conditions": conditions}}, "status")
            self.recorder.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
            self.mark_pods_not_ready(name)
        if not unreachable_taints(node):
            self.set_taints(
                node,
                [
                    {"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now},
                    {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": now},
                ],
            )

    def set_taints(self, node: dict[str, Any], unreachable: list[dict[str, Any]]) -> None:
        """Replace the node's unreachable taints with *unreachable*, keeping every other taint."""
        others = [t for t in (node.get("spec") or {}).get("taints") or () if t.get("key") != UNREACHABLE_TAINT]
        self._patch(NODES, None, node["metadata"]["name"], {"spec": {"taints": (others + unreachable) or None}})

    def mark_pods_not_ready(self, node: str) -> None:
        """Upstream's ``MarkPodsNotReady``: each Ready pod on the node gets Ready=False and a NodeNotReady event."""
        now = format_rfc3339()
        for pod in self.core.list(PODS, None, field_selector=f"spec.nodeName={node}")["items"]:
            conditions = (pod.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                continue
            marked = [
                {**c, "status": "False", "lastTransitionTime": now} if c.get("type") == "Ready" else c
                for c in conditions
            ]
            meta = pod["metadata"]
            try:
                self._patch(PODS, meta.get("namespace"), meta["name"], {"status": {"conditions": marked}}, "status")
            except StatusError as err:
                if err.code != 404:  # a pod deleted meanwhile needs no mark
                    raise
                continue
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    def _patch(self, res: Resource, ns: str | None, name: str, body: dict[str, Any], subresource: str = "") -> None:
        self.core.patch(res, ns, name, MERGE, json.dumps(body).encode(), subresource=subresource, manager=self.name)


async def run_node_lifecycle_controller(core: ApiCore) -> None:
    await NodeLifecycleController(core).run()
