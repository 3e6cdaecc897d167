"""Pods and ownership, shared by the workload controllers (upstream's controller_utils and ControllerRefManager).

>>> controller_of({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": True}]}})
{'kind': 'ReplicaSet', 'name': 'web-1', 'controller': True}
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import label_selector_from_match
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.conditions import condition, parse_time

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.store import WatchEvent
    from labkit.sandbox.controllers.base import Key
    from labkit.sandbox.controllers.recorder import EventRecorder

PODS = RESOURCES.served("", "pods")
#: The field manager of every controller write, as kube-controller-manager's.
MANAGER = "kube-controller-manager"


def pod_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
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
    refs: list[dict[str, Any]] = obj["metadata"].get("ownerReferences") or []
    for ref in refs:
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


def selected(core: ApiCore, res: Resource, ns: str, selector: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Objects of *res* in *ns* matching a ``metav1.LabelSelector`` (None selects nothing, as upstream)."""
    parsed = label_selector_from_match(selector)
    if parsed.nothing:
        return []
    return list(core.list(res, ns, label_selector=parsed.to_string())["items"])


def owned(core: ApiCore, res: Resource, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """Objects of *res* in the owner's namespace matching its selector and controlled by it."""
    uid = owner["metadata"]["uid"]
    items = selected(core, res, owner["metadata"]["namespace"], owner.get("spec", {}).get("selector"))
    return [o for o in items if (controller_of(o) or {}).get("uid") == uid]


def claim_pods(core: ApiCore, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The owner's pods after upstream's ControllerRefManager rules: an orphan that matches the selector is
    adopted, an owned pod that stopped matching (``kubectl label pod x app-``) is released."""
    selector = label_selector_from_match(owner["spec"].get("selector"))
    uid = owner["metadata"]["uid"]
    claimed = []
    for pod in core.list(PODS, owner["metadata"]["namespace"])["items"]:
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
    return core.replace(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], pod, manager=MANAGER)[0]


def restarts(pod: dict[str, Any]) -> int:
    """The pod's container restarts, init containers included."""
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
            -restarts(pod),
            -created,
            pod["metadata"]["name"],
        )

    return sorted(pods, key=rank)


def create_pod(core: ApiCore, recorder: EventRecorder, owner: dict[str, Any]) -> dict[str, Any] | None:
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
        created, _ = core.create(PODS, ns, pod, manager=MANAGER)
    except StatusError as e:
        recorder.event(owner, "Warning", "FailedCreate", f"Error creating: {e.message}")
        return None
    recorder.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
    return created


def delete_pod(core: ApiCore, recorder: EventRecorder, owner: dict[str, Any], pod: dict[str, Any]) -> None:
    """Delete *owner*'s *pod*; records SuccessfulDelete or FailedDelete (a pod already gone is no failure)."""
    name = pod["metadata"]["name"]
    try:
        core.delete(PODS, pod["metadata"]["namespace"], name)
    except StatusError as e:
        if e.code == 404:
            return
        recorder.event(owner, "Warning", "FailedDelete", f"Error deleting: {e.message}")
        return
    recorder.event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")


def controlled_by(kind: str) -> Callable[[WatchEvent], list[Key]]:
    """Map an event's object to its controlling owner of *kind* (a pod → its ReplicaSet)."""

    def keys(event: WatchEvent) -> list[Key]:
        ref = controller_of(event.object)
        if ref is not None and ref.get("kind") == kind:
            return [(event.object["metadata"].get("namespace") or "", ref["name"])]
        return []

    return keys
