"""Recording Events the way cluster components do (``kubectl describe`` and ``get events`` read them).

A repeated event (same object, reason and message) bumps ``count`` and
``lastTimestamp`` instead of piling up. Like client-go's event correlator, the
memory of recent events is in-process (an LRU), so recording stays O(1).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import bad_request, invalid
from labkit.sandbox.eventbody import new_event

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

EVENTS = RESOURCES.served("", "events")
NAMESPACES = RESOURCES.served("", "namespaces")
_RECENT_LIMIT = 4096
#: (involved uid, type, reason, message, field path): an event's correlation key, as client-go's recorder keys it
_CorrelationKey = tuple[str | None, str, str, str, str | None]
_recent: OrderedDict[_CorrelationKey, tuple[str, str]] = OrderedDict()  # correlation key -> (namespace, name)
_recent_lock = threading.Lock()


def record_event(
    core: ApiCore,
    obj: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    component: str,
    host: str | None = None,
    field_path: str | None = None,
) -> dict[str, Any]:
    """Record (or bump) an Event about *obj*; returns the stored Event."""
    event = new_event(obj, type_, reason, message, component, host or "", field_path)
    namespace = event["metadata"]["namespace"]
    key = (event["involvedObject"].get("uid"), type_, reason, message, field_path)
    with _recent_lock:
        known = _recent.get(key)
        if known:
            _recent.move_to_end(key)
    existing = core.store.get(EVENTS, *known) if known else None
    if existing is not None:
        existing["count"] = int(existing.get("count", 1)) + 1
        existing["lastTimestamp"] = event["lastTimestamp"]
        return core.store.update(EVENTS, existing, check_rv=False)
    if _terminating(core, namespace):
        # The API server refuses new content in a terminating namespace and recorders drop the event (client-go);
        # storing it would leave the namespace with content it can never finish deleting.
        return event
    created = core.store.create(EVENTS, event)
    with _recent_lock:
        _recent[key] = (namespace, created["metadata"]["name"])
        if len(_recent) > _RECENT_LIMIT:
            _recent.popitem(last=False)
    return created


def _terminating(core: ApiCore, namespace: str) -> bool:
    ns = core.store.peek(NAMESPACES, None, namespace)
    return bool(ns and ns["metadata"].get("deletionTimestamp"))


EVENTS_V1 = RESOURCES.served("events.k8s.io", "events")


def to_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """A core/v1 Event as ``events.k8s.io/v1`` shows it: the same object, newer field names."""
    count = int(event.get("count") or 1)
    out: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": event["metadata"],
        "eventTime": event.get("eventTime"),
        "reason": event.get("reason"),
        "note": event.get("message"),
        "type": event.get("type"),
        "regarding": event.get("involvedObject"),
        "reportingController": event.get("reportingComponent") or (event.get("source") or {}).get("component", ""),
        "reportingInstance": event.get("reportingInstance") or (event.get("source") or {}).get("host", ""),
        "deprecatedSource": event.get("source"),
        "deprecatedFirstTimestamp": event.get("firstTimestamp"),
        "deprecatedLastTimestamp": event.get("lastTimestamp"),
        "deprecatedCount": count,
    }
    if event.get("series"):
        out["series"] = event["series"]  # a core Event's own series only: count alone stays deprecatedCount
    if event.get("action"):
        out["action"] = event["action"]
    return {k: v for k, v in out.items() if v is not None or k == "eventTime"}


def v1_create_causes(event: dict[str, Any]) -> list[dict[str, str]]:
    """The strict checks of a create through ``events.k8s.io/v1`` (``ValidateEventCreate`` in kubernetes
    ``pkg/apis/core/validation/events.go``): core/v1 keeps its loose legacy rules, the new API does not."""
    causes = []

    def required(field: str) -> None:
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": field})

    if not event.get("eventTime"):
        required("eventTime")
    if event.get("type") not in ("Normal", "Warning"):
        causes.append({"reason": "FieldValueInvalid", "field": "type",
                       "message": f'Invalid value: "": has invalid value: {event.get("type") or ""}'})  # fmt: skip
    for field in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount", "deprecatedSource"):
        if event.get(field):
            causes.append(
                {"reason": "FieldValueInvalid", "field": field, "message": 'Invalid value: "": needs to be unset'}
            )
    for field in ("reportingController", "reportingInstance", "action", "reason"):
        if not event.get(field):
            required(field)
    return causes


def checked_v1_create(event: Any) -> dict[str, Any]:
    """*event*, the body of a create through ``events.k8s.io/v1``, once :func:`v1_create_causes` passes it."""
    if not isinstance(event, dict):
        raise bad_request("the body of an events.k8s.io/v1 Event must be a JSON object")
    causes = v1_create_causes(event)
    if causes:
        raise invalid(EVENTS_V1, (event.get("metadata") or {}).get("name", ""), causes)
    return event


def from_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """An ``events.k8s.io/v1`` Event as the core/v1 object both API groups store."""
    series = event.get("series") or {}
    source = event.get("deprecatedSource") or {"component": event.get("reportingController", "")}
    out = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": event.get("metadata") or {},
        "involvedObject": event.get("regarding") or {},
        "reason": event.get("reason"),
        "message": event.get("note"),
        "type": event.get("type"),
        "source": source,
        "eventTime": event.get("eventTime"),
        "reportingComponent": event.get("reportingController"),
        "reportingInstance": event.get("reportingInstance"),
        "count": series.get("count") or event.get("deprecatedCount") or 1,
        "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": series.get("lastObservedTime") or event.get("deprecatedLastTimestamp"),
        "action": event.get("action"),
    }
    return {k: v for k, v in out.items() if v is not None}
