"""The control loop every controller shares (controllers/base.py): the work queue's de-duplication and
back-off, bounded retries, timers, and watching again when the store ends a watch that fell behind.
Real ApiCore over SQLite; the controller under test only records what it is asked to sync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from labkit.sandbox.api import store as store_module
from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import Store, WatchEvent
from labkit.sandbox.controllers.base import MAX_RETRIES, Controller, Key, Source, WorkQueue

NS = "lab"
CONFIGMAPS = RESOURCES.served("", "configmaps")
SECRETS = RESOURCES.served("", "secrets")


@pytest.fixture
def core(tmp_path: Path) -> Iterator[ApiCore]:
    core = ApiCore(Store(tmp_path / "state.db"))
    core.create(RESOURCES.served("", "namespaces"), None, {"metadata": {"name": NS}})
    yield core
    core.store.close()


class Recorder(Controller):
    """Syncs ConfigMaps by recording each key; ``outcome(key, n)`` (n: earlier syncs of key) may raise or
    return a delay."""

    name = "recorder"
    primary = CONFIGMAPS

    def __init__(self, core: ApiCore, outcome: Callable[[Key, int], float | None] = lambda key, n: None) -> None:
        super().__init__(core)
        self.outcome = outcome
        self.synced: list[Key] = []

    def sync(self, key: Key) -> float | None:
        earlier = self.synced.count(key)
        self.synced.append(key)
        return self.outcome(key, earlier)


def create_configmap(core: ApiCore, name: str) -> None:
    core.create(CONFIGMAPS, NS, {"metadata": {"name": name}, "data": {}})


def running(controller: Controller, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(controller.run())
        try:
            await asyncio.wait_for(body(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


async def until(what: str, probe: Callable[[], Any], within: float = 4.0) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------------- the queue
def test_a_key_added_twice_while_waiting_is_taken_once() -> None:
    async def main() -> list[Any]:
        queue = WorkQueue()
        for key in (("lab", "a"), ("lab", "b"), ("lab", "a")):
            queue.add(key)
        first, second = await queue.get(), await queue.get()
        return [first, second, len(queue)]

    assert asyncio.run(main()) == [("lab", "a"), ("lab", "b"), 0]


def test_a_key_added_while_it_syncs_waits_for_done_and_is_taken_again() -> None:
    async def main() -> None:
        queue = WorkQueue()
        queue.add(("lab", "a"))
        key = await queue.get()
        queue.add(key)  # changed while syncing: not handed to a second worker meanwhile
        queue.add(key)
        assert len(queue) == 0
        queue.done(key)
        assert len(queue) == 1
        assert await queue.get() == key
        queue.done(key)
        assert len(queue) == 0

    asyncio.run(main())


def test_add_after_keeps_the_earlier_timer() -> None:
    async def main() -> None:
        queue = WorkQueue()
        queue.add_after(("lab", "a"), 0.05)
        queue.add_after(("lab", "a"), 5.0)  # later: ignored
        started = time.monotonic()
        assert await asyncio.wait_for(queue.get(), 1) == ("lab", "a")
        assert 0.04 <= time.monotonic() - started < 1
        queue.add_after(("lab", "b"), 5.0)
        queue.add_after(("lab", "b"), 0.01)  # earlier: replaces the pending timer
        assert await asyncio.wait_for(queue.get(), 1) == ("lab", "b")
        queue.shut_down()

    asyncio.run(main())


def test_failures_back_off_exponentially_up_to_the_cap_and_forget_resets() -> None:
    async def main() -> None:
        queue = WorkQueue(base_delay=0.005, max_delay=0.03)
        key = ("lab", "a")
        delays = [queue.add_rate_limited(key) for _ in range(5)]
        assert delays == [0.005, 0.01, 0.02, 0.03, 0.03]
        assert queue.retries(key) == 5
        queue.forget(key)
        assert queue.retries(key) == 0
        assert queue.add_rate_limited(key) == 0.005
        queue.shut_down()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- the controller
def test_every_object_is_synced_and_each_change_syncs_its_key(core: ApiCore) -> None:
    create_configmap(core, "before")
    recorder = Recorder(core)

    async def body() -> None:
        await until("the existing object synced", lambda: ("lab", "before") in recorder.synced)
        create_configmap(core, "after")
        await until("the new object synced", lambda: ("lab", "after") in recorder.synced)
        core.delete(CONFIGMAPS, NS, "after")
        await until("the deletion synced", lambda: recorder.synced.count(("lab", "after")) == 2)

    running(recorder, body)


def test_a_failing_sync_is_retried_with_back_off_then_dropped_after_max_retries(core: ApiCore) -> None:
    def fail(key: Key, earlier: int) -> float | None:
        raise RuntimeError("a bug in sync")

    recorder = Recorder(core, fail)
    recorder.queue = WorkQueue(base_delay=0.001, max_delay=0.004)
    create_configmap(core, "broken")

    async def body() -> None:
        await until("all retries", lambda: len(recorder.synced) == 1 + MAX_RETRIES)
        await asyncio.sleep(0.1)
        assert len(recorder.synced) == 1 + MAX_RETRIES  # dropped: no more tries until the object changes
        assert recorder.queue.retries(("lab", "broken")) == 0
        core.replace(CONFIGMAPS, NS, "broken", {"metadata": {"name": "broken"}, "data": {"fixed": "no"}})
        await until("a try after the change", lambda: len(recorder.synced) > 1 + MAX_RETRIES)

    running(recorder, body)


def test_a_sync_that_succeeds_after_failing_is_forgotten_and_its_timer_runs(core: ApiCore) -> None:
    def flaky(key: Key, earlier: int) -> float | None:
        if earlier < 2:
            raise RuntimeError("not yet")
        return 0.05 if earlier == 2 else None  # then ask to be looked at again shortly

    recorder = Recorder(core, flaky)
    create_configmap(core, "flaky")

    async def body() -> None:
        await until("two failures, a success and its timer", lambda: len(recorder.synced) == 4)
        assert recorder.queue.retries(("lab", "flaky")) == 0
        await asyncio.sleep(0.1)
        assert len(recorder.synced) == 4

    running(recorder, body)


def test_the_controller_watches_again_when_the_store_ends_a_watch_that_fell_behind(
    core: ApiCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_PENDING", 3)
    recorder = Recorder(core)

    async def body() -> None:
        await asyncio.sleep(0.05)  # the watch is open
        for i in range(10):  # written without yielding: the watch falls behind and the store ends it
            create_configmap(core, f"burst-{i}")
        await until("every object of the burst synced", lambda: len(set(recorder.synced)) == 10)
        create_configmap(core, "later")
        await until("a change after the new watch", lambda: ("lab", "later") in recorder.synced)

    running(recorder, body)


def test_no_key_is_synced_before_every_source_has_listed(core: ApiCore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's WaitForCacheSync: a controller whose second list failed once waits for it."""
    create_configmap(core, "primary")
    core.create(SECRETS, NS, {"metadata": {"name": "secondary"}})
    seen: list[str] = []
    synced_after: list[list[str]] = []

    def note(event: WatchEvent) -> list[Key]:
        seen.append(event.object["metadata"]["name"])
        return []

    class TwoSources(Recorder):
        def sources(self) -> Sequence[Source]:
            return [Source(SECRETS, note)]

        def sync(self, key: Key) -> float | None:
            synced_after.append(list(seen))
            return super().sync(key)

    real_list = core.list
    failures = iter([StatusError(500, "InternalError", "etcd is having a moment")])

    def list_failing_once(res: Any, ns: str | None, **kwargs: Any) -> dict[str, Any]:
        if res is SECRETS and (failure := next(failures, None)) is not None:
            raise failure
        return real_list(res, ns, **kwargs)

    monkeypatch.setattr(core, "list", list_failing_once)
    controller = TwoSources(core)

    async def body() -> None:
        await until("the primary synced", lambda: controller.synced)
        assert synced_after[0] == ["secondary"]

    running(controller, body)


# ------------------------------------------------------------------------------------------ shared informers
def store_watchers(core: ApiCore, resource: Any) -> int:
    """How many store watchers follow *resource*: what sharing is meant to keep at one."""
    return len(core.store._watchers.get(resource.key, ()))


def test_controllers_share_one_watch_per_resource_and_each_sees_every_event(core: ApiCore) -> None:
    first, second = Recorder(core), Recorder(core)
    create_configmap(core, "before")

    async def main() -> None:
        tasks = [asyncio.ensure_future(c.run()) for c in (first, second)]
        try:
            await until("both listed", lambda: ("lab", "before") in first.synced and ("lab", "before") in second.synced)
            assert store_watchers(core, CONFIGMAPS) == 1
            create_configmap(core, "after")
            await until("both saw the event", lambda: all(("lab", "after") in c.synced for c in (first, second)))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the informer's task ends with its last subscriber
        assert store_watchers(core, CONFIGMAPS) == 0

    asyncio.run(main())


def test_a_controller_that_joins_a_running_watch_gets_the_stored_objects_then_the_events(core: ApiCore) -> None:
    early, late = Recorder(core), Recorder(core)
    create_configmap(core, "stored")

    async def main() -> None:
        tasks = [asyncio.ensure_future(early.run())]
        try:
            await until("the early one listed", lambda: early.synced)
            create_configmap(core, "while-watching")
            await until("the early one saw it", lambda: ("lab", "while-watching") in early.synced)
            tasks.append(asyncio.ensure_future(late.run()))
            await until("the late one got both stored objects", lambda: len(set(late.synced)) == 2)
            create_configmap(core, "after-joining")
            await until("the late one saw the next event", lambda: ("lab", "after-joining") in late.synced)
            assert store_watchers(core, CONFIGMAPS) == 1
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_every_subscriber_restarts_and_lists_again_when_the_shared_watch_fell_behind(
    core: ApiCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_PENDING", 3)
    restarts: list[str] = []

    class Restarting(Recorder):
        def __init__(self, core: ApiCore, label: str) -> None:
            super().__init__(core)
            self.label = label

        def primary_source(self) -> Source:
            return Source(CONFIGMAPS, super().primary_source().keys, restart=lambda: restarts.append(self.label))

    first, second = Restarting(core, "first"), Restarting(core, "second")

    async def body() -> None:
        await until("both listed", lambda: restarts.count("first") == 1 and restarts.count("second") == 1)
        for i in range(10):  # written without yielding: the shared watch falls behind and the store ends it
            create_configmap(core, f"burst-{i}")
        await until("both listed again", lambda: restarts.count("first") == 2 and restarts.count("second") == 2)
        await until("both synced the burst", lambda: all(len(set(c.synced)) == 10 for c in (first, second)))

    async def main() -> None:
        task = asyncio.ensure_future(second.run())
        try:
            await asyncio.sleep(0)
            await asyncio.wait_for(body(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    running(first, main)
