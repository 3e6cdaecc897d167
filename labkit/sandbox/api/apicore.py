"""The API server's semantics, independent of HTTP.

``ApiCore`` is what a real kube-apiserver's registry layer does: validation,
defaulting, generation and resourceVersion rules, the status subresource split,
finalizers and graceful deletion, deletion propagation through ownerReferences,
namespace termination, and the four patch types. The HTTP layer
(``server.py``) and the in-process controllers both call it, so a controller
sees exactly what kubectl sees.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from labkit.sandbox.api import admission, ephemeral, ipallocator, managedfields, patch, subresources

# The daemon's bootstrap imports the two well-known service IPs from here.
from labkit.sandbox.api.ipallocator import CLUSTER_DNS_IP as CLUSTER_DNS_IP
from labkit.sandbox.api.ipallocator import KUBERNETES_SERVICE_IP as KUBERNETES_SERVICE_IP
from labkit.sandbox.api.podupdate import pod_update_causes
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.selectors import parse_field_selector, parse_label_selector
from labkit.sandbox.api.status import (
    StatusError,
    already_exists,
    bad_request,
    conflict,
    forbidden_because,
    invalid,
    not_found,
)
from labkit.sandbox.api.validation import check_shape, check_types, validate
from labkit.sandbox.netmap import plan
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.escalation import Guard
    from labkit.sandbox.api.store import Store, Watcher

NAMESPACES = RESOURCES.served("", "namespaces")
PODS = RESOURCES.served("", "pods")
SERVICE_ACCOUNTS = RESOURCES.served("", "serviceaccounts")

#: Kinds whose spec changes bump ``metadata.generation`` (workload controllers read it).
GENERATION_KINDS = {
    "Deployment",
    "ReplicaSet",
    "Job",
    "Pod",
    "DaemonSet",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
}

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")

Hook = Callable[[str, Resource, dict[str, Any]], None]


class WriteOptions(TypedDict):
    """How a request's create, replace or patch is written: its field manager, fieldValidation, dryRun, and RBAC's
    escalation check (None but for roles and bindings)."""

    manager: str
    validation: str
    dry_run: bool
    guard: Guard | None


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.setdefault("metadata", {})
    return meta


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


class ApiCore:
    """Kubernetes object semantics over a ``Store``.

    >>> core = ApiCore(Store(":memory:"))                      # doctest: +SKIP
    >>> core.create(RESOURCES.served("", "namespaces"), None, {"metadata": {"name": "lab"}})  # doctest: +SKIP
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        #: the sandbox's cluster addresses (its slot on this machine, labkit.sandbox.netmap); the daemon sets it
        self.addresses = plan(0)
        #: called with ("removed", resource, obj) once an object is really gone
        self.hooks: list[Hook] = []

    # ------------------------------------------------------------------ reads
    def get(self, res: Resource, ns: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        return obj

    def list(
        self,
        res: Resource,
        ns: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        items, rv, cont = self.store.list(
            res,
            ns,
            parse_label_selector(label_selector) if label_selector else None,
            parse_field_selector(field_selector) if field_selector else None,
            limit=limit,
            continue_token=continue_token,
        )
        for item in items:
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta, "items": items}

    def watch(
        self,
        res: Resource,
        ns: str | None = None,
        *,
        since_rv: int | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> Watcher:
        """Watch *res* from the running event loop, as ``?watch=true`` does: ``since_rv=None`` first yields an
        ADDED for every matching object; a resourceVersion from :meth:`list` replays only what came after it
        (410 Gone when that is older than the history). The store ends a watcher that falls too far behind:
        its ``next()`` then returns None and the caller watches again."""
        return self.store.watch(
            res,
            ns,
            since_rv=since_rv,
            label_selector=parse_label_selector(label_selector) if label_selector else None,
            field_selector=parse_field_selector(field_selector) if field_selector else None,
        )

    # ---------------------------------------------------------------- helpers
    def _check_identity(self, res: Resource, ns: str | None, obj: dict[str, Any], name: str | None) -> None:
        check_shape(res, obj)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != res.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({res.api_version})"
            )
        if kind and kind != res.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
        meta = _meta(obj)
        if res.namespaced:
            if meta.get("namespace") and ns and meta["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name is not None:
            if meta.get("name") and meta["name"] != name:
                raise bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
                )
            meta["name"] = name
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind

    def check_request(self, res: Resource, ns: str | None, obj: dict[str, Any]) -> None:
        """The create handler's checks of a body answered without being stored (a review, a Binding): its
        apiVersion, kind and namespace match the request's; the namespace is the request's."""
        self._check_identity(res, ns, obj, None)

    def _prepare(self, res: Resource, obj: dict[str, Any], validation: str) -> builtins.list[str]:
        warnings = validate(res, obj, validation)
        admission.apply_defaults(res.kind, obj)
        return warnings

    def _checked(self, res: Resource, obj: dict[str, Any], validation: str, subresource: str) -> builtins.list[str]:
        """An update's checks: the whole object's for the object itself and for ``pods/ephemeralcontainers``
        (whose new containers are validated and defaulted as the pod's), types only for the other subresources."""
        if not subresource or subresource == ephemeral.SUBRESOURCE or res.custom:
            return self._prepare(res, obj, validation)
        return check_types(res, obj)

    # ---------------------------------------------------------------- writes
    def create(
        self,
        res: Resource,
        ns: str | None,
        obj: dict[str, Any],
        *,
        manager: str = "",
        validation: str = "Strict",
        dry_run: bool = False,
        managed_fields: builtins.list[dict[str, Any]] | None = None,
        guard: Guard | None = None,
    ) -> tuple[dict[str, Any], builtins.list[str]]:
        """Create *obj*; *managed_fields*: server-side apply's ownership; *guard* may refuse the object as stored."""
        obj = patch.deep_copy(obj)
        self._check_identity(res, ns, obj, None)
        meta = _meta(obj)
        admission.require_namespace(self.store, res, ns, meta.get("name") or meta.get("generateName") or "")
        for server_owned in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ):
            meta.pop(server_owned, None)
        if res.kind not in ("Namespace",):
            obj.pop("status", None)
        warnings = self._prepare(res, obj, validation)
        if res.kind == "Pod" and (causes := ephemeral.create_causes(obj.get("spec") or {})):
            raise invalid(res, meta.get("name") or "", causes)
        admission.admit(self.store, res, obj)
        if res.kind == "Service" and obj["spec"].get("type") != "ExternalName":
            ipallocator.allocate_cluster_ip(self.store, obj, self.addresses)
        if res.kind in GENERATION_KINDS:
            meta["generation"] = 1
        if guard is not None:
            guard(obj, None)
        if managed_fields is not None:
            meta["managedFields"] = managed_fields
        elif manager:
            obj = managedfields.record_update(res, None, obj, manager, "Update")
        if dry_run:
            if meta.get("name") and self.store.peek(res, ns, meta["name"]) is not None:
                raise already_exists(res, meta["name"])
            return obj, warnings
        created = self.store.create(res, obj)
        self._after_create(res, created)
        return created, warnings

    def _after_create(self, res: Resource, obj: dict[str, Any]) -> None:
        if res.kind == "Namespace":
            # The serviceaccount controller gives every namespace a "default" account.
            name = obj["metadata"]["name"]
            if self.store.peek(SERVICE_ACCOUNTS, name, "default") is None:
                self.store.create(
                    SERVICE_ACCOUNTS,
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}},
                )

    def replace(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        obj: dict[str, Any],
        *,
        subresource: str = "",
        manager: str = "",
        validation: str = "Strict",
        dry_run: bool = False,
        guard: Guard | None = None,
    ) -> tuple[dict[str, Any], builtins.list[str]]:
        obj = patch.deep_copy(obj)
        self._check_identity(res, ns, obj, name)
        live = self.get(res, ns, name)
        incoming_rv = obj["metadata"].get("resourceVersion")
        if incoming_rv and incoming_rv != live["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        warnings = self._checked(res, obj, validation, subresource)
        new = self._merge_update(res, live, obj, subresource)
        if guard is not None:
            guard(new, live)
        if manager:
            new = managedfields.record_update(res, live, new, manager, "Update", subresource=subresource)
        return self._write(res, live, new, dry_run), warnings

    def _merge_update(
        self, res: Resource, live: dict[str, Any], incoming: dict[str, Any], subresource: str
    ) -> dict[str, Any]:
        """The object as stored after an update: the status split, immutable and server-owned fields."""
        if subresource == ephemeral.SUBRESOURCE:
            return ephemeral.merged(res, live, incoming)
        if subresource == "status":
            # metadata changes through /status are limited to labels/annotations in Kubernetes; keep it simple:
            # ignore them, but keep the ownership record_update gave the status's writer. Nothing below changes
            # the parts shared with live (a copy of the store's object) but metadata, which is copied.
            new: dict[str, Any] = {**live, "metadata": dict(live["metadata"]), "status": incoming.get("status", {})}
            if "managedFields" in _meta(incoming):
                new["metadata"]["managedFields"] = incoming["metadata"]["managedFields"]
            return new
        new = incoming
        meta, live_meta = _meta(new), live["metadata"]
        for kept in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if kept in live_meta:
                meta[kept] = live_meta[kept]
            else:
                meta.pop(kept, None)
        if "managedFields" not in meta and "managedFields" in live_meta:
            meta["managedFields"] = live_meta["managedFields"]
        if "status" in res.subresources or res.kind == "Namespace":
            if "status" in live:
                new["status"] = patch.deep_copy(live["status"])
            else:
                new.pop("status", None)
        if res.kind == "Service":
            spec, live_spec = new.setdefault("spec", {}), live.get("spec", {})
            for field in ("clusterIP", "clusterIPs"):
                if field in live_spec:
                    spec.setdefault(field, live_spec[field])
        if res.kind == "Pod" and (causes := pod_update_causes(new.get("spec") or {}, live.get("spec") or {})):
            raise invalid(res, live["metadata"]["name"], causes)
        if res.kind in GENERATION_KINDS and _without(new, "metadata", "status") != _without(live, "metadata", "status"):
            meta["generation"] = int(live_meta.get("generation", 1)) + 1
        return new

    def _write(self, res: Resource, live: dict[str, Any], new: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        if dry_run:
            return new
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not self._awaiting_kubelet(res, new):
            return self._remove(res, new)
        if _without(new, "metadata") == _without(live, "metadata") and _strip_volatile(meta) == _strip_volatile(
            live["metadata"]
        ):
            return live  # a no-op update does not bump resourceVersion, as in Kubernetes
        return self.store.update(res, new)

    def patch(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        content_type: str,
        body: bytes | tuple[str, Any],
        *,
        subresource: str = "",
        manager: str = "",
        force: bool = False,
        validation: str = "Strict",
        dry_run: bool = False,
        guard: Guard | None = None,
    ) -> tuple[dict[str, Any], builtins.list[str], bool]:
        """Apply a patch (its raw body, or what ``patch.decode`` made of it); returns (object, warnings, created)."""
        kind, document = body if isinstance(body, tuple) else patch.decode(content_type, body)
        live = self.store.get(res, ns, name)
        if kind == "apply":
            if not manager:
                raise bad_request("PATCH /apply requires a non-empty fieldManager query parameter")
            if not isinstance(document, dict):
                raise bad_request("apply patch must be a map")
            self._check_identity(res, ns, document, name)
            if live is None:
                if subresource:
                    raise not_found(res, name)
                applied = managedfields.server_side_apply(res, None, document, manager, force)
                obj, warnings = self.create(
                    res,
                    ns,
                    applied,
                    validation=validation,
                    dry_run=dry_run,
                    managed_fields=applied["metadata"].get("managedFields"),
                    guard=guard,
                )
                return obj, warnings, True
            new = managedfields.server_side_apply(res, live, document, manager, force)
        else:
            if live is None:
                raise not_found(res, name)
            if kind == "json":
                new = patch.json_patch(live, document)
            elif kind == "merge":
                new = patch.json_merge_patch(live, document)
            else:
                new = patch.strategic_merge_patch(res, live, document)
            if manager:
                new = managedfields.record_update(res, live, new, manager, "Update", subresource=subresource)
        self._check_identity(res, ns, new, name)
        incoming_rv = new["metadata"].get("resourceVersion")
        if incoming_rv and incoming_rv != live["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        warnings = self._checked(res, new, validation, subresource)
        merged = self._merge_update(res, live, new, subresource)
        if guard is not None:
            guard(merged, live)
        return self._write(res, live, merged, dry_run), warnings, False

    # -------------------------------------------------------------- deletion
    def delete(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete like the API server: returns the object (with deletionTimestamp while it finalizes) or its last
        state."""
        live = self.get(res, ns, name)
        meta = live["metadata"]
        for key in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(key)
            if wanted and wanted != meta.get(key):
                raise StatusError(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {res.describe(name)}: Precondition failed: "
                    f"{key.upper() if key == 'uid' else 'ResourceVersion'} in precondition: {wanted}, "
                    f"{key.upper() if key == 'uid' else 'ResourceVersion'} in object meta: {meta.get(key)}",
                )
        if dry_run:
            return live
        if propagation is None:
            # Jobs (and the legacy extensions kinds) orphan by default; kubectl always sends Background.
            propagation = "Orphan" if res.kind == "Job" else "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise bad_request(
                f'propagationPolicy: Unsupported value: "{propagation}": supported values: "Orphan", '
                '"Background", "Foreground"'
            )
        if meta.get("deletionTimestamp"):
            if res.kind == "Pod" and grace_period == 0 and not meta.get("finalizers"):
                return self._remove(res, live)  # the kubelet's last word on a terminated pod
            return live  # already terminating: a second delete changes nothing
        new = patch.deep_copy(live)
        new_meta = new["metadata"]
        if res.kind == "Namespace":
            if name in PROTECTED_NAMESPACES:
                raise forbidden_because(NAMESPACES, name, "this namespace may not be deleted")
            new_meta["deletionTimestamp"] = format_rfc3339()
            new["status"] = {**new.get("status", {}), "phase": "Terminating"}
            updated = self.store.update(res, new)
            self._terminate_namespace(name)
            return self.store.get(res, None, name) or updated
        if propagation == "Foreground" and self._dependents(res, live):
            new_meta.setdefault("finalizers", []).append("foregroundDeletion")
        if propagation == "Orphan":
            self._orphan_dependents(res, live)
        grace = self._grace(res, live, grace_period)
        if grace or new_meta.get("finalizers"):
            new_meta["deletionTimestamp"] = (
                format_rfc3339()
                if not grace
                else (datetime.now(UTC) + timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
            if grace:
                new_meta["deletionGracePeriodSeconds"] = grace
            updated = self.store.update(res, new)
            if propagation != "Orphan":
                self._delete_dependents(res, live, propagation)
            return updated
        removed = self._remove(res, live)
        if propagation == "Background":
            self._delete_dependents(res, live, propagation)
        return removed

    def _grace(self, res: Resource, live: dict[str, Any], requested: int | None) -> int:
        """Pods on a node terminate gracefully; the node finishes the deletion once containers stopped."""
        if res.kind != "Pod" or not live.get("spec", {}).get("nodeName"):
            return 0
        if live.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = requested if requested is not None else live["spec"].get("terminationGracePeriodSeconds", 30)
        return max(int(grace), 0) if grace else 0

    def _awaiting_kubelet(self, res: Resource, obj: dict[str, Any]) -> bool:
        return res.kind == "Pod" and bool(obj["metadata"].get("deletionGracePeriodSeconds"))

    def _remove(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        removed = self.store.delete(res, meta.get("namespace"), meta["name"])
        for hook in self.hooks:
            hook("removed", res, removed)
        self._release_owners(removed)
        if res.namespaced:
            self._maybe_finish_namespace(meta.get("namespace"))
        return removed

    def _namespaced_resources(self) -> builtins.list[Resource]:
        # events.k8s.io events are a view of core events, never stored twice; what cannot be deleted is no stored
        # object (bindings, local reviews)
        return [r for r in RESOURCES if r.namespaced and r.group != "events.k8s.io" and "delete" in r.verbs]

    def _dependents(self, res: Resource, owner: dict[str, Any]) -> builtins.list[tuple[Resource, dict[str, Any]]]:
        by_key = {r.key: r for r in self._namespaced_resources()}
        found = self.store.dependents(owner["metadata"]["uid"], owner["metadata"].get("namespace"))
        return [(by_key[key], obj) for key, obj in found if key in by_key]

    def _delete_dependents(self, res: Resource, owner: dict[str, Any], propagation: str) -> None:
        for r, obj in self._dependents(res, owner):
            try:
                self.delete(r, obj["metadata"].get("namespace"), obj["metadata"]["name"], propagation=propagation)
            except StatusError as e:
                if e.code != 404:
                    raise

    def _orphan_dependents(self, res: Resource, owner: dict[str, Any]) -> None:
        uid = owner["metadata"]["uid"]
        for r, obj in self._dependents(res, owner):
            refs = [ref for ref in obj["metadata"].get("ownerReferences") or () if ref.get("uid") != uid]
            obj["metadata"]["ownerReferences"] = refs
            if not refs:
                del obj["metadata"]["ownerReferences"]
            self.store.update(r, obj, check_rv=False)

    def _release_owners(self, removed: dict[str, Any]) -> None:
        """Foreground deletion: an owner waiting on its dependents goes once the last one is gone."""
        ns = removed["metadata"].get("namespace")
        for ref in removed["metadata"].get("ownerReferences") or ():
            owner_res = RESOURCES.by_api_version(ref.get("apiVersion", ""), ref.get("kind", ""))
            if owner_res is None:
                continue
            owner = self.store.get(owner_res, ns if owner_res.namespaced else None, ref.get("name", ""))
            if not owner or "foregroundDeletion" not in (owner["metadata"].get("finalizers") or ()):
                continue
            if not self._dependents(owner_res, owner):
                owner["metadata"]["finalizers"].remove("foregroundDeletion")
                if not owner["metadata"]["finalizers"]:
                    self._remove(owner_res, owner)
                else:
                    self.store.update(owner_res, owner, check_rv=False)

    def _terminate_namespace(self, ns: str) -> None:
        for r in self._namespaced_resources():
            for obj in self.store.list(r, ns)[0]:
                try:
                    self.delete(r, ns, obj["metadata"]["name"], propagation="Background")
                except StatusError as e:
                    if e.code != 404:
                        raise
        self._maybe_finish_namespace(ns)

    def _maybe_finish_namespace(self, ns: str | None) -> None:
        if not ns:
            return
        ns_obj = self.store.get(NAMESPACES, None, ns)
        if not ns_obj or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        if any(self.store.list(r, ns)[0] for r in self._namespaced_resources()):
            return
        self.store.delete(NAMESPACES, None, ns)

    # ------------------------------------------------------ subresources
    def scale(self, res: Resource, ns: str | None, name: str) -> dict[str, Any]:
        return subresources.scale_of(self.get(res, ns, name))

    def set_scale(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        replicas: Any,
        resource_version: str | None,
        manager: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        live = self.get(res, ns, name)
        if resource_version and resource_version != live["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        subresources.check_replicas(res, name, replicas)
        new = patch.deep_copy(live)
        new.setdefault("spec", {})["replicas"] = replicas
        if manager:
            new = managedfields.record_update(res, live, new, manager, "Update", subresource="scale")
        written = self._write(res, live, self._merge_update(res, live, new, ""), dry_run)
        return subresources.scale_of(written)

    def bind(self, ns: str | None, name: str, binding: dict[str, Any]) -> None:
        live = self.get(PODS, ns, name)
        self.store.update(PODS, subresources.bound(live, binding), check_rv=False)


def _strip_volatile(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("resourceVersion", "managedFields")}
