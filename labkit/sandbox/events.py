"""Recording Events the way cluster components do (``kubectl describe`` and ``get events`` read them).

A repeated event (same object, reason and message) bumps ``count`` and
``lastTimestamp`` instead of piling up, as the client-go event correlator does.
"""

from __future__ import annotations

import secrets
from typing import Any

from .apicore import ApiCore, now_rfc3339
from .registry import RESOURCES

EVENTS = RESOURCES.by_plural("", "events")


def record_event(core: ApiCore, obj: dict[str, Any], type_: str, reason: str, message: str, component: str,
                 host: str | None = None, field_path: str | None = None) -> dict[str, Any]:
    """Record (or bump) an Event about *obj*; returns the stored Event."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    involved = {"kind": obj.get("kind"), "namespace": meta.get("namespace"), "name": meta["name"],
                "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion"),
                "resourceVersion": meta.get("resourceVersion")}
    if field_path:
        involved["fieldPath"] = field_path
    involved = {k: v for k, v in involved.items() if v}
    now = now_rfc3339()
    for existing in core.store.list(EVENTS, namespace)[0]:
        inv = existing.get("involvedObject", {})
        if (inv.get("uid") == involved.get("uid") and existing.get("reason") == reason
                and existing.get("message") == message and inv.get("fieldPath") == involved.get("fieldPath")):
            existing["count"] = int(existing.get("count", 1)) + 1
            existing["lastTimestamp"] = now
            return core.store.update(EVENTS, existing, check_rv=False)
    source = {"component": component, **({"host": host} if host else {})}
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": involved, "reason": reason, "message": message, "type": type_,
        "source": source, "count": 1, "firstTimestamp": now, "lastTimestamp": now, "eventTime": None,
        "reportingComponent": component, "reportingInstance": host or "",
    }
    return core.store.create(EVENTS, event)
