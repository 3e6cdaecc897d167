"""What the reports read from the cluster, through the Kubernetes API only (no kubectl): pods, Warning events,
metrics.k8s.io usage, Services, EndpointSlices and container logs.

The same calls serve the sandbox and a real cluster: the official client's DynamicClient for objects
(:mod:`labkit.resources`), ``CustomObjectsApi`` for the metrics group, and a raw ``GET …/log`` for logs,
because the client's ``read_namespaced_pod_log`` has no ``sinceTime``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import urllib3

from labkit import evidence, resources
from labkit.cluster import Cluster, api_call
from labkit.errors import ApiError, LabkitError

#: Seconds one report request may take (a log answer streams; this bounds each read).
REQUEST_TIMEOUT_S = 30


def require_namespace(cluster: Cluster, namespace: str) -> None:
    """Raise a :class:`LabkitError` naming the fix unless *namespace* exists."""
    if not isinstance(namespace, str) or not namespace:
        raise LabkitError(
            f"namespace must be a non-empty string, got {namespace!r}", "pass namespace='lab-06' (the lab's namespace)"
        )
    if resources.get_object(cluster, "Namespace", namespace, None) is None:
        names = sorted(n["metadata"]["name"] for n in resources.list_objects(cluster, "Namespace", None)[0])
        raise LabkitError(
            f"namespace {namespace!r} does not exist on this cluster (it has: {', '.join(names) or 'none'})",
            "pass one of those as namespace=..., or create the lab first (labkit.open_lab(cluster, ...) "
            "creates lab-<name>); `kubectl get namespaces` lists them",
        )


def pods(cluster: Cluster, target: str | None, namespace: str) -> list[dict[str, Any]]:
    """The pods of *target* (``None``: all; a label selector ``app=demo``; a pod name; ``deployment/demo``),
    sorted by name."""
    if target is None or target == "":
        found = resources.list_objects(cluster, "Pod", namespace)[0]
    else:
        found = evidence.pods_of(cluster, target, namespace)[0]
    return sorted(found, key=lambda p: p["metadata"]["name"])


def warning_events(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """Every Warning event about a pod in *namespace*."""
    return resources.list_objects(cluster, "Event", namespace, field_selector="involvedObject.kind=Pod,type=Warning")[0]


@dataclass(frozen=True)
class Usage:
    """One pod's usage as metrics.k8s.io reports it: CPU and memory quantities per container."""

    containers: dict[str, tuple[str, str]]  # container → (cpu, memory) quantities, e.g. ("137208911n", "12796Ki")
    window: str


def pod_usage(cluster: Cluster, namespace: str, selector: str | None) -> tuple[dict[str, Usage], str | None]:
    """(usage by pod name, ``None``) from metrics.k8s.io, or ``({}, why)`` when the cluster serves no metrics."""
    api = kubernetes.client.CustomObjectsApi(cluster.api_client)
    kw: dict[str, Any] = {"label_selector": selector} if selector else {}
    try:
        listing = api_call(
            api.list_namespaced_custom_object,
            "metrics.k8s.io",
            "v1beta1",
            namespace,
            "pods",
            _request_timeout=REQUEST_TIMEOUT_S,
            **kw,
        )
    except ApiError as e:  # 404: no metrics-server; 503: it is not ready yet
        return {}, f"metrics unavailable (metrics.k8s.io answered HTTP {e.code} {e.reason})"
    usage: dict[str, Usage] = {}
    items = listing.get("items") if isinstance(listing, dict) else None
    for item in items or []:
        per_container = {
            c["name"]: (str((c.get("usage") or {}).get("cpu", "0")), str((c.get("usage") or {}).get("memory", "0")))
            for c in item.get("containers") or []
        }
        usage[item["metadata"]["name"]] = Usage(per_container, str(item.get("window") or ""))
    return usage, None


def services(cluster: Cluster, namespace: str, selector: str | None) -> list[dict[str, Any]]:
    found = resources.list_objects(cluster, "Service", namespace, label_selector=selector or None)[0]
    return sorted(found, key=lambda s: s["metadata"]["name"])


def endpoint_slices(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return resources.list_objects(cluster, "EndpointSlice", namespace)[0]


def _error_status(response: Any) -> dict[str, Any]:
    """The Status of a failed log request (the body is small: an error, not a log)."""
    body = response.read(65536)
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return status
    text = body.decode("utf-8", "replace").strip()
    return {"kind": "Status", "code": response.status, "reason": response.reason or "", "message": text}


def log_chunks(
    cluster: Cluster,
    pod: str,
    namespace: str,
    *,
    container: str,
    previous: bool,
    since_time: str | None,
    limit_bytes: int,
) -> Iterator[bytes]:
    """``GET …/pods/<pod>/log?timestamps=true[&sinceTime=…][&previous=true]`` as byte chunks, streamed.

    This is ``kubectl logs --timestamps --since-time=$LAST_TS``; *limit_bytes* bounds the answer. A refusal
    (no previous container, a container still waiting) raises :class:`ApiError` with the server's Status.
    """
    query = [("container", container), ("timestamps", "true"), ("limitBytes", str(limit_bytes))]
    if previous:
        query.append(("previous", "true"))
    if since_time:
        query.append(("sinceTime", since_time))
    request = cluster.api_client.param_serialize(
        "GET",
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        path_params={"namespace": namespace, "name": pod},
        query_params=query,
        header_params={"Accept": "text/plain"},
        auth_settings=["BearerToken"],
    )
    response = api_call(cluster.api_client.call_api, *request, _request_timeout=REQUEST_TIMEOUT_S).response
    try:
        if response.status >= 400:
            raise ApiError(_error_status(response))
        while True:
            try:
                chunk = response.read(65536)
            except urllib3.exceptions.HTTPError as e:
                raise LabkitError(
                    f"the log of pod {pod} (container {container}) broke off: {e}",
                    "collect again: the next call picks up after the last line written",
                ) from e
            if not chunk:
                return
            yield chunk
    finally:
        response.release_conn()
