"""Recording core/v1 Events over the API, as client-go's recorder does for a kubelet.

Posting is asynchronous and concurrent (a component never waits for its events), but
:meth:`EventRecorder.flush` lets a writer wait until an object's events are stored, so whoever sees
a new status finds the events that led to it. A repeated event (same object, reason and message)
is patched: ``count`` and ``lastTimestamp`` go up, as client-go's event correlator does; only such
a repeat waits for the event it repeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from labkit.sandbox.eventbody import new_event
from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path

log = logging.getLogger("labkit.sandbox.kubeclient.events")

#: How many recent events are remembered for correlation (client-go's LRU holds 4096).
RECENT_LIMIT = 4096


class EventRecorder:
    """Records Events about objects for one *component* running on *host*."""

    def __init__(self, client: KubeClient, component: str, host: str) -> None:
        self.client, self.component, self.host = client, component, host
        self._recent: OrderedDict[tuple[Any, ...], tuple[str, str, int]] = OrderedDict()
        #: object uid -> its events being posted; correlation key -> the last post of that event
        self._pending: dict[str, set[asyncio.Task[None]]] = {}
        self._by_key: dict[tuple[Any, ...], asyncio.Task[None]] = {}

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str | None = None) -> None:
        """Post (or bump) an Event about *obj* in the background."""
        uid = obj["metadata"].get("uid") or ""
        key = (uid, type_, reason, message, field_path)
        task = asyncio.ensure_future(self._post(self._by_key.get(key), key, obj, type_, reason, message, field_path))
        self._by_key[key] = task
        pending = self._pending.setdefault(uid, set())
        pending.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            pending.discard(finished)
            if not pending and self._pending.get(uid) is pending:
                del self._pending[uid]
            if self._by_key.get(key) is finished:
                del self._by_key[key]

        task.add_done_callback(done)

    async def flush(self, uid: str) -> None:
        """Wait until every event recorded so far about object *uid* is stored (or given up)."""
        pending = self._pending.get(uid)
        if pending:
            await asyncio.shield(asyncio.gather(*pending))

    async def _post(
        self,
        previous: asyncio.Task[None] | None,
        key: tuple[Any, ...],
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        field_path: str | None,
    ) -> None:
        if previous is not None:
            await asyncio.shield(previous)
        try:
            await self._write(key, obj, type_, reason, message, field_path)
        except ApiError as err:  # e.g. the namespace is terminating: events are best effort, as in client-go
            log.debug("event %s about %s not recorded: %s", reason, obj["metadata"].get("name"), err.problem)

    async def _write(
        self, key: tuple[Any, ...], obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str | None
    ) -> None:
        event = new_event(obj, type_, reason, message, self.component, self.host, field_path)
        namespace, now = event["metadata"]["namespace"], event["lastTimestamp"]
        known = self._recent.get(key)
        if known is not None:
            self._recent.move_to_end(key)
            event_ns, name, count = known
            try:
                await self.client.patch(
                    resource_path("v1", "events", event_ns, name), {"count": count + 1, "lastTimestamp": now}
                )
                self._recent[key] = (event_ns, name, count + 1)
                return
            except ApiError as err:
                if err.code != 404:
                    raise
        created = await self.client.create(resource_path("v1", "events", namespace), event)
        self._recent[key] = (namespace, created["metadata"]["name"], 1)
        while len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)
