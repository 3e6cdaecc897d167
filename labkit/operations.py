"""Cluster operations for the labs: apply, wait, logs, events, describe, delete, show, and the lab namespace.

Everything goes through the official ``kubernetes`` client (its DynamicClient, so any served kind works),
on the sandbox and on a real cluster alike.

>>> with lab(cluster, "01-wasi-demo-app") as l:                       # doctest: +SKIP
...     l.apply([runtime_class(), wasm_deployment("demo", image, command=["/wasi-demo-app.wasm"])])
...     l.wait_for("Deployment", "demo")
...     print(l.logs("deployment/demo", tail=5))
"""

from __future__ import annotations

import copy
import hashlib
import html
import re
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import urllib3
import yaml
from kubernetes import watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from labkit import config
from labkit.cluster import Cluster, api_call
from labkit.config import LAB_LABEL, PART_OF_LABEL, PART_OF_VALUE
from labkit.diagnosis import Diagnosis, diagnose, diagnose_pod
from labkit.errors import ApiError, InvalidManifest, LabkitError, WaitFailed
from labkit.manifests.checks import dns_label
from labkit.widgets import Progress, progress

#: labkit's field manager for server-side apply: re-running a cell re-applies as the same owner.
FIELD_MANAGER = "labkit"
#: Longest single watch request (s): between windows the wait checks pods and events for failures no
#: watched object reports (a pod stuck in ContainerCreating says nothing; its events do).
WATCH_WINDOW_S = 2
#: Diagnosis signatures that still leave a chance of success, so a wait keeps waiting through them.
RECOVERABLE = {None, "unschedulable", "exit-nonzero"}
#: What a wait means when no condition is given.
DEFAULT_CONDITION = {"Pod": "Ready", "Deployment": "Available", "Job": "Complete"}
#: Log lines of the diagnosed pod fetched for a diagnosis.
DIAGNOSIS_LOG_LINES = 50

_CLIENTS: weakref.WeakKeyDictionary[Cluster, DynamicClient] = weakref.WeakKeyDictionary()
_CLIENTS_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------ plumbing
def _dynamic(cluster: Cluster) -> DynamicClient:
    """One DynamicClient per cluster; its discovery cache lives under LABKIT_HOME, one file per server."""
    with _CLIENTS_LOCK:
        if cluster not in _CLIENTS:
            cache = (
                config.labkit_home()
                / "cache"
                / f"discovery-{hashlib.sha1(cluster.server.encode()).hexdigest()[:12]}.json"
            )
            cache.parent.mkdir(parents=True, exist_ok=True)
            _CLIENTS[cluster] = api_call(DynamicClient, cluster.api_client, cache_file=str(cache))
        return _CLIENTS[cluster]


def _resource(cluster: Cluster, kind: str, api_version: str | None = None) -> Any:
    """The served resource for *kind* (``Pod``, ``pods``, ``deploy`` …), preferring the core/preferred version."""
    dyn = _dynamic(cluster)
    try:
        if api_version:
            return dyn.resources.get(api_version=api_version, kind=kind)
        found = dyn.resources.search(kind=kind)
        if not found:
            wanted = kind.lower()
            found = [
                r
                for r in dyn.resources.search()
                if getattr(r, "kind", None)
                and "/" not in (r.name or "")
                and wanted in {r.kind.lower(), (r.name or "").lower(), *(s.lower() for s in r.short_names or ())}
            ]
    except (ResourceNotFoundError, ResourceNotUniqueError) as e:
        raise InvalidManifest(
            f"the cluster serves no kind {kind!r} in {api_version}",
            "check apiVersion and kind (`kubectl api-resources` lists what it serves)",
        ) from e
    found = [r for r in found if "/" not in (r.name or "")]  # not subresources such as pods/log
    if not found:
        raise InvalidManifest(
            f"the cluster serves no kind {kind!r}",
            "check the spelling (Pod, Deployment, Job, Service, RuntimeClass, …); "
            "`kubectl api-resources` lists what it serves",
        )
    # Event exists in core/v1 and events.k8s.io: the core group, then the preferred version, wins.
    found.sort(key=lambda r: (r.group != "", not r.preferred))
    return found[0]


def _as_dict(obj: Any) -> dict[str, Any]:
    """A plain dict from a dict, a DynamicClient ResourceInstance or a typed kubernetes model."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict") and hasattr(obj, "attribute_map"):  # typed model: use the API's camelCase keys
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise LabkitError(f"{type(obj).__name__} is not a Kubernetes object", "pass a dict, a manifest or an API result")


def _list(
    cluster: Cluster,
    kind: str,
    namespace: str | None,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    res = _resource(cluster, kind)
    listing = api_call(
        res.get,
        namespace=namespace if res.namespaced else None,
        label_selector=label_selector,
        field_selector=field_selector,
    )
    body = listing.to_dict()
    return list(body.get("items") or []), (body.get("metadata") or {}).get("resourceVersion") or ""


def _get(cluster: Cluster, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
    res = _resource(cluster, kind)
    try:
        return api_call(res.get, name=name, namespace=namespace if res.namespaced else None).to_dict()
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def _split_target(target: str) -> tuple[str | None, str]:
    """``"deployment/web"`` → ``("deployment", "web")``; ``"web"`` → ``(None, "web")``."""
    kind, _, name = target.rpartition("/")
    return (kind or None), name


def _match_labels_selector(obj: dict[str, Any]) -> str:
    labels = (((obj.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _kind_of(cluster: Cluster, kind: str) -> str:
    return _resource(cluster, kind).kind


def _not_found(plural: str, name: str, namespace: str, listing: str | None = None) -> ApiError:
    """The API server's 404 for a name labkit looked up itself, with where to look instead."""
    return ApiError(
        {
            "kind": "Status",
            "code": 404,
            "reason": "NotFound",
            "message": f'{plural} "{name}" not found in namespace {namespace}',
        },
        fix=f"list what exists: `kubectl get {listing or plural} -n {namespace}`",
    )


def _pods_of(
    cluster: Cluster, target: str | dict[str, Any], namespace: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pods, owners) for a pod name, a label selector, ``kind/name`` of a workload, or an object dict."""
    if isinstance(target, dict):
        obj = _as_dict(target)
        if obj.get("kind", "Pod") == "Pod":
            return [obj], []
        target = f"{obj['kind']}/{obj['metadata']['name']}"
    if "=" in target:
        return _list(cluster, "Pod", namespace, label_selector=target)[0], []
    kind, name = _split_target(target)
    kind = _kind_of(cluster, kind) if kind else "Pod"
    if kind == "Pod":
        pod = _get(cluster, "Pod", name, namespace)
        if pod is not None:
            return [pod], []
        owners = [o for o in (_get(cluster, k, name, namespace) for k in ("Deployment", "Job")) if o]
        if not owners:
            raise _not_found("pods", name, namespace, "pods,deployments,jobs")
        owner = owners[0]
    else:
        found = _get(cluster, kind, name, namespace)
        if found is None:
            raise _not_found(f"{kind.lower()}s", name, namespace)
        owner = found
    selector = _match_labels_selector(owner)
    pods = _list(cluster, "Pod", namespace, label_selector=selector)[0] if selector else []
    owners = [owner]
    if owner["kind"] == "Deployment" and selector:  # a rejected pod only shows in its ReplicaSet's events
        owners += _list(cluster, "ReplicaSet", namespace, label_selector=selector)[0]
    return pods, owners


# ------------------------------------------------------------------------------------------------ apply
def _documents(objects_or_yaml: Any) -> list[dict[str, Any]]:
    if isinstance(objects_or_yaml, str):
        try:
            docs = [d for d in yaml.safe_load_all(objects_or_yaml) if d is not None]
        except yaml.YAMLError as e:
            raise InvalidManifest(
                f"the YAML does not parse: {e}",
                "fix the line and column named above (indentation, a missing ':' or '-')",
            ) from e
    elif isinstance(objects_or_yaml, (list, tuple)):
        docs = [_as_dict(o) for o in objects_or_yaml]
    else:
        docs = [_as_dict(objects_or_yaml)]
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise InvalidManifest(
                f"document {i} is a {type(doc).__name__}, not a Kubernetes object",
                "each document needs apiVersion, kind and metadata.name",
            )
        missing = [k for k in ("apiVersion", "kind") if not doc.get(k)]
        if not (doc.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            raise InvalidManifest(
                f"document {i} ({doc.get('kind') or 'no kind'}) lacks {', '.join(missing)}",
                "add them; server-side apply needs a name (generateName is not enough)",
            )
    if not docs:
        raise InvalidManifest("there is nothing to apply (no documents)", "pass a dict, a list of dicts or YAML text")
    return docs


def _describe_obj(body: dict[str, Any]) -> str:
    return f"{body['kind']}/{body['metadata']['name']}"


def apply(
    cluster: Cluster, objects_or_yaml: Any, *, namespace: str | None = None, lab: Lab | str | None = None
) -> list[dict[str, Any]]:
    """Server-side apply (field manager ``labkit``, forced) of dicts or YAML text; returns the applied objects.

    Objects labkit creates get the labkit labels (and ``labkit.io/lab`` with *lab*), so cleanup finds them;
    objects that existed before without them stay unlabelled (labkit never deletes what it did not create).
    Every document is validated by a server dry-run first, so a bad one leaves nothing half-applied.
    Applying again is a no-op.

    >>> apply(cluster, [runtime_class(), deployment], lab=my_lab)          # doctest: +SKIP
    """
    lab_name = lab.name if isinstance(lab, Lab) else lab
    namespace = namespace or (lab.namespace if isinstance(lab, Lab) else None)
    labels = {PART_OF_LABEL: PART_OF_VALUE, **({LAB_LABEL: lab_name} if lab_name else {})}
    planned = []
    for doc in _documents(objects_or_yaml):
        body = copy.deepcopy(doc)
        res = _resource(cluster, body["kind"], body["apiVersion"])
        meta = body.setdefault("metadata", {})
        ns = None
        if res.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise InvalidManifest(
                    f"{_describe_obj(body)} says namespace {meta['namespace']!r} but apply was asked for {namespace!r}",
                    "drop metadata.namespace or make the two agree",
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not _foreign(cluster, res, meta["name"], ns):
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
        planned.append((res, body, ns))

    new_namespaces = {b["metadata"]["name"] for r, b, _ in planned if r.kind == "Namespace"}
    failures = []
    for res, body, ns in planned:
        if ns is not None and ns in new_namespaces and _get(cluster, "Namespace", ns, None) is None:
            continue  # its namespace comes with this apply: the server cannot dry-run into it yet
        try:
            _server_side_apply(cluster, res, body, ns, dry_run=True)
        except ApiError as e:
            failures.append((body, e))
    if failures:
        first = failures[0][1]
        message = "; ".join(f"{_describe_obj(b)}: {e.status.get('message') or e.reason}" for b, e in failures)
        raise ApiError(
            {**first.status, "message": f"{message} — nothing was applied"},
            fix="change the field the message names and apply again",
        )
    return [_server_side_apply(cluster, res, body, ns) for res, body, ns in planned]


def _foreign(cluster: Cluster, res: Any, name: str, namespace: str | None) -> bool:
    """True for an object that exists without labkit's label, e.g. the RuntimeClass k3s creates for a detected
    shim: labkit applies to it but does not label it, so no cleanup ever deletes what labkit did not create."""
    live = _get(cluster, res.kind, name, namespace)
    return live is not None and ((live.get("metadata") or {}).get("labels") or {}).get(PART_OF_LABEL) != PART_OF_VALUE


def _server_side_apply(
    cluster: Cluster, res: Any, body: dict[str, Any], namespace: str | None, *, dry_run: bool = False
) -> dict[str, Any]:
    extra = {"dry_run": "All"} if dry_run else {}
    result = api_call(
        _dynamic(cluster).server_side_apply,
        res,
        body=body,
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        **extra,
    )
    return result.to_dict()


# ------------------------------------------------------------------------------------------------ waiting
@dataclass
class _Verdict:
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
    res = _resource(cluster, kind)
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
            items, rv = _list(cluster, kind, namespace, label_selector=selector, field_selector=field_selector)
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
        watcher = watch.Watch()
        try:
            for event in _watch_events(
                res,
                watcher,
                namespace=namespace if res.namespaced else None,
                label_selector=selector,
                field_selector=field_selector,
                resource_version=rv,
                timeout=max(1, min(WATCH_WINDOW_S, int(remaining + 0.999))),
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
                    watcher.stop()  # judge now: done, failed, or worth a diagnosis before the window ends
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


def _watch_events(res: Any, watcher: watch.Watch, **kw: Any) -> Iterator[dict[str, Any]]:
    """``res.watch(...)`` whose failures arrive as labkit errors (410 Gone as ``ApiError`` with code 410)."""
    events = res.watch(watcher=watcher, **kw)
    while True:
        try:
            event = api_call(next, events)
        except StopIteration:
            return
        yield event


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
        selector = _match_labels_selector(obj)
        if selector and kind in ("Deployment", "Job", "ReplicaSet"):
            pods += _list(cluster, "Pod", namespace, label_selector=selector)[0]
    return pods


def _worst_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod most worth diagnosing: not ready, with a waiting/terminated reason, most restarts."""

    def badness(pod: dict[str, Any]) -> tuple[int, int, int]:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        reasons = any(
            (st or {}).get("reason") for c in statuses for k, st in (c.get("state") or {}).items() if k != "running"
        )
        restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
        return (0 if _true(pod, "Ready") else 1, 1 if reasons else 0, restarts)

    return max(pods, key=badness) if pods else None


def _diagnosis_for(
    cluster: Cluster, kind: str, objects: list[dict[str, Any]], pods: list[dict[str, Any]], namespace: str
) -> Diagnosis | None:
    """The diagnosis of the worst pod (or of the owners when there are no pods); None when nothing exists yet."""
    if not objects:
        return None
    pod = _worst_pod(pods)
    owners = [] if kind == "Pod" else objects
    if kind == "Deployment":
        for d in objects:
            selector = _match_labels_selector(d)
            owners = owners + (_list(cluster, "ReplicaSet", namespace, label_selector=selector)[0] if selector else [])
    return diagnose_pod(*_evidence(cluster, pod, owners, namespace))


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


# ------------------------------------------------------------------------------------------------ events, logs
def _event_time(e: dict[str, Any]) -> str:
    meta = e.get("metadata") or {}
    return str(
        e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or meta.get("creationTimestamp") or ""
    )


def _compact_event(e: dict[str, Any]) -> dict[str, Any]:
    involved = e.get("involvedObject") or {}
    return {
        "time": _event_time(e),
        "type": e.get("type", ""),
        "reason": e.get("reason", ""),
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "message": e.get("message", ""),
        "count": e.get("count") or 1,
    }


def _events_about(cluster: Cluster, kind: str | None, name: str, namespace: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
    return _list(cluster, "Event", namespace, field_selector=selector)[0]


def events(cluster: Cluster, obj_or_name: str | dict[str, Any], *, namespace: str) -> list[dict[str, Any]]:
    """The events about an object, oldest first, compact: ``time, type, reason, object, message, count``.

    >>> events(cluster, "deployment/demo", namespace="lab-01")[-1]["reason"]       # doctest: +SKIP
    'ScalingReplicaSet'
    """
    if isinstance(obj_or_name, dict):
        obj = _as_dict(obj_or_name)
        kind, name = obj.get("kind"), obj["metadata"]["name"]
    else:
        kind, name = _split_target(obj_or_name)
        kind = _kind_of(cluster, kind) if kind else None
    return sorted((_compact_event(e) for e in _events_about(cluster, kind, name, namespace)), key=lambda e: e["time"])


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


def _pod_log(
    cluster: Cluster,
    name: str,
    namespace: str,
    *,
    container: str | None,
    previous: bool,
    tail: int | None,
    follow_seconds: float | None,
) -> str:
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
    pods, _ = _pods_of(cluster, pod_or_selector, namespace)
    if not pods:
        raise LabkitError(
            f"no pod matches {pod_or_selector!r} in namespace {namespace}",
            f"check the selector (`kubectl get pods -n {namespace} --show-labels`), or wait for the pods",
        )
    names = sorted(p["metadata"]["name"] for p in pods)

    def read(name: str) -> str:
        return _pod_log(
            cluster, name, namespace, container=container, previous=previous, tail=tail, follow_seconds=follow_seconds
        )

    if len(names) == 1:
        return read(names[0])
    with ThreadPoolExecutor(max_workers=len(names)) as pool:  # followed pods are read side by side, not in turn
        texts = list(pool.map(read, names))
    return "\n".join(f"==> pod/{name} <==\n{text}" for name, text in zip(names, texts, strict=False))


# ------------------------------------------------------------------------------------------------ diagnosis inputs
def _evidence(
    cluster: Cluster, pod: dict[str, Any] | None, owners: list[dict[str, Any]], namespace: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str]:
    found: list[dict[str, Any]] = []
    for owner in owners:
        found += _events_about(cluster, owner.get("kind"), owner["metadata"]["name"], namespace)
    text = ""
    if pod is not None:
        found += _events_about(cluster, "Pod", pod["metadata"]["name"], namespace)
        text = _diagnosis_log(cluster, pod, namespace)
    return pod, sorted(found, key=_event_time), text


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
            text = _pod_log(
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
    pods, owners = _pods_of(cluster, target, namespace)
    return _evidence(cluster, _worst_pod(pods), owners, namespace)


# ------------------------------------------------------------------------------------------------ describe
@dataclass
class Description:
    """A compact ``kubectl describe``: headline fields, containers, conditions, last events."""

    kind: str
    name: str
    namespace: str | None
    fields: dict[str, Any]
    containers: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.kind}/{self.name}" + (f" (namespace {self.namespace})" if self.namespace else "")]
        lines += [f"  {k}: {v}" for k, v in self.fields.items()]
        if self.containers:
            lines.append("  containers:")
            lines += [
                "    " + ", ".join(f"{k}={v}" for k, v in c.items() if v not in (None, "")) for c in self.containers
            ]
        if self.conditions:
            lines.append(
                "  conditions: "
                + ", ".join(
                    f"{c['type']}={c['status']}" + (f" ({c['reason']})" if c.get("reason") else "")
                    for c in self.conditions
                )
            )
        if self.events:
            lines.append("  events:")
            lines += [f"    {e['type']} {e['reason']}: {e['message']}" for e in self.events]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        def table(rows: list[dict[str, Any]]) -> str:
            if not rows:
                return ""
            head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
            body = "".join(
                "<tr>"
                + "".join(f"<td>{html.escape(str(v if v is not None else ''))}</td>" for v in r.values())
                + "</tr>"
                for r in rows
            )
            return f"<table><tr>{head}</tr>{body}</table>"

        fields = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.fields.items()
        )
        return (
            f"<div><b>{html.escape(self.kind)}/{html.escape(self.name)}</b><table>{fields}</table>"
            + table(self.containers)
            + table(self.conditions)
            + (f"<details open><summary>events</summary>{table(self.events)}</details>" if self.events else "")
            + "</div>"
        )


def _container_rows(pod: dict[str, Any]) -> list[dict[str, Any]]:
    statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
    rows = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        s = statuses.get(c["name"], {})
        state_name, state = next(iter((s.get("state") or {"waiting": {}}).items()))
        last: dict[str, Any] = next(iter((s.get("lastState") or {}).values()), {}) or {}
        rows.append(
            {
                "name": c["name"],
                "image": c.get("image"),
                "state": state_name,
                "reason": (state or {}).get("reason"),
                "restarts": s.get("restartCount", 0),
                "exit code": (state or {}).get("exitCode", last.get("exitCode")),
                "ready": s.get("ready", False),
            }
        )
    return rows


def describe(cluster: Cluster, kind: str, name: str, *, namespace: str, last_events: int = 5) -> Description:
    """A compact summary of one object: phase/replicas, node, containers (state, reason, restarts, exit code),
    conditions and the last events. Renders as text and as HTML in Jupyter."""
    kind = _kind_of(cluster, kind)
    obj = _get(cluster, kind, name, namespace)
    if obj is None:
        raise _not_found(f"{kind.lower()}s", name, namespace)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    fields: dict[str, Any] = {}
    containers: list[dict[str, Any]] = []
    if kind == "Pod":
        fields = {
            "phase": status.get("phase", "Pending"),
            "node": spec.get("nodeName") or "<none>",
            "runtimeClass": spec.get("runtimeClassName") or "<default>",
            "pod IP": status.get("podIP") or "<none>",
        }
        containers = _container_rows(obj)
    elif kind in ("Deployment", "ReplicaSet"):
        fields = {
            "replicas": f"{spec.get('replicas', 1)} desired, {status.get('updatedReplicas', 0)} updated, "
            f"{status.get('readyReplicas', 0)} ready, {status.get('availableReplicas', 0)} available",
            "selector": _match_labels_selector(obj),
        }
    elif kind == "Job":
        fields = {
            "active": status.get("active", 0),
            "succeeded": status.get("succeeded", 0),
            "failed": status.get("failed", 0),
            "backoffLimit": spec.get("backoffLimit"),
        }
    if kind in ("Deployment", "Job"):
        pod_spec = ((spec.get("template") or {}).get("spec")) or {}
        fields["runtimeClass"] = pod_spec.get("runtimeClassName") or "<default>"
        fields["image"] = ", ".join(c.get("image", "") for c in pod_spec.get("containers") or [])
    conditions = [
        {"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"), "message": c.get("message")}
        for c in status.get("conditions") or []
    ]
    return Description(
        kind,
        name,
        namespace if _resource(cluster, kind).namespaced else None,
        fields,
        containers,
        conditions,
        events(cluster, f"{kind}/{name}", namespace=namespace)[-last_events:],
    )


# ------------------------------------------------------------------------------------------------ delete
def _wait_gone(cluster: Cluster, kind: str, name: str, namespace: str | None, timeout: float) -> None:
    res = _resource(cluster, kind)
    ns = namespace if res.namespaced else None
    deadline = time.monotonic() + timeout
    while True:
        items, rv = _list(cluster, kind, ns, field_selector=f"metadata.name={name}")
        if not items:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            finalizers = (items[0].get("metadata") or {}).get("finalizers") or []
            raise WaitFailed(
                f"{kind.lower()}/{name} was still there {timeout:g} s after deletion"
                + (f" (finalizers: {', '.join(finalizers)})" if finalizers else ""),
                "look at its events and finalizers (`kubectl describe`); a node that is down "
                "cannot confirm that its pods stopped",
            )
        try:
            for event in _watch_events(
                res,
                watch.Watch(),
                namespace=ns,
                field_selector=f"metadata.name={name}",
                resource_version=rv,
                timeout=max(1, min(WATCH_WINDOW_S * 5, int(remaining + 0.999))),
            ):
                if event["type"] == "DELETED":
                    return
        except ApiError as e:
            if e.code != 410:  # 410 Gone: the next round lists again
                raise


def delete(
    cluster: Cluster, kind: str, name: str, *, namespace: str | None = None, wait: bool = True, timeout: float = 120.0
) -> bool:
    """Delete an object (its pods too: foreground propagation) and wait until it is gone.

    Returns ``False`` when it did not exist.
    """
    res = _resource(cluster, kind)
    ns = namespace if res.namespaced else None
    if res.namespaced and not namespace:
        raise LabkitError(f"{res.kind} is namespaced: say which namespace", "pass namespace=...")
    try:
        api_call(res.delete, name=name, namespace=ns, body={"propagationPolicy": "Foreground"})
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    if wait:
        _wait_gone(cluster, res.kind, name, ns, timeout)
    return True


# ------------------------------------------------------------------------------------------------ show
#: Metadata the server adds; a learner never writes them.
_SERVER_METADATA = (
    "managedFields",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)
_SERVER_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")


#: Values the API server fills in when a manifest leaves them out: (path inside a pod spec or object, default).
_POD_DEFAULTS = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "enableServiceLinks": True,
}
_CONTAINER_DEFAULTS = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "resources": {},
}
_WORKLOAD_DEFAULTS = {
    "revisionHistoryLimit": 10,
    "progressDeadlineSeconds": 600,
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
}


def _drop_defaults(spec: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if spec.get(key) == value:
            del spec[key]


def _drop_pod_defaults(pod_spec: dict[str, Any]) -> None:
    _drop_defaults(pod_spec, _POD_DEFAULTS)
    for c in pod_spec.get("containers") or []:
        _drop_defaults(c, _CONTAINER_DEFAULTS)
        # the server's choice for an image without a pinned tag: Always for ':latest' or no tag, else IfNotPresent
        latest = c.get("image", "").endswith(":latest") or ":" not in c.get("image", "").rsplit("/", 1)[-1]
        if c.get("imagePullPolicy") == ("Always" if latest else "IfNotPresent"):
            del c["imagePullPolicy"]


def _learner_view(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(_as_dict(obj))
    spec: dict[str, Any] = out["spec"] if isinstance(out.get("spec"), dict) else {}
    template: dict[str, Any] | None = spec["template"] if isinstance(spec.get("template"), dict) else None
    if template is not None:
        _drop_defaults(spec, _WORKLOAD_DEFAULTS)
        if (template.get("metadata") or {}).get("creationTimestamp", "") is None:
            del template["metadata"]["creationTimestamp"]
        _drop_pod_defaults(template.get("spec") or {})
    elif out.get("kind") == "Pod":
        _drop_pod_defaults(spec)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    # apiVersion and kind first, as people write them
    return {k: out[k] for k in ("apiVersion", "kind", "metadata") if k in out} | {
        k: v for k, v in out.items() if k not in ("apiVersion", "kind", "metadata")
    }


@dataclass
class ShowYaml:
    """YAML as a learner would write it; highlighted in Jupyter, plain in text."""

    text: str

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import YamlLexer
        except ImportError:  # highlighting is a nicety: plain text is still right
            return f"<pre>{html.escape(self.text)}</pre>"
        return highlight(self.text, YamlLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def show(obj: Any) -> ShowYaml:
    """The YAML of one object or a list of them, without status and server-added metadata.

    >>> print(show({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "uid": "1"}, "status": {}}))
    apiVersion: v1
    kind: Namespace
    metadata:
      name: x
    <BLANKLINE>
    """
    objs = obj if isinstance(obj, (list, tuple)) else [obj]
    docs = [yaml.safe_dump(_learner_view(o), sort_keys=False, default_flow_style=False) for o in objs]
    return ShowYaml("---\n".join(docs))


# ------------------------------------------------------------------------------------------------ lab
@dataclass
class Lab:
    """One lab's namespace on a cluster; its methods are the module functions with cluster and namespace filled in."""

    name: str
    namespace: str
    cluster: Cluster

    def apply(self, objects_or_yaml: Any) -> list[dict[str, Any]]:
        return apply(self.cluster, objects_or_yaml, lab=self)

    def wait_for(self, kind: str, name: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return wait_for(self.cluster, kind, name, namespace=kw.pop("namespace", self.namespace), **kw)

    def logs(self, pod_or_selector: str | dict[str, Any], **kw: Any) -> str:
        return logs(self.cluster, pod_or_selector, namespace=kw.pop("namespace", self.namespace), **kw)

    def events(self, obj_or_name: str | dict[str, Any]) -> list[dict[str, Any]]:
        return events(self.cluster, obj_or_name, namespace=self.namespace)

    def describe(self, kind: str, name: str) -> Description:
        return describe(self.cluster, kind, name, namespace=self.namespace)

    def delete(self, kind: str, name: str, **kw: Any) -> bool:
        return delete(self.cluster, kind, name, namespace=kw.pop("namespace", self.namespace), **kw)

    def diagnose(self, pod_or_name: str | dict[str, Any]) -> Diagnosis:
        return diagnose(self.cluster, pod_or_name, namespace=self.namespace)


_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def cleanup(cluster: Cluster, name: str, *, timeout: float = 120.0) -> list[str]:
    """Delete every object labelled for lab *name* (its namespace and cluster-wide objects) and wait until gone.

    Returns what was removed, e.g. ``["namespace/lab-01", "runtimeclass/wasmedge"]``.
    """
    refs = cluster.labelled_objects(lab=name)
    for ref in refs:
        cluster.delete_object(ref)
    deadline = time.monotonic() + timeout
    for ref in refs:
        _wait_gone(cluster, ref.kind, ref.name, ref.namespace, max(1.0, deadline - time.monotonic()))
    return [f"{r.kind.lower()}/{r.name}" for r in refs]


@contextmanager
def lab(
    cluster: Cluster, name: str, *, namespace: str | None = None, keep: bool = False, timeout: float = 120.0
) -> Iterator[Lab]:
    """Create the lab's namespace (``lab-<name>`` unless *namespace*), yield a :class:`Lab`, clean up on exit.

    Cleanup deletes everything labelled for this lab (the namespace, and cluster-wide objects such as
    RuntimeClasses applied through it) and waits until it is gone, also when a step failed; ``keep=True``
    leaves it all for inspection (``labkit clean --lab <name>`` removes it later).

    >>> with lab(cluster, "01-wasi-demo-app", namespace="lab-01") as l:    # doctest: +SKIP
    ...     l.apply(runtime_class())
    """
    if not _LABEL_VALUE.match(name):
        raise LabkitError(
            f"lab name {name!r} cannot be a label value",
            "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    namespace = dns_label(namespace or f"lab-{name}", "namespace")
    existing = _get(cluster, "Namespace", namespace, None)
    if existing is not None:
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(PART_OF_LABEL) != PART_OF_VALUE:
            raise LabkitError(
                f"namespace {namespace!r} exists and is not a labkit lab namespace; labkit would delete "
                "it on cleanup, so it refuses to use it",
                "pick another namespace=...",
            )
        if (existing.get("metadata") or {}).get("deletionTimestamp"):  # the previous run's cleanup is still going
            _wait_gone(cluster, "Namespace", namespace, None, timeout)
    the_lab = Lab(name, namespace, cluster)
    apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, lab=name)
    try:
        yield the_lab
    except BaseException as failure:
        if not keep:
            _cleanup_after_failure(cluster, name, timeout, failure)
        raise
    if not keep:
        try:
            cleanup(cluster, name, timeout=timeout)
        except LabkitError as e:
            raise LabkitError(
                f"lab {name!r} ran, but its cleanup failed: {e.problem}",
                f"remove what is left with `labkit clean --lab {name}`",
            ) from e


def _cleanup_after_failure(cluster: Cluster, name: str, timeout: float, failure: BaseException) -> None:
    """Clean up after a failed step; a cleanup failure is attached to the step's error, not lost."""
    try:
        cleanup(cluster, name, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - the step's error is the one to raise; this one rides along
        failure.add_note(
            f"labkit: cleanup of lab {name!r} also failed: {e}; remove what is left with `labkit clean --lab {name}`"
        )


#: Public operations (re-exported from ``labkit``).
__all__ = [
    "Description",
    "Lab",
    "ShowYaml",
    "apply",
    "cleanup",
    "delete",
    "describe",
    "diagnosis_inputs",
    "events",
    "lab",
    "logs",
    "show",
    "wait_for",
]
