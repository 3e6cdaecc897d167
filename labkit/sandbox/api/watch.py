"""Watch streams over the store: the events one watcher sees, and the history they replay from.

A :class:`Watcher` is what :meth:`labkit.sandbox.api.store.Store.watch` hands out; it knows the store
only as a :class:`WatchSource`, so this module does not import the store. Writers on any
thread push the changes it selects; the event loop it was made on reads them with
``await watcher.next(timeout)``. Filtering follows the real API server: an object that starts
matching a selector is ADDED, one that stops matching is DELETED.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from labkit.errors import SandboxError

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.selectors import FieldSelector, LabelSelector

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"

Key = tuple[str, str]  # (namespace or "", name)


class WatchSource(Protocol):
    """What a :class:`Watcher` needs of the store that feeds it (:class:`labkit.sandbox.api.store.Store`)."""

    @property
    def lock(self) -> threading.RLock: ...

    @property
    def rv(self) -> int: ...

    def bookmark(self, resource: Resource, rv: int | None = None) -> dict[str, Any]: ...

    def unregister(self, watcher: Watcher) -> None: ...


#: What a watcher queues: (event type, the object's JSON text, resourceVersion).
Pending = tuple[str, str, int]


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK; ``object`` is the caller's own copy."""

    type: str
    object: dict[str, Any]
    rv: int


@dataclass(frozen=True)
class Change:
    """One write, as kept in the replay history: texts only, to keep the ring small."""

    rv: int
    resource: str  # Resource.key
    key: Key
    type: str
    new: str  # the object the event carries (for DELETED: the last state with the deletion's rv)
    old: str | None  # the state before the write; None for ADDED


def changes_after(history: collections.deque[Change], rv: int) -> list[Change]:
    """The changes newer than ``rv``, oldest first (walking back from the newest: recent rvs are cheap)."""
    newer: list[Change] = []
    for change in reversed(history):
        if change.rv <= rv:
            break
        newer.append(change)
    newer.reverse()
    return newer


def selected(obj: dict[str, Any], labels: LabelSelector | None, fields: FieldSelector | None) -> bool:
    """Whether both selectors (``None``: everything) select ``obj``."""
    return (labels is None or labels.matches(obj.get("metadata", {}).get("labels"))) and (
        fields is None or fields.matches(obj)
    )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Watcher:
    """A stream of :class:`WatchEvent` s for one resource type, made by :meth:`Store.watch`.

    Writers on any thread push events; the watcher's event loop (the one running when it was made)
    reads them with ``await watcher.next(timeout)``.
    """

    def __init__(
        self,
        store: WatchSource,
        resource: Resource,
        namespace: str | None,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
        since_rv: int,
        max_pending: int,
    ) -> None:
        self.resource = resource
        self._max_pending = max_pending  # events queued beyond this end the watcher: its reader is too slow
        self._store, self._namespace, self._labels, self._fields = store, namespace, labels, fields
        self._since_rv = since_rv
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise SandboxError(
                "Store.watch() was called outside a running asyncio event loop",
                "call it from a coroutine on the loop that will read the events (the API server's loop)",
            ) from None
        self._thread = threading.get_ident()
        self._lock = threading.Lock()
        self._pending: collections.deque[Pending] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once closed by :meth:`close`, by the store closing, or for falling too far behind."""
        return self._closed

    async def next(self, timeout: float | None) -> WatchEvent | None:  # noqa: ASYNC109 (None on timeout is the API)
        """The next event, or ``None`` when ``timeout`` seconds pass first or the watcher is closed."""
        with self._lock:
            item = self._pending.popleft() if self._pending else None
            waiter = None
            if item is None and not self._closed:
                waiter = self._waiter = self._loop.create_future()
        if waiter is not None:
            # A timer resolving the waiter, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # races the waiter's completion, leaving a controller task stuck "cancelling" at shutdown. A
            # bare await re-raises a cancel even then, and costs no extra task or future per event.
            timer = self._loop.call_later(timeout, _resolve, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None
            with self._lock:
                item = self._pending.popleft() if self._pending else None
        if item is None:
            return None
        kind, text, rv = item
        return WatchEvent(kind, json.loads(text), rv)

    def bookmark(self) -> WatchEvent | None:
        """A BOOKMARK event at the store's current resourceVersion, or ``None`` while events are still
        pending (a bookmark must never run ahead of an undelivered event)."""
        with self._store.lock:  # no write is half-published while we look
            with self._lock:
                if self._pending or self._closed:
                    return None
            rv = self._store.rv
        return WatchEvent(BOOKMARK, self._store.bookmark(self.resource, rv), rv)

    def close(self) -> None:
        """Stop receiving events; a pending ``next`` returns ``None``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            waiter, self._waiter = self._waiter, None
        self._store.unregister(self)
        if waiter is not None:
            self._wake(waiter)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- called by the store, under its lock ----------------------------------------------------------------

    def selects(self, key: Key, obj: dict[str, Any]) -> bool:
        """Whether the object stored under ``key`` is in this watch (namespace and selectors)."""
        return (self._namespace is None or key[0] == self._namespace) and selected(obj, self._labels, self._fields)

    def view(
        self, change: Change, new: dict[str, Any] | None = None, old: dict[str, Any] | None = None
    ) -> Pending | None:
        """What this watcher sees of a change, as a real API server filters: an object that starts matching
        is ADDED, one that stops matching is DELETED (its previous state at the change's rv).
        ``new``/``old`` are the parsed texts when the caller has them (live writes); replay parses here."""
        if change.rv <= self._since_rv or (self._namespace is not None and change.key[0] != self._namespace):
            return None  # older than asked for (a watch from a future rv waits for it), or another namespace
        if change.type != DELETED:
            new = new if new is not None else json.loads(change.new)
            new_passes = self.selects(change.key, new)
        else:
            new_passes = False
        old_passes = False
        if change.old is not None:
            old = old if old is not None else json.loads(change.old)
            old_passes = self.selects(change.key, old)
        if new_passes:
            return (MODIFIED if old_passes else ADDED), change.new, change.rv
        if not old_passes:
            return None
        if change.type == DELETED:
            return DELETED, change.new, change.rv
        assert old is not None
        gone_obj = {**old, "metadata": {**old["metadata"], "resourceVersion": str(change.rv)}}
        return DELETED, json.dumps(gone_obj, separators=(",", ":")), change.rv

    def prime(self, items: Iterable[Pending]) -> None:
        """Queue the initial events (the synthetic ADDEDs or the replayed history) before live ones."""
        with self._lock:
            self._pending.extend(items)

    def push(self, item: Pending) -> None:
        """Queue one live event and wake the reader; a reader too far behind is ended instead."""
        waiter = None
        with self._lock:
            if self._closed:
                return
            overflow = len(self._pending) >= self._max_pending
            if not overflow:
                self._pending.append(item)
                waiter, self._waiter = self._waiter, None
        if overflow:
            self.close()
        elif waiter is not None:
            self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        if threading.get_ident() == self._thread:
            _resolve(waiter)
            return
        try:
            self._loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # the loop is closed: nobody will ever read this watcher
            self.close()
