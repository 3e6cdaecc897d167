"""CustomResourceDefinitions: a stored CRD makes its kinds served, as apiextensions-apiserver does.

While a CRD exists, each of its served versions is a :class:`Resource` of the registry
(discovery, CRUD, watch, ``kubectl get``/``explain``); its objects are checked against the
version's structural schema (types, ``required``, ``enum``; unknown fields pruned or, with
``fieldValidation=Strict``, refused). The CRD gets the conditions ``NamesAccepted`` and
``Established`` that ``kubectl wait --for condition=established`` waits for. Deleting the CRD
deletes its objects (upstream's ``customresourcecleanup`` finalizer does the same).

>>> crd = {"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
...        "names": {"plural": "widgets", "kind": "Widget"},
...        "versions": [{"name": "v1", "served": True, "storage": True,
...                      "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
...                          "type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}
>>> crd_causes(crd)
[]
>>> [r.api_version for r in resources_of(crd)]
['example.com/v1']
>>> structural_causes(resources_of(crd)[0], {"spec": {"size": "big"}}, [])[0]["message"]
'Invalid value: "big": spec.size in body must be of type integer: "string"'
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.kinds import guess_plural
from labkit.sandbox.api.registry import ALL_VERBS, RESOURCES, Resource
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.store import Store

CRDS = RESOURCES.served("apiextensions.k8s.io", "customresourcedefinitions")
Cause = dict[str, str]

#: groups and kinds of the built-in resources: a CRD may take neither (see crd_causes)
_BUILTIN_GROUPS = frozenset(r.group for r in RESOURCES)
_BUILTIN_KINDS = frozenset(r.kind for r in RESOURCES)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _type_name(value: Any) -> str:
    """The type word of kube-openapi's ``must be of type`` errors."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "null"


def _go(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, int, float, bool)) else json.dumps(_type_name(value))


# -- the CRD object itself --------------------------------------------------------------------------


def default_crd(crd: dict[str, Any]) -> None:
    """``SetDefaults_CustomResourceDefinitionSpec``: singular and listKind from the kind, conversion None."""
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})


def crd_causes(crd: dict[str, Any]) -> list[Cause]:
    """The 422 causes of apiextensions' ValidateCustomResourceDefinition that a learner meets."""
    spec, name = crd.get("spec") or {}, (crd.get("metadata") or {}).get("name", "")
    names, group = spec.get("names") or {}, spec.get("group") or ""
    causes: list[Cause] = []
    for field in ("plural", "kind"):
        if not names.get(field):
            causes.append({"reason": "FieldValueRequired", "field": f"spec.names.{field}", "message": "Required value"})
    if not group:
        causes.append({"reason": "FieldValueRequired", "field": "spec.group", "message": "Required value"})
    elif "." not in group:
        causes.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
    elif group in _BUILTIN_GROUPS:
        # inferred: upstream refuses *.k8s.io groups without api-approved annotation; the sandbox keeps every
        # built-in group to itself, so a CRD can never shadow a built-in kind
        causes.append(_invalid("spec.group", group, "is served by the API server's built-in kinds"))
    if names.get("kind") in _BUILTIN_KINDS:
        # inferred, stricter than upstream (which allows a custom "Pod" in another group): the sandbox's
        # admission, defaulting and deletion rules are keyed by kind, so a custom kind must not share a name
        causes.append(_invalid("spec.names.kind", names["kind"], "is the kind of a built-in resource"))
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        causes.append(_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "field": "spec.scope",
                "message": f'Unsupported value: {_go(spec.get("scope") or "")}: supported values: "Cluster", '
                '"Namespaced"',
            }
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append({"reason": "FieldValueInvalid", "field": "spec.versions", "message": "Invalid value: "
                       "null: must have exactly one version marked as storage version"})  # fmt: skip
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(_invalid("spec.versions", "…", "must have exactly one version marked as storage version"))
    return causes


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return {"reason": "FieldValueInvalid", "field": field, "message": f"Invalid value: {_go(value)}: {detail}"}


def resources_of(crd: dict[str, Any]) -> list[Resource]:
    """A Resource for each served version of *crd*."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind = names.get("kind", "")
    versions = spec.get("versions") or []
    storage = next((v.get("name", "") for v in versions if v.get("storage")), "")
    out = []
    # the stored version first: the registry's by_plural and discovery's preferred version are the first
    for version in sorted(versions, key=lambda v: not v.get("storage")):
        if not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        subs = {"status": kind} if "status" in subresources else {}
        if "scale" in subresources:
            subs["scale"] = "Scale"
        out.append(
            Resource(
                spec.get("group", ""),
                version.get("name", ""),
                kind,
                names.get("plural") or guess_plural(kind),
                spec.get("scope") != "Cluster",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                verbs=ALL_VERBS,
                subresources=subs,
                custom=version,
                storage_version="" if version.get("name") == storage else storage,
            )
        )
    return out


# -- custom objects -----------------------------------------------------------------------------------


def schema_of(resource: Resource) -> dict[str, Any]:
    """The version's openAPIV3Schema with the fields every object has (apiVersion, kind, metadata)."""
    version = resource.custom or {}
    schema = dict((version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})
    if not schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        schema["x-kubernetes-preserve-unknown-fields"] = True  # no schema at all: nothing is pruned
    props = dict(schema.get("properties") or {})
    props.update(apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
    schema["properties"] = props
    return schema


def structural_causes(resource: Resource, obj: dict[str, Any], unknown: list[str]) -> list[Cause]:
    """Check *obj* against the structural schema; prune unknown fields into *unknown*; return 422 causes."""
    causes: list[Cause] = []
    _walk(schema_of(resource), obj, "", causes, unknown)
    return causes


def _walk(schema: dict[str, Any], value: Any, path: str, causes: list[Cause], unknown: list[str]) -> None:
    if value is None:
        return
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            causes.append(_type_cause(path, value, "integer or string"))
        return
    declared = schema.get("type")
    if declared in _JSON_TYPES:
        ok = isinstance(value, _JSON_TYPES[declared]) and (declared == "boolean" or not isinstance(value, bool))
        if declared == "integer" and isinstance(value, float) and value.is_integer():
            ok = True
        if not ok:
            causes.append(_type_cause(path, value, declared))
            return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_go(v) for v in schema["enum"])
        causes.append({"reason": "FieldValueNotSupported", "field": path,
                       "message": f"Unsupported value: {_go(value)}: supported values: {supported}"})  # fmt: skip
    if isinstance(value, dict):
        _walk_object(schema, value, path, causes, unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{i}]", causes, unknown)


def _walk_object(
    schema: dict[str, Any], value: dict[str, Any], path: str, causes: list[Cause], unknown: list[str]
) -> None:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    for key in list(value):
        child = f"{path}.{key}" if path else key
        if key in props:
            if not (path == "" and key == "metadata"):  # ObjectMeta is the API server's, checked as for any kind
                _walk(props[key], value[key], child, causes, unknown)
        elif isinstance(extra, dict):
            _walk(extra, value[key], child, causes, unknown)
        elif not preserve and extra is not True:
            unknown.append(child)
            del value[key]
    for key in schema.get("required") or ():
        if key not in value:
            field = f"{path}.{key}" if path else key
            causes.append({"reason": "FieldValueRequired", "field": field, "message": "Required value"})


def _type_cause(path: str, value: Any, declared: str) -> Cause:
    return {
        "reason": "FieldValueTypeInvalid",
        "field": path,
        "message": f'Invalid value: {_go(value)}: {path} in body must be of type {declared}: "{_type_name(value)}"',
    }


# -- keeping the registry in step with the stored CRDs ---------------------------------------------


class CustomResources:
    """Serves the kinds of the CRDs in *store*; :meth:`refresh` is cheap when no CRD changed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen = -1

    def refresh(self) -> None:
        written = self.store.last_write(CRDS)
        if written == self._seen:
            return
        crds = self.store.list(CRDS, None)[0]
        live = {crd["metadata"]["name"] for crd in crds}
        for owner in RESOURCES.custom_owners():
            if owner not in live:
                self._remove_objects(owner)
                RESOURCES.set_custom(owner, [])
        for crd in crds:
            RESOURCES.set_custom(crd["metadata"]["name"], resources_of(crd))
            self._establish(crd)
        self._seen = self.store.last_write(CRDS)

    def _remove_objects(self, owner: str) -> None:
        for resource in [r for r in RESOURCES if r.custom is not None and _owner(r) == owner]:
            for obj in self.store.list(resource, None)[0]:
                self.store.delete(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def _establish(self, crd: dict[str, Any]) -> None:
        """The naming and establishing controllers' conditions (apiextensions-apiserver pkg/controller/status,
        pkg/controller/establish): names accepted, then established."""
        status = crd.get("status") or {}
        if any(c.get("type") == "Established" for c in status.get("conditions") or ()):
            return
        now = format_rfc3339()
        names = crd["spec"]["names"]
        storage = [v["name"] for v in crd["spec"].get("versions") or () if v.get("storage")]
        crd["status"] = {
            "acceptedNames": {k: names[k] for k in ("plural", "singular", "kind", "listKind", "shortNames",
                                                    "categories") if k in names},
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
                 "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now,
                 "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
            ],
            "storedVersions": storage,
        }  # fmt: skip
        self.store.update(CRDS, crd, check_rv=False)


def _owner(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}"
