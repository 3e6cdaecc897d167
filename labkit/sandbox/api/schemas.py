"""The official Kubernetes schemas: the definitions, their compiled walk, patch metadata and OpenAPI v3.

The definitions come from the ``kubernetes-validate`` package (v1.32, ``-local-strict``), loaded once
per process and compiled lazily into :class:`Node` s, which :mod:`labkit.sandbox.api.validation` walks
to decode a write and :mod:`labkit.sandbox.api.patch` reads for merge keys and list types. The same
definitions, converted, are the OpenAPI v3 documents ``kubectl explain`` and ``kubectl apply`` fetch.

>>> from labkit.sandbox.api.registry import RESOURCES
>>> schemas().node(RESOURCES.served("", "pods").schema).child("spec").go_type
'v1.PodSpec'
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

from labkit.sandbox.api import crds
from labkit.sandbox.api.kinds import SCHEMA_VERSION, definitions
from labkit.sandbox.api.registry import RESOURCES, Resource

_REF_PREFIX = "#/$defs/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_PATCH_KEYS = (
    "x-kubernetes-patch-strategy",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
)


class MergeInfo(NamedTuple):
    """Patch metadata of one field: ``("merge", "name", "map", ("name",))`` for ``containers``."""

    strategy: str | None
    merge_key: str | None
    list_type: str | None
    list_map_keys: tuple[str, ...]


class Node:
    """One schema position, compiled lazily: its shape, Go type name and patch metadata.

    ``kind`` is one of ``struct`` (fixed properties), ``map`` (string keys, one value
    schema), ``array``, ``string``, ``integer``, ``number``, ``boolean``, ``intorstring``,
    ``quantity`` or ``any`` (free-form, nothing checked).
    """

    __slots__ = (
        "_children",
        "_items",
        "_owner",
        "_schema",
        "_values",
        "atomic",
        "go_type",
        "int_format",
        "kind",
        "patch",
        "strict",
        "struct_name",
    )

    def __init__(self, owner: Schemas, schema: dict[str, Any], def_name: str | None = None) -> None:
        self._owner, self._schema = owner, schema
        self._children: dict[str, Node | None] = {}
        self._items: Node | None = None
        self._values: Node | None = None
        declared = _declared_type(schema)
        additional = schema.get("additionalProperties")
        if def_name == _INT_OR_STRING or schema.get("x-kubernetes-int-or-string"):
            kind = "intorstring"
        elif def_name == _QUANTITY:
            kind = "quantity"
        elif schema.get("x-kubernetes-preserve-unknown-fields"):
            kind = "any"
        elif declared == "object" or "properties" in schema:
            kind = "struct" if "properties" in schema else "map" if isinstance(additional, dict) else "any"
        elif declared in ("array", "string", "integer", "number", "boolean"):
            kind = declared
        else:
            kind = "any"
        self.kind = kind
        self.strict = kind == "struct" and additional is False
        self.int_format = schema.get("format", "int64") if kind == "integer" else ""
        self.struct_name = def_name.rsplit(".", 1)[-1] if def_name and kind == "struct" else ""
        self.go_type = _go_type(schema, def_name, kind)
        self.patch = MergeInfo(
            schema.get("x-kubernetes-patch-strategy"),
            schema.get("x-kubernetes-patch-merge-key"),
            schema.get("x-kubernetes-list-type"),
            tuple(schema.get("x-kubernetes-list-map-keys") or ()),
        )
        self.atomic = schema.get("x-kubernetes-map-type") == "atomic"

    def child(self, name: str) -> Node | None:
        """The node of property ``name`` (struct) or of any value (map); None if unknown."""
        if self.kind == "map":
            return self.values
        try:
            return self._children[name]
        except KeyError:
            prop = self._schema.get("properties", {}).get(name) if self.kind == "struct" else None
            node = self._owner.compile(prop) if prop is not None else None
            self._children[name] = node
            return node

    @property
    def items(self) -> Node | None:
        if self._items is None and self.kind == "array":
            self._items = self._owner.compile(self._schema.get("items") or {})
        return self._items

    @property
    def values(self) -> Node | None:
        if self._values is None and self.kind == "map":
            self._values = self._owner.compile(self._schema["additionalProperties"])
        return self._values


def child_of(node: Node | None, name: str) -> Node | None:
    """The node of field ``name`` under a struct or map ``node``; None for anything else or unknown."""
    return node.child(name) if node is not None and node.kind in ("struct", "map") else None


def _go_type(schema: dict[str, Any], def_name: str | None, kind: str) -> str:
    """The Go type name the real server prints, e.g. ``int32``, ``[]v1.Container``, ``v1.PodSpec``."""
    if def_name:
        package, _, name = def_name.rpartition(".")
        return f"{package.rpartition('.')[2]}.{name}"
    if kind == "integer":
        return schema.get("format") or "int64"
    if kind == "array":
        items = schema.get("items") or {}
        ref = items.get("$ref", "")
        inner = _go_type(items, ref[len(_REF_PREFIX) :] if ref else None, "struct" if ref else _plain_kind(items))
        return f"[]{inner}"
    if kind == "map":
        values = schema["additionalProperties"]
        ref = values.get("$ref", "")
        return f"map[string]{_go_type(values, ref[len(_REF_PREFIX) :] if ref else None, _plain_kind(values))}"
    if kind == "string" and schema.get("format") == "byte":
        return "[]uint8"
    return {"string": "string", "number": "float64", "boolean": "bool"}.get(kind, "map[string]interface {}")


def _declared_type(schema: dict[str, Any]) -> str | None:
    """``integer`` for both ``type: integer`` and kubernetes-validate's ``type: [integer, "null"]``."""
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), None)
    return declared


def _plain_kind(schema: dict[str, Any]) -> str:
    declared = _declared_type(schema)
    if declared == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map"
    return declared or "any"


class Schemas:
    """The v1.32 definitions, compiled lazily, with the OpenAPI v3 documents rendered once."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._raw: dict[str, Any] | None = None
        self._by_def: dict[str, Node] = {}
        self._documents: dict[str, bytes] = {}
        self._index: dict[str, Any] | None = None
        self._index_generation = -1

    @property
    def definitions(self) -> dict[str, Any]:
        """The raw ``$defs`` mapping (definition name -> JSON schema)."""
        if self._raw is None:
            self._raw = json.loads(self._path.read_bytes())["$defs"] if self._path else definitions()
        return self._raw

    def compile(self, schema: dict[str, Any]) -> Node:
        """A Node for an inline schema; ``$ref`` siblings (patch strategy) override the target's."""
        ref = schema.get("$ref")
        if ref is None:
            return Node(self, schema)
        name = ref[len(_REF_PREFIX) :]
        if not any(k in schema for k in _PATCH_KEYS):
            return self.node(name)
        merged = {**self.definitions[name], **{k: schema[k] for k in _PATCH_KEYS if k in schema}}
        return Node(self, merged, name)

    def node(self, def_name: str) -> Node:
        """The root Node of a definition, e.g. ``io.k8s.api.core.v1.Pod``."""
        try:
            return self._by_def[def_name]
        except KeyError:
            if def_name not in self.definitions:
                raise KeyError(f"no schema {def_name!r} in kubernetes-validate {SCHEMA_VERSION}") from None
            node = self._by_def[def_name] = Node(self, self.definitions[def_name], def_name)
            return node

    # -- patch metadata ---------------------------------------------------------------------

    def root(self, resource: Resource) -> Node:
        """The Node of a resource's objects: its definition, or a custom resource's CRD schema."""
        if resource.custom is None:
            return self.node(resource.schema)
        return self.compile(crds.schema_of(resource))

    def field_node(self, resource: Resource, path: tuple[str, ...]) -> Node | None:
        """The Node at a JSON field path (list indices and map keys are skipped through)."""
        node: Node | None = self.root(resource)
        for name in path:
            while node is not None and node.kind == "array":
                node = node.items
            if node is None:
                return None
            node = node.child(name)
        return node

    def merge_info(self, resource: Resource, path: tuple[str, ...]) -> MergeInfo:
        """Patch metadata of the field at ``path``.

        >>> from labkit.sandbox.api.registry import RESOURCES
        >>> schemas().merge_info(RESOURCES.served("apps", "deployments"),
        ...                      ("spec", "template", "spec", "containers"))
        MergeInfo(strategy='merge', merge_key='name', list_type='map', list_map_keys=('name',))
        """
        node = self.field_node(resource, path)
        return node.patch if node is not None else MergeInfo(None, None, None, ())

    # -- OpenAPI v3 -------------------------------------------------------------------------

    def openapi_index(self) -> dict[str, Any]:
        """``GET /openapi/v3``: each served group-version with its hashed document URL.

        Built once per set of served kinds (kubectl fetches it on every apply); callers must not modify it.
        """
        if self._index is None or self._index_generation != RESOURCES.generation:
            paths = {}
            for gv in _group_versions():
                digest = hashlib.sha512(self.openapi_document(gv)).hexdigest().upper()
                paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
            self._index, self._index_generation = {"paths": paths}, RESOURCES.generation
        return self._index

    def openapi_document(self, gv_path: str) -> bytes:
        """``GET /openapi/v3/<gv_path>``: paths and converted schemas for one group-version.

        Raises KeyError for a group-version the sandbox does not serve.
        """
        resources = _group_versions().get(gv_path)
        if not resources:
            raise KeyError(f"no group-version {gv_path!r} is served")
        custom = resources[0].custom is not None
        key = f"{gv_path}#{RESOURCES.generation}" if custom else gv_path
        if key not in self._documents:
            if custom:  # documents of earlier CRD generations are never asked for again
                for stale in [k for k in self._documents if k.startswith(f"{gv_path}#")]:
                    del self._documents[stale]
            document = self._render(gv_path, resources)
            self._documents[key] = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
        return self._documents[key]

    def _render(self, gv_path: str, resources: list[Resource]) -> dict[str, Any]:
        roots, paths, own = [], {}, {}
        for r in resources:
            if r.custom is not None:
                # a CRD's schema, named as apiextensions-apiserver names it (reversed group, version, kind)
                name = ".".join([*reversed(r.group.split(".")), r.version, r.kind])
                own[name] = _custom_openapi(r)
                own[name + "List"] = _custom_list(r, name)
                roots.append("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
                roots.append("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")
                paths.update(_resource_paths(r, name + "List", name))
                continue
            roots.append(r.schema)
            list_schema = r.schema + "List"
            if list_schema in self.definitions:
                roots.append(list_schema)
            paths.update(_resource_paths(r, list_schema if list_schema in self.definitions else r.schema))
        roots.append("io.k8s.apimachinery.pkg.apis.meta.v1.Status")
        roots.append("io.k8s.apimachinery.pkg.apis.meta.v1.Patch")
        components = {n: _to_openapi(self.definitions[n]) for n in sorted(self._reachable(roots))}
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (labkit sandbox)", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": {**components, **own}},
        }

    def _reachable(self, roots: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(_refs(self.definitions[name]))
        return seen


def _refs(schema: Any) -> list[str]:
    """Definition names a schema refers to."""
    if isinstance(schema, dict):
        # a string: JSONSchemaProps (the CRD schema) has a *property* named "$ref", whose value is a schema
        ref = schema.get("$ref")
        out = [ref[len(_REF_PREFIX) :]] if isinstance(ref, str) else []
        for value in schema.values():
            out.extend(_refs(value))
        return out
    if isinstance(schema, list):
        return [name for item in schema for name in _refs(item)]
    return []


def _to_openapi(schema: Any) -> Any:
    """JSON Schema 2020-12 (kubernetes-validate) -> OpenAPI 3.0 as the real server serves it."""
    if isinstance(schema, list):
        return [_to_openapi(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "oneOf" in schema and all(isinstance(o, dict) and set(o) == {"type"} for o in schema["oneOf"]):
        # IntOrString and Quantity: the real documents keep oneOf and no type, which is what
        # makes kubectl explain print <IntOrString> and <map[string]Quantity>
        kinds = [t for o in schema["oneOf"] for t in ([o["type"]] if isinstance(o["type"], str) else o["type"])]
        out = {k: v for k, v in schema.items() if k != "oneOf"}
        out["oneOf"] = [{"type": t} for t in kinds if t != "null"]
        if "integer" in kinds:
            out["format"] = "int-or-string"
        return out
    if isinstance(schema.get("$ref"), str) and len(schema) > 1:
        # OpenAPI 3.0 ignores siblings of $ref, so the real server wraps the reference
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {"allOf": [_to_openapi({"$ref": schema["$ref"]})], **_to_openapi(rest)}
    out = {}
    for key, value in schema.items():
        if key == "$ref":
            out[key] = "#/components/schemas/" + value[len(_REF_PREFIX) :]
        elif key == "type" and isinstance(value, list):
            concrete = [t for t in value if t != "null"]
            out[key] = concrete[0] if concrete else "object"
            if "null" in value:
                out["nullable"] = True
        elif key == "additionalProperties" and value is False:
            continue  # a strictness marker of kubernetes-validate, not in the server's documents
        elif key in (
            "properties",
            "x-kubernetes-group-version-kind",
            "items",
            "additionalProperties",
            "allOf",
            "oneOf",
            "anyOf",
        ):
            out[key] = {k: _to_openapi(v) for k, v in value.items()} if key == "properties" else _to_openapi(value)
        else:
            out[key] = value
    return out


def _operation(r: Resource, action: str, verb: str, schema: str, body: bool, patch: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    op: dict[str, Any] = {
        "operationId": f"{action}{r.kind}",
        "tags": [r.group_version_path.replace("/", "_")],
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
    }
    if body or patch:
        op["parameters"] = [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {
                "name": "fieldValidation",
                "in": "query",
                "schema": {"type": "string", "uniqueItems": True},
                "description": "Strict, Warn or Ignore: what to do with unknown or duplicate fields",
            },
        ]
    if patch:
        op["parameters"].append({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}})
        patch_ref = {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}
        op["requestBody"] = {
            "required": True,
            "content": dict.fromkeys(
                (
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                ),
                patch_ref,
            ),
        }
    elif body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    return op


def _resource_paths(r: Resource, list_schema: str, item_schema: str = "") -> dict[str, Any]:
    item_schema = item_schema or r.schema
    base = f"/{r.group_version_path}/" + ("namespaces/{namespace}/" if r.namespaced else "") + r.plural
    params = (
        [{"name": "namespace", "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}]
        if r.namespaced
        else []
    )
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}
    collection: dict[str, Any] = {"parameters": params}
    if "list" in r.verbs:
        collection["get"] = _operation(r, "list", "list", list_schema, body=False)
    if "create" in r.verbs:
        collection["post"] = _operation(r, "create", "post", item_schema, body=True)
    paths = {base: collection}
    if "get" in r.verbs:
        paths[base + "/{name}"] = {
            "parameters": [name, *params],
            "get": _operation(r, "read", "get", item_schema, False),
        }
    if "get" in r.verbs and "create" in r.verbs:  # not on a read-only resource (componentstatuses)
        paths[base + "/{name}"].update(
            put=_operation(r, "replace", "put", item_schema, body=True),
            patch=_operation(r, "patch", "patch", item_schema, body=True, patch=True),
            delete=_operation(r, "delete", "delete", "io.k8s.apimachinery.pkg.apis.meta.v1.Status", body=False),
        )
    return paths


def _custom_openapi(r: Resource) -> dict[str, Any]:
    """A custom resource's schema as the OpenAPI document carries it: metadata is ObjectMeta."""
    schema = crds.schema_of(r)
    props = {
        **schema["properties"],
        "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
    }
    gvk = [{"group": r.group, "version": r.version, "kind": r.kind}]
    return {**schema, "properties": props, "x-kubernetes-group-version-kind": gvk}


def _custom_list(r: Resource, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
        },
        "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind + "List"}],
    }


def _group_versions() -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for r in RESOURCES.every_version():
        if r.schema or r.custom is not None:
            out.setdefault(r.group_version_path, []).append(r)
    return out


@functools.cache
def schemas() -> Schemas:
    """The process-wide Schemas (the 1.3 MB JSON is parsed on first use only)."""
    return Schemas()
