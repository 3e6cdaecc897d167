"""Cheap client-side checks for manifest builders: catch the typo before the API server does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from labkit.errors import InvalidManifest

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def dns_label(value: str, what: str = "name") -> str:
    """Return *value* if it is an RFC 1123 DNS label (what Kubernetes wants for most names); else raise.

    >>> dns_label("wasi-demo")
    'wasi-demo'
    >>> dns_label("Wasi_Demo")
    Traceback (most recent call last):
    labkit.errors.InvalidManifest: 'Wasi_Demo' is not a valid ...
    """
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", str(value).lower()).strip("-")[:63] or "app"
        raise InvalidManifest(
            f"{value!r} is not a valid {what}: Kubernetes wants a DNS label (at most 63 characters: lower-case "
            "letters, digits and '-', starting and ending with a letter or digit)",
            f"use e.g. {suggestion!r}",
        )
    return value


def env_list(env: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """``{"NAME": "value"}`` as a container's ``env`` list; values must be strings (YAML's ``8080`` is an int).

    >>> env_list({"DNS_SERVER": "10.43.0.10:53"})
    [{'name': 'DNS_SERVER', 'value': '10.43.0.10:53'}]
    """
    out = []
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidManifest(
                f"environment variable name {name!r} is not valid",
                "use letters, digits, '_', '-' and '.', not starting with a digit",
            )
        if not isinstance(value, str):
            raise InvalidManifest(
                f"environment variable {name} has the {type(value).__name__} value {value!r}; "
                "Kubernetes only takes strings",
                f"quote it: {name}={str(value)!r}",
            )
        out.append({"name": name, "value": value})
    return out


def string_list(values: Any, what: str) -> list[str] | None:
    """*values* as a list of strings (``command``/``args``), or ``None``; a lone string is a mistake worth naming."""
    if values is None:
        return None
    if isinstance(values, str):
        raise InvalidManifest(
            f"{what} must be a list of strings, got the string {values!r}",
            f"write {what}=[{values!r}] (one list item per argument)",
        )
    out = list(values)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise InvalidManifest(
            f"{what} must hold only strings; {bad[0]!r} is a {type(bad[0]).__name__}", f"quote it: {str(bad[0])!r}"
        )
    return out


def labels(values: Mapping[str, Any] | None, what: str = "labels") -> dict[str, str]:
    """A copy of *values* whose keys and values are strings (label/annotation maps)."""
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidManifest(
                f"{what} must map strings to strings; {key!r}: {value!r} does not",
                f"quote the value: {key}: {str(value)!r}",
            )
        out[key] = value
    return out
