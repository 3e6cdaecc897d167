"""The one shape of every control loop, as kube-controller-manager's controllers have it.

Shared informers (:mod:`.informers`) list, then watch, and each controller turns every
object and event into the keys of the objects to reconcile on its :class:`WorkQueue`; once
every informer has listed (upstream's WaitForCacheSync), one worker takes a key and calls
the controller's ``sync(key)``, which recomputes the whole wanted state from what is stored now
(level-triggered), so a missed or repeated event does no harm. ``sync`` returns the
seconds after which to look again (a timer such as minReadySeconds) or None; when
it raises, the key is retried with per-key exponential back-off, at most
``MAX_RETRIES`` times, and every object is synced again each ``resync`` seconds.

Controllers reach the cluster only through ``ApiCore``'s public methods, as a real
controller reaches it only through the API.

>>> async def demo():
...     queue = WorkQueue()
...     queue.add(("lab", "web")); queue.add(("lab", "web")); queue.add(("lab", "db"))
...     return [await queue.get(), await queue.get(), len(queue)]
>>> asyncio.run(demo())
[('lab', 'web'), ('lab', 'db'), 0]
"""

from __future__ import annotations

import abc
import asyncio
import collections
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.informers import shared_informer
from labkit.sandbox.controllers.recorder import EventRecorder

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.store import WatchEvent

log = logging.getLogger("labkit.sandbox.controllers")

#: (namespace or "", name) of an object to reconcile
Key = tuple[str, str]

#: Retries of one failing key before it is dropped until the next event or resync (upstream's maxRetries).
MAX_RETRIES = 15
#: Back-off of the n-th retry: BASE * 2**(n-1), at most MAX (client-go's item exponential failure limiter).
RETRY_BASE_DELAY = 0.005
RETRY_MAX_DELAY = 30.0


class WorkQueue:
    """client-go's rate-limited work queue for one worker loop.

    A key added while it waits is not queued twice; a key added while it is being synced is queued again
    once :meth:`done` is called, so one key is never synced twice at the same time and no change is lost.
    """

    def __init__(self, base_delay: float = RETRY_BASE_DELAY, max_delay: float = RETRY_MAX_DELAY) -> None:
        self.base_delay, self.max_delay = base_delay, max_delay
        self._queue: collections.deque[Key] = collections.deque()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        """Keys waiting to be taken (not counting delayed ones)."""
        return len(self._queue)

    def add(self, key: Key) -> None:
        """Queue *key* unless it already waits."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: Key, delay: float) -> None:
        """Queue *key* in *delay* seconds; an earlier pending timer for it wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return
            pending.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def add_rate_limited(self, key: Key) -> float:
        """Queue *key* after its back-off, which doubles with each failure; returns the delay."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self.base_delay * 2.0 ** (failures - 1), self.max_delay)
        self.add_after(key, delay)
        return delay

    def retries(self, key: Key) -> int:
        """How often *key* was requeued for failing since it last succeeded."""
        return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        """Reset *key*'s back-off (it synced, or it was given up)."""
        self._failures.pop(key, None)

    async def get(self) -> Key:
        """The next key to sync; the caller must call :meth:`done` with it."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        """*key* is synced: queue it again if it changed meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def shut_down(self) -> None:
        """Cancel the pending timers (the queue's loop is going away)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _fire(self, key: Key) -> None:
        del self._timers[key]
        self.add(key)


def key_of(obj: dict[str, Any]) -> Key:
    """The key of *obj* itself."""
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


@dataclass(frozen=True)
class Source:
    """A watched resource type and how one of its events maps to the keys of the objects to reconcile;
    *restart* is called before each list (the first, and each after the store ended a watch), whose
    objects come as ADDED events."""

    resource: Resource
    keys: Callable[[WatchEvent], Iterable[Key]]
    restart: Callable[[], None] | None = None


class Controller(abc.ABC):
    """One control loop: subclasses name their ``primary`` resource, the other ``sources`` they watch, and
    implement :meth:`sync`. Run it with ``await Controller(core).run()``; it never returns and never
    raises but for cancellation."""

    name: ClassVar[str]
    primary: ClassVar[Resource]
    #: Every primary object is synced again this often, as an informer's resync (None: never).
    resync: ClassVar[float | None] = 30.0

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        self.queue = WorkQueue()
        self.recorder = EventRecorder(core, self.name)

    def primary_source(self) -> Source:
        """The watch of the primary resource: each object is its own key."""
        return Source(self.primary, lambda event: [key_of(event.object)])

    def sources(self) -> Sequence[Source]:
        """The watches besides the primary resource's, each mapping events to primary keys."""
        return ()

    @abc.abstractmethod
    def sync(self, key: Key) -> float | None:
        """Reconcile the primary object *key* (it may be gone); return seconds until it needs a look again."""

    def get(self, res: Resource, ns: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return self.core.get(res, ns, name)
        except StatusError as e:
            if e.code == 404:
                return None
            raise

    async def run(self) -> None:
        """Subscribe to the shared informers and, once each has listed, sync keys as they come until cancelled."""
        sources = (self.primary_source(), *self.sources())
        listed = [asyncio.Event() for _ in sources]
        unsubscribes = [
            shared_informer(self.core, source.resource).subscribe(
                functools.partial(self._enqueue, source), source.restart, event
            )
            for source, event in zip(sources, listed, strict=True)
        ]
        resync = asyncio.ensure_future(self._resync(self.resync)) if self.resync is not None else None
        try:
            for event in listed:  # decide from complete caches only (a node listed late is no "0/0 nodes")
                await event.wait()
            while True:
                key = await self.queue.get()
                try:
                    self.process(key)
                finally:
                    self.queue.done(key)
                await asyncio.sleep(0)  # let the API server answer requests between keys
        finally:
            for unsubscribe in unsubscribes:
                unsubscribe()
            if resync is not None:
                resync.cancel()
            self.queue.shut_down()

    def process(self, key: Key) -> None:
        """Sync *key* once and queue it again as its result asks: after its timer, or after back-off."""
        try:
            after = self.sync(key)
        except StatusError as e:
            if e.code not in (404, 409):  # 404/409: raced with another writer, expected; just look again
                log.warning("%s: syncing %s/%s failed: %s", self.name, *key, e.message)
            self._retry(key)
            return
        except Exception:  # a bug in one sync must not stop the loop; the log says what broke
            log.exception("%s: syncing %s/%s failed", self.name, *key)
            self._retry(key)
            return
        self.queue.forget(key)
        if after is not None:
            self.queue.add_after(key, after)

    def _retry(self, key: Key) -> None:
        if self.queue.retries(key) < MAX_RETRIES:
            self.queue.add_rate_limited(key)
            return
        log.warning("%s: dropping %s/%s after %d retries", self.name, *key, MAX_RETRIES)
        self.queue.forget(key)

    def _enqueue(self, source: Source, event: WatchEvent) -> None:
        try:
            for key in source.keys(event):
                self.queue.add(key)
        except Exception:  # a bug in one mapping must not end the informer; the log says what broke
            log.exception("%s: mapping a %s event failed", self.name, source.resource.kind)

    async def _resync(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                for obj in self.core.list(self.primary, None)["items"]:
                    self.queue.add(key_of(obj))
            except Exception:  # the next resync tries again; the log says what broke
                log.exception("%s: resync failed", self.name)
