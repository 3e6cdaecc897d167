"""The evidence about a workload: its pods, the events about them and their owners, their logs.

What :func:`labkit.diagnosis.diagnose` reads, what a wait shows, and what a learner asks for with
:func:`events` and :func:`logs`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from labkit import resources
from labkit.cluster import Cluster, api_call
from labkit.errors import ApiError, LabkitError

#: Log lines of the diagnosed pod fetched for a diagnosis.
DIAGNOSIS_LOG_LINES = 50


def pods_of(
    cluster: Cluster, target: str | dict[str, Any], namespace: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pods, owners) for a pod name, a label selector, ``kind/name`` of a workload, or an object dict."""
    if isinstance(target, dict):
        obj = resources.as_dict(target)
        if obj.get("kind", "Pod") == "Pod":
            return [obj], []
        target = f"{obj['kind']}/{obj['metadata']['name']}"
    if "=" in target:
        return resources.list_objects(cluster, "Pod", namespace, label_selector=target)[0], []
    kind, name = resources.split_target(target)
    kind = resources.kind_of(cluster, kind) if kind else "Pod"
    if kind == "Pod":
        pod = resources.get_object(cluster, "Pod", name, namespace)
        if pod is not None:
            return [pod], []
        owners = [o for o in (resources.get_object(cluster, k, name, namespace) for k in ("Deployment", "Job")) if o]
        if not owners:
            raise resources.not_found("pods", name, namespace, "pods,deployments,jobs")
        owner = owners[0]
    else:
        found = resources.get_object(cluster, kind, name, namespace)
        if found is None:
            raise resources.not_found(f"{kind.lower()}s", name, namespace)
        owner = found
    selector = resources.match_labels_selector(owner)
    pods = resources.list_objects(cluster, "Pod", namespace, label_selector=selector)[0] if selector else []
    owners = [owner]
    if owner["kind"] == "Deployment" and selector:  # a rejected pod only shows in its ReplicaSet's events
        owners += resources.list_objects(cluster, "ReplicaSet", namespace, label_selector=selector)[0]
    return pods, owners


def is_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def worst_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod most worth diagnosing: not ready, with a waiting/terminated reason, most restarts."""

    def badness(pod: dict[str, Any]) -> tuple[int, int, int]:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        reasons = any(
            (st or {}).get("reason") for c in statuses for k, st in (c.get("state") or {}).items() if k != "running"
        )
        restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
        return (0 if is_ready(pod) else 1, 1 if reasons else 0, restarts)

    return max(pods, key=badness) if pods else None


def event_time(e: dict[str, Any]) -> str:
    """When an event last happened, as the API wrote it (RFC 3339 strings sort by time)."""
    meta = e.get("metadata") or {}
    return str(
        e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or meta.get("creationTimestamp") or ""
    )


def _compact_event(e: dict[str, Any]) -> dict[str, Any]:
    involved = e.get("involvedObject") or {}
    return {
        "time": event_time(e),
        "type": e.get("type", ""),
        "reason": e.get("reason", ""),
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "message": e.get("message", ""),
        "count": e.get("count") or 1,
    }


def events_about(cluster: Cluster, kind: str | None, name: str, namespace: str) -> list[dict[str, Any]]:
    """The raw events whose involvedObject is *name* (of *kind*, when given)."""
    selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
    return resources.list_objects(cluster, "Event", namespace, field_selector=selector)[0]


def events(cluster: Cluster, obj_or_name: str | dict[str, Any], *, namespace: str) -> list[dict[str, Any]]:
    """The events about an object, oldest first, compact: ``time, type, reason, object, message, count``.

    >>> events(cluster, "deployment/demo", namespace="lab-01")[-1]["reason"]       # doctest: +SKIP
    'ScalingReplicaSet'
    """
    if isinstance(obj_or_name, dict):
        obj = resources.as_dict(obj_or_name)
        kind, name = obj.get("kind"), obj["metadata"]["name"]
    else:
        kind, name = resources.split_target(obj_or_name)
        kind = resources.kind_of(cluster, kind) if kind else None
    return sorted((_compact_event(e) for e in events_about(cluster, kind, name, namespace)), key=lambda e: e["time"])


def _logs_fix(e: ApiError, namespace: str) -> str:
    if "waiting to start" in str(e.status.get("message", "")):
        return (
            "the container has not started yet: wait for it (labkit.wait_for(cluster, 'Pod', name, "
            f"namespace={namespace!r})), or ask labkit.diagnose(...) why it does not start"
        )
    if "previous terminated container" in str(e.status.get("message", "")):
        return "the container has not restarted yet, so there is no previous log: drop previous=True"
    if "container name must be specified" in str(e.status.get("message", "")) or "is not valid for pod" in str(
        e.status.get("message", "")
    ):
        return "pass container=... with one of the names the message lists"
    return f"check the pod name (`kubectl get pods -n {namespace}`)"


def pod_log(
    cluster: Cluster,
    name: str,
    namespace: str,
    *,
    container: str | None,
    previous: bool,
    tail: int | None,
    follow_seconds: float | None,
) -> str:
    """One pod's log (one container of it), followed for *follow_seconds* when given."""
    kw: dict[str, Any] = {"previous": previous}
    if container:
        kw["container"] = container
    if tail is not None:
        kw["tail_lines"] = tail
    try:
        if not follow_seconds:
            return api_call(cluster.core.read_namespaced_pod_log, name, namespace, **kw)
        response = api_call(
            cluster.core.read_namespaced_pod_log, name, namespace, follow=True, _preload_content=False, **kw
        )
    except ApiError as e:
        raise ApiError(e.status, fix=_logs_fix(e, namespace)) from e
    return _read_for(response, follow_seconds)


def _read_for(response: Any, seconds: float) -> str:
    """Read a followed log stream for *seconds*, then cut it (the server would stream forever)."""
    chunks: list[bytes] = []
    timer = threading.Timer(seconds, response.shutdown)  # shutdown() unblocks a read waiting on the socket
    timer.start()
    try:
        while True:
            try:
                chunk = response.read1(65536)
            except (OSError, ValueError, urllib3.exceptions.HTTPError):  # the cut: what was read is the answer
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        timer.cancel()
        response.release_conn()
    return b"".join(chunks).decode("utf-8", "replace")


def logs(
    cluster: Cluster,
    pod_or_selector: str | dict[str, Any],
    *,
    namespace: str,
    container: str | None = None,
    previous: bool = False,
    follow_seconds: float | None = None,
    tail: int | None = None,
) -> str:
    """The logs of a pod, of every pod a selector (``app=demo``) or workload (``deployment/demo``) has.

    *follow_seconds* keeps reading new lines for that long; *previous* reads the last crashed container.
    With several pods each block starts with ``==> pod/<name> <==``.

    >>> print(logs(cluster, "deployment/demo", namespace="lab-01", tail=3))        # doctest: +SKIP
    """
    pods, _ = pods_of(cluster, pod_or_selector, namespace)
    if not pods:
        raise LabkitError(
            f"no pod matches {pod_or_selector!r} in namespace {namespace}",
            f"check the selector (`kubectl get pods -n {namespace} --show-labels`), or wait for the pods",
        )
    names = sorted(p["metadata"]["name"] for p in pods)

    def read(name: str) -> str:
        return pod_log(
            cluster, name, namespace, container=container, previous=previous, tail=tail, follow_seconds=follow_seconds
        )

    if len(names) == 1:
        return read(names[0])
    with ThreadPoolExecutor(max_workers=len(names)) as pool:  # followed pods are read side by side, not in turn
        texts = list(pool.map(read, names))
    return "\n".join(f"==> pod/{name} <==\n{text}" for name, text in zip(names, texts, strict=True))


def gather(
    cluster: Cluster, pod: dict[str, Any] | None, owners: list[dict[str, Any]], namespace: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str]:
    """(pod, events about it and its owners oldest first, its recent log) for a diagnosis."""
    found: list[dict[str, Any]] = []
    for owner in owners:
        found += events_about(cluster, owner.get("kind"), owner["metadata"]["name"], namespace)
    text = ""
    if pod is not None:
        found += events_about(cluster, "Pod", pod["metadata"]["name"], namespace)
        text = _diagnosis_log(cluster, pod, namespace)
    return pod, sorted(found, key=event_time), text


def _diagnosis_log(cluster: Cluster, pod: dict[str, Any], namespace: str) -> str:
    """The current log, else the previous one (a crash-looping container's current log is often empty)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return ""
    # the container in trouble: not ready first, then the one restarted most
    worst = max(statuses, key=lambda c: (not c.get("ready"), int(c.get("restartCount") or 0)))
    container = worst.get("name")
    for previous in (False, True):
        if previous and not worst.get("restartCount"):
            break
        try:
            text = pod_log(
                cluster,
                pod["metadata"]["name"],
                namespace,
                container=container,
                previous=previous,
                tail=DIAGNOSIS_LOG_LINES,
                follow_seconds=None,
            )
        except ApiError:
            continue
        if text.strip():
            return text
    return ""


def diagnosis_inputs(
    cluster: Cluster, target: str | dict[str, Any], *, namespace: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str]:
    """(pod, events, logs) for :func:`labkit.diagnosis.diagnose_pod`: the target's worst pod, the events about
    it and its owners, its recent logs. A workload without pods gives ``(None, owner events, "")``."""
    pods, owners = pods_of(cluster, target, namespace)
    return gather(cluster, worst_pod(pods), owners, namespace)
