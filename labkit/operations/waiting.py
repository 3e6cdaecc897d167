"""Waiting for objects to reach a state, by watching them: ``kubectl rollout status`` rules, a progress view,
and a diagnosis as soon as a failure cannot heal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import watch

from labkit import evidence, resources
from labkit.diagnosis import diagnose_pod
from labkit.errors import ApiError, Diagnosis, LabkitError, WaitFailed
from labkit.widgets import Progress, progress

if TYPE_CHECKING:
    from labkit.cluster import Cluster

#: Diagnosis signatures that still leave a chance of success, so a wait keeps waiting through them.
RECOVERABLE = {None, "unschedulable", "exit-nonzero"}
#: What a wait means when no condition is given.
DEFAULT_CONDITION = {"Pod": "Ready", "Deployment": "Available", "Job": "Complete"}


@dataclass
class _Verdict:
    """One watched object judged: reached the goal, its status line, and why it never will (if so)."""

    done: bool
    line: str
    failure: str | None = None


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def _true(obj: dict[str, Any], condition: str) -> bool:
    return (_conditions(obj).get(condition) or {}).get("status") == "True"


def _pod_verdict(pod: dict[str, Any], condition: str | None, phase: str | None) -> _Verdict:
    status = pod.get("status") or {}
    current = status.get("phase", "Pending")
    waiting = [
        st.get("reason")
        for c in status.get("containerStatuses") or []
        for k, st in (c.get("state") or {}).items()
        if k == "waiting" and st and st.get("reason")
    ]
    line = f"pod/{pod['metadata']['name']} {current}" + (f" ({', '.join(waiting)})" if waiting else "")
    if phase:
        if current == phase:
            return _Verdict(True, line)
        if current in ("Succeeded", "Failed"):
            return _Verdict(False, line, f"the pod ended {current}, not {phase}")
        return _Verdict(False, line)
    if _true(pod, condition or "Ready"):
        return _Verdict(True, line + f", {condition or 'Ready'}")
    if current in ("Succeeded", "Failed"):
        return _Verdict(False, line, f"the pod ended {current} without becoming {condition or 'Ready'}")
    return _Verdict(False, line)


def _deployment_verdict(d: dict[str, Any], condition: str | None) -> _Verdict:
    """``kubectl rollout status`` rules: observed generation, then updated, old and available replicas."""
    name, spec, status = d["metadata"]["name"], d.get("spec") or {}, d.get("status") or {}
    if condition not in (None, "Available"):
        return _Verdict(_true(d, condition), f"deployment/{name} {condition}={_true(d, condition)}")
    want = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    progressing = _conditions(d).get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return _Verdict(False, f"deployment/{name} stalled", f"deployment {name!r} exceeded its progress deadline")
    if d["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return _Verdict(False, f"deployment/{name}: waiting for the controller to see the new spec")
    if updated < want:
        return _Verdict(False, f"deployment/{name}: {updated} of {want} new replicas updated")
    if total > updated:
        return _Verdict(False, f"deployment/{name}: {total - updated} old replicas pending termination")
    if available < updated:
        return _Verdict(False, f"deployment/{name}: {available} of {updated} updated replicas available")
    return _Verdict(True, f"deployment/{name} successfully rolled out ({available}/{want} available)")


def _job_verdict(job: dict[str, Any], condition: str | None) -> _Verdict:
    name, status = job["metadata"]["name"], job.get("status") or {}
    wanted = condition or "Complete"
    counts = (
        f"active {status.get('active', 0)}, succeeded {status.get('succeeded', 0)}, failed {status.get('failed', 0)}"
    )
    line = f"job/{name} {counts}"
    if _true(job, wanted):
        return _Verdict(True, f"job/{name} {wanted} ({counts})")
    for end in ("Complete", "Failed"):
        if end != wanted and _true(job, end):
            message = (_conditions(job)[end].get("message") or _conditions(job)[end].get("reason") or "").strip()
            return _Verdict(False, line, f"job {name!r} ended {end}" + (f": {message}" if message else ""))
    return _Verdict(False, line)


def _verdict(kind: str, obj: dict[str, Any], condition: str | None, phase: str | None) -> _Verdict:
    if kind == "Pod":
        return _pod_verdict(obj, condition, phase)
    if kind == "Deployment":
        return _deployment_verdict(obj, condition)
    if kind == "Job":
        return _job_verdict(obj, condition)
    name = f"{kind.lower()}/{obj['metadata']['name']}"
    if phase:
        current = (obj.get("status") or {}).get("phase")
        return _Verdict(current == phase, f"{name} {current}")
    wanted = condition or "Ready"
    return _Verdict(_true(obj, wanted), f"{name} {wanted}={_true(obj, wanted)}")


def wait_for(
    cluster: Cluster,
    kind: str,
    name: str | None = None,
    *,
    namespace: str,
    selector: str | None = None,
    condition: str | None = None,
    phase: str | None = None,
    timeout: float = 120.0,
    view: Progress | None = None,
) -> list[dict[str, Any]]:
    """Wait until the object *name* (or every object *selector* matches, at least one) reaches a state.

    *name* may itself be a label selector (``"app=demo"``).

    *condition*: ``Ready`` (pods), ``Available`` (Deployments, by ``kubectl rollout status`` rules),
    ``Complete``/``Failed`` (Jobs), or any condition type; *phase*: a pod phase such as ``Succeeded``.
    Watch-based; shows a progress view. Returns the objects in their final state. On timeout or a failure
    that cannot heal (CrashLoopBackOff, ErrImageNeverPull, a failed Job, …) raises :class:`WaitFailed`
    carrying the diagnosis.

    >>> wait_for(cluster, "Deployment", "demo", namespace="lab-01", timeout=60)   # doctest: +SKIP
    """
    if name is not None and "=" in name and selector is None:  # a label selector in the name's place
        name, selector = None, name
    if (name is None) == (selector is None):
        raise LabkitError(
            "wait_for needs exactly one of name=... or selector=...",
            "e.g. wait_for(cluster, 'Pod', 'demo-abc12', namespace=ns) or selector='app=demo'",
        )
    res = resources.resource(cluster, kind)
    kind = res.kind
    condition = None if phase else (condition or DEFAULT_CONDITION.get(kind, "Ready"))
    what = f"{kind.lower()}/{name}" if name else f"{kind.lower()}s with {selector}"
    goal = f"phase {phase}" if phase else condition
    view = view or progress(f"waiting for {what} to be {goal}")
    deadline = time.monotonic() + timeout
    field_selector = f"metadata.name={name}" if name else None
    objects: dict[str, dict[str, Any]] = {}
    rv = ""
    relist = True
    while True:
        if relist:
            items, rv = resources.list_objects(
                cluster, kind, namespace, label_selector=selector, field_selector=field_selector
            )
            objects = {o["metadata"]["name"]: o for o in items}
            relist = False
        finished, line, failure = _judge(kind, objects, condition, phase)
        pods = _board_pods(cluster, kind, list(objects.values()), namespace)
        view.update(line, pods)
        if finished:
            view.close(line)
            return list(objects.values())
        diagnosis = _diagnosis_for(cluster, kind, list(objects.values()), pods, namespace)
        hopeless = diagnosis is not None and diagnosis.signature not in RECOVERABLE
        reason = failure or (diagnosis.summary if hopeless and diagnosis is not None else None)
        if reason:
            view.close(f"failed: {reason}")
            raise _wait_failed(f"{what} will not become {goal}: {reason}", diagnosis)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            view.close(f"timed out after {timeout:g} s: {line}")
            raise _wait_failed(f"{what} did not become {goal} within {timeout:g} s (last: {line})", diagnosis)
        watcher = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in resources.watch_events(
                res,
                watcher,
                namespace=namespace if res.namespaced else None,
                label_selector=selector,
                field_selector=field_selector,
                resource_version=rv,
                timeout=max(1, min(resources.WATCH_WINDOW_S, int(remaining + 0.999))),
            ):
                obj = event["raw_object"]
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event["type"] == "DELETED":
                    objects.pop(obj["metadata"]["name"], None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    objects[obj["metadata"]["name"]] = obj
                else:
                    continue
                finished, _, failure = _judge(kind, objects, condition, phase)
                if finished or failure or (kind == "Pod" and _alarming(obj)):
                    watcher.stop()  # type: ignore[no-untyped-call]  # judge now: done, failed, or worth a diagnosis before the window ends
        except ApiError as e:
            if e.code != 410:
                raise
            relist = True  # the server compacted the history we watched from: start again from a list


#: Container waiting reasons that rarely heal by themselves: a wait diagnoses them at once.
ALARMING_REASONS = {
    "CrashLoopBackOff",
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
}


def _alarming(pod: dict[str, Any]) -> bool:
    return any(
        (st or {}).get("reason") in ALARMING_REASONS
        for c in (pod.get("status") or {}).get("containerStatuses") or []
        for st in (c.get("state") or {}).values()
    )


def _judge(
    kind: str, objects: dict[str, dict[str, Any]], condition: str | None, phase: str | None
) -> tuple[bool, str, str | None]:
    """(all done, status line, first failure) over the watched objects; none yet means not done."""
    if not objects:
        return False, "none found yet", None
    verdicts = [_verdict(kind, o, condition, phase) for _, o in sorted(objects.items())]
    failure = next((v.failure for v in verdicts if v.failure), None)
    line = (
        "; ".join(v.line for v in verdicts)
        if len(verdicts) <= 3
        else f"{sum(v.done for v in verdicts)} of {len(verdicts)} done; "
        + "; ".join(v.line for v in verdicts if not v.done)[:200]
    )
    return all(v.done for v in verdicts), line, failure


def _board_pods(cluster: Cluster, kind: str, objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The pods behind the watched objects, for the pod board and the diagnosis."""
    if kind == "Pod":
        return objects
    pods: list[dict[str, Any]] = []
    for obj in objects:
        selector = resources.match_labels_selector(obj)
        if selector and kind in ("Deployment", "Job", "ReplicaSet"):
            pods += resources.list_objects(cluster, "Pod", namespace, label_selector=selector)[0]
    return pods


def _diagnosis_for(
    cluster: Cluster, kind: str, objects: list[dict[str, Any]], pods: list[dict[str, Any]], namespace: str
) -> Diagnosis | None:
    """The diagnosis of the worst pod (or of the owners when there are no pods); None when nothing exists yet."""
    if not objects:
        return None
    pod = evidence.worst_pod(pods)
    owners = [] if kind == "Pod" else objects
    if kind == "Deployment":
        for d in objects:
            selector = resources.match_labels_selector(d)
            owners = owners + (
                resources.list_objects(cluster, "ReplicaSet", namespace, label_selector=selector)[0] if selector else []
            )
    return diagnose_pod(*evidence.gather(cluster, pod, owners, namespace))


def _wait_failed(problem: str, diagnosis: Diagnosis | None) -> WaitFailed:
    if diagnosis is None:
        return WaitFailed(
            problem, "nothing matched yet: check the name/selector and namespace (`kubectl get all -n <namespace>`)"
        )
    details = (
        [f"  diagnosis: {diagnosis.summary}"]
        + ([f"  cause: {diagnosis.cause}"] if diagnosis.cause else [])
        + [f"  | {e}" for e in diagnosis.evidence[:8]]
    )
    return WaitFailed("\n".join([problem, *details]), diagnosis.fix or None, diagnosis)
