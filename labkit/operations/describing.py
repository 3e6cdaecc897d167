"""How objects look to a learner: :func:`describe` (a compact ``kubectl describe``) and :func:`show`
(the YAML a learner would write, without status and server-added fields)."""

from __future__ import annotations

import copy
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from labkit import evidence, resources

if TYPE_CHECKING:
    from labkit.cluster import Cluster


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
    kind = resources.kind_of(cluster, kind)
    obj = resources.get_object(cluster, kind, name, namespace)
    if obj is None:
        raise resources.not_found(f"{kind.lower()}s", name, namespace)
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
            "selector": resources.match_labels_selector(obj),
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
        namespace if resources.resource(cluster, kind).namespaced else None,
        fields,
        containers,
        conditions,
        evidence.events(cluster, f"{kind}/{name}", namespace=namespace)[-last_events:],
    )


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
    out = copy.deepcopy(resources.as_dict(obj))
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
