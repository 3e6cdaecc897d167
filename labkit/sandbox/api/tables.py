"""Server-side Table output: the ``meta.k8s.io/v1`` Table envelope kubectl asks for.

kubectl asks for Tables; the server chooses the columns (:mod:`labkit.sandbox.api.printers`). Like
the real server, every Table carries the ``-o wide`` columns with ``priority: 1``; kubectl hides them
unless asked.

>>> from datetime import datetime, timezone
>>> from labkit.sandbox.api.registry import RESOURCES
>>> cm = {"metadata": {"name": "cfg", "creationTimestamp": "2025-01-01T00:00:00Z"}, "data": {"a": "1"}}
>>> t = to_table(RESOURCES.served("", "configmaps"), [cm], now=datetime(2025, 1, 1, 0, 3, 2, tzinfo=timezone.utc))
>>> [c["name"] for c in t["columnDefinitions"]], t["rows"][0]["cells"]
(['Name', 'Data', 'Age'], ['cfg', 1, '3m2s'])
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.printers_more import printer_for

if TYPE_CHECKING:
    from labkit.sandbox.api.printers import Obj
    from labkit.sandbox.api.registry import Resource

TABLE_API_VERSION = "meta.k8s.io/v1"


def _pod_conditions(pod: Obj) -> list[Obj]:
    phase = pod.get("status", {}).get("phase")
    if phase == "Succeeded":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return []


def _row_object(resource: Resource, obj: Obj, include_object: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
    return {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION, "metadata": obj.get("metadata", {})}


def to_table(
    resource: Resource,
    objects: list[Obj],
    *,
    wide_hint: bool = True,
    now: datetime | None = None,
    list_rv: str = "",
    continue_token: str | None = None,
    include_object: str = "Metadata",
) -> Obj:
    """A ``meta.k8s.io/v1`` Table of ``objects`` with the columns kubectl shows for this resource.

    ``wide_hint`` keeps the ``-o wide`` (priority 1) columns, as the real server always
    does; ``include_object`` is the request's ``includeObject`` (``Metadata`` by default,
    ``Object`` for the whole object, ``None`` for none).
    """
    now = now or datetime.now(UTC)
    printer = printer_for(resource)
    keep = [i for i, c in enumerate(printer.columns) if wide_hint or c.priority == 0]
    rows = []
    for obj in objects:
        cells = printer.row(obj, now)
        row: Obj = {"cells": [cells[i] for i in keep]}
        conditions = _pod_conditions(obj) if (resource.group, resource.plural) == ("", "pods") else []
        if conditions:
            row["conditions"] = conditions
        row_object = _row_object(resource, obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    metadata: Obj = {"resourceVersion": list_rv}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": [printer.columns[i].definition() for i in keep],
        "rows": rows,
    }


def table_event(resource: Resource, watch_type: str, obj: Obj, **options: Any) -> Obj:
    """The ``object`` of a watch event for ``get -w``: a one-row Table.

    kubectl asks watches for Tables too; plain objects would degrade its columns to
    NAME/AGE.  ``ERROR`` (a Status) and ``BOOKMARK`` objects pass through unchanged.
    ``options`` are those of :func:`to_table`.
    """
    if watch_type in ("ERROR", "BOOKMARK"):
        return obj
    rv = obj.get("metadata", {}).get("resourceVersion", "")
    return to_table(resource, [obj], list_rv=rv, **options)
