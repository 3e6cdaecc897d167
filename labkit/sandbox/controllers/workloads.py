"""Workload controllers: Deployment → ReplicaSet → Pods, and Jobs, as kube-controller-manager 1.32 runs them.

Each controller is an ``async def run_x(core)`` coroutine the daemon starts on the
API server's loop. They watch through ``core.store.watch``, queue the keys of the
objects an event touches, and reconcile each key level-triggered: the whole wanted
state is recomputed from what is stored now, so a missed or repeated event does no
harm. The names, conditions, reasons, messages and events are the ones learners
read in ``kubectl describe`` and ``kubectl rollout status`` on a real cluster.

>>> scaled_value("25%", 10, round_up=True), scaled_value("25%", 10, round_up=False), scaled_value(2, 10, round_up=True)
(3, 2, 2)
>>> len(pod_template_hash({"metadata": {"labels": {"app": "web"}}})) <= 10
True
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labkit.sandbox.api.apicore import ApiCore, now_rfc3339
from labkit.sandbox.api.events import record_event
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.selectors import label_selector_from_match
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import NAME_ALPHABET, Watcher
from labkit.timefmt import parse_rfc3339

log = logging.getLogger("labkit.sandbox.controllers.workloads")


served = RESOURCES.served  # kept as a name: the controllers' constants read best as served("apps", "deployments")


PODS = served("", "pods")
DEPLOYMENTS = served("apps", "deployments")
REPLICASETS = served("apps", "replicasets")
JOBS = served("batch", "jobs")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
#: Deployment annotations that stay on the Deployment (kubectl's bookkeeping and the controller's own).
_NOT_COPIED_TO_RS = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deployment.kubernetes.io/revision-history",
}
#: The job controller's pod re-creation back-off after failures (job_controller.go: DefaultJobPodFailureBackOff
#: 10 s, doubling up to MaxJobPodFailureBackOff 10 min).
JOB_BACKOFF_BASE = 10.0
JOB_BACKOFF_MAX = 600.0

Key = tuple[str, str]
Reconcile = Callable[[ApiCore, str, str], "float | None"]


# ---------------------------------------------------------------------------------------------- the control loop
@dataclass(frozen=True)
class Source:
    """A watched resource type and how one of its objects maps to the keys of the objects to reconcile."""

    resource: Resource
    keys: Callable[[ApiCore, dict[str, Any]], Iterable[Key]]


def own_key(core: ApiCore, obj: dict[str, Any]) -> list[Key]:
    """The object itself is the key (for the controller's primary resource)."""
    return [(obj["metadata"].get("namespace") or "", obj["metadata"]["name"])]


def controller_key(kind: str) -> Callable[[ApiCore, dict[str, Any]], Iterable[Key]]:
    """Map an object to its controlling owner of *kind* (a pod → its ReplicaSet)."""

    def keys(core: ApiCore, obj: dict[str, Any]) -> Iterable[Key]:
        ref = controller_of(obj)
        if ref is not None and ref.get("kind") == kind:
            return [(obj["metadata"].get("namespace") or "", ref["name"])]
        return []

    return keys


async def run_controller(
    core: ApiCore,
    name: str,
    primary: Resource,
    reconcile: Reconcile,
    sources: Sequence[Source] = (),
    resync: float = 30.0,
) -> None:
    """Reconcile every *primary* object whenever it or a *sources* object changes, and every *resync* s.

    *reconcile(core, namespace, name)* returns seconds after which to look again (a timer, such as
    minReadySeconds or a progress deadline) or None. Never raises: a failing loop restarts from a
    fresh list, as an informer does after its watch breaks.
    """
    loop = asyncio.get_running_loop()
    while True:
        dirty: set[Key] = set()
        wake = asyncio.Event()
        due: dict[Key, float] = {}
        watchers: list[Watcher] = []
        pumps: list[asyncio.Future[None]] = []
        try:
            for source in (Source(primary, own_key), *sources):
                watcher = core.store.watch(source.resource, None, since_rv=None)
                watchers.append(watcher)
                pumps.append(asyncio.ensure_future(_pump(core, watcher, source, dirty, wake)))
            next_resync = loop.time() + resync
            while True:
                deadline = min([next_resync, *due.values()])
                # a timer sets the event rather than wait_for(): 3.11's wait_for can swallow a cancellation
                timer = loop.call_later(max(deadline - loop.time(), 0), wake.set)
                try:
                    await wake.wait()
                finally:
                    timer.cancel()
                wake.clear()
                for pump in pumps:
                    if pump.done():
                        pump.result()  # a watcher ended: raise to re-list
                        raise RuntimeError(f"{name}: a watch ended")
                now = loop.time()
                for key, when in list(due.items()):
                    if when <= now:
                        dirty.add(key)
                        del due[key]
                if now >= next_resync:
                    dirty.update(own_key(core, o)[0] for o in core.store.list(primary)[0])
                    next_resync = now + resync
                batch = sorted(dirty)
                dirty.clear()
                for key in batch:
                    after = _reconcile_one(core, name, reconcile, key)
                    if after is not None:
                        due[key] = min(due.get(key, math.inf), loop.time() + after)
                    await asyncio.sleep(0)  # let the API server answer requests between keys
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the controller alive; the log says what broke
            log.exception("%s failed; restarting it", name)
            await asyncio.sleep(0.5)
        finally:
            for pump in pumps:
                pump.cancel()
            for watcher in watchers:
                watcher.close()


def _reconcile_one(core: ApiCore, name: str, reconcile: Reconcile, key: Key) -> float | None:
    try:
        return reconcile(core, *key)
    except StatusError as e:
        if e.code in (404, 409):  # raced with another writer: look again soon
            return 0.05
        log.warning("%s: syncing %s/%s failed: %s", name, key[0], key[1], e.message)
        return 2.0
    except Exception:
        log.exception("%s: syncing %s/%s failed", name, *key)
        return 5.0


async def _pump(core: ApiCore, watcher: Watcher, source: Source, dirty: set[Key], wake: asyncio.Event) -> None:
    while True:
        event = await watcher.next(None)
        if event is None:
            return  # closed (fell behind): the loop notices and re-lists
        dirty.update(source.keys(core, event.object))
        wake.set()


# --------------------------------------------------------------------------------------------------- pod helpers
def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None."""
    if not text:
        return None
    return parse_rfc3339(text).timestamp()


def _now() -> float:
    return datetime.now(UTC).timestamp()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The ``status.conditions`` entry of *type_*, or None."""
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return c
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def pod_available_in(pod: dict[str, Any], min_ready_seconds: int, now: float) -> float | None:
    """0 when *pod* is available, the seconds until it will be when only minReadySeconds is missing, else None."""
    if not pod_ready(pod):
        return None
    if not min_ready_seconds:
        return 0.0
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime")) or now
    return max(since + min_ready_seconds - now, 0.0)


def pod_active(pod: dict[str, Any]) -> bool:
    """Counts for a controller: not being deleted and not finished (upstream's FilterActivePods)."""
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, or None."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """What a controller puts on the objects it creates (the garbage collector follows it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned(core: ApiCore, res: Resource, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """Objects of *res* in the owner's namespace matching its selector and controlled by it."""
    selector = label_selector_from_match(owner.get("spec", {}).get("selector"))
    uid = owner["metadata"]["uid"]
    items = core.store.list(res, owner["metadata"]["namespace"], selector)[0]
    return [o for o in items if (controller_of(o) or {}).get("uid") == uid]


def claim_pods(core: ApiCore, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The owner's pods after upstream's ControllerRefManager rules: an orphan that matches the selector is
    adopted, an owned pod that stopped matching (``kubectl label pod x app-``) is released."""
    selector = label_selector_from_match(owner["spec"].get("selector"))
    uid = owner["metadata"]["uid"]
    claimed = []
    for pod in core.store.list(PODS, owner["metadata"]["namespace"])[0]:
        ref = controller_of(pod)
        matches = selector.matches(pod["metadata"].get("labels") or {})
        refs = pod["metadata"].get("ownerReferences") or []
        if ref is not None and ref.get("uid") == uid:
            if matches:
                claimed.append(pod)
            else:
                _set_owner_references(core, pod, [r for r in refs if r.get("uid") != uid])
        elif ref is None and matches and not pod["metadata"].get("deletionTimestamp"):
            claimed.append(_set_owner_references(core, pod, [*refs, owner_reference(owner)]))
    return claimed


def _set_owner_references(core: ApiCore, pod: dict[str, Any], refs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"]["ownerReferences"] = refs
    if not refs:
        del pod["metadata"]["ownerReferences"]
    return core.replace(
        PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], pod, manager="kube-controller-manager"
    )[0]


def _restarts(pod: dict[str, Any]) -> int:
    status = pod.get("status") or {}
    return sum(
        int(c.get("restartCount", 0))
        for key in ("initContainerStatuses", "containerStatuses")
        for c in status.get(key) or ()
    )


def deletion_order(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods in the order a scale-down deletes them, as upstream ranks them: unscheduled before scheduled,
    Pending before Running, not ready before ready, ready for less time first, more restarts first,
    newest first."""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}

    def rank(pod: dict[str, Any]) -> tuple[Any, ...]:
        ready = pod_ready(pod)
        since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime")) or 0.0 if ready else 0.0
        created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
        return (
            bool(pod["spec"].get("nodeName")),
            phase_rank.get((pod.get("status") or {}).get("phase", ""), 0),
            ready,
            -since,
            -_restarts(pod),
            -created,
            pod["metadata"]["name"],
        )

    return sorted(pods, key=rank)


def create_pod(core: ApiCore, owner: dict[str, Any], component: str) -> dict[str, Any] | None:
    """Create a pod from *owner*'s template named ``<owner>-<5 chars>``; records SuccessfulCreate or FailedCreate."""
    template = copy.deepcopy(owner["spec"]["template"])
    meta = template.get("metadata") or {}
    ns = owner["metadata"]["namespace"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{owner['metadata']['name']}-",
            "namespace": ns,
            "labels": meta.get("labels") or {},
            **({"annotations": meta["annotations"]} if meta.get("annotations") else {}),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": template.get("spec") or {},
    }
    try:
        created, _ = core.create(PODS, ns, pod, manager="kube-controller-manager")
    except StatusError as e:
        record_event(core, owner, "Warning", "FailedCreate", f"Error creating: {e.message}", component)
        return None
    record_event(core, owner, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", component)
    return created


def delete_pod(core: ApiCore, owner: dict[str, Any], pod: dict[str, Any], component: str) -> None:
    name = pod["metadata"]["name"]
    try:
        core.delete(PODS, pod["metadata"]["namespace"], name)
    except StatusError as e:
        if e.code == 404:
            return
        record_event(core, owner, "Warning", "FailedDelete", f"Error deleting: {e.message}", component)
        return
    record_event(core, owner, "Normal", "SuccessfulDelete", f"Deleted pod: {name}", component)


def write_status(core: ApiCore, res: Resource, obj: dict[str, Any], status: dict[str, Any]) -> None:
    """Store *status* through the status subresource unless it is unchanged (no event, no new rv)."""
    if status != (obj.get("status") or {}):
        meta = obj["metadata"]
        core.replace(res, meta["namespace"], meta["name"], {**obj, "status": status}, subresource="status")


def set_condition(conditions: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Upstream's SetCondition: unchanged (status, reason) keeps the old entry; a changed reason keeps the
    lastTransitionTime of the same status; the changed condition moves to the end of the list."""
    current = next((c for c in conditions if c["type"] == new["type"]), None)
    if current is not None and current["status"] == new["status"] and current.get("reason") == new.get("reason"):
        return conditions
    if current is not None and current["status"] == new["status"]:
        new = {**new, "lastTransitionTime": current["lastTransitionTime"]}
    return [c for c in conditions if c["type"] != new["type"]] + [new]


def _omit_zero(status: dict[str, Any], *fields: str) -> dict[str, Any]:
    """Counters are ``omitempty`` in the Go types: zero does not appear."""
    return {k: v for k, v in status.items() if not (k in fields and v == 0)}


# -------------------------------------------------------------------------------------------------- ReplicaSets
def reconcile_replicaset(core: ApiCore, ns: str, name: str) -> float | None:
    """Create or delete pods until the ReplicaSet has ``spec.replicas`` active ones; update its status."""
    rs = core.store.get(REPLICASETS, ns, name)
    if rs is None or rs["metadata"].get("deletionTimestamp"):
        return None
    spec = rs["spec"]
    active = [p for p in claim_pods(core, rs) if pod_active(p)]
    diff = len(active) - int(spec.get("replicas", 1))
    failed_create = False
    if diff < 0:
        for _ in range(-diff):
            if create_pod(core, rs, "replicaset-controller") is None:
                failed_create = True
                break
    elif diff > 0:
        for pod in deletion_order(active)[:diff]:
            delete_pod(core, rs, pod, "replicaset-controller")
    if diff:
        active = [p for p in owned(core, PODS, rs) if pod_active(p)]
    status, after = replicaset_status(rs, active)
    if failed_create:
        status["conditions"] = set_condition(
            status.get("conditions", []),
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": now_rfc3339(),
                "reason": "FailedCreate",
                "message": "could not create all pods (see the FailedCreate event)",
            },
        )
        after = 5.0
    write_status(core, REPLICASETS, rs, status)
    return after


def replicaset_status(rs: dict[str, Any], active: list[dict[str, Any]]) -> tuple[dict[str, Any], float | None]:
    """The status for *active* pods, and when a pending minReadySeconds makes one available."""
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    now = _now()
    waits = [pod_available_in(p, min_ready, now) for p in active]
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
    return _omit_zero(status, "fullyLabeledReplicas", "readyReplicas", "availableReplicas"), (
        min(pending) + 0.05 if pending else None
    )


async def run_replicaset_controller(core: ApiCore) -> None:
    """The ReplicaSet controller (pods named ``<rs>-<5 chars>``, events SuccessfulCreate/SuccessfulDelete)."""
    await run_controller(
        core, "replicaset-controller", REPLICASETS, reconcile_replicaset, [Source(PODS, controller_key("ReplicaSet"))]
    )


# --------------------------------------------------------------------------------------------------- Deployments
def fnv32a(data: bytes) -> int:
    """The 32-bit FNV-1a hash (what upstream hashes pod templates with)."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def pod_template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """The ``pod-template-hash`` of *template*: FNV-1a of its canonical JSON (plus the collision count),
    its decimal digits spelled in Kubernetes' safe alphabet as upstream's SafeEncodeString does."""
    data = json.dumps(_without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(NAME_ALPHABET[ord(digit) % len(NAME_ALPHABET)] for digit in str(fnv32a(data)))


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return template


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString (``2`` or ``"25%"``) resolved against *total*: percentages round up for maxSurge,
    down for maxUnavailable."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%") and text[:-1].isdigit():
        exact = int(text[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if text.isdigit():
        return int(text)
    raise ValueError(f'invalid value for IntOrString: invalid type: string is not a percentage: "{text}"')


def surge_and_unavailable(d: dict[str, Any]) -> tuple[int, int]:
    """maxSurge and maxUnavailable as pod counts (upstream's ResolveFenceposts; Recreate: 0 and 0)."""
    spec = d["spec"]
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return 0, 0
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    replicas = int(spec.get("replicas", 1))
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # a rollout must be able to make progress
    return surge, unavailable


def _revision(rs: dict[str, Any]) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _created(obj: dict[str, Any]) -> tuple[float, str]:
    return parse_time(obj["metadata"].get("creationTimestamp")) or 0.0, obj["metadata"]["name"]


def _spec_replicas(rs: dict[str, Any] | None) -> int:
    return int(rs["spec"].get("replicas", 0)) if rs else 0


def _status_count(rs: dict[str, Any] | None, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0)) if rs else 0


class _DeploymentSync:
    """One sync of one Deployment (upstream's syncDeployment with rolloutRolling / rolloutRecreate)."""

    def __init__(self, core: ApiCore, d: dict[str, Any]) -> None:
        self.core, self.d = core, d
        self.name = d["metadata"]["name"]
        self.replicas = int(d["spec"].get("replicas", 1))
        self.surge, self.unavailable = surge_and_unavailable(d)
        self.status = copy.deepcopy(d.get("status") or {})

    # ----------------------------------------------------------- replica sets
    def replica_sets(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The new RS (same template as the Deployment) and the old ones, oldest first."""
        all_rs = sorted(owned(self.core, REPLICASETS, self.d), key=_created)
        template = _without_hash(self.d["spec"]["template"])
        new = next((rs for rs in all_rs if _without_hash(rs["spec"]["template"]) == template), None)
        return new, [rs for rs in all_rs if rs is not new]

    def new_rs_replicas(self, all_rs: list[dict[str, Any]], new: dict[str, Any] | None) -> int:
        """How many replicas the new RS should have now (upstream's NewRSNewReplicas)."""
        if self.recreate:
            return self.replicas
        current = sum(_spec_replicas(rs) for rs in all_rs)
        new_count = _spec_replicas(new)
        if current >= self.replicas + self.surge:
            return new_count
        return new_count + max(0, min(self.replicas + self.surge - current, self.replicas - new_count))

    @property
    def recreate(self) -> bool:
        return (self.d["spec"].get("strategy") or {}).get("type") == "Recreate"

    def rs_annotations(self, revision: int) -> dict[str, str]:
        base = {k: v for k, v in (self.d["metadata"].get("annotations") or {}).items() if k not in _NOT_COPIED_TO_RS}
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
                    "annotations": self.rs_annotations(max(map(_revision, old), default=0) + 1),
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
                created, _ = self.core.create(
                    REPLICASETS, rs["metadata"]["namespace"], rs, manager="kube-controller-manager"
                )
                break
            except StatusError as e:
                if e.code != 409:
                    message = f'Failed to create new replica set "{rs["metadata"]["name"]}": {e.message}'
                    record_event(self.core, self.d, "Warning", "FailedCreate", message, "deployment-controller")
                    self.set_progressing("False", "ReplicaSetCreateError", message)
                    write_status(self.core, DEPLOYMENTS, self.d, self.status)
                    raise
                collisions += 1  # a different template already has this name: hash again
                self.status["collisionCount"] = collisions
        if replicas > 0:
            self.event(f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
        self.set_progressing("True", "NewReplicaSetCreated", f'Created new replica set "{created["metadata"]["name"]}"')
        return created

    def sync_new_rs(self, new: dict[str, Any], old: list[dict[str, Any]]) -> dict[str, Any]:
        """Keep the new RS's revision ahead of the old ones (after an undo) and its minReadySeconds in step."""
        wanted_revision = max(_revision(new), max(map(_revision, old), default=0) + 1)
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
        return self.core.replace(REPLICASETS, meta["namespace"], meta["name"], rs, manager="kube-controller-manager")[0]

    def scale(self, rs: dict[str, Any], to: int) -> dict[str, Any]:
        """Set *rs*'s replicas (and the desired/max annotations) and record ScalingReplicaSet."""
        current = _spec_replicas(rs)
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
        record_event(self.core, self.d, "Normal", "ScalingReplicaSet", message, "deployment-controller")

    # ----------------------------------------------------------- strategies
    def rolling(self, new: dict[str, Any] | None, old: list[dict[str, Any]]) -> None:
        all_rs = [*old, *([new] if new else [])]
        if new is None:
            new = self.create_new_rs(old, self.new_rs_replicas(all_rs, None))
            all_rs.append(new)
        else:
            new = self.sync_new_rs(new, old)
            want = self.replicas if _spec_replicas(new) > self.replicas else self.new_rs_replicas(all_rs, new)
            new = self.scale(new, want)
            all_rs = [*old, new]
        self.scale_down_old(new, old, all_rs)

    def scale_down_old(self, new: dict[str, Any], old: list[dict[str, Any]], all_rs: list[dict[str, Any]]) -> None:
        """Upstream's reconcileOldReplicaSets: first unhealthy old replicas, then healthy ones while at least
        ``replicas - maxUnavailable`` pods stay available."""
        if not sum(_spec_replicas(rs) for rs in old):
            return
        min_available = self.replicas - self.unavailable
        new_unavailable = _spec_replicas(new) - _status_count(new, "availableReplicas")
        budget = sum(_spec_replicas(rs) for rs in all_rs) - min_available - new_unavailable
        if budget <= 0:
            return
        scaled = 0
        for i, rs in enumerate(old):  # oldest first: unhealthy replicas cost no availability
            if scaled >= budget:
                break
            unhealthy = _spec_replicas(rs) - _status_count(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            cut = min(budget - scaled, unhealthy)
            old[i] = self.scale(rs, _spec_replicas(rs) - cut)
            scaled += cut
        # then healthy ones, as far as availability allows (upstream does not charge the first step here)
        allowed = sum(_status_count(rs, "availableReplicas") for rs in [*old, new]) - min_available
        for i, rs in enumerate(old):
            if allowed <= 0:
                break
            cut = min(_spec_replicas(rs), allowed)
            if cut:
                old[i] = self.scale(rs, _spec_replicas(rs) - cut)
                allowed -= cut

    def recreate_rollout(self, new: dict[str, Any] | None, old: list[dict[str, Any]]) -> None:
        """Upstream's rolloutRecreate: all old pods down and gone, then the new RS up."""
        scaled_down = False
        for rs in old:
            if _spec_replicas(rs):
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
                if not _spec_replicas(rs)
                and not _status_count(rs, "replicas")
                and not rs["metadata"].get("deletionTimestamp")
            ),
            key=lambda rs: (_revision(rs), _created(rs)),
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
        now = now_rfc3339()
        new = {
            "type": "Progressing",
            "status": status,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
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
        available = sum(_status_count(rs, "availableReplicas") for rs in all_rs)
        counts = {
            "observedGeneration": self.d["metadata"].get("generation", 1),
            "replicas": sum(_status_count(rs, "replicas") for rs in all_rs),
            "updatedReplicas": _status_count(new, "replicas"),
            "readyReplicas": sum(_status_count(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(_spec_replicas(rs) for rs in all_rs) - available, 0),
        }
        for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            self.status.pop(field, None)
        self.status.update(
            _omit_zero(
                counts, "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"
            )
        )
        now = now_rfc3339()
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
                "lastUpdateTime": now,
                "lastTransitionTime": now,
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
        deadline = (parse_time(current.get("lastUpdateTime")) or _now()) + int(
            self.d["spec"]["progressDeadlineSeconds"]
        )
        if _now() >= deadline:
            self.set_progressing("False", "ProgressDeadlineExceeded", f"{subject} has timed out progressing.")
            return None
        return deadline - _now() + 0.5

    def sync_revision_annotation(self, new: dict[str, Any] | None) -> None:
        """The Deployment carries its new RS's revision (``kubectl rollout history`` reads it)."""
        if new is None:
            return
        wanted = (new["metadata"].get("annotations") or {}).get(REVISION)
        annotations = self.d["metadata"].get("annotations") or {}
        if wanted and annotations.get(REVISION) != wanted:
            d = copy.deepcopy(self.d)
            d["metadata"].setdefault("annotations", {})[REVISION] = wanted
            self.d = self.core.replace(
                DEPLOYMENTS, d["metadata"]["namespace"], self.name, d, manager="kube-controller-manager"
            )[0]

    @staticmethod
    def active_or_latest(new: dict[str, Any] | None, old: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The only RS with replicas, or the newest one when none has any; None when several have."""
        candidates = [*old, *([new] if new else [])]
        active = [rs for rs in candidates if _spec_replicas(rs)]
        if len(active) > 1:
            return None
        return active[0] if active else (new or max(candidates, key=_created, default=None))

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
            if _spec_replicas(rs) and desired is not None and desired != str(self.replicas):
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
            and _spec_replicas(new) == self.replicas == _status_count(new, "availableReplicas")
            and (new["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS) == str(self.replicas)
        ):
            for rs in old:  # the new RS is saturated: the old ones are not needed any more
                if _spec_replicas(rs):
                    self.scale(rs, 0)
            return
        if self.recreate:
            return
        active = [rs for rs in [*old, *([new] if new else [])] if _spec_replicas(rs)]
        allowed = self.replicas + self.surge if self.replicas else 0
        to_add = allowed - sum(_spec_replicas(rs) for rs in active)
        # the biggest first; on a tie the newer one grows first and the older one shrinks first
        active.sort(key=lambda rs: (-_spec_replicas(rs), -_created(rs)[0] if to_add > 0 else _created(rs)[0]))
        sizes, added = [], 0
        for rs in active:
            share = 0
            if to_add:
                fraction, remaining = self.fraction(rs, allowed), to_add - added
                share = min(fraction, remaining) if to_add > 0 else max(fraction, remaining)
            sizes.append(_spec_replicas(rs) + share)
            added += share
        if active:
            sizes[0] = max(sizes[0] + to_add - added, 0)  # rounding leftovers go to the biggest
        for rs, size in zip(active, sizes, strict=True):
            self.scale(rs, size)

    def fraction(self, rs: dict[str, Any], allowed: int) -> int:
        """Replicas *rs* gains (or loses) when the allowed total moves from its max-replicas annotation to
        *allowed* (upstream's getReplicaSetFraction, rounding half away from zero)."""
        if not self.replicas:
            return -_spec_replicas(rs)
        try:
            annotated = int((rs["metadata"].get("annotations") or {})[MAX_REPLICAS])
        except (KeyError, ValueError):
            annotated = int(self.status.get("replicas", 0))
        if not annotated:
            return 0
        return math.floor(_spec_replicas(rs) * allowed / annotated + 0.5) - _spec_replicas(rs)

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


def reconcile_deployment(core: ApiCore, ns: str, name: str) -> float | None:
    """Roll the Deployment's ReplicaSets toward its template and replica count; update its status."""
    d = core.store.get(DEPLOYMENTS, ns, name)
    if d is None or d["metadata"].get("deletionTimestamp"):
        return None
    try:
        sync = _DeploymentSync(core, d)
    except ValueError as e:  # a maxSurge/maxUnavailable the API server should have refused; wait for a fix
        log.warning("deployment %s/%s cannot roll out: %s", ns, name, e)
        return None
    return sync.run()


async def run_deployment_controller(core: ApiCore) -> None:
    """The Deployment controller (ReplicaSets ``<deploy>-<pod-template-hash>``, rolling update, Recreate)."""

    def deployment_of_pod(core: ApiCore, pod: dict[str, Any]) -> Iterable[Key]:
        # Recreate waits for old pods to be gone, so their deletion must wake the Deployment.
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return []
        rs = core.store.get(REPLICASETS, pod["metadata"]["namespace"], ref["name"])
        return controller_key("Deployment")(core, rs) if rs else []

    await run_controller(
        core,
        "deployment-controller",
        DEPLOYMENTS,
        reconcile_deployment,
        [Source(REPLICASETS, controller_key("Deployment")), Source(PODS, deployment_of_pod)],
    )


# ---------------------------------------------------------------------------------------------------------- Jobs
def _job_condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    now = now_rfc3339()
    return {
        "type": type_,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def _finished_at(pod: dict[str, Any]) -> float:
    """When a failed pod's last container ended (its creation time when unknown)."""
    ends = [
        parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for c in (pod.get("status") or {}).get("containerStatuses") or ()
    ]
    known = [e for e in ends if e]
    return max(known) if known else (parse_time(pod["metadata"].get("creationTimestamp")) or _now())


def job_finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or ()
    )


def reconcile_job(core: ApiCore, ns: str, name: str, backoff_base: float = JOB_BACKOFF_BASE) -> float | None:
    """Run the Job's pods to ``completions`` successes or to its backoff limit; update its status."""
    job = core.store.get(JOBS, ns, name)
    if job is None or job["metadata"].get("deletionTimestamp") or job_finished(job):
        return None
    spec, status = job["spec"], copy.deepcopy(job.get("status") or {})
    pods = owned(core, PODS, job)
    active = [p for p in pods if pod_active(p)]
    phases = [(p.get("status") or {}).get("phase") for p in pods]
    # Pods may be deleted after they finished; the recorded counts never go down.
    succeeded = max(phases.count("Succeeded"), int(status.get("succeeded", 0)))
    failed = max(phases.count("Failed"), int(status.get("failed", 0)))
    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1))
    backoff_limit = int(spec.get("backoffLimit", 6))
    now = _now()
    conditions = status.get("conditions") or []
    if not status.get("startTime") and not spec.get("suspend"):
        status["startTime"] = now_rfc3339()
    after: float | None = None

    failure = next(
        ((c["reason"], c["message"]) for c in conditions if c["type"] == "FailureTarget" and c["status"] == "True"),
        None,
    )
    if failure is None:
        restarts = (
            sum(_restarts(p) for p in active) if spec["template"]["spec"].get("restartPolicy") == "OnFailure" else 0
        )
        deadline = spec.get("activeDeadlineSeconds")
        if failed > backoff_limit or (restarts and (restarts >= backoff_limit or backoff_limit == 0)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and now >= (parse_time(status.get("startTime")) or now) + int(deadline):
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        elif deadline is not None:
            after = (parse_time(status.get("startTime")) or now) + int(deadline) - now + 0.05
        if failure is not None:
            conditions = set_condition(conditions, _job_condition("FailureTarget", "True", *failure))
    success = (completions is not None and succeeded >= int(completions)) or (
        completions is None and succeeded > 0 and not active
    )
    if success and failure is None:
        conditions = set_condition(
            conditions,
            _job_condition(
                "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"
            ),
        )

    if failure is not None or success or spec.get("suspend"):
        for pod in active:
            delete_pod(core, job, pod, "job-controller")
    else:
        want = (
            min(int(completions) - succeeded, parallelism)
            if completions is not None
            else (parallelism if not succeeded else len(active))
        )
        if len(active) > want:
            for pod in deletion_order(active)[: len(active) - want]:
                delete_pod(core, job, pod, "job-controller")
        elif len(active) < want:
            failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
            wait = 0.0
            if failed_pods:
                delay = min(backoff_base * 2 ** (len(failed_pods) - 1), JOB_BACKOFF_MAX)
                wait = max(_finished_at(p) for p in failed_pods) + delay - now
            if wait > 0:
                after = wait if after is None else min(after, wait)
            else:
                for _ in range(want - len(active)):
                    if create_pod(core, job, "job-controller") is None:
                        after = 5.0
                        break
    if spec.get("suspend"):
        conditions = set_condition(conditions, _job_condition("Suspended", "True", "JobSuspended", "Job suspended"))
    elif condition({"status": {"conditions": conditions}}, "Suspended"):
        conditions = set_condition(conditions, _job_condition("Suspended", "False", "JobResumed", "Job resumed"))

    pods = owned(core, PODS, job)
    active = [p for p in pods if pod_active(p)]
    terminating = [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp")
        and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    if not active and not terminating and (failure is not None or success):
        # the terminal condition waits until no pod of the Job is still running, as in 1.32
        if failure is not None:
            conditions = set_condition(conditions, _job_condition("Failed", "True", *failure))
            record_event(core, job, "Warning", failure[0], failure[1], "job-controller")
        else:
            conditions = set_condition(
                conditions,
                _job_condition("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
            )
            status["completionTime"] = now_rfc3339()
            record_event(core, job, "Normal", "Completed", "Job completed", "job-controller")
    elif (failure is not None or success) and after is None:
        after = 0.5
    status.update(
        {
            "active": len(active),
            "succeeded": succeeded,
            "failed": failed,
            "ready": sum(1 for p in active if pod_ready(p)),
            "terminating": len(terminating),
            "uncountedTerminatedPods": {},
        }
    )
    if conditions:
        status["conditions"] = conditions
    for field in ("active", "succeeded", "failed"):
        if not status[field]:
            del status[field]
    write_status(core, JOBS, job, status)
    return after


async def run_job_controller(core: ApiCore, backoff_base: float = JOB_BACKOFF_BASE) -> None:
    """The Job controller (pods ``<job>-<5 chars>``, Complete / Failed with BackoffLimitExceeded)."""
    await run_controller(
        core,
        "job-controller",
        JOBS,
        lambda c, ns, name: reconcile_job(c, ns, name, backoff_base),
        [Source(PODS, controller_key("Job"))],
    )
