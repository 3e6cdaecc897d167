"""The sandbox store on real SQLite files, watched from real asyncio loops and written from real threads."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import SandboxError
from labkit.sandbox.api import store as store_module
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import parse_field_selector, parse_label_selector
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import NAME_ALPHABET, Store
from labkit.sandbox.api.watch import Watcher, WatchEvent
from labkit.sandbox.logfiles import LogDirectory

PODS = RESOURCES.served("", "pods")
NAMESPACES = RESOURCES.served("", "namespaces")
DEPLOYMENTS = RESOURCES.served("apps", "deployments")


def pod(name: str, namespace: str = "lab", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "demo"}]},
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state.db") as s:
        yield s


def status_of(err: pytest.ExceptionInfo[StatusError]) -> tuple[int, str, str]:
    return err.value.code, err.value.reason, err.value.message


async def drain(watcher: Watcher, quiet: float = 0.05) -> list[tuple[str, str, int]]:
    """Every event until the watcher stays quiet for ``quiet`` seconds: (type, name, rv)."""
    out = []
    while (event := await watcher.next(quiet)) is not None:
        out.append((event.type, event.object["metadata"]["name"], event.rv))
    return out


# --- CRUD -------------------------------------------------------------------------------------------------------


def test_create_fills_metadata(store: Store) -> None:
    created = store.create(PODS, pod("web"))
    meta = created["metadata"]
    assert meta["resourceVersion"] == "1" and "generation" not in meta and store.rv == 1  # the server sets it
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert store.get(PODS, "lab", "web") == created


def test_reads_and_inputs_are_copies(store: Store) -> None:
    body = pod("web")
    created = store.create(PODS, body)
    body["metadata"]["labels"]["x"] = "changed"
    created["spec"]["containers"].clear()
    first = store.get(PODS, "lab", "web")
    assert first is not None
    first["metadata"]["name"] = "other"
    again = store.get(PODS, "lab", "web")
    assert again is not None
    assert again["metadata"]["labels"] == {} and again["spec"]["containers"] and again["metadata"]["name"] == "web"
    assert "uid" not in body["metadata"]  # the caller's dict is not filled in


def test_peek_reads_the_stored_object_without_a_copy(store: Store) -> None:
    assert store.peek(PODS, "lab", "web") is None
    created = store.create(PODS, pod("web"))
    peeked = store.peek(PODS, "lab", "web")
    assert peeked == created and peeked is store.peek(PODS, "lab", "web")
    store.update(PODS, {**created, "spec": {"containers": []}})
    assert store.peek(PODS, "lab", "web") != peeked  # a write stores a new object; the old one is unchanged
    assert peeked == created


def test_update_keeps_identity_and_bumps_rv(store: Store) -> None:
    first = pod("web")
    first["metadata"]["generation"] = 1  # as ApiCore sets it for kinds that have one
    created = store.create(PODS, first)
    store.create(PODS, pod("other"))
    change = pod("web", tier="front")
    change["metadata"].update(uid="forged", creationTimestamp="1999-01-01T00:00:00Z")
    updated = store.update(PODS, change)
    meta = updated["metadata"]
    assert meta["resourceVersion"] == "3" and meta["labels"] == {"tier": "front"}
    kept = (created["metadata"]["uid"], created["metadata"]["creationTimestamp"])
    assert (meta["uid"], meta["creationTimestamp"]) == kept
    assert meta["generation"] == 1  # kept when the caller sends none
    change["metadata"]["generation"] = 7
    assert store.update(PODS, change)["metadata"]["generation"] == 7  # the server decides generation


def test_update_conflict_on_stale_rv(store: Store) -> None:
    first = store.create(PODS, pod("web"))
    store.update(PODS, first)  # rv "1" matches: accepted, now rv 2
    with pytest.raises(StatusError) as err:
        store.update(PODS, first)  # still carries rv "1"
    assert status_of(err) == (
        409,
        "Conflict",
        (
            'Operation cannot be fulfilled on pods "web": the object has been modified; '
            "please apply your changes to the latest version and try again"
        ),
    )
    assert store.update(PODS, first, check_rv=False)["metadata"]["resourceVersion"] == "3"
    del first["metadata"]["resourceVersion"]
    assert store.update(PODS, first)["metadata"]["resourceVersion"] == "4"  # no rv sent: no check


def test_delete_returns_the_object_at_a_new_rv(store: Store) -> None:
    store.create(PODS, pod("web"))
    gone = store.delete(PODS, "lab", "web")
    assert gone["metadata"]["name"] == "web" and gone["metadata"]["resourceVersion"] == "2" == str(store.rv)
    assert store.get(PODS, "lab", "web") is None
    with pytest.raises(StatusError) as err:
        store.delete(PODS, "lab", "web")
    assert status_of(err) == (404, "NotFound", 'pods "web" not found')
    with pytest.raises(StatusError) as err:
        store.update(PODS, pod("web"))
    assert status_of(err) == (404, "NotFound", 'pods "web" not found')


def test_duplicate_create(store: Store) -> None:
    store.create(PODS, pod("web"))
    store.create(PODS, pod("web", namespace="other"))  # same name in another namespace is fine
    with pytest.raises(StatusError) as err:
        store.create(PODS, pod("web"))
    assert status_of(err) == (409, "AlreadyExists", 'pods "web" already exists')


def test_generate_name(store: Store) -> None:
    body = pod("")
    body["metadata"]["generateName"] = "web-"
    names = {store.create(PODS, body)["metadata"]["name"] for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(f"web-[{NAME_ALPHABET}]{{5}}", n) for n in names)
    body["metadata"]["generateName"] = "x" * 70
    assert len(store.create(PODS, body)["metadata"]["name"]) == 63


def test_name_required(store: Store) -> None:
    with pytest.raises(StatusError) as err:
        store.create(PODS, pod(""))
    assert status_of(err) == (
        422,
        "Invalid",
        'Pod "" is invalid: metadata.name: Required value: name or generateName is required',
    )
    no_namespace = pod("web")
    del no_namespace["metadata"]["namespace"]
    with pytest.raises(StatusError) as err:
        store.create(PODS, no_namespace)
    assert err.value.code == 422 and "metadata.namespace: Required value" in err.value.message


def test_cluster_scoped_and_shared_rv(store: Store) -> None:
    ns = store.create(NAMESPACES, {"metadata": {"name": "lab", "namespace": "ignored"}})
    assert "namespace" not in ns["metadata"]
    assert store.get(NAMESPACES, None, "lab") == ns == store.get(NAMESPACES, "anything", "lab")
    deploy = store.create(DEPLOYMENTS, {"metadata": {"name": "web", "namespace": "lab"}})
    created = store.create(PODS, pod("web"))
    # one rv sequence for every resource type, like etcd
    assert [
        ns["metadata"]["resourceVersion"],
        deploy["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"],
    ] == ["1", "2", "3"]
    assert store.get(PODS, "lab", "web") is not None and store.get(DEPLOYMENTS, "lab", "web") is not None


# --- list -------------------------------------------------------------------------------------------------------


def seed(store: Store) -> None:
    for ns, name, app in [
        ("b", "p2", "web"),
        ("a", "p9", "db"),
        ("b", "p1", "db"),
        ("a", "p1", "web"),
        ("c", "p5", "web"),
    ]:
        store.create(PODS, pod(name, namespace=ns, app=app))


def names(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items]


def test_list_sorted_filtered(store: Store) -> None:
    seed(store)
    items, rv, token = store.list(PODS)
    assert names(items) == ["a/p1", "a/p9", "b/p1", "b/p2", "c/p5"] and rv == 5 and token is None
    assert names(store.list(PODS, "b")[0]) == ["b/p1", "b/p2"]
    web = parse_label_selector("app=web")
    assert names(store.list(PODS, label_selector=web)[0]) == ["a/p1", "b/p2", "c/p5"]
    by_name = parse_field_selector("metadata.name=p1")
    assert names(store.list(PODS, field_selector=by_name)[0]) == ["a/p1", "b/p1"]
    assert names(store.list(PODS, "b", web, by_name)[0]) == []
    assert names(store.list(PODS, "a", field_selector=by_name)[0]) == ["a/p1"]
    assert store.list(DEPLOYMENTS) == ([], 5, None)


def test_list_paging(store: Store) -> None:
    seed(store)
    pages, token, rvs = [], None, set()
    while True:
        items, rv, token = store.list(PODS, limit=2, continue_token=token)
        pages.append(names(items))
        rvs.add(rv)
        if token is None:
            break
    assert pages == [["a/p1", "a/p9"], ["b/p1", "b/p2"], ["c/p5"]] and rvs == {5}
    # a selector with a limit fills each page with matches
    web = parse_label_selector("app=web")
    items, _, token = store.list(PODS, label_selector=web, limit=2)
    assert names(items) == ["a/p1", "b/p2"]
    assert names(store.list(PODS, label_selector=web, limit=2, continue_token=token)[0]) == ["c/p5"]
    # limit reached exactly at the end: no continue token
    assert store.list(PODS, limit=5)[2] is None


def test_continued_list_is_a_consistent_snapshot(store: Store) -> None:
    seed(store)
    _first, rv, token = store.list(PODS, limit=2)
    store.delete(PODS, "b", "p1")
    store.create(PODS, pod("p3", namespace="b"))
    store.update(PODS, pod("p2", namespace="b", app="changed"))
    rest, rest_rv, _ = store.list(PODS, continue_token=token)
    assert rest_rv == rv == 5
    assert names(rest) == ["b/p1", "b/p2", "c/p5"]  # p1 still there, p3 not yet, p2 unchanged
    assert rest[1]["metadata"]["labels"] == {"app": "web"}


def test_bad_and_expired_continue_tokens(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", history=3) as small:
        seed(small)
        _, _, token = small.list(PODS, limit=1)
        for bad in ("garbage!", "eyJ2IjoxfQ"):
            with pytest.raises(StatusError) as err:
                small.list(PODS, continue_token=bad)
            assert err.value.code == 400 and err.value.message.startswith("invalid continue token")
        with pytest.raises(StatusError) as err:
            small.list(DEPLOYMENTS, continue_token=token)  # another resource's token
        assert err.value.code == 400
        for i in range(3):
            small.create(NAMESPACES, {"metadata": {"name": f"n{i}"}})
        assert names(small.list(PODS, continue_token=token)[0])[0] == "a/p9"  # rv 5 is still the floor
        small.create(NAMESPACES, {"metadata": {"name": "n3"}})
        with pytest.raises(StatusError) as err:
            small.list(PODS, continue_token=token)  # its rv has left the history
        assert (err.value.code, err.value.reason) == (410, "Expired")
        assert err.value.message.startswith("The provided continue parameter is too old")


# --- persistence ------------------------------------------------------------------------------------------------


def test_objects_and_rv_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store(path) as before:
        seed(before)
        before.update(PODS, pod("p1", namespace="a", app="moved"))
        before.delete(PODS, "c", "p5")
        snapshot = before.list(PODS)[0]
    with Store(path) as after:
        assert after.rv == 7
        assert after.list(PODS)[0] == snapshot
        assert after.create(PODS, pod("new"))["metadata"]["resourceVersion"] == "8"

        async def watch_from(rv: int) -> list[tuple[str, str, int]]:
            with after.watch(PODS, since_rv=rv) as watcher:
                return await drain(watcher)

        with pytest.raises(StatusError) as err:
            asyncio.run(watch_from(5))  # history is memory-only: pre-restart rvs are gone
        assert status_of(err) == (410, "Expired", "too old resource version: 5 (7)")
        assert asyncio.run(watch_from(7)) == [("ADDED", "new", 8)]  # from the restart's rv onward is fine


def test_rv_never_goes_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store(path) as before:
        before.create(PODS, pod("a"))
        before.create(PODS, pod("b"))
    with Store(path) as after:  # the last write was a create: its body carries the rv
        assert after.rv == 2
        after.update(PODS, pod("a", app="x"))
        after.delete(PODS, "lab", "a")  # the deletion takes the highest body away
    with Store(path) as again:
        assert again.rv == 4
        assert again.create(PODS, pod("c"))["metadata"]["resourceVersion"] == "5"


_WRITER = """
import sys
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.store import Store
store = Store(sys.argv[1])
pods = RESOURCES.served("", "pods")
for i in range(10_000):
    store.create(pods, {"metadata": {"name": f"p{i}", "namespace": "lab"}, "spec": {}})
    if i % 2:
        store.delete(pods, "lab", f"p{i}")
    print(i, flush=True)
"""


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    acknowledged = -1
    while acknowledged < 200:
        acknowledged = int(writer.stdout.readline())
    writer.kill()  # SIGKILL mid-stream: no close, no checkpoint
    writer.wait()
    with Store(path) as after:
        names = {p["metadata"]["name"] for p in after.list(PODS)[0]}
        assert {f"p{i}" for i in range(0, acknowledged + 1, 2)} <= names
        assert not {f"p{i}" for i in range(1, acknowledged + 1, 2)} & names
        # each create and delete took one rv; the store's rv covers every acknowledged one
        assert after.rv >= acknowledged + 1 + (acknowledged + 1) // 2
        assert int(after.create(PODS, pod("next"))["metadata"]["resourceVersion"]) == after.rv


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SandboxError, match="is not a usable sandbox state database"):
        Store(path)


# --- watch ------------------------------------------------------------------------------------------------------


def test_watch_without_rv_sends_synthetic_added_then_live(store: Store) -> None:
    seed(store)

    async def run() -> list[tuple[str, str, int]]:
        with store.watch(PODS, "b", since_rv=None) as watcher:
            initial = await drain(watcher)
            store.create(PODS, pod("p7", namespace="b"))
            store.create(PODS, pod("p8", namespace="a"))  # another namespace: not seen
            store.delete(PODS, "b", "p2")
            return initial + await drain(watcher)

    assert asyncio.run(run()) == [("ADDED", "p1", 3), ("ADDED", "p2", 1), ("ADDED", "p7", 6), ("DELETED", "p2", 8)]


def test_watch_replays_history(store: Store) -> None:
    seed(store)
    store.update(PODS, pod("p1", namespace="a", app="x"))
    store.create(NAMESPACES, {"metadata": {"name": "lab"}})  # another resource takes rv 7
    store.delete(PODS, "b", "p2")

    async def run(since: int) -> list[tuple[str, str, int]]:
        with store.watch(PODS, since_rv=since) as watcher:
            return await drain(watcher)

    assert asyncio.run(run(3)) == [("ADDED", "p1", 4), ("ADDED", "p5", 5), ("MODIFIED", "p1", 6), ("DELETED", "p2", 8)]
    assert asyncio.run(run(8)) == []  # the current rv: nothing to replay
    assert asyncio.run(run(0))[0][0] == "ADDED"  # 0 means "any": the current state

    async def from_the_future() -> list[tuple[str, str, int]]:
        with store.watch(PODS, since_rv=9) as watcher:
            store.create(PODS, pod("p9"))  # rv 9: not newer than asked
            store.create(PODS, pod("p10"))
            return await drain(watcher)

    assert asyncio.run(from_the_future()) == [("ADDED", "p10", 10)]


def test_watch_needs_a_running_loop(store: Store) -> None:
    with pytest.raises(SandboxError, match="outside a running asyncio event loop"):
        store.watch(PODS, since_rv=None)


def test_watch_too_old_for_the_history_ring(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", history=2) as small:
        seed(small)

        async def run(since: int) -> list[tuple[str, str, int]]:
            with small.watch(PODS, since_rv=since) as watcher:
                return await drain(watcher)

        assert asyncio.run(run(3)) == [("ADDED", "p1", 4), ("ADDED", "p5", 5)]
        with pytest.raises(StatusError) as err:
            asyncio.run(run(2))
        assert status_of(err) == (410, "Expired", "too old resource version: 2 (3)")


def test_label_selector_transitions(store: Store) -> None:
    store.create(PODS, pod("web", app="web"))

    async def run() -> list[tuple[str, dict[str, Any], int]]:
        seen = []
        with store.watch(PODS, since_rv=None, label_selector=parse_label_selector("app=web")) as watcher:
            for labels in ({"app": "web", "v": "2"}, {"app": "api"}, {"app": "api", "v": "3"}, {"app": "web"}):
                store.update(PODS, pod("web", **labels))
            store.delete(PODS, "lab", "web")
            while (event := await watcher.next(0.05)) is not None:
                seen.append((event.type, event.object["metadata"]["labels"], event.rv))
        return seen

    assert asyncio.run(run()) == [
        ("ADDED", {"app": "web"}, 1),
        ("MODIFIED", {"app": "web", "v": "2"}, 2),
        ("DELETED", {"app": "web", "v": "2"}, 3),  # stopped matching: the last matching state, at the new rv
        ("ADDED", {"app": "web"}, 5),  # started matching again (rv 4 was invisible)
        ("DELETED", {"app": "web"}, 6),
    ]

    async def replay() -> list[str]:
        with store.watch(PODS, since_rv=1, label_selector=parse_label_selector("app=web")) as watcher:
            return [t for t, _, _ in await drain(watcher)]

    assert asyncio.run(replay()) == ["MODIFIED", "DELETED", "ADDED", "DELETED"]  # replay filters the same way


def test_field_selector_watch(store: Store) -> None:
    async def run() -> list[tuple[str, str, int]]:
        selector = parse_field_selector("spec.nodeName=node-a")
        with store.watch(PODS, "lab", since_rv=None, field_selector=selector) as watcher:
            body = store.create(PODS, pod("web"))
            body["spec"]["nodeName"] = "node-a"  # bound by the scheduler
            store.update(PODS, body)
            return await drain(watcher)

    assert asyncio.run(run()) == [("ADDED", "web", 2)]


def test_live_events_from_other_threads(store: Store) -> None:
    async def run() -> list[int]:
        with store.watch(PODS, since_rv=store.rv) as watcher:

            def write(prefix: str) -> None:
                for i in range(50):
                    store.create(PODS, pod(f"{prefix}{i}"))

            threads = [threading.Thread(target=write, args=(p,)) for p in "ab"]
            for t in threads:
                t.start()
            rvs: list[int] = []
            while len(rvs) < 100:
                event = await watcher.next(5.0)
                assert event is not None, f"only {len(rvs)} of 100 events arrived"
                rvs.append(event.rv)
            for t in threads:
                t.join()
            return rvs

    assert asyncio.run(run()) == list(range(1, 101))  # every event, in rv order, despite two writers


def test_next_wakes_on_a_write_from_another_thread(store: Store) -> None:
    async def run() -> WatchEvent | None:
        with store.watch(PODS, since_rv=None) as watcher:
            timer = threading.Timer(0.1, store.create, args=(PODS, pod("late")))
            timer.start()
            event = await watcher.next(5.0)  # already waiting when the write happens
            timer.join()
            return event

    event = asyncio.run(run())
    assert event is not None and (event.type, event.object["metadata"]["name"]) == ("ADDED", "late")


def test_close_ends_watchers(store: Store) -> None:
    async def run() -> tuple[WatchEvent | None, bool, WatchEvent | None]:
        watcher = store.watch(PODS, since_rv=None)
        waiting = asyncio.ensure_future(watcher.next(5.0))
        await asyncio.sleep(0.01)
        watcher.close()
        first = await asyncio.wait_for(waiting, 1.0)
        store.create(PODS, pod("after"))
        return first, watcher.closed, await watcher.next(0.01)

    assert asyncio.run(run()) == (None, True, None)

    async def store_close() -> bool:
        watcher = store.watch(PODS, since_rv=store.rv)
        store.close()
        return watcher.closed and await watcher.next(0.01) is None

    assert asyncio.run(store_close())


def test_slow_watcher_is_ended(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_PENDING", 3)

    async def run() -> tuple[bool, bool]:
        slow = store.watch(PODS, since_rv=store.rv)
        for i in range(4):
            store.create(PODS, pod(f"p{i}"))
        return slow.closed, await slow.next(0.01) is None

    assert asyncio.run(run()) == (True, True)


def test_bookmarks(store: Store) -> None:
    empty = {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"resourceVersion": "0"}}
    assert store.bookmark(DEPLOYMENTS) == empty

    async def run() -> tuple[WatchEvent | None, WatchEvent | None]:
        with store.watch(PODS, since_rv=None) as watcher:
            store.create(PODS, pod("web"))
            store.create(NAMESPACES, {"metadata": {"name": "lab"}})
            early = watcher.bookmark()  # an event is still pending
            await watcher.next(1.0)
            return early, watcher.bookmark()

    early, late = asyncio.run(run())
    assert early is None
    assert late == WatchEvent("BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "2"}}, 2)


def test_shared_watch_events_are_the_stored_objects_and_plain_ones_are_copies(store: Store) -> None:
    """Controllers read the store's own parse (no parse per watcher); every other reader gets its own copy."""
    store.create(PODS, pod("before"))

    async def run() -> tuple[list[WatchEvent], list[WatchEvent]]:
        shared, plain = store.watch(PODS, since_rv=None), store.watch(PODS, since_rv=None)
        store.create(PODS, pod("live"))
        store.delete(PODS, "lab", "before")
        seen: tuple[list[WatchEvent], list[WatchEvent]] = ([], [])
        for _ in range(3):
            seen[0].append(await shared.next_shared(1.0))
            seen[1].append(await plain.next(1.0))
        return seen

    shared, plain = asyncio.run(run())
    assert [(e.type, e.object["metadata"]["name"]) for e in shared] == [
        ("ADDED", "before"),
        ("ADDED", "live"),
        ("DELETED", "before"),
    ]
    assert [(e.type, e.object) for e in plain] == [(e.type, e.object) for e in shared]
    assert shared[1].object is store.peek(PODS, "lab", "live")  # no copy, no parse
    assert plain[1].object is not shared[1].object
    plain[1].object["metadata"]["labels"]["changed"] = "by a reader"
    assert "changed" not in store.peek(PODS, "lab", "live")["metadata"]["labels"]


def test_the_database_and_its_wal_and_shm_are_0600_whatever_the_umask_and_an_old_one_is_tightened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    old_umask = os.umask(0)
    try:
        with Store(path) as fresh:
            fresh.create(PODS, pod("p"))
            parts = [path, path.with_name("state.db-wal"), path.with_name("state.db-shm")]
            assert [oct(p.stat().st_mode & 0o777) for p in parts] == ["0o600"] * 3
        for part in parts:
            if part.exists():
                part.chmod(0o644)  # written by a labkit before this rule
        with Store(path) as reopened:
            assert [o["metadata"]["name"] for o in reopened.list(PODS)[0]] == ["p"]
            assert [oct(p.stat().st_mode & 0o777) for p in parts if p.exists()] == ["0o600"] * 3
    finally:
        os.umask(old_umask)


def test_a_container_log_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        writer = LogDirectory(tmp_path).writer({"metadata": {"namespace": "n", "name": "p", "uid": "u"}}, "c", 0)
        writer.write("stdout", "a secret")
        writer.close()
    finally:
        os.umask(old_umask)
    assert writer.path.stat().st_mode & 0o777 == 0o600
