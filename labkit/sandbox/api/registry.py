"""The resource types the sandbox API server serves.

One table drives discovery, routing, validation, Table output, protobuf
decoding and storage, so adding a kind is one line here.

>>> RESOURCES.by_plural("apps", "deployments").kind
'Deployment'
>>> RESOURCES.by_kind("", "v1", "Pod").plural
'pods'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    #: subresource name -> kind it answers with
    subresources: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    #: definition name in the official schemas (kubernetes-validate's _definitions.json)
    schema: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        """``api/v1`` or ``apis/apps/v1``: the URL prefix and the OpenAPI v3 key."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> str:
        """Stable identifier used in storage: ``apps/deployments`` or ``core/pods``."""
        return f"{self.group or 'core'}/{self.plural}"

    def describe(self, name: str) -> str:
        """How Kubernetes names an object in messages: ``deployments.apps "web"``."""
        prefix = f"{self.plural}.{self.group}" if self.group else self.plural
        return f'{prefix} "{name}"'


def _core(kind: str, plural: str, namespaced: bool = True, **kw: Any) -> Resource:
    return Resource("", "v1", kind, plural, namespaced, schema=f"io.k8s.api.core.v1.{kind}", **kw)


def _api(
    group: str, package: str, kind: str, plural: str, namespaced: bool = True, version: str = "v1", **kw: Any
) -> Resource:
    return Resource(group, version, kind, plural, namespaced, schema=f"io.k8s.api.{package}.{version}.{kind}", **kw)


class Registry:
    def __init__(self, resources: list[Resource]) -> None:
        self._all = list(resources)
        self._by_plural = {(r.group, r.plural): r for r in resources}
        self._by_kind = {(r.group, r.version, r.kind): r for r in resources}

    def __iter__(self) -> Iterator[Resource]:
        return iter(self._all)

    def by_plural(self, group: str, plural: str) -> Resource | None:
        return self._by_plural.get((group, plural))

    def served(self, group: str, plural: str) -> Resource:
        """A resource type the sandbox serves, for module constants: a typo fails at import, not later."""
        resource = self.by_plural(group, plural)
        if resource is None:
            raise LookupError(f"the sandbox serves no {plural!r} in group {group!r}")
        return resource

    def by_kind(self, group: str, version: str, kind: str) -> Resource | None:
        return self._by_kind.get((group, version, kind))

    def by_api_version(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def groups(self) -> dict[str, list[Resource]]:
        """Resources by group, core first, in registration order."""
        out: dict[str, list[Resource]] = {}
        for r in self._all:
            out.setdefault(r.group, []).append(r)
        return out


RESOURCES = Registry(
    [
        _core(
            "Namespace",
            "namespaces",
            namespaced=False,
            short_names=("ns",),
            subresources={"status": "Namespace", "finalize": "Namespace"},
        ),
        _core("Node", "nodes", namespaced=False, short_names=("no",), subresources={"status": "Node"}),
        _core(
            "Pod",
            "pods",
            short_names=("po",),
            categories=("all",),
            subresources={"status": "Pod", "log": "", "binding": "Binding", "eviction": "Eviction"},
        ),
        _core("Service", "services", short_names=("svc",), categories=("all",), subresources={"status": "Service"}),
        _core("Endpoints", "endpoints", short_names=("ep",)),
        _core("ConfigMap", "configmaps", short_names=("cm",)),
        _core("Secret", "secrets"),
        _core("ServiceAccount", "serviceaccounts", short_names=("sa",), subresources={"token": "TokenRequest"}),
        _core("Event", "events", short_names=("ev",)),
        _api(
            "apps",
            "apps",
            "Deployment",
            "deployments",
            short_names=("deploy",),
            categories=("all",),
            subresources={"status": "Deployment", "scale": "Scale"},
        ),
        _api(
            "apps",
            "apps",
            "ReplicaSet",
            "replicasets",
            short_names=("rs",),
            categories=("all",),
            subresources={"status": "ReplicaSet", "scale": "Scale"},
        ),
        _api("batch", "batch", "Job", "jobs", categories=("all",), subresources={"status": "Job"}),
        _api(
            "apps",
            "apps",
            "DaemonSet",
            "daemonsets",
            short_names=("ds",),
            categories=("all",),
            subresources={"status": "DaemonSet"},
        ),
        _api(
            "apps",
            "apps",
            "StatefulSet",
            "statefulsets",
            short_names=("sts",),
            categories=("all",),
            subresources={"status": "StatefulSet", "scale": "Scale"},
        ),
        _api("apps", "apps", "ControllerRevision", "controllerrevisions"),
        _api(
            "batch",
            "batch",
            "CronJob",
            "cronjobs",
            short_names=("cj",),
            categories=("all",),
            subresources={"status": "CronJob"},
        ),
        _api(
            "policy",
            "policy",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            short_names=("pdb",),
            subresources={"status": "PodDisruptionBudget"},
        ),
        _api("node.k8s.io", "node", "RuntimeClass", "runtimeclasses", namespaced=False),
        _api("rbac.authorization.k8s.io", "rbac", "Role", "roles"),
        _api("rbac.authorization.k8s.io", "rbac", "RoleBinding", "rolebindings"),
        _api("rbac.authorization.k8s.io", "rbac", "ClusterRole", "clusterroles", namespaced=False),
        _api("rbac.authorization.k8s.io", "rbac", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
        _api("discovery.k8s.io", "discovery", "EndpointSlice", "endpointslices"),
        _api("coordination.k8s.io", "coordination", "Lease", "leases"),
        # a second view of the core Events (stored once); updates go through core/v1
        _api(
            "events.k8s.io",
            "events",
            "Event",
            "events",
            short_names=("ev",),
            verbs=("create", "delete", "get", "list", "watch"),
        ),
        _api(
            "authorization.k8s.io",
            "authorization",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            namespaced=False,
            verbs=("create",),
        ),
        _api(
            "authorization.k8s.io",
            "authorization",
            "SubjectAccessReview",
            "subjectaccessreviews",
            namespaced=False,
            verbs=("create",),
        ),
    ]
)
