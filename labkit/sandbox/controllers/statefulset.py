"""The StatefulSet controller: pods with stable names ``<set>-<ordinal>``, made and removed in order, as
upstream's pkg/controller/statefulset.

With ``podManagementPolicy: OrderedReady`` (the default) it creates ``<set>-0`` first and the next
pod only once every lower one is Running and Ready; a scale-down deletes the highest ordinal first and
waits for it to go. A RollingUpdate replaces pods from the highest ordinal down to ``partition``, one
at a time. ``Parallel`` creates and deletes without waiting. Events are stateful_pod_control.go's
(``create Pod web-0 in StatefulSet web successful``); the template history is kept as
ControllerRevisions, whose names ``status.currentRevision`` and ``updateRevision`` carry
(what ``kubectl rollout status`` compares).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import now, omit_zero, write_status
from labkit.sandbox.controllers.podutil import (
    MANAGER,
    PODS,
    claim_pods,
    controlled_by,
    owner_reference,
    pod_available_in,
    pod_ready,
)
from labkit.sandbox.controllers.revisions import REVISION_LABEL, current_revision, truncate_history

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

STATEFULSETS = RESOURCES.served("apps", "statefulsets")
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
#: Seconds before a set whose pod could not be created tries again.
FAILED_CREATE_RETRY = 5.0


def ordinal(set_name: str, pod: dict[str, Any]) -> int | None:
    """The pod's ordinal when its name is ``<set>-<n>`` (upstream's getParentNameAndOrdinal), else None."""
    match = re.fullmatch(r"(.*)-([0-9]+)", pod["metadata"]["name"])
    if match is None or match.group(1) != set_name:
        return None
    return int(match.group(2))


def running_and_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)


def _terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class _SetSync:
    """One sync of one StatefulSet (upstream's defaultStatefulSetControl.updateStatefulSet)."""

    def __init__(self, controller: StatefulSetController, sts: dict[str, Any]) -> None:
        self.core, self.recorder, self.sts = controller.core, controller.recorder, sts
        self.name = sts["metadata"]["name"]
        self.ns = sts["metadata"]["namespace"]
        spec = sts["spec"]
        self.replicas = int(spec.get("replicas", 1))
        self.start = int((spec.get("ordinals") or {}).get("start") or 0)
        self.parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        self.rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        self.partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)

    def pod_for(self, index: int, revision: dict[str, Any]) -> dict[str, Any]:
        """Upstream's newVersionedStatefulSetPod: the revision's template, named and labelled for *index*."""
        template = copy.deepcopy(revision["data"]["spec"]["template"])
        template.pop("$patch", None)
        meta = template.get("metadata") or {}
        name = f"{self.name}-{index}"
        labels = {
            **(meta.get("labels") or {}),
            POD_NAME_LABEL: name,
            POD_INDEX_LABEL: str(index),
            REVISION_LABEL: revision["metadata"]["name"],
        }
        spec = template.get("spec") or {}
        spec["hostname"] = name
        if self.sts["spec"].get("serviceName"):
            spec["subdomain"] = self.sts["spec"]["serviceName"]
        self._claim_volumes(name, spec)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.ns,
                "labels": labels,
                **({"annotations": meta["annotations"]} if meta.get("annotations") else {}),
                "ownerReferences": [owner_reference(self.sts)],
            },
            "spec": spec,
        }

    def _claim_volumes(self, pod_name: str, spec: dict[str, Any]) -> None:
        """volumeClaimTemplates become claims ``<template>-<pod>`` and the pod's volumes of that name
        (upstream's updateStorage); created only where the API serves PersistentVolumeClaims."""
        claims = RESOURCES.by_plural("", "persistentvolumeclaims")
        volumes = [v for v in spec.get("volumes") or () if v.get("name")]
        for template in self.sts["spec"].get("volumeClaimTemplates") or ():
            vol = template["metadata"]["name"]
            claim_name = f"{vol}-{pod_name}"
            if claims is not None and self.core.store.peek(claims, self.ns, claim_name) is None:
                claim = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": claim_name,
                        "namespace": self.ns,
                        "labels": dict((self.sts["spec"]["selector"] or {}).get("matchLabels") or {}),
                    },
                    "spec": copy.deepcopy(template.get("spec") or {}),
                }
                try:
                    self.core.create(claims, self.ns, claim, manager=MANAGER)
                except StatusError as e:
                    if e.code != 409:
                        raise
            volumes = [v for v in volumes if v["name"] != vol]
            volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": claim_name}})
        if volumes:
            spec["volumes"] = volumes

    def create(self, index: int, revision: dict[str, Any]) -> bool:
        pod = self.pod_for(index, revision)
        try:
            self.core.create(PODS, self.ns, pod, manager=MANAGER)
        except StatusError as e:
            if e.code == 409:  # the old pod of that name is still going
                return True
            self.event(
                "Warning",
                "FailedCreate",
                f"create Pod {pod['metadata']['name']} in StatefulSet {self.name} failed error: {e.message}",
            )
            return False
        self.event(
            "Normal", "SuccessfulCreate", f"create Pod {pod['metadata']['name']} in StatefulSet {self.name} successful"
        )
        return True

    def delete(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        try:
            self.core.delete(PODS, self.ns, name)
        except StatusError as e:
            if e.code == 404:
                return
            self.event(
                "Warning", "FailedDelete", f"delete Pod {name} in StatefulSet {self.name} failed error: {e.message}"
            )
            return
        self.event("Normal", "SuccessfulDelete", f"delete Pod {name} in StatefulSet {self.name} successful")

    def event(self, type_: str, reason: str, message: str) -> None:
        self.recorder.event(self.sts, type_, reason, message)

    def run(self) -> float | None:
        update, history = current_revision(self.core, self.sts)
        status = self.sts.get("status") or {}
        names = {r["metadata"]["name"]: r for r in history}
        current = names.get(status.get("currentRevision", ""), update)
        pods = claim_pods(self.core, self.sts)
        by_index: dict[int, dict[str, Any]] = {}
        condemned = []
        for pod in pods:
            index = ordinal(self.name, pod)
            if index is not None and self.start <= index < self.start + self.replicas:
                by_index[index] = pod
            elif index is not None:
                condemned.append(pod)
        after = self.manage(by_index, condemned, current, update)
        pods = claim_pods(self.core, self.sts)
        self.write_status(pods, current, update)
        truncate_history(
            self.core,
            self.sts,
            history,
            {current["metadata"]["name"], update["metadata"]["name"]}
            | {p["metadata"]["labels"].get(REVISION_LABEL, "") for p in pods},
        )
        return after

    def manage(
        self,
        by_index: dict[int, dict[str, Any]],
        condemned: list[dict[str, Any]],
        current: dict[str, Any],
        update: dict[str, Any],
    ) -> float | None:
        """Create, replace and delete pods as far as the policy allows this round; when to look again."""
        monotonic = not self.parallel
        for index in range(self.start, self.start + self.replicas):
            pod = by_index.get(index)
            if pod is not None and _finished(pod) and not _terminating(pod):
                self.delete(pod)  # a failed or succeeded pod is made again (upstream: isFailed/isSucceeded)
                if monotonic:
                    return None
                continue
            if pod is None:
                # ordinals below the partition keep the current revision (newVersionedStatefulSetPod)
                use_current = self.rolling and index < self.start + self.partition
                if not self.create(index, current if use_current else update):
                    return FAILED_CREATE_RETRY
                if monotonic:
                    return None
                continue
            if monotonic and (_terminating(pod) or not running_and_ready(pod)):
                return None  # wait for this one before touching the next
        # scale down: highest ordinal first, one at a time unless Parallel, once the others are healthy
        for pod in sorted(condemned, key=lambda p: -(ordinal(self.name, p) or 0)):
            if _terminating(pod):
                if monotonic:
                    return None
                continue
            if monotonic and any(not running_and_ready(p) for p in by_index.values()):
                return None
            self.delete(pod)
            if monotonic:
                return None
        if not self.rolling:
            return None  # OnDelete: pods take the new template only when someone deletes them
        if any(_terminating(p) or not running_and_ready(p) for p in by_index.values()):
            return None
        update_name = update["metadata"]["name"]
        for index in range(self.start + self.replicas - 1, self.start + self.partition - 1, -1):
            pod = by_index.get(index)
            if pod is not None and pod["metadata"].get("labels", {}).get(REVISION_LABEL) != update_name:
                self.delete(pod)
                return None
        return None

    def write_status(self, pods: list[dict[str, Any]], current: dict[str, Any], update: dict[str, Any]) -> None:
        current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
        live = [p for p in pods if ordinal(self.name, p) is not None]
        revision_of = [p["metadata"].get("labels", {}).get(REVISION_LABEL) for p in live]
        min_ready = int(self.sts["spec"].get("minReadySeconds") or 0)
        moment = now()
        status: dict[str, Any] = {
            "observedGeneration": self.sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if running_and_ready(p)),
            "availableReplicas": sum(
                1 for p in live if running_and_ready(p) and pod_available_in(p, min_ready, moment) == 0
            ),
            "currentReplicas": revision_of.count(current_name),
            "updatedReplicas": revision_of.count(update_name),
            "currentRevision": current_name,
            "updateRevision": update_name,
            "collisionCount": int((self.sts.get("status") or {}).get("collisionCount") or 0),
        }
        # the update is complete once every wanted pod runs the update revision (upstream's completeRollingUpdate)
        if (
            self.rolling
            and status["updatedReplicas"] >= self.replicas
            and status["readyReplicas"] >= self.replicas
            and status["replicas"] == self.replicas
        ):
            status["currentRevision"] = update_name
            status["currentReplicas"] = status["updatedReplicas"]
        write_status(
            self.core, STATEFULSETS, self.sts, omit_zero(status, "readyReplicas", "currentReplicas", "updatedReplicas")
        )


class StatefulSetController(Controller):
    """Keeps each StatefulSet's ordinal pods, in order; keeps its status and revisions."""

    name = "statefulset-controller"
    primary = STATEFULSETS

    def sources(self) -> Sequence[Source]:
        return [Source(PODS, controlled_by("StatefulSet"))]

    def sync(self, key: Key) -> float | None:
        sts = self.get(STATEFULSETS, *key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        return _SetSync(self, sts).run()


async def run_statefulset_controller(core: ApiCore) -> None:
    """The StatefulSet controller's loop, as the daemon starts it."""
    await StatefulSetController(core).run()
