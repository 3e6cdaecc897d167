"""The ReplicaSet controller: keeps ``spec.replicas`` active pods named ``<rs>-<5 chars>``, as upstream's.

It adopts matching orphans and releases pods relabelled away (ControllerRefManager), deletes the
least useful pods first on a scale-down, and records SuccessfulCreate / SuccessfulDelete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import now, omit_zero, set_condition, write_status
from labkit.sandbox.controllers.podutil import (
    PODS,
    claim_pods,
    controlled_by,
    create_pod,
    delete_pod,
    deletion_order,
    owned,
    pod_active,
    pod_available_in,
    pod_ready,
)
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

REPLICASETS = RESOURCES.served("apps", "replicasets")
#: Seconds before a ReplicaSet whose pods could not all be created tries again.
FAILED_CREATE_RETRY = 5.0


class ReplicaSetController(Controller):
    """Creates or deletes pods until each ReplicaSet has ``spec.replicas`` active ones; keeps its status."""

    name = "replicaset-controller"
    primary = REPLICASETS

    def sources(self) -> Sequence[Source]:
        return [Source(PODS, controlled_by("ReplicaSet"))]

    def sync(self, key: Key) -> float | None:
        core = self.core
        rs = self.get(REPLICASETS, *key)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        active = [p for p in claim_pods(core, rs) if pod_active(p)]
        diff = len(active) - int(rs["spec"].get("replicas", 1))
        failed_create = False
        if diff < 0:
            for _ in range(-diff):
                if create_pod(core, self.recorder, rs) is None:
                    failed_create = True
                    break
        elif diff > 0:
            for pod in deletion_order(active)[:diff]:
                delete_pod(core, self.recorder, rs, pod)
        if diff:
            active = [p for p in owned(core, PODS, rs) if pod_active(p)]
        status, after = replicaset_status(rs, active)
        if failed_create:
            status["conditions"] = set_condition(
                status.get("conditions", []),
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": format_rfc3339(),
                    "reason": "FailedCreate",
                    "message": "could not create all pods (see the FailedCreate event)",
                },
            )
            after = FAILED_CREATE_RETRY
        write_status(core, REPLICASETS, rs, status)
        return after


def replicaset_status(rs: dict[str, Any], active: list[dict[str, Any]]) -> tuple[dict[str, Any], float | None]:
    """The status for *active* pods, and when a pending minReadySeconds makes one available."""
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    moment = now()
    waits = [pod_available_in(p, min_ready, moment) for p in active]
    pending = [w for w in waits if w]
    status = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(
            1 for p in active if template_labels.items() <= (p["metadata"].get("labels") or {}).items()
        ),
        "readyReplicas": sum(1 for p in active if pod_ready(p)),
        "availableReplicas": sum(1 for w in waits if w == 0),
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    kept = [c for c in (rs.get("status") or {}).get("conditions") or () if c["type"] != "ReplicaFailure"]
    if kept:
        status["conditions"] = kept
    return omit_zero(status, "fullyLabeledReplicas", "readyReplicas", "availableReplicas"), (
        min(pending) + 0.05 if pending else None
    )


async def run_replicaset_controller(core: ApiCore) -> None:
    """The ReplicaSet controller's loop, as the daemon starts it."""
    await ReplicaSetController(core).run()
