"""Query parameters and small request bodies (DeleteOptions, Scale), checked as kube-apiserver checks them.

A malformed number is a 400 with Go's ``strconv`` wording, as ``ParameterCodec.DecodeParameters`` reports
it (k8s.io/apimachinery pkg/runtime/conversion.go: ``Convert_Slice_string_To_int64`` and friends use
``strconv.ParseInt(s, 10, 64)``; pkg/endpoints/handlers/get.go wraps the error in ``NewBadRequest``).

>>> int64_param({"limit": "ten"}, "limit")
Traceback (most recent call last):
...
labkit.sandbox.api.status.StatusError: strconv.ParseInt: parsing "ten": invalid syntax
>>> resource_version({"resourceVersion": "12"}), resource_version({"resourceVersion": "0"})
(12, None)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api import limits, protobuf
from labkit.sandbox.api.selectors import check_field_labels, parse_field_selector, parse_label_selector
from labkit.sandbox.api.status import StatusError, bad_request
from labkit.sandbox.api.validation import json_type

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource

_INT64 = re.compile(r"[+-]?[0-9]+")
_UINT64 = re.compile(r"[0-9]+")  # ParseUint takes no sign


def _parse_int(text: str, pattern: re.Pattern[str], bits: int, func: str) -> int:
    """Go's ``strconv.ParseInt``/``ParseUint`` (base 10): the value, or ``ValueError`` with Go's message."""
    if not pattern.fullmatch(text):
        raise ValueError(f'strconv.{func}: parsing "{text}": invalid syntax')
    value = int(text)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if func == "ParseInt" else (0, 2**bits - 1)
    if not low <= value <= high:
        raise ValueError(f'strconv.{func}: parsing "{text}": value out of range')
    return value


def int64_param(query: Mapping[str, str], name: str) -> int | None:
    """An int64 query parameter (``limit``, ``timeoutSeconds``, ``gracePeriodSeconds``), ``None`` when absent."""
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return _parse_int(text, _INT64, 64, "ParseInt")
    except ValueError as e:
        raise bad_request(str(e)) from None


def parse_resource_version(text: str) -> int | None:
    """A resourceVersion as the storage layer parses it (``APIObjectVersioner.ParseResourceVersion``):
    ``""`` and ``"0"`` mean any version (``None``); anything but a uint64 is a 400 naming the field.

    Upstream returns that storage error unconverted, which the handler answers as a 500 (inferred from
    apiserver's ``ErrorToAPIStatus``); the sandbox answers 400, since the client sent it."""
    if text in ("", "0"):
        return None
    try:
        return _parse_int(text, _UINT64, 64, "ParseUint")
    except ValueError as e:
        raise bad_request(f'resourceVersion: Invalid value: "{text}": {e}') from None


def resource_version(query: Mapping[str, str]) -> int | None:
    """The ``resourceVersion`` query parameter (see :func:`parse_resource_version`)."""
    return parse_resource_version(query.get("resourceVersion", ""))


def too_large_resource_version(wanted: int, current: int) -> StatusError:
    """k8s.io/apiserver storage ``NewTooLargeResourceVersionError``: a 504 Timeout the client retries after
    a second (the watch cache's ``resourceVersionTooHighRetrySeconds``), with a ResourceVersionTooLarge cause."""
    return StatusError(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {wanted}, current: {current}",
        {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
    )


#: The schema definitions of the bodies subresources take (the Go type each decodes into).
SUBRESOURCE_SCHEMAS = {
    "binding": "io.k8s.api.core.v1.Binding",
    "eviction": "io.k8s.api.policy.v1.Eviction",
    "token": "io.k8s.api.authentication.v1.TokenRequest",
    "scale": "io.k8s.api.autoscaling.v1.Scale",
}


@dataclass(frozen=True)
class ListOptions:
    """A list, watch or deletecollection's query: selectors checked (syntax and, for fields, the labels the
    kind supports), numbers parsed."""

    label_selector: str
    field_selector: str
    limit: int | None
    continue_token: str | None
    resource_version: int | None
    timeout_seconds: int | None

    @classmethod
    def parse(cls, query: Mapping[str, str], resource: Resource) -> ListOptions:
        label, field = query.get("labelSelector", ""), query.get("fieldSelector", "")
        if label:
            parse_label_selector(label)
        if field:
            check_field_labels(resource.group, resource.kind, parse_field_selector(field))
        limit = int64_param(query, "limit")
        return cls(
            label,
            field,
            limit if limit and limit > 0 else None,  # upstream: zero or negative means no limit
            query.get("continue") or None,
            resource_version(query),
            int64_param(query, "timeoutSeconds"),
        )


#: DeleteOptions' fields: JSON name -> (Python types it may hold, Go type for the error).
_DELETE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "gracePeriodSeconds": ((int,), "int64"),
    "preconditions": ((dict,), "v1.Preconditions"),
    "orphanDependents": ((bool,), "bool"),
    "propagationPolicy": ((str,), "v1.DeletionPropagation"),
    "dryRun": ((list,), "[]string"),
}


@dataclass(frozen=True)
class DeleteOptions:
    """What a DELETE asks for, from its body (JSON, YAML or protobuf ``DeleteOptions``) and query.

    Upstream passes a DeleteOptions decode failure to the client unconverted, as a 500 (inferred from
    apiserver's delete handler); the sandbox answers these client mistakes with 400 and Go's decode wording.
    """

    propagation: str | None
    grace_period: int | None
    preconditions: dict[str, Any] | None
    dry_run: bool

    @classmethod
    def parse(cls, raw: bytes, content_type: str, query: Mapping[str, str]) -> DeleteOptions:
        body: Any = {}
        if raw:
            if protobuf.is_protobuf(content_type):
                body = protobuf.decode(raw)
            else:
                body = limits.decode_document(raw, content_type.split(";")[0].strip(), "DeleteOptions")
        return cls.from_body(body, query)

    @classmethod
    def from_body(cls, body: Any, query: Mapping[str, str], within: str = "") -> DeleteOptions:
        """The options of a decoded DeleteOptions ``body`` (a DELETE's, or an Eviction's ``deleteOptions``).

        *within* is the struct and field that hold the body (``"Eviction.deleteOptions"``): Go's decoder names
        a mistyped field by the innermost struct and the JSON path from the document's root.
        """
        path = within.partition(".")[2]
        prefix = f"{path}." if path else ""
        if not isinstance(body, dict):
            where = f"Go struct field {within}" if within else "Go value"
            raise bad_request(f"json: cannot unmarshal {json_type(body)} into {where} of type v1.DeleteOptions")
        if body.get("kind") not in (None, "", "DeleteOptions"):
            raise bad_request("decoded object cannot be converted to DeleteOptions")
        for name, (types, go_type) in _DELETE_FIELDS.items():
            value = body.get(name)
            if value is not None and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
                field = f"DeleteOptions.{prefix}{name}"
                raise bad_request(
                    f"json: cannot unmarshal {json_type(value)} into Go struct field {field} of type {go_type}"
                )
        for key, value in (body.get("preconditions") or {}).items():
            if not isinstance(value, str):
                field = f"Go struct field Preconditions.{prefix}preconditions.{key} of type string"
                raise bad_request(f"json: cannot unmarshal {json_type(value)} into {field}")
        propagation = body.get("propagationPolicy") or query.get("propagationPolicy")
        if body.get("orphanDependents") is True or query.get("orphanDependents") == "true":
            propagation = "Orphan"
        grace = body.get("gracePeriodSeconds")
        if grace is None:
            grace = int64_param(query, "gracePeriodSeconds")
        dry_run = "All" in (body.get("dryRun") or []) or query.get("dryRun") == "All"
        return cls(propagation, grace, body.get("preconditions"), dry_run)


def scale_replicas(body: Any) -> tuple[Any, str | None]:
    """``spec.replicas`` and ``metadata.resourceVersion`` of a Scale body; 400 when it is no Scale-shaped map."""
    if not isinstance(body, dict):
        raise bad_request("the body of a scale request must be a Scale object (a JSON map)")
    spec, meta = body.get("spec") or {}, body.get("metadata") or {}
    if not isinstance(spec, dict) or not isinstance(meta, dict):
        raise bad_request('Scale in version "v1" cannot be handled as a Scale: spec and metadata must be maps')
    rv = meta.get("resourceVersion")
    return spec.get("replicas"), rv if isinstance(rv, str) else None


def eviction_options(body: Any, name: str) -> DeleteOptions:
    """The DeleteOptions a ``policy/v1`` Eviction of pod ``name`` carries (pkg/registry/core/pod/storage/eviction.go
    checks the name the same way)."""
    if not isinstance(body, dict) or body.get("kind") not in (None, "", "Eviction"):
        raise bad_request("the body of an eviction must be a policy/v1 Eviction object (a JSON map)")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict) or meta.get("name", name) != name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions")
    return DeleteOptions.from_body({} if options is None else options, {}, "Eviction.deleteOptions")
