"""The resource types the sandbox API server serves.

One table drives discovery, routing, validation, Table output, protobuf
decoding and storage. The built-in kinds are generated from the official 1.32
schemas (:mod:`labkit.sandbox.api.kinds`); a CustomResourceDefinition adds its
kinds while it exists (:mod:`labkit.sandbox.api.crds`).

>>> RESOURCES.by_plural("apps", "deployments").kind
'Deployment'
>>> RESOURCES.by_kind("", "v1", "Pod").plural
'pods'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from labkit.sandbox.api import kinds

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
    #: a custom resource's version of its CustomResourceDefinition (schema, printer columns); None if built in
    custom: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    #: the version objects are stored in when this one is served by conversion (:mod:`.versions`); "" if itself
    storage_version: str = ""

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


class Registry:
    def __init__(self, resources: list[Resource]) -> None:
        self._builtin = list(resources)
        self._custom: dict[str, list[Resource]] = {}
        #: bumped on every change of the custom resources, so caches (discovery, OpenAPI) know when to renew
        self.generation = 0
        self._index()

    def _index(self) -> None:
        self._versions = self._builtin + [r for rs in self._custom.values() for r in rs]
        self._all = [r for r in self._versions if not r.storage_version]
        self._by_plural = {(r.group, r.plural): r for r in self._all}
        self._by_path = {(r.group, r.version, r.plural): r for r in self._versions}
        self._by_kind = {(r.group, r.version, r.kind): r for r in self._versions}

    def set_custom(self, owner: str, resources: list[Resource]) -> None:
        """Serve *resources* for the CustomResourceDefinition *owner* (none: stop serving its kinds)."""
        if resources:
            self._custom[owner] = list(resources)
        elif self._custom.pop(owner, None) is None:
            return
        self.generation += 1
        self._index()

    def custom_owners(self) -> list[str]:
        return list(self._custom)

    def __iter__(self) -> Iterator[Resource]:
        """Each resource once, in the version it is stored in."""
        return iter(self._all)

    def every_version(self) -> list[Resource]:
        """Every served group-version of every resource (discovery, OpenAPI)."""
        return list(self._versions)

    def by_plural(self, group: str, plural: str) -> Resource | None:
        return self._by_plural.get((group, plural))

    def by_path(self, group: str, version: str, plural: str) -> Resource | None:
        """The resource a REST path names: a custom resource may be served in several versions."""
        return self._by_path.get((group, version, plural))

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
        """Every served version of the resources, by group, core first, in registration order."""
        out: dict[str, list[Resource]] = {}
        for r in self._versions:
            out.setdefault(r.group, []).append(r)
        return out


def _builtin() -> list[Resource]:
    resources = []
    for spec in kinds.builtin_kinds():
        stored = spec.kind not in kinds.CREATE_ONLY
        subresources = {"status": spec.kind} if stored and spec.has_status else {}
        subresources.update(kinds.EXTRA_SUBRESOURCES.get(spec.kind, {}))
        resources.append(
            Resource(
                spec.group,
                spec.version,
                spec.kind,
                kinds.guess_plural(spec.kind),
                spec.kind not in kinds.CLUSTER_SCOPED,
                short_names=kinds.SHORT_NAMES.get(spec.kind, ()),
                categories=kinds.CATEGORIES.get(spec.kind, ()),
                verbs=kinds.VERBS.get((spec.group, spec.kind), ALL_VERBS if stored else ("create",)),
                subresources=subresources,
                schema=spec.definition,
                storage_version=spec.storage_version,
            )
        )
    return resources


RESOURCES = Registry(_builtin())
