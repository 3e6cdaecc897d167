"""The disruption controller: keeps each PodDisruptionBudget's status, which the eviction subresource reads.

As upstream's pkg/controller/disruption: ``minAvailable`` as a number counts the matching pods as the
expected ones; ``maxUnavailable`` or a percentage take the expected count from the pods' controllers'
``spec.replicas`` (a ReplicaSet's Deployment, a StatefulSet). ``currentHealthy`` counts the matching pods
that are Ready, not being deleted and not just evicted (``disruptedPods``, forgotten after two minutes as
upstream's DeletionTimeout), and ``disruptionsAllowed`` is what is left above ``desiredHealthy``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.eviction import PDBS, disruption_allowed_condition
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import now, parse_time, write_status
from labkit.sandbox.controllers.podutil import PODS, controller_of, pod_ready, selected

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.store import WatchEvent

#: Seconds an approved eviction keeps its pod out of currentHealthy (upstream's DeletionTimeout).
DELETION_TIMEOUT = 120.0
_SCALED = {
    "ReplicaSet": RESOURCES.served("apps", "replicasets"),
    "StatefulSet": RESOURCES.served("apps", "statefulsets"),
    "Deployment": RESOURCES.served("apps", "deployments"),
}


def _percent(value: Any) -> int | None:
    return int(value[:-1]) if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() else None


class DisruptionController(Controller):
    """Keyed by budget; a pod's change queues the budgets of its namespace."""

    name = "disruption-controller"
    primary = PDBS

    def sources(self) -> Sequence[Source]:
        return [Source(PODS, self._budgets_of_namespace)]

    def _budgets_of_namespace(self, event: WatchEvent) -> list[Key]:
        ns = event.object["metadata"].get("namespace") or ""
        return [(ns, p["metadata"]["name"]) for p in self.core.list(PDBS, ns)["items"]]

    def expected_scale(self, pods: list[dict[str, Any]], ns: str) -> int:
        """The sum of ``spec.replicas`` of the pods' controllers (a ReplicaSet counts through its Deployment)."""
        seen: dict[str, int] = {}
        for pod in pods:
            ref = controller_of(pod)
            while ref is not None and ref.get("kind") in _SCALED:
                obj = self.get(_SCALED[ref["kind"]], ns, ref["name"])
                if obj is None:
                    break
                parent = controller_of(obj)
                if ref["kind"] == "ReplicaSet" and parent is not None and parent.get("kind") == "Deployment":
                    ref = parent
                    continue
                seen[obj["metadata"]["uid"]] = int((obj.get("spec") or {}).get("replicas", 1))
                break
            else:
                seen[pod["metadata"]["uid"]] = 1  # no scalable controller: the pod counts for itself
        return sum(seen.values())

    def sync(self, key: Key) -> float | None:
        pdb = self.get(PDBS, *key)
        if pdb is None or pdb["metadata"].get("deletionTimestamp"):
            return None
        spec = pdb.get("spec") or {}
        pods = [
            p
            for p in selected(self.core, PODS, key[0], spec.get("selector"))
            if not p["metadata"].get("deletionTimestamp")
        ]
        if not pods:  # disruption.go trySync
            self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        moment = now()
        disrupted = {
            name: stamp
            for name, stamp in ((pdb.get("status") or {}).get("disruptedPods") or {}).items()
            if (parse_time(stamp) or 0) + DELETION_TIMEOUT > moment and any(p["metadata"]["name"] == name for p in pods)
        }
        healthy = sum(1 for p in pods if pod_ready(p) and p["metadata"]["name"] not in disrupted)
        min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
        if max_unavailable is not None:
            expected = self.expected_scale(pods, key[0])
            pct = _percent(max_unavailable)
            unavailable = math.ceil(pct * expected / 100) if pct is not None else int(max_unavailable)
            desired = max(expected - unavailable, 0)
        elif _percent(min_available) is not None:
            expected = self.expected_scale(pods, key[0])
            desired = math.ceil((_percent(min_available) or 0) * expected / 100)
        else:
            expected = len(pods)
            desired = int(min_available or 0)
        allowed = max(healthy - desired, 0)
        generation = int(pdb["metadata"].get("generation") or 1)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        old = [c for c in (pdb.get("status") or {}).get("conditions") or () if c.get("type") == "DisruptionAllowed"]
        condition = disruption_allowed_condition(allowed, generation)
        if old and all(old[0].get(k) == condition[k] for k in ("status", "reason", "observedGeneration")):
            condition = old[0]
        status["conditions"] = [condition]
        write_status(self.core, PDBS, pdb, status)
        return (
            min((parse_time(s) or 0) + DELETION_TIMEOUT - moment for s in disrupted.values()) + 0.1
            if disrupted
            else None
        )


async def run_disruption_controller(core: ApiCore) -> None:
    """The disruption controller's loop, as the daemon starts it."""
    await DisruptionController(core).run()
