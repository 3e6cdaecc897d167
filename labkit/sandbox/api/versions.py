"""A kind served in more than one version, stored once: reads and writes converted between versions.

Kubernetes stores each object in one version and converts on every request. The sandbox does the same
for the two cases a learner meets:

- ``autoscaling/v1`` HorizontalPodAutoscalers, stored as ``autoscaling/v2`` (kubernetes
  ``pkg/apis/autoscaling/v1/conversion.go``): ``targetCPUUtilizationPercentage`` is the cpu
  ``Utilization`` metric; the status's ``currentCPUUtilizationPercentage`` its current value. Upstream
  keeps v2's other metrics, behavior and conditions in ``autoscaling.alpha.kubernetes.io/*``
  annotations of the v1 object; the sandbox instead leaves them out of the v1 view and keeps them on
  the stored object when a v1 write comes back [simplified, not upstream's annotations];
- a CustomResourceDefinition's further served versions, with conversion strategy ``None``: only
  ``apiVersion`` changes.

>>> v2 = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
...       "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "metrics": [
...           {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
...                                                                       "averageUtilization": 60}}}]}}
>>> hpa_to_v1(v2)["spec"]
{'scaleTargetRef': {'kind': 'Deployment', 'name': 'web'}, 'maxReplicas': 3, 'targetCPUUtilizationPercentage': 60}
>>> hpa_to_v2(hpa_to_v1(v2), None)["spec"] == v2["spec"]
True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from labkit.sandbox.api import patch, tables
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.responses import flag, json_response, wants_table
from labkit.sandbox.api.status import bad_request, method_not_allowed
from labkit.sandbox.api.validation import validate

if TYPE_CHECKING:
    from aiohttp import web

    from labkit.sandbox.api.apicore import ApiCore

Obj = dict[str, Any]

HPA_V2 = RESOURCES.by_kind("autoscaling", "v2", "HorizontalPodAutoscaler")
_CPU_KEYS = ("scaleTargetRef", "minReplicas", "maxReplicas")
_STATUS_KEYS = ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")


def _is_cpu_utilization(metric: Obj) -> bool:
    resource = metric.get("resource") or {}
    target = resource.get("target") or {}
    return metric.get("type") == "Resource" and resource.get("name") == "cpu" and target.get("type") == "Utilization"


def hpa_to_v1(obj: Obj) -> Obj:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler as ``autoscaling/v1`` shows it."""
    out = {k: patch.deep_copy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v1"
    spec = obj.get("spec") or {}
    v1_spec = {k: patch.deep_copy(spec[k]) for k in _CPU_KEYS if k in spec}
    cpu = next((m for m in spec.get("metrics") or () if _is_cpu_utilization(m)), None)
    if cpu is not None and cpu["resource"]["target"].get("averageUtilization") is not None:
        v1_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    out["spec"] = v1_spec
    if "status" in obj:
        status = obj["status"] or {}
        v1_status = {k: status[k] for k in _STATUS_KEYS if k in status}
        current = next((m for m in status.get("currentMetrics") or () if (m.get("resource") or {}).get("name") == "cpu"
                        and m.get("type") == "Resource"), None)  # fmt: skip
        if current is not None and (current["resource"].get("current") or {}).get("averageUtilization") is not None:
            v1_status["currentCPUUtilizationPercentage"] = current["resource"]["current"]["averageUtilization"]
        out["status"] = v1_status
    return out


def hpa_to_v2(obj: Obj, live: Obj | None) -> Obj:
    """An ``autoscaling/v1`` HorizontalPodAutoscaler as stored; what v1 cannot say is kept from *live*."""
    out = {k: patch.deep_copy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = HPA_V2.api_version if HPA_V2 else "autoscaling/v2"
    spec = obj.get("spec") or {}
    live_spec = (live or {}).get("spec") or {}
    v2_spec = {k: patch.deep_copy(spec[k]) for k in _CPU_KEYS if k in spec}
    metrics = [m for m in live_spec.get("metrics") or () if not _is_cpu_utilization(m)]
    if spec.get("targetCPUUtilizationPercentage") is not None:
        target = {"type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}
        metrics.insert(0, {"type": "Resource", "resource": {"name": "cpu", "target": target}})
    if metrics:
        v2_spec["metrics"] = metrics
    if "behavior" in live_spec:
        v2_spec["behavior"] = live_spec["behavior"]
    out["spec"] = v2_spec
    if "status" in obj:
        live_status = (live or {}).get("status") or {}
        status = {**{k: v for k, v in live_status.items() if k in ("currentMetrics", "conditions")},
                  **{k: v for k, v in (obj["status"] or {}).items() if k in _STATUS_KEYS}}  # fmt: skip
        out["status"] = status
    return out


def to_view(view: Resource, obj: Obj) -> Obj:
    """A stored object as version *view* of its kind shows it."""
    if (view.group, view.plural) == ("autoscaling", "horizontalpodautoscalers"):
        return hpa_to_v1(obj)
    return {**obj, "apiVersion": view.api_version}


def to_stored(view: Resource, stored: Resource, obj: Obj, live: Obj | None) -> Obj:
    """An object written in version *view* as its *stored* version keeps it."""
    if (view.group, view.plural) == ("autoscaling", "horizontalpodautoscalers"):
        return hpa_to_v2(obj, live)
    return {**obj, "apiVersion": stored.api_version}


class TargetLike(Protocol):
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str

    @property
    def object_name(self) -> str: ...


class VersionHost(Protocol):
    """What of the API server a converted request uses (``server.ApiServer``)."""

    core: ApiCore

    def _authorize(self, request: web.Request, verb: str, t: Any) -> None: ...

    async def _body(self, request: web.Request, t: Any) -> Any: ...

    def _answer(
        self, request: web.Request, t: Any, obj: Obj, status: int = 200, warnings: Sequence[str] = ()
    ) -> web.Response: ...

    async def _watch(
        self, request: web.Request, t: Any, view: Resource | None = None, present: Callable[[Obj], Obj] | None = None
    ) -> web.StreamResponse: ...

    async def _delete(self, request: web.Request, t: Any, dry_run: bool) -> web.Response: ...


async def watch_or_list(
    host: VersionHost,
    request: web.Request,
    t: TargetLike,
    stored_target: TargetLike,
    view: Resource,
    present: Callable[[Obj], Obj],
) -> web.StreamResponse | Obj:
    """A collection GET of *view*, kept as ``stored_target.resource``: a watch's answer (objects shown through
    *present*), or the stored objects' list for the caller to show (converted versions and ``events.k8s.io/v1``)."""
    verb = "watch" if flag(request, "watch") else "list"
    host._authorize(request, verb, t)
    if verb == "watch":
        return await host._watch(request, stored_target, view=view, present=present)
    q = request.query
    return host.core.list(
        stored_target.resource,
        t.namespace,
        label_selector=q.get("labelSelector", ""),
        field_selector=q.get("fieldSelector", ""),
        limit=int(q["limit"]) if q.get("limit") else None,
        continue_token=q.get("continue"),
    )


async def serve(
    host: VersionHost,
    request: web.Request,
    t: TargetLike,
    stored_target: TargetLike,
    manager: str,
    validation: str,
    dry_run: bool,
) -> web.StreamResponse:
    """Answer a request to version ``t.resource`` from the objects of ``stored_target.resource``."""
    view, stored, core = t.resource, stored_target.resource, host.core
    method = request.method

    def shown(obj: Obj) -> Obj:
        return to_view(view, obj)

    if method == "GET" and t.name is None:
        listing = await watch_or_list(host, request, t, stored_target, view, shown)
        if not isinstance(listing, dict):  # a watch
            return listing
        if wants_table(request):  # the columns come from the stored version, as upstream prints the internal one
            return json_response(tables.to_table(stored, listing["items"],
                                                 list_rv=listing["metadata"]["resourceVersion"]))  # fmt: skip
        items = [shown(o) for o in listing["items"]]
        return json_response({**listing, "apiVersion": view.api_version, "items": items})
    if method == "DELETE":
        return await host._delete(request, stored_target, dry_run)
    if method == "GET":
        host._authorize(request, "get", t)
        return host._answer(request, t, shown(core.get(stored, t.namespace, t.object_name)))
    if method == "POST" and t.name is None and not t.subresource:
        host._authorize(request, "create", t)
        body = await host._body(request, t)
        warnings = validate(view, body, validation)  # decoding errors and warnings speak of the version sent
        obj, _ = core.create(
            stored,
            t.namespace,
            to_stored(view, stored, body, None),
            manager=manager,
            validation="Ignore",
            dry_run=dry_run,
        )
        return host._answer(request, t, shown(obj), 201, warnings)
    if method in ("PUT", "PATCH") and t.name:
        host._authorize(request, "update" if method == "PUT" else "patch", t)
        live = core.get(stored, t.namespace, t.object_name)
        if method == "PUT":
            new = await host._body(request, t)
        else:
            new = _patched(view, shown(live), request.headers.get("Content-Type", ""), await request.read())
        if not isinstance(new, dict):
            raise bad_request(f"the body of a {view.kind} must be a JSON object")
        warnings = validate(view, new, validation) if not t.subresource else []
        new.setdefault("metadata", {}).setdefault("resourceVersion", live["metadata"]["resourceVersion"])
        obj, _ = core.replace(
            stored,
            t.namespace,
            t.object_name,
            to_stored(view, stored, new, live),
            subresource=t.subresource,
            manager=manager,
            validation="Ignore",
            dry_run=dry_run,
        )
        return host._answer(request, t, shown(obj), 200, warnings)
    raise method_not_allowed()


def _patched(view: Resource, current: Obj, content_type: str, body: bytes) -> Any:
    kind, document = patch.decode(content_type, body)
    if kind == "json":
        return patch.json_patch(current, document)
    if kind == "merge":
        return patch.json_merge_patch(current, document)
    if kind == "strategic":
        return patch.strategic_merge_patch(view, current, document)
    # inferred: server-side apply of an older version is not converted field by field; say so clearly
    raise bad_request(
        f"server-side apply of {view.api_version} {view.kind} is not supported by the labkit sandbox: "
        f"apply it as {json.dumps(RESOURCES.by_plural(view.group, view.plural).api_version)}"  # type: ignore[union-attr]
    )
