"""Events a controller records, through the API as client-go's EventRecorder posts them.

A repeat (same object, type, reason and message) bumps the earlier Event's ``count`` and
``lastTimestamp`` instead of piling up; like client-go's correlator, the memory of recent
events is the recorder's own LRU. Recording never fails the caller: an Event the API refuses
(a terminating namespace takes no new content) is dropped, as client-go drops it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.eventbody import new_event
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

log = logging.getLogger("labkit.sandbox.controllers.recorder")

EVENTS = RESOURCES.served("", "events")
RECENT_LIMIT = 4096

#: (involved object's uid, type, reason, message)
_Correlation = tuple[str | None, str, str, str]


class EventRecorder:
    """Records Events about objects for one component (``source.component`` and ``reportingComponent``)."""

    def __init__(self, core: ApiCore, component: str) -> None:
        self.core, self.component = core, component
        self._recent: OrderedDict[_Correlation, tuple[str, str]] = OrderedDict()  # -> (namespace, event name)

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record (or bump) an Event of *type_* ("Normal" or "Warning") about *obj*."""
        meta = obj["metadata"]
        correlation = (meta.get("uid"), type_, reason, message)
        known = self._recent.get(correlation)
        if known is not None:
            self._recent.move_to_end(correlation)
            if self._bump(*known):
                return
        event = new_event(obj, type_, reason, message, self.component)
        namespace = event["metadata"]["namespace"]
        try:
            created, _ = self.core.create(EVENTS, namespace, event)
        except StatusError as e:
            log.debug("%s: event %s about %s dropped: %s", self.component, reason, meta["name"], e.message)
            return
        self._recent[correlation] = (namespace, created["metadata"]["name"])
        if len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)

    def _bump(self, namespace: str, name: str) -> bool:
        """Count one more occurrence on the stored Event; False when it is gone (a new one is recorded)."""
        try:
            live = self.core.get(EVENTS, namespace, name)
            live["count"] = int(live.get("count") or 1) + 1
            live["lastTimestamp"] = format_rfc3339()
            self.core.replace(EVENTS, namespace, name, live)
        except StatusError:
            return False
        return True
