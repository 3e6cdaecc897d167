"""Shared informers: one list and one watch of a resource for every controller in the process.

kube-controller-manager builds its controllers on client-go's ``SharedInformerFactory``: the ReplicaSet,
Deployment, Job, endpoints and disruption controllers that all follow pods share one watch of pods. So do
ours: nine controllers watch pods, and each pod write now wakes one store watcher instead of one per
controller (the daemon's CPU per create fell with it; ``benchmarks/bench_apiserver.py``).

A subscriber first gets every stored object as an ADDED event, then every event, in order. One that joins a
watch already running gets the objects stored at that moment, then the watch's events; an event it may see
twice that way is harmless, since controllers are level-triggered. When the store ends a watch that fell
behind, every subscriber's ``restart`` is called and all of them get a fresh list, as after a re-list.

>>> import tempfile
>>> from labkit.sandbox.api.apicore import ApiCore
>>> from labkit.sandbox.api.registry import RESOURCES
>>> from labkit.sandbox.api.store import Store
>>> async def demo():
...     core, namespaces = ApiCore(Store(tempfile.mkdtemp() + "/state.db")), RESOURCES.served("", "namespaces")
...     core.create(namespaces, None, {"metadata": {"name": "lab"}})
...     seen, listed = [], asyncio.Event()
...     unsubscribe = shared_informer(core, namespaces).subscribe(seen.append, None, listed)
...     await listed.wait()
...     core.create(namespaces, None, {"metadata": {"name": "lab-2"}})
...     while len(seen) < 2:
...         await asyncio.sleep(0)
...     unsubscribe()
...     return [(e.type, e.object["metadata"]["name"]) for e in seen]
>>> asyncio.run(demo())
[('ADDED', 'lab'), ('ADDED', 'lab-2')]
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import WatchEvent

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.registry import Resource

log = logging.getLogger("labkit.sandbox.controllers.informers")

#: Pause before listing and watching again after the store refused to (it is closing, for instance).
REWATCH_DELAY = 0.5

_INFORMERS: weakref.WeakKeyDictionary[ApiCore, dict[str, SharedInformer]] = weakref.WeakKeyDictionary()


def shared_informer(core: ApiCore, resource: Resource) -> SharedInformer:
    """The one informer of *resource* on *core* for the running event loop (made on first use)."""
    informers = _INFORMERS.setdefault(core, {})
    informer = informers.get(resource.key)
    if informer is None or informer.loop is not asyncio.get_running_loop():
        informer = informers[resource.key] = SharedInformer(core, resource)
    return informer


@dataclass(eq=False)
class _Subscriber:
    on_event: Callable[[WatchEvent], None]
    restart: Callable[[], None] | None
    listed: asyncio.Event

    def replay(self, listing: dict[str, Any]) -> None:
        """Start over from *listing*: ``restart``, then an ADDED event per object."""
        if self.restart is not None:
            self.restart()
        rv = int(listing["metadata"]["resourceVersion"])
        for obj in listing["items"]:
            self.on_event(WatchEvent("ADDED", obj, rv))
        self.listed.set()


class SharedInformer:
    """Lists and watches one resource while anyone subscribes, handing each event to every subscriber.

    Subscribers only read the objects they are handed (they are shared, as :meth:`Watcher.next_shared`'s are).
    """

    def __init__(self, core: ApiCore, resource: Resource) -> None:
        self.core, self.resource = core, resource
        self.loop = asyncio.get_running_loop()
        self._subscribers: list[_Subscriber] = []
        self._task: asyncio.Task[None] | None = None
        self._watching = False

    def subscribe(
        self, on_event: Callable[[WatchEvent], None], restart: Callable[[], None] | None, listed: asyncio.Event
    ) -> Callable[[], None]:
        """Hand the stored objects, then every event, to *on_event*; *listed* is set once the objects are handed.
        Returns the function that ends the subscription (the watch stops with its last subscriber)."""
        subscriber = _Subscriber(on_event, restart, listed)
        self._subscribers.append(subscriber)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())  # its first list serves every subscriber so far
        elif self._watching:  # joins a running watch: what is stored now, then the watch's next events
            try:
                subscriber.replay(self.core.list(self.resource, None))
            except StatusError as e:
                log.warning("cannot list %s: %s", self.resource.plural, e.message)  # the next re-list serves it
        return lambda: self._unsubscribe(subscriber)

    def _unsubscribe(self, subscriber: _Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task, self._watching = None, False

    async def _run(self) -> None:
        while True:
            try:
                listing = self.core.list(self.resource, None)
                watcher = self.core.watch(self.resource, since_rv=int(listing["metadata"]["resourceVersion"]))
            except StatusError as e:
                log.warning("cannot list and watch %s: %s", self.resource.plural, e.message)
                await asyncio.sleep(REWATCH_DELAY)
                continue
            for subscriber in list(self._subscribers):
                subscriber.replay(listing)
            self._watching = True
            try:
                while (event := await watcher.next_shared(None)) is not None:
                    for subscriber in list(self._subscribers):
                        subscriber.on_event(event)
            finally:
                self._watching = False
                watcher.close()
