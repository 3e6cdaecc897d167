"""The Deployment controller: ReplicaSets ``<deployment>-<pod-template-hash>``, rolling update and Recreate,
as kube-controller-manager 1.32 runs them.

The conditions, reasons, messages and events are the ones learners read in ``kubectl describe`` and
``kubectl rollout status`` on a real cluster.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import condition, now, omit_zero, parse_time, set_condition, write_status
from labkit.sandbox.controllers.deploymentutil import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    NOT_COPIED_TO_RS,
    REVISION,
    created,
    pod_template_hash,
    revision,
    spec_replicas,
    status_count,
    surge_and_unavailable,
    without_hash,
)
from labkit.sandbox.controllers.podutil import (
    MANAGER,
    PODS,
    controlled_by,
    controller_of,
    owned,
    owner_reference,
    pod_active,
)
from labkit.sandbox.controllers.replicaset import REPLICASETS
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.store import WatchEvent
    from labkit.sandbox.controllers.recorder import EventRecorder

log = logging.getLogger("labkit.sandbox.controllers.deployment")

DEPLOYMENTS = RESOURCES.served("apps", "deployments")


class _DeploymentSync:
    """One sync of one Deployment (upstream's syncDeployment with rolloutRolling / rolloutRecreate)."""

    def __init__(self, core: ApiCore, recorder: EventRecorder, d: dict[str, Any]) -> None:
        self.core, self.recorder, self.d = core, recorder, d
        self.name = d["metadata"]["name"]
        self.replicas = int(d["spec"].get("replicas", 1))
        self.surge, self.unavailable = surge_and_unavailable(d)
        self.status = copy.deepcopy(d.get("status") or {})

    # ----------------------------------------------------------- replica sets
    def replica_sets(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The new RS (same template as the Deployment) and the old ones, oldest first."""
        all_rs = sorted(owned(self.core, REPLICASETS, self.d), key=created)
        template = without_hash(self.d["spec"]["template"])
        new = next((rs for rs in all_rs if without_hash(rs["spec"]["template"]) == template), None)
        return new, [rs for rs in all_rs if rs is not new]

    def new_rs_replicas(self, all_rs: list[dict[str, Any]], new: dict[str, Any] | None) -> int:
        """How many replicas the new RS should have now (upstream's NewRSNewReplicas)."""
        if self.recreate:
            return self.replicas
        current = sum(spec_replicas(rs) for rs in all_rs)
        new_count = spec_replicas(new)
        if current >= self.replicas + self.surge:
            return new_count
        return new_count + max(0, min(self.replicas + self.surge - current, self.replicas - new_count))

    @property
    def recreate(self) -> bool:
        return (self.d["spec"].get("strategy") or {}).get("type") == "Recreate"

    def rs_annotations(self, revision: int) -> dict[str, str]:
        base = {k: v for k, v in (self.d["metadata"].get("annotations") or {}).items() if k not in NOT_COPIED_TO_RS}
        return {
            **base,
            REVISION: str(revision),
            DESIRED_REPLICAS: str(self.replicas),
            MAX_REPLICAS: str(self.replicas + self.surge),
        }

    def create_new_rs(self, old: list[dict[str, Any]], replicas: int) -> dict[str, Any]:
        collisions = int(self.status.get("collisionCount", 0))
        while True:
            template = copy.deepcopy(self.d["spec"]["template"])
            hash_ = pod_template_hash(template, collisions)
            template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
            selector = copy.deepcopy(self.d["spec"]["selector"])
            selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
            rs: dict[str, Any] = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{self.name}-{hash_}",
                    "namespace": self.d["metadata"]["namespace"],
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": self.rs_annotations(max(map(revision, old), default=0) + 1),
                    "ownerReferences": [owner_reference(self.d)],
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": int(self.d["spec"].get("minReadySeconds") or 0),
                    "selector": selector,
                    "template": template,
                },
            }
            try:
                created, _ = self.core.create(REPLICASETS, rs["metadata"]["namespace"], rs, manager=MANAGER)
            except StatusError as e:
                if e.code != 409:
                    message = f'Failed to create new replica set "{rs["metadata"]["name"]}": {e.message}'
                    self.recorder.event(self.d, "Warning", "FailedCreate", message)
                    self.set_progressing("False", "ReplicaSetCreateError", message)
                    write_status(self.core, DEPLOYMENTS, self.d, self.status)
                    raise
                collisions += 1  # a different template already has this name: hash again
                self.status["collisionCount"] = collisions
                continue
            if replicas > 0:
                self.event(f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
            name = created["metadata"]["name"]
            self.set_progressing("True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
            return created

    def sync_new_rs(self, new: dict[str, Any], old: list[dict[str, Any]]) -> dict[str, Any]:
        """Keep the new RS's revision ahead of the old ones (after an undo) and its minReadySeconds in step."""
        wanted_revision = max(revision(new), max(map(revision, old), default=0) + 1)
        min_ready = int(self.d["spec"].get("minReadySeconds") or 0)
        annotations = new["metadata"].get("annotations") or {}
        if (
            str(wanted_revision) != annotations.get(REVISION)
            or int(new["spec"].get("minReadySeconds") or 0) != min_ready
        ):
            new = copy.deepcopy(new)
            new["metadata"].setdefault("annotations", {})[REVISION] = str(wanted_revision)
            new["spec"]["minReadySeconds"] = min_ready
            new = self.replace_rs(new)
        if self.has_deadline and condition({"status": self.status}, "Progressing") is None:
            self.set_progressing("True", "FoundNewReplicaSet", f'Found new replica set "{new["metadata"]["name"]}"')
        return new

    def replace_rs(self, rs: dict[str, Any]) -> dict[str, Any]:
        meta = rs["metadata"]
        return self.core.replace(REPLICASETS, meta["namespace"], meta["name"], rs, manager=MANAGER)[0]

    def scale(self, rs: dict[str, Any], to: int) -> dict[str, Any]:
        """Set *rs*'s replicas (and the desired/max annotations) and record ScalingReplicaSet."""
        current = spec_replicas(rs)
        annotations = rs["metadata"].get("annotations") or {}
        if (
            current == to
            and annotations.get(DESIRED_REPLICAS) == str(self.replicas)
            and annotations.get(MAX_REPLICAS) == str(self.replicas + self.surge)
        ):
            return rs
        rs = copy.deepcopy(rs)
        rs["spec"]["replicas"] = to
        rs["metadata"].setdefault("annotations", {}).update(
            {DESIRED_REPLICAS: str(self.replicas), MAX_REPLICAS: str(self.replicas + self.surge)}
        )
        rs = self.replace_rs(rs)
        if current != to:
            self.event(
                f"Scaled {'up' if to > current else 'down'} replica set {rs['metadata']['name']} from {current} to {to}"
            )
        return rs

    def event(self, message: str) -> None:
        self.recorder.event(self.d, "Normal", "ScalingReplicaSet", message)

    # ----------------------------------------------------------- strategies
    def rolling(self, new: dict[str, Any] | None, old: list[dict[str, Any]]) -> None:
        all_rs = [*old, *([new] if new else [])]
        if new is None:
            new = self.create_new_rs(old, self.new_rs_replicas(all_rs, None))
            all_rs.append(new)
        else:
            new = self.sync_new_rs(new, old)
            want = self.replicas if spec_replicas(new) > self.replicas else self.new_rs_replicas(all_rs, new)
            new = self.scale(new, want)
            all_rs = [*old, new]
        self.scale_down_old(new, old, all_rs)

    def scale_down_old(self, new: dict[str, Any], old: list[dict[str, Any]], all_rs: list[dict[str, Any]]) -> None:
        """Upstream's reconcileOldReplicaSets: first unhealthy old replicas, then healthy ones while at least
        ``replicas - maxUnavailable`` pods stay available."""
        if not sum(spec_replicas(rs) for rs in old):
            return
        min_available = self.replicas - self.unavailable
        new_unavailable = spec_replicas(new) - status_count(new, "availableReplicas")
        budget = sum(spec_replicas(rs) for rs in all_rs) - min_available - new_unavailable
        if budget <= 0:
            return
        scaled = 0
        for i, rs in enumerate(old):  # oldest first: unhealthy replicas cost no availability
            if scaled >= budget:
                break
            unhealthy = spec_replicas(rs) - status_count(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            cut = min(budget - scaled, unhealthy)
            old[i] = self.scale(rs, spec_replicas(rs) - cut)
            scaled += cut
        # then healthy ones, as far as availability allows (upstream does not charge the first step here)
        allowed = sum(status_count(rs, "availableReplicas") for rs in [*old, new]) - min_available
        for i, rs in enumerate(old):
            if allowed <= 0:
                break
            cut = min(spec_replicas(rs), allowed)
            if cut:
                old[i] = self.scale(rs, spec_replicas(rs) - cut)
                allowed -= cut

    def recreate_rollout(self, new: dict[str, Any] | None, old: list[dict[str, Any]]) -> None:
        """Upstream's rolloutRecreate: all old pods down and gone, then the new RS up."""
        scaled_down = False
        for rs in old:
            if spec_replicas(rs):
                self.scale(rs, 0)
                scaled_down = True
        if scaled_down or any(
            pod_active(p) or p["metadata"].get("deletionTimestamp") for rs in old for p in owned(self.core, PODS, rs)
        ):
            if new is not None:
                self.sync_new_rs(new, old)
            return
        if new is None:
            self.create_new_rs(old, self.replicas)
        else:
            self.scale(self.sync_new_rs(new, old), self.replicas)

    def cleanup(self, old: list[dict[str, Any]]) -> None:
        """Delete the oldest scaled-down RSs beyond revisionHistoryLimit."""
        limit = int(self.d["spec"].get("revisionHistoryLimit", 10))
        idle = sorted(
            (
                rs
                for rs in old
                if not spec_replicas(rs)
                and not status_count(rs, "replicas")
                and not rs["metadata"].get("deletionTimestamp")
            ),
            key=lambda rs: (revision(rs), created(rs)),
        )
        for rs in idle[: max(len(idle) - limit, 0)]:
            try:
                self.core.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except StatusError as e:
                if e.code != 404:
                    raise

    # ----------------------------------------------------------- status
    @property
    def has_deadline(self) -> bool:
        return self.d["spec"].get("progressDeadlineSeconds") is not None

    def set_progressing(self, status: str, reason: str, message: str, *, keep_transition: bool = False) -> None:
        stamp = format_rfc3339()
        new = {
            "type": "Progressing",
            "status": status,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
        conditions = self.status.get("conditions") or []
        if keep_transition:
            # progress noticed: refresh lastUpdateTime even with the same reason (the deadline restarts)
            current = condition({"status": self.status}, "Progressing")
            if current is not None and current["status"] == "True":
                new["lastTransitionTime"] = current["lastTransitionTime"]
            conditions = [c for c in conditions if c["type"] != "Progressing"] + [new]
        else:
            conditions = set_condition(conditions, new)
        self.status["conditions"] = conditions

    def compute_status(self, new: dict[str, Any] | None, all_rs: list[dict[str, Any]]) -> float | None:
        """Counts, Available and Progressing (upstream's calculateStatus + syncRolloutStatus);
        returns when the progress deadline would pass."""
        old_status = self.d.get("status") or {}
        available = sum(status_count(rs, "availableReplicas") for rs in all_rs)
        counts = {
            "observedGeneration": self.d["metadata"].get("generation", 1),
            "replicas": sum(status_count(rs, "replicas") for rs in all_rs),
            "updatedReplicas": status_count(new, "replicas"),
            "readyReplicas": sum(status_count(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(spec_replicas(rs) for rs in all_rs) - available, 0),
        }
        for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            self.status.pop(field, None)
        self.status.update(
            omit_zero(
                counts, "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"
            )
        )
        stamp = format_rfc3339()
        min_available = self.replicas - (min(self.unavailable, self.replicas) if not self.recreate else 0)
        if available >= min_available:
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        self.status["conditions"] = set_condition(
            self.status.get("conditions") or [],
            {
                "type": "Available",
                "status": avail[0],
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
                "reason": avail[1],
                "message": avail[2],
            },
        )
        if not self.has_deadline:
            self.status["conditions"] = [c for c in self.status["conditions"] if c["type"] != "Progressing"]
            return None
        if self.paused:
            return None  # no progress is expected, so no deadline runs
        current = condition({"status": self.status}, "Progressing")
        # upstream names the new ReplicaSet, or the Deployment while none exists yet (Recreate scaling down)
        subject = f'ReplicaSet "{new["metadata"]["name"]}"' if new else f'Deployment "{self.name}"'
        if (
            counts["replicas"] == counts["updatedReplicas"]
            and current
            and current["reason"] == "NewReplicaSetAvailable"
        ):
            return None
        if (
            counts["updatedReplicas"] == self.replicas
            and counts["replicas"] == self.replicas
            and available == self.replicas
            and counts["observedGeneration"] >= self.d["metadata"].get("generation", 1)
        ):
            self.set_progressing("True", "NewReplicaSetAvailable", f"{subject} has successfully progressed.")
            return None
        old_old = int(old_status.get("replicas", 0)) - int(old_status.get("updatedReplicas", 0))
        if (
            counts["updatedReplicas"] > int(old_status.get("updatedReplicas", 0))
            or counts["replicas"] - counts["updatedReplicas"] < old_old
            or counts["readyReplicas"] > int(old_status.get("readyReplicas", 0))
            or available > int(old_status.get("availableReplicas", 0))
        ):
            self.set_progressing("True", "ReplicaSetUpdated", f"{subject} is progressing.", keep_transition=True)
        current = condition({"status": self.status}, "Progressing")
        if current is None or current["reason"] == "ProgressDeadlineExceeded":
            return None
        deadline = (parse_time(current.get("lastUpdateTime")) or now()) + int(self.d["spec"]["progressDeadlineSeconds"])
        if now() >= deadline:
            self.set_progressing("False", "ProgressDeadlineExceeded", f"{subject} has timed out progressing.")
            return None
        return deadline - now() + 0.5

    def sync_revision_annotation(self, new: dict[str, Any] | None) -> None:
        """The Deployment carries its new RS's revision (``kubectl rollout history`` reads it)."""
        if new is None:
            return
        wanted = (new["metadata"].get("annotations") or {}).get(REVISION)
        annotations = self.d["metadata"].get("annotations") or {}
        if wanted and annotations.get(REVISION) != wanted:
            d = copy.deepcopy(self.d)
            d["metadata"].setdefault("annotations", {})[REVISION] = wanted
            self.d = self.core.replace(DEPLOYMENTS, d["metadata"]["namespace"], self.name, d, manager=MANAGER)[0]

    @staticmethod
    def active_or_latest(new: dict[str, Any] | None, old: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The only RS with replicas, or the newest one when none has any; None when several have."""
        candidates = [*old, *([new] if new else [])]
        active = [rs for rs in candidates if spec_replicas(rs)]
        if len(active) > 1:
            return None
        return active[0] if active else (new or max(candidates, key=created, default=None))

    @property
    def paused(self) -> bool:
        return bool(self.d["spec"].get("paused"))

    def sync_paused_condition(self) -> None:
        """``kubectl rollout pause``/``resume`` show as Progressing Unknown, as upstream's checkPausedConditions."""
        reason = (condition({"status": self.status}, "Progressing") or {}).get("reason")
        if self.paused and reason != "DeploymentPaused":
            self.set_progressing("Unknown", "DeploymentPaused", "Deployment is paused")
        elif not self.paused and reason == "DeploymentPaused":
            self.set_progressing("Unknown", "DeploymentResumed", "Deployment is resumed")

    def scaling_event(self, new: dict[str, Any] | None, old: list[dict[str, Any]]) -> bool:
        """Upstream's isScalingEvent: an active RS was sized for another replica count."""
        for rs in [*old, *([new] if new else [])]:
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if spec_replicas(rs) and desired is not None and desired != str(self.replicas):
                return True
        return False

    def scale_proportionally(self, new: dict[str, Any] | None, old: list[dict[str, Any]]) -> None:
        """Upstream's scale(): the only active RS takes the new count; in the middle of a rolling update the
        replicas to add (or remove) are spread over the active RSs in proportion to their size."""
        target = self.active_or_latest(new, old)
        if target is not None:
            self.scale(target, self.replicas)
            return
        if (
            new is not None
            and spec_replicas(new) == self.replicas == status_count(new, "availableReplicas")
            and (new["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS) == str(self.replicas)
        ):
            for rs in old:  # the new RS is saturated: the old ones are not needed any more
                if spec_replicas(rs):
                    self.scale(rs, 0)
            return
        if self.recreate:
            return
        active = [rs for rs in [*old, *([new] if new else [])] if spec_replicas(rs)]
        allowed = self.replicas + self.surge if self.replicas else 0
        to_add = allowed - sum(spec_replicas(rs) for rs in active)
        # the biggest first; on a tie the newer one grows first and the older one shrinks first
        active.sort(key=lambda rs: (-spec_replicas(rs), -created(rs)[0] if to_add > 0 else created(rs)[0]))
        sizes, added = [], 0
        for rs in active:
            share = 0
            if to_add:
                fraction, remaining = self.fraction(rs, allowed), to_add - added
                share = min(fraction, remaining) if to_add > 0 else max(fraction, remaining)
            sizes.append(spec_replicas(rs) + share)
            added += share
        if active:
            sizes[0] = max(sizes[0] + to_add - added, 0)  # rounding leftovers go to the biggest
        for rs, size in zip(active, sizes, strict=True):
            self.scale(rs, size)

    def fraction(self, rs: dict[str, Any], allowed: int) -> int:
        """Replicas *rs* gains (or loses) when the allowed total moves from its max-replicas annotation to
        *allowed* (upstream's getReplicaSetFraction, rounding half away from zero)."""
        if not self.replicas:
            return -spec_replicas(rs)
        try:
            annotated = int((rs["metadata"].get("annotations") or {})[MAX_REPLICAS])
        except (KeyError, ValueError):
            annotated = int(self.status.get("replicas", 0))
        if not annotated:
            return 0
        return math.floor(spec_replicas(rs) * allowed / annotated + 0.5) - spec_replicas(rs)

    def run(self) -> float | None:
        new, old = self.replica_sets()
        if self.has_deadline:
            self.sync_paused_condition()
        if self.paused or self.scaling_event(new, old):
            # a paused Deployment still scales, it only does not roll out; a scaling event is handled alone
            self.scale_proportionally(new, old)
        elif self.recreate:
            self.recreate_rollout(new, old)
        else:
            self.rolling(new, old)
        new, old = self.replica_sets()
        self.sync_revision_annotation(new)
        all_rs = [*old, *([new] if new else [])]
        after = self.compute_status(new, all_rs)
        if (condition({"status": self.status}, "Progressing") or {}).get("reason") == "NewReplicaSetAvailable":
            self.cleanup(old)
        write_status(self.core, DEPLOYMENTS, self.d, self.status)
        return after


class DeploymentController(Controller):
    """Rolls each Deployment's ReplicaSets toward its template and replica count; keeps its status."""

    name = "deployment-controller"
    primary = DEPLOYMENTS

    def sources(self) -> Sequence[Source]:
        return [Source(REPLICASETS, controlled_by("Deployment")), Source(PODS, self.deployment_of_pod)]

    def deployment_of_pod(self, event: WatchEvent) -> list[Key]:
        """A pod's Deployment, through its ReplicaSet: Recreate waits for old pods to be gone, so their
        deletion must wake the Deployment."""
        ref = controller_of(event.object)
        if not ref or ref.get("kind") != "ReplicaSet":
            return []
        ns = event.object["metadata"]["namespace"]
        rs = self.get(REPLICASETS, ns, ref["name"])
        owner = controller_of(rs) if rs else None
        return [(ns, owner["name"])] if owner and owner.get("kind") == "Deployment" else []

    def sync(self, key: Key) -> float | None:
        d = self.get(DEPLOYMENTS, *key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return None
        try:
            rollout = _DeploymentSync(self.core, self.recorder, d)
        except ValueError as e:  # a maxSurge/maxUnavailable the API server should have refused; wait for a fix
            log.warning("deployment %s/%s cannot roll out: %s", *key, e)
            return None
        return rollout.run()


async def run_deployment_controller(core: ApiCore) -> None:
    """The Deployment controller's loop, as the daemon starts it."""
    await DeploymentController(core).run()
