"""Tolerations, and the taint eviction controller: pods that do not tolerate a node's NoExecute taint leave it.

Since 1.29 upstream runs this as its own ``taint-eviction-controller`` (pkg/controller/tainteviction,
split out of the node lifecycle controller). A pod on a node with a NoExecute taint it does not
tolerate is deleted at once; one that tolerates every such taint for ``tolerationSeconds`` is deleted
when the shortest of them has passed (counted from when this controller first saw it so); a toleration
without ``tolerationSeconds`` keeps the pod forever. Before deleting, it records ``TaintManagerEviction``
("Marking for deletion Pod ns/name") and sets the pod's ``DisruptionTarget`` condition, as upstream.

>>> tolerates({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}, {"key": "k", "effect": "NoExecute"})
True
>>> tolerates({"spec": {}}, {"key": "k", "effect": "NoExecute"})
False
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.store import WatchEvent

NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")


def tolerates_with(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return bool(toleration.get("value", "") == taint.get("value", ""))


def tolerates(pod: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Some toleration of *pod* tolerates *taint*."""
    return any(tolerates_with(t, taint) for t in (pod.get("spec") or {}).get("tolerations") or ())


def eviction_delay(pod: dict[str, Any], taints: list[dict[str, Any]]) -> float | None:
    """0 when some NoExecute taint is not tolerated, the shortest ``tolerationSeconds`` of the tolerations
    that match, or None when the pod may stay forever (upstream's getMinTolerationTime)."""
    shortest: float | None = None
    for taint in taints:
        matching = [t for t in (pod.get("spec") or {}).get("tolerations") or () if tolerates_with(t, taint)]
        if not matching:
            return 0.0
        for t in matching:
            if t.get("tolerationSeconds") is not None:
                seconds = max(float(t["tolerationSeconds"]), 0.0)
                shortest = seconds if shortest is None else min(shortest, seconds)
    return shortest


class TaintEvictionController(Controller):
    """Keyed by node name: each sync looks at the pods on that node."""

    name = "taint-eviction-controller"
    primary = NODES

    def __init__(self, core: ApiCore) -> None:
        super().__init__(core)
        #: pod uid -> monotonic time this controller first found it tolerating the node's taints for a while
        self.since: dict[str, float] = {}

    def sources(self) -> Sequence[Source]:
        return [Source(PODS, self._pod_node)]

    @staticmethod
    def _pod_node(event: WatchEvent) -> list[Key]:
        node = (event.object.get("spec") or {}).get("nodeName")
        return [("", node)] if node and event.type != "DELETED" else []

    def sync(self, key: Key) -> float | None:
        node = self.get(NODES, None, key[1])
        if node is None:
            return None
        taints = [t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == "NoExecute"]
        if not taints and not self.since:  # the usual case: nothing to evict, nothing remembered (no list at all)
            return None
        pods = self.core.list(PODS, None, field_selector=f"spec.nodeName={key[1]}")["items"]
        if not taints:
            for pod in pods:
                self.since.pop(pod["metadata"]["uid"], None)
            return None
        after: float | None = None
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            uid = pod["metadata"]["uid"]
            delay = eviction_delay(pod, taints)
            if delay is None:
                self.since.pop(uid, None)
                continue
            waited = time.monotonic() - self.since.setdefault(uid, time.monotonic())
            if waited >= delay:
                self.evict(pod)
                self.since.pop(uid, None)
            else:
                after = min(after or delay, delay - waited + 0.05)
        return after

    def evict(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")
        conditions = [
            c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") != "DisruptionTarget"
        ]
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "lastTransitionTime": format_rfc3339(),
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
            }
        )
        try:
            body = json.dumps({"status": {"conditions": conditions}}).encode()
            self.core.patch(
                PODS, ns, name, "application/merge-patch+json", body, subresource="status", manager=self.name
            )
            self.core.delete(PODS, ns, name)
        except StatusError as e:
            if e.code != 404:  # gone meanwhile: nothing left to evict
                raise


async def run_taint_eviction_controller(core: ApiCore) -> None:
    """The taint eviction controller's loop, as the daemon starts it."""
    await TaintEvictionController(core).run()
