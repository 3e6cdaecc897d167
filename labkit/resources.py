"""The served resources of a cluster, through the ``kubernetes`` DynamicClient: find a kind, list, get, watch.

The shared ground of :mod:`labkit.evidence` and :mod:`labkit.operations`: any kind the server serves works,
on the sandbox and on a real cluster alike.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from labkit import config
from labkit.cluster import Cluster, api_call
from labkit.errors import ApiError, InvalidManifest, LabkitError

if TYPE_CHECKING:
    from kubernetes import watch

#: Longest single watch request (s): between windows a wait checks pods and events for failures no
#: watched object reports (a pod stuck in ContainerCreating says nothing; its events do).
WATCH_WINDOW_S = 2

_CLIENTS: weakref.WeakKeyDictionary[Cluster, DynamicClient] = weakref.WeakKeyDictionary()
_CLIENTS_LOCK = threading.Lock()


def dynamic(cluster: Cluster) -> DynamicClient:
    """One DynamicClient per cluster; its discovery cache lives under LABKIT_HOME, one file per server."""
    with _CLIENTS_LOCK:
        if cluster not in _CLIENTS:
            cache = (
                config.labkit_home()
                / "cache"
                / f"discovery-{hashlib.sha1(cluster.server.encode(), usedforsecurity=False).hexdigest()[:12]}.json"
            )
            cache.parent.mkdir(parents=True, exist_ok=True)
            _CLIENTS[cluster] = api_call(DynamicClient, cluster.api_client, cache_file=str(cache))
        return _CLIENTS[cluster]


def resource(cluster: Cluster, kind: str, api_version: str | None = None) -> Any:
    """The served resource for *kind* (``Pod``, ``pods``, ``deploy`` …), preferring the core/preferred version."""
    dyn = dynamic(cluster)
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


def kind_of(cluster: Cluster, kind: str) -> str:
    """The served kind's proper name for a spelling such as ``deploy`` or ``pods``."""
    return str(resource(cluster, kind).kind)


def as_dict(obj: Any) -> dict[str, Any]:
    """A plain dict from a dict, a DynamicClient ResourceInstance or a typed kubernetes model."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict") and hasattr(obj, "attribute_map"):  # typed model: use the API's camelCase keys
        serialized: dict[str, Any] = ApiClient().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return serialized
    if hasattr(obj, "to_dict"):
        plain: dict[str, Any] = obj.to_dict()
        return plain
    raise LabkitError(f"{type(obj).__name__} is not a Kubernetes object", "pass a dict, a manifest or an API result")


def list_objects(
    cluster: Cluster,
    kind: str,
    namespace: str | None,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """(items, resourceVersion) of a list; a cluster-scoped kind ignores *namespace*."""
    res = resource(cluster, kind)
    listing = api_call(
        res.get,
        namespace=namespace if res.namespaced else None,
        label_selector=label_selector,
        field_selector=field_selector,
    )
    body: dict[str, Any] = listing.to_dict()
    return list(body.get("items") or []), (body.get("metadata") or {}).get("resourceVersion") or ""


def get_object(cluster: Cluster, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
    """The object, or ``None`` when it does not exist."""
    res = resource(cluster, kind)
    try:
        found: dict[str, Any] = api_call(res.get, name=name, namespace=namespace if res.namespaced else None).to_dict()
    except ApiError as e:
        if e.code == 404:
            return None
        raise
    return found


def split_target(target: str) -> tuple[str | None, str]:
    """``"deployment/web"`` → ``("deployment", "web")``; ``"web"`` → ``(None, "web")``."""
    kind, _, name = target.rpartition("/")
    return (kind or None), name


def match_labels_selector(obj: dict[str, Any]) -> str:
    """A workload's ``spec.selector.matchLabels`` as a label selector (``""`` without one)."""
    labels = (((obj.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def not_found(plural: str, name: str, namespace: str, listing: str | None = None) -> ApiError:
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


def watch_events(res: Any, watcher: watch.Watch, **kw: Any) -> Iterator[dict[str, Any]]:
    """``res.watch(...)`` whose failures arrive as labkit errors (410 Gone as ``ApiError`` with code 410)."""
    events = res.watch(watcher=watcher, **kw)
    while True:
        try:
            event: dict[str, Any] = api_call(next, events)
        except StopIteration:
            return
        yield event
