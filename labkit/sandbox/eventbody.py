"""The body of a core/v1 Event about an object, as client-go's event recorder makes it.

Three recorders share it: the API server's own (:mod:`labkit.sandbox.api.events`), the
controller-manager's (:mod:`labkit.sandbox.controllers.recorder`) and each kubelet's
(:mod:`labkit.sandbox.kubeclient.events`). Pure and standard-library only, so each may import it.
"""

from __future__ import annotations

import time
from typing import Any

from labkit.timefmt import format_rfc3339


def object_reference(obj: dict[str, Any], field_path: str | None = None) -> dict[str, Any]:
    """The ``involvedObject`` reference to *obj*, with only the fields that are set (client-go ``GetReference``).

    >>> object_reference({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "d"}})
    {'kind': 'Pod', 'namespace': 'd', 'name': 'p', 'apiVersion': 'v1'}
    """
    meta = obj["metadata"]
    reference = {
        "kind": obj.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "uid": meta.get("uid"),
        "apiVersion": obj.get("apiVersion"),
        "resourceVersion": meta.get("resourceVersion"),
        "fieldPath": field_path,
    }
    return {k: v for k, v in reference.items() if v}


def new_event(
    obj: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    component: str,
    host: str = "",
    field_path: str | None = None,
) -> dict[str, Any]:
    """A first occurrence (``count`` 1) of an Event of *type_* ("Normal" or "Warning") about *obj*.

    It is named ``<object>.<hex unix nanoseconds>`` like client-go's, so names sort in recording order,
    and lives in the object's namespace (``default`` for cluster-scoped objects, as upstream).
    """
    meta = obj["metadata"]
    now = format_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta.get("namespace") or "default"},
        "involvedObject": object_reference(obj, field_path),
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component, **({"host": host} if host else {})},
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host,
    }
