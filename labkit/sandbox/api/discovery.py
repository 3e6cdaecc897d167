"""API discovery documents: what ``kubectl api-resources`` and every client read first.

Both forms are served: the aggregated v2 list (kubectl ≥ 1.30 asks for it and then
makes no further discovery requests) and the legacy per-group-version lists that
the Python ``DynamicClient`` still uses.
"""

from __future__ import annotations

from typing import Any

from labkit.sandbox.api.metrics import DISCOVERY_RESOURCES as METRICS_RESOURCES
from labkit.sandbox.api.registry import RESOURCES, Resource

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

#: What /version says: a k3s-shaped version string, marked as labkit's sandbox.
VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.5+labkit.sandbox",
    "gitCommit": "labkit-sandbox",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "n/a (python)",
    "compiler": "labkit",
    "platform": "linux/amd64",
}

#: Subresources answer with their own verbs and kinds.
_SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "ephemeralcontainers": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "log": ("get",),
    "exec": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "token": ("create",),
    "finalize": ("update",),
}
_SUBRESOURCE_GROUP = {
    "Scale": ("autoscaling", "v1"),
    "TokenRequest": ("authentication.k8s.io", "v1"),
    "Eviction": ("policy", "v1"),
    "Binding": ("", "v1"),
}


def _groups() -> dict[str, list[Resource]]:
    """The stored kinds' groups and the metrics API's (metrics-server's aggregated group on k3s)."""
    return {**RESOURCES.groups(), METRICS_RESOURCES[0].group: METRICS_RESOURCES}


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept


def _aggregated_resource(r: Resource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    subs = []
    for name, kind in r.subresources.items():
        group, version = _SUBRESOURCE_GROUP.get(kind, (r.group, r.version))
        sub: dict[str, Any] = {"subresource": name, "verbs": list(_SUBRESOURCE_VERBS.get(name, ("get",)))}
        if kind:
            sub["responseKind"] = {"group": group, "version": version, "kind": kind}
        subs.append(sub)
    if subs:
        out["subresources"] = subs
    return out


def aggregated(core: bool) -> dict[str, Any]:
    """The ``APIGroupDiscoveryList`` for ``/api`` (core=True) or ``/apis``."""
    items = []
    for group, resources in _groups().items():
        if (group == "") != core:
            continue
        versions: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            versions.setdefault(r.version, []).append(_aggregated_resource(r))
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [{"version": v, "resources": rs, "freshness": "Current"} for v, rs in versions.items()],
            }
        )
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, resources in _groups().items():
        if not group:
            continue
        versions = list(dict.fromkeys(r.version for r in resources))
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The legacy ``APIResourceList`` for one group-version, or None if it is not served."""
    resources = [
        r for r in [*RESOURCES.every_version(), *METRICS_RESOURCES] if r.group == group and r.version == version
    ]
    if not resources:
        return None
    entries: list[dict[str, Any]] = []
    for r in resources:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for name, kind in r.subresources.items():
            sub_group, sub_version = _SUBRESOURCE_GROUP.get(kind, (r.group, r.version))
            sub = {
                "name": f"{r.plural}/{name}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind or r.kind,
                "verbs": list(_SUBRESOURCE_VERBS.get(name, ("get",))),
            }
            if (sub_group, sub_version) != (r.group, r.version):
                sub["group"], sub["version"] = sub_group, sub_version
            entries.append(sub)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }
