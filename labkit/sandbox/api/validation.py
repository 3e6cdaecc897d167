"""Field validation, as the API server validates every write: strict decoding, then the semantic rules.

Decoding walks the official schemas (:mod:`labkit.sandbox.api.schemas`) directly instead of going
through ``jsonschema``, because the API server validates every write and a Deployment must take well
under a millisecond; the walk also knows the Go type names that the real server puts in its decode
errors, which learners paste into search engines. The ``fieldValidation`` mode decides what unknown
fields do: ``Strict`` rejects them, ``Warn`` prunes and reports them, ``Ignore`` prunes them silently.

>>> from labkit.sandbox.api.registry import RESOURCES
>>> pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
...        "spec": {"containers": [{"name": "c", "image": "busybox", "imagee": "x"}]}}
>>> validate(RESOURCES.served("", "pods"), pod, "Warn")
['unknown field "spec.containers[0].imagee"']
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api import crds, schemas
from labkit.sandbox.api.semantics import Cause, semantic_causes
from labkit.sandbox.api.status import bad_request, invalid

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.schemas import Node

FIELD_VALIDATION_MODES = ("Strict", "Warn", "Ignore")

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def json_type(value: Any) -> str:
    """Go's name for a JSON value's type in ``cannot unmarshal <type> into ...``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _format_path(parts: list[str | int]) -> str:
    """``spec.template.spec.containers[0].image``: the field path of strict decoding errors."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


class _Walk:
    """One validation pass: prunes unknown and null fields, records them and the first type error."""

    __slots__ = ("path", "type_error", "unknown")

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.type_error: str | None = None
        self.path: list[str | int] = []

    def mismatch(self, value: Any, node: Node, struct: str, detail: str = "") -> None:
        if self.type_error is None:
            go_path = ".".join(p for p in self.path if isinstance(p, str))
            what = json_type(value) + detail
            self.type_error = (
                f"json: cannot unmarshal {what} into Go struct field {struct}.{go_path} of type {node.go_type}"
            )

    def value(self, node: Node, value: Any, struct: str) -> None:
        kind = node.kind
        if value is None or kind == "any":
            return
        if kind == "struct":
            if not isinstance(value, dict):
                return self.mismatch(value, node, struct)
            self.fields(node, value)
        elif kind == "map":
            if not isinstance(value, dict):
                return self.mismatch(value, node, struct)
            inner = node.values
            assert inner is not None
            if inner.kind == "string":  # labels, annotations, data: the hot path
                for key, item in value.items():
                    if not isinstance(item, str) and item is not None:
                        self.path.append(key)
                        self.mismatch(item, inner, struct)
                        self.path.pop()
                return
            for key, item in value.items():
                self.path.append(key)
                self.value(inner, item, struct)
                self.path.pop()
        elif kind == "array":
            if not isinstance(value, list):
                return self.mismatch(value, node, struct)
            inner = node.items
            assert inner is not None
            if inner.kind == "string" and all(isinstance(item, str) for item in value):
                return  # args, command: the hot path
            for index, item in enumerate(value):
                self.path.append(index)
                self.value(inner, item, struct)
                self.path.pop()
        elif kind == "string":
            if not isinstance(value, str):
                self.mismatch(value, node, struct)
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.mismatch(value, node, struct)
            low, high = _INT_RANGES.get(node.int_format, _INT_RANGES["int64"])
            if value != int(value) or not low <= value <= high:
                self.mismatch(value, node, struct, f" {json.dumps(value)}")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.mismatch(value, node, struct)
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.mismatch(value, node, struct)
        elif kind == "intorstring":
            # IntOrString decodes itself, so Go reports no struct field here
            if (isinstance(value, bool) or not isinstance(value, (int, str))) and self.type_error is None:
                self.type_error = f"json: cannot unmarshal {json_type(value)} into Go value of type int32"
        elif kind == "quantity" and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
            self.mismatch(value, node, struct)

    def fields(self, node: Node, obj: dict[str, Any]) -> None:
        struct = node.struct_name
        drop: list[str] = []
        for key, item in obj.items():
            child = node.child(key)
            if child is None:
                if node.strict:
                    self.path.append(key)
                    self.unknown.append(_format_path(self.path))
                    self.path.pop()
                    drop.append(key)
                continue
            if item is None:  # Go decodes null to the zero value, which is omitted on output
                drop.append(key)
                continue
            if child.kind == "any" or (child.kind == "string" and isinstance(item, str)):
                continue  # the commonest leaves: nothing to check, so no path to keep
            self.path.append(key)
            self.value(child, item, struct)
            self.path.pop()
        for key in drop:
            del obj[key]


def check_shape(resource: Resource, obj: object) -> None:
    """400 unless ``obj`` is a map whose ``metadata`` (when set) is a map, before anything reads its metadata.

    >>> from labkit.sandbox.api.registry import RESOURCES
    >>> check_shape(RESOURCES.served("", "pods"), {"metadata": "x"})
    Traceback (most recent call last):
    ...
    labkit.sandbox.api.status.StatusError: Pod in version "v1" cannot be handled as a Pod: \
json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta
    """
    prefix = f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
    if not isinstance(obj, dict):
        go_type = schemas.schemas().node(resource.schema).go_type
        raise bad_request(prefix + f"json: cannot unmarshal {json_type(obj)} into Go value of type {go_type}")
    meta = obj.get("metadata")
    if meta is None:
        obj.pop("metadata", None)  # Go decodes null to the zero ObjectMeta
    elif not isinstance(meta, dict):
        raise bad_request(
            prefix + f"json: cannot unmarshal {json_type(meta)} into Go struct field "
            f"{resource.kind}.metadata of type v1.ObjectMeta"
        )


def check_types(resource: Resource, obj: object, schema: str = "") -> list[str]:
    """400 when ``obj`` (by default one of ``resource``'s objects, else the body a subresource takes, named by
    its ``schema`` definition) holds a value of the wrong JSON type, as decoding into the Go type fails.

    Unlike :func:`validate` it prunes nothing and applies no semantic rule: for status writes and subresource
    bodies. Returns no warnings (a list, to stand where :func:`validate`'s would).

    >>> check_types(None, {"spec": {"audiences": 5}}, "io.k8s.api.authentication.v1.TokenRequest")
    Traceback (most recent call last):
    ...
    labkit.sandbox.api.status.StatusError: TokenRequest in version "v1" cannot be handled as a TokenRequest: \
json: cannot unmarshal number into Go struct field TokenRequestSpec.spec.audiences of type []string
    """
    schema = schema or resource.schema
    kind, version = schema.rsplit(".", 2)[2], schema.rsplit(".", 2)[1]
    prefix = f'{kind} in version "{version}" cannot be handled as a {kind}: '
    root = schemas.schemas().node(schema)
    if not isinstance(obj, dict):
        raise bad_request(prefix + f"json: cannot unmarshal {json_type(obj)} into Go value of type {root.go_type}")
    walk = _Walk()
    walk.fields(root, json.loads(json.dumps(obj)))  # on a copy: the walk prunes, this check must not
    if walk.type_error:
        raise bad_request(prefix + walk.type_error)
    return []


def validate(resource: Resource, obj: object, mode: str = "Warn") -> list[str]:
    """Validate ``obj`` in place like the API server; return the warnings to send.

    ``mode`` is the ``fieldValidation`` query parameter. Unknown fields raise a 400 with
    ``Strict``; with ``Warn`` they are pruned and returned as ``unknown field "…"``
    warnings; with ``Ignore`` they are pruned silently. Wrong JSON types always raise
    400, and the semantic rules (``semantic_causes``) raise 422 Invalid.
    """
    if mode not in FIELD_VALIDATION_MODES:
        raise bad_request(
            f'fieldValidation parameter "{mode}" is not supported: use one of "Ignore", "Warn" or "Strict"'
        )
    decode_prefix = f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
    if resource.custom is not None:
        return _validate_custom(resource, obj, mode, decode_prefix)
    root = schemas.schemas().node(resource.schema)
    if not isinstance(obj, dict):
        raise bad_request(
            decode_prefix + f"json: cannot unmarshal {json_type(obj)} into Go value of type {root.go_type}"
        )
    walk = _Walk()
    walk.fields(root, obj)
    if walk.type_error:
        raise bad_request(decode_prefix + walk.type_error)
    return _finish(resource, obj, mode, decode_prefix, walk.unknown, [])


def _validate_custom(resource: Resource, obj: object, mode: str, decode_prefix: str) -> list[str]:
    """A custom resource: its CRD's structural schema decides (apiextensions-apiserver's validation)."""
    if not isinstance(obj, dict):
        raise bad_request(decode_prefix + f"json: cannot unmarshal {json_type(obj)} into Go value of type map")
    unknown: list[str] = []
    causes = crds.structural_causes(resource, obj, unknown)
    return _finish(resource, obj, mode, decode_prefix, unknown, causes)


def _finish(
    resource: Resource, obj: dict[str, Any], mode: str, decode_prefix: str, unknown: list[str], causes: list[Cause]
) -> list[str]:
    if unknown and mode == "Strict":
        raise bad_request(
            decode_prefix + "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown)
        )
    causes = semantic_causes(resource, obj) + causes
    if causes:
        raise invalid(resource, (obj.get("metadata") or {}).get("name") or "", causes)
    return [f'unknown field "{p}"' for p in unknown] if mode == "Warn" else []
