"""Status conditions and status writes, shared by the workload controllers (upstream's conditions helpers).

>>> old = [{"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t0"}]
>>> set_condition(old, {"type": "Available", "status": "True", "reason": "B", "lastTransitionTime": "t1"})
[{'type': 'Available', 'status': 'True', 'reason': 'B', 'lastTransitionTime': 't0'}]
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labkit.timefmt import parse_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.registry import Resource


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None."""
    if not text:
        return None
    return parse_rfc3339(text).timestamp()


def now() -> float:
    """Seconds since the epoch, comparable with :func:`parse_time`."""
    return datetime.now(UTC).timestamp()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The ``status.conditions`` entry of *type_*, or None."""
    conditions: list[dict[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    for c in conditions:
        if c.get("type") == type_:
            return c
    return None


def write_status(core: ApiCore, res: Resource, obj: dict[str, Any], status: dict[str, Any]) -> None:
    """Store *status* through the status subresource unless it is unchanged (no event, no new rv)."""
    if status != (obj.get("status") or {}):
        meta = obj["metadata"]
        core.replace(res, meta["namespace"], meta["name"], {**obj, "status": status}, subresource="status")


def set_condition(conditions: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Upstream's SetCondition: unchanged (status, reason) keeps the old entry; a changed reason keeps the
    lastTransitionTime of the same status; the changed condition moves to the end of the list."""
    current = next((c for c in conditions if c["type"] == new["type"]), None)
    if current is not None and current["status"] == new["status"] and current.get("reason") == new.get("reason"):
        return conditions
    if current is not None and current["status"] == new["status"]:
        new = {**new, "lastTransitionTime": current["lastTransitionTime"]}
    return [c for c in conditions if c["type"] != new["type"]] + [new]


def omit_zero(status: dict[str, Any], *fields: str) -> dict[str, Any]:
    """Counters are ``omitempty`` in the Go types: zero does not appear."""
    return {k: v for k, v in status.items() if not (k in fields and v == 0)}
