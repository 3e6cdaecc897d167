"""The sandbox's versioned object store: objects in SQLite, one global resourceVersion, watch with replay.

A dumb key-value store with watch, like etcd under a real API server: API
semantics (generation bumps, finalizers, graceful deletion, defaulting,
validation) belong to the server. Every write of any resource type takes the
next resourceVersion. Objects and the counter survive a restart; the event
history used to replay watches lives in memory only, so a watch from a
pre-restart resourceVersion gets 410 Gone, as after an etcd compaction.

Reads come from an in-memory mirror of the table (loaded at open), the way the
API server's watch cache answers most reads; every read returns a fresh copy
(:meth:`Store.peek` excepted). Watchers and the replay history are in
:mod:`labkit.sandbox.api.watch`.

>>> import asyncio, tempfile, os
>>> from labkit.sandbox.api.registry import RESOURCES
>>> pods = RESOURCES.served("", "pods")
>>> store = Store(os.path.join(tempfile.mkdtemp(), "state.db"))
>>> pod = store.create(pods, {"metadata": {"namespace": "default", "generateName": "web-"}})
>>> pod["metadata"]["resourceVersion"], pod["metadata"]["name"].startswith("web-")
('1', True)
>>> async def first_event():
...     watcher = store.watch(pods, "default", since_rv=None)
...     event = await watcher.next(1.0)
...     watcher.close()
...     return event.type, event.rv
>>> asyncio.run(first_event())
('ADDED', 1)
>>> store.close()
"""

from __future__ import annotations

import base64
import binascii
import builtins
import collections
import json
import os
import random
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import SandboxError
from labkit.sandbox.api.limits import check_object_size
from labkit.sandbox.api.status import already_exists, bad_request, conflict, gone, invalid, not_found
from labkit.sandbox.api.watch import ADDED, DELETED, MODIFIED, Change, Key, Pending, changes_after, selected
from labkit.sandbox.api.watch import Watcher as Watcher  # re-exported: kubelets import it from here
from labkit.sandbox.api.watch import WatchEvent as WatchEvent  # re-exported: controllers import it from here
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.selectors import FieldSelector, LabelSelector

#: Kubernetes' alphabet for generateName suffixes: no vowels (no accidental words), no look-alikes (0/1/3).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LENGTH = 5
_MAX_NAME = 63

#: A watcher whose consumer falls this far behind is ended, as the API server ends slow watchers; the client
#: then re-lists. Keeps one stuck connection from holding memory forever.
MAX_PENDING = 10_000
#: The replay history keeps at most this many bytes of object text (and at most ``history`` changes): large
#: objects shorten it, and a watch or continue from before it gets 410 Expired, as after an etcd compaction.
MAX_HISTORY_BYTES = 64 * 1024 * 1024

_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter."
)


@dataclass(frozen=True)
class _Version:
    """One stored version of an object: its JSON text and the parsed form. Never mutated, so the mirror,
    the history and list snapshots share it safely."""

    text: str
    obj: dict[str, Any]

    @classmethod
    def of(cls, obj: dict[str, Any]) -> _Version:
        """The version of ``obj``, parsed back from its text: the store never shares the caller's dicts.
        Serialising is also the check that the object is storable."""
        return cls.parse(json.dumps(obj, separators=(",", ":")))

    @classmethod
    def owning(cls, obj: dict[str, Any]) -> _Version:
        """The version of an object nobody else holds (no copy)."""
        return cls(json.dumps(obj, separators=(",", ":")), obj)

    @classmethod
    def parse(cls, text: str) -> _Version:
        return cls(text, json.loads(text))

    def copy(self) -> dict[str, Any]:
        """A fresh object the caller may change."""
        result: dict[str, Any] = json.loads(self.text)
        return result


def _with_own_metadata(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``obj`` and its metadata copied one level deep: the store fills in metadata without touching the
    caller's dicts, and :meth:`_Version.of` copies the rest."""
    meta = dict(obj.get("metadata") or {})
    return {**obj, "metadata": meta}, meta


def _private_database(path: Path) -> None:
    """Create *path* 0600 before SQLite opens it, and tighten an older one and its -wal/-shm to 0600.

    SQLite creates the -wal and -shm files with the database file's permissions (``robust_open`` in
    os_unix.c takes them from the database: ``findCreateFileMode``), so a 0600 database keeps its journal
    private as well.
    """
    if str(path) == ":memory:":
        return
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists() and part.stat().st_mode & 0o077:
            part.chmod(0o600)


def _rv_of(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


class Store:
    """Objects of every resource type, keyed by ``(resource.key, namespace or "", name)``.

    Thread-safe: the API server's loop and node threads may call it concurrently.
    """

    def __init__(self, path: str | Path, *, history: int = 20_000, history_bytes: int = MAX_HISTORY_BYTES) -> None:
        if history < 1:
            raise SandboxError(f"watch history size must be at least 1, got {history}", "pass history=20_000 or more")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private_database(self.path)
        self._lock = threading.RLock()
        self._history: collections.deque[Change] = collections.deque()
        self._history_limits = (history, history_bytes)
        self._history_size = 0  # bytes of text the history holds
        self._watchers: dict[str, set[Watcher]] = {}
        self._objects: dict[str, dict[Key, _Version]] = {}
        self._written: dict[str, int] = {}  # resource key -> rv of its latest write
        try:
            # Autocommit: a create or update is one statement, hence its own transaction, with no BEGIN/COMMIT
            # round trips; a deletion opens one explicitly.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS objects (resource TEXT NOT NULL, namespace TEXT NOT NULL, "
                    "name TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID"
                )
                self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'rv'").fetchone()
            rows = self._db.execute("SELECT resource, namespace, name, body FROM objects").fetchall()
        except sqlite3.DatabaseError as err:
            raise SandboxError(
                f"{self.path} is not a usable sandbox state database ({err})",
                "stop the sandbox, move the file aside and start it again (the cluster then starts empty)",
            ) from err
        self._rv: int = row[0] if row else 0
        for resource, namespace, name, body in rows:
            version = self._objects.setdefault(resource, {})[(namespace, name)] = _Version.parse(body)
            self._rv = max(self._rv, _rv_of(version.obj))

    # --- reads -------------------------------------------------------------------------------------------------

    @property
    def rv(self) -> int:
        """The current global resourceVersion (the rv of the latest write of any resource)."""
        return self._rv

    def last_write(self, resource: Resource) -> int:
        """The resourceVersion of the latest write to ``resource``'s objects (0: none since the store opened),
        so a reader can tell that a copy it keeps is still current."""
        return self._written.get(resource.key, 0)

    @property
    def lock(self) -> threading.RLock:
        """Held while a write is persisted and published: holding it sees no write half-published."""
        return self._lock

    def peek(self, resource: Resource, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """The stored object itself, without a copy, for checks that only read it; never change it."""
        with self._lock:
            version = self._objects.get(resource.key, {}).get((self._ns(resource, namespace), name))
        return version.obj if version else None

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or ``None``. ``namespace`` is ignored for cluster-scoped resources."""
        with self._lock:
            version = self._objects.get(resource.key, {}).get((self._ns(resource, namespace), name))
        return version.copy() if version else None

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], int, str | None]:
        """Matching objects sorted by namespace then name, the list's resourceVersion and a continue token
        when ``limit`` cut the list (``namespace=None``: all namespaces).

        A continued list shows the state at the first page's resourceVersion, as on a real server; a token
        older than the replay history raises 410 Expired, a malformed one 400 BadRequest.
        """
        with self._lock:
            if continue_token:
                rv, start = self._decode_continue(resource, continue_token)
                versions = self._snapshot(resource.key, rv)
            else:
                rv, start = self._rv, None
                versions = dict(self._objects.get(resource.key, {}))
        name = field_selector.exact_name() if field_selector else None
        if name is not None and namespace is not None:
            key = (self._ns(resource, namespace), name)
            keys: Iterable[Key] = [key] if key in versions else []
        else:
            in_namespace = namespace is None or not resource.namespaced
            keys = sorted(k for k in versions if (in_namespace or k[0] == namespace) and (name is None or k[1] == name))
        items: list[dict[str, Any]] = []
        last: Key | None = None
        for key in keys:
            if start is not None and key <= start:
                continue
            obj = versions[key].obj
            if not selected(obj, label_selector, field_selector):
                continue
            if limit and len(items) >= limit:
                return items, rv, self._encode_continue(resource, rv, last)
            items.append(versions[key].copy())
            last = key
        return items, rv, None

    def dependents(self, uid: str, namespace: str | None) -> builtins.list[tuple[str, dict[str, Any]]]:
        """``(resource key, object)`` for every object whose ownerReferences name *uid* (garbage collection).

        Scans the parsed mirror and copies only the matches, so deleting an owner does not copy the namespace.
        """
        with self._lock:
            matches = [
                (key, version.text)
                for key, table in self._objects.items()
                for (ns, _), version in table.items()
                if (namespace is None or ns == namespace)
                and any(ref.get("uid") == uid for ref in version.obj["metadata"].get("ownerReferences") or ())
            ]
        return [(key, json.loads(text)) for key, text in matches]

    # --- writes ------------------------------------------------------------------------------------------------

    def create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object: fills uid (unless the server already chose one), creationTimestamp and
        resourceVersion, and resolves ``generateName``. ``generation`` is the server's to set (only some kinds
        have one). Raises 409 AlreadyExists on a duplicate and 422 Invalid without a name."""
        obj, meta = _with_own_metadata(obj)
        namespace = self._namespace_of(resource, meta)
        with self._lock:
            table = self._objects.get(resource.key, {})
            name = meta.get("name") or self._generate_name(resource, namespace, meta.get("generateName") or "", table)
            if (namespace, name) in table:
                raise already_exists(resource, name)
            meta.update(
                name=name,
                uid=meta.get("uid") or str(uuid.uuid4()),
                creationTimestamp=format_rfc3339(),
                resourceVersion=str(self._rv + 1),
            )
            version = _Version.of(obj)
            self._commit(resource, (namespace, name), ADDED, version, None)
        return version.copy()

    def update(self, resource: Resource, obj: dict[str, Any], *, check_rv: bool = True) -> dict[str, Any]:
        """Replace a stored object, keeping its uid and creationTimestamp (and its generation when the
        caller sent none). With ``check_rv``, a sent resourceVersion that is not the stored one raises 409."""
        obj, meta = _with_own_metadata(obj)
        namespace, name = self._namespace_of(resource, meta), meta.get("name") or ""
        with self._lock:
            old = self._objects.get(resource.key, {}).get((namespace, name))
            if old is None:
                raise not_found(resource, name)
            old_meta = old.obj["metadata"]
            sent = meta.get("resourceVersion")
            if check_rv and sent and str(sent) != old_meta["resourceVersion"]:
                raise conflict(resource, name)
            meta.update(
                uid=old_meta["uid"], creationTimestamp=old_meta["creationTimestamp"], resourceVersion=str(self._rv + 1)
            )
            if "generation" in old_meta:
                meta.setdefault("generation", old_meta["generation"])
            version = _Version.of(obj)
            self._commit(resource, (namespace, name), MODIFIED, version, old)
        return version.copy()

    def delete(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """Remove an object; returns its last state carrying the deletion's resourceVersion (what the DELETED
        event carries). Raises 404 when absent."""
        key = (self._ns(resource, namespace), name)
        with self._lock:
            old = self._objects.get(resource.key, {}).get(key)
            if old is None:
                raise not_found(resource, name)
            obj = old.copy()
            obj["metadata"]["resourceVersion"] = str(self._rv + 1)
            version = _Version.owning(obj)
            self._commit(resource, key, DELETED, version, old)
        return version.copy()

    # --- watch -------------------------------------------------------------------------------------------------

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        since_rv: int | None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
    ) -> Watcher:
        """Watch one resource type from the running event loop.

        ``since_rv=None`` (or 0, "any version") first yields a synthetic ADDED for every matching object, as
        the Python client expects; otherwise every event after ``since_rv`` is replayed from the history.
        Then live events follow, whichever thread writes. Raises 410 Expired when ``since_rv`` is older than
        the history (for example after a restart).
        """
        namespace = namespace if resource.namespaced else None
        watcher = Watcher(self, resource, namespace, label_selector, field_selector, since_rv or 0, MAX_PENDING)
        with self._lock:
            if not since_rv:
                table = self._objects.get(resource.key, {})
                initial: list[Pending] = [
                    (ADDED, table[k].text, _rv_of(table[k].obj), table[k].obj)
                    for k in sorted(table)
                    if watcher.selects(k, table[k].obj)
                ]
            else:
                floor = self._floor()
                if since_rv < floor:
                    raise gone(f"too old resource version: {since_rv} ({floor})")
                initial = [
                    view
                    for change in changes_after(self._history, since_rv)
                    if change.resource == resource.key and (view := watcher.view(change))
                ]
            watcher.prime(initial)
            self._watchers.setdefault(resource.key, set()).add(watcher)
        return watcher

    def bookmark(self, resource: Resource, rv: int | None = None) -> dict[str, Any]:
        """The minimal object a BOOKMARK event carries: the resource's kind and a resourceVersion
        (default: the current one)."""
        return {
            "kind": resource.kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._rv if rv is None else rv)},
        }

    def close(self) -> None:
        """End every watcher and close the database."""
        with self._lock:
            watchers = [w for group in self._watchers.values() for w in group]
        for watcher in watchers:
            watcher.close()
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------------------------

    @staticmethod
    def _ns(resource: Resource, namespace: str | None) -> str:
        return (namespace or "") if resource.namespaced else ""

    @staticmethod
    def _namespace_of(resource: Resource, meta: dict[str, Any]) -> str:
        if not resource.namespaced:
            meta.pop("namespace", None)  # a cluster-scoped object has no namespace, whatever the body says
            return ""
        if not meta.get("namespace"):
            required = {"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.namespace"}
            raise invalid(resource, meta.get("name") or "", [required])
        namespace: str = meta["namespace"]
        return namespace

    @staticmethod
    def _generate_name(resource: Resource, namespace: str, base: str, table: dict[Key, _Version]) -> str:
        if not base:
            raise invalid(
                resource,
                "",
                [
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value: name or generateName is required",
                        "field": "metadata.name",
                    }
                ],
            )
        base = base[: _MAX_NAME - _SUFFIX_LENGTH]
        name = base
        for _ in range(8):  # a clash is rare (27^5 suffixes); retry a few times as newer API servers do
            name = base + "".join(random.choices(NAME_ALPHABET, k=_SUFFIX_LENGTH))
            if (namespace, name) not in table:
                return name
        raise already_exists(resource, name)

    def _commit(self, resource: Resource, key: Key, kind: str, new: _Version, old: _Version | None) -> None:
        """Persist one write, then publish it to the mirror, the history and the watchers. Caller holds the lock.

        The global resourceVersion is the highest of the stored bodies' and the ``meta`` row's, so only a
        deletion, which takes its body away, writes the row: one page per create or update instead of two.
        """
        rv = self._rv + 1
        if kind != DELETED:
            check_object_size(new.text)  # before anything is written: a refused write changes nothing
        if kind == DELETED:
            with self._db:  # one transaction: the row goes, the rv stays
                self._db.execute("BEGIN")
                self._db.execute(
                    "DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?", (resource.key, *key)
                )
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', ?)", (rv,))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (resource, namespace, name, body) VALUES (?, ?, ?, ?)",
                (resource.key, *key, new.text),
            )
        table = self._objects.setdefault(resource.key, {})
        if kind == DELETED:
            del table[key]
        else:
            table[key] = new
        self._rv = self._written[resource.key] = rv
        change = Change(rv, resource.key, key, kind, new.text, old.text if old else None)
        self._remember(change)
        for watcher in list(self._watchers.get(resource.key, ())):
            view = watcher.view(change, new.obj, old.obj if old else None)
            if view:
                watcher.push(view)

    def _remember(self, change: Change) -> None:
        """Append to the replay history, dropping its oldest changes beyond its count and byte limits."""
        count, size = self._history_limits
        self._history.append(change)
        self._history_size += change.size
        while len(self._history) > count or (self._history_size > size and len(self._history) > 1):
            self._history_size -= self._history.popleft().size

    @property
    def history_size(self) -> int:
        """Bytes of object text the replay history holds (bounded by ``history_bytes``)."""
        return self._history_size

    def _floor(self) -> int:
        """The oldest resourceVersion a watch or a continued list can start from."""
        return self._history[0].rv - 1 if self._history else self._rv

    def _snapshot(self, resource_key: str, rv: int) -> dict[Key, _Version]:
        """The resource's objects as they were at ``rv``, undoing the newer writes from the history."""
        versions = dict(self._objects.get(resource_key, {}))
        before: dict[Key, str | None] = {}
        for change in changes_after(self._history, rv):
            if change.resource == resource_key:
                before.setdefault(change.key, change.old)  # the oldest newer write knows the state at rv
        for key, text in before.items():
            if text is None:
                versions.pop(key, None)
            else:
                versions[key] = _Version.parse(text)
        return versions

    def _encode_continue(self, resource: Resource, rv: int, last: Key | None) -> str:
        token = {"v": "meta.k8s.io/v1", "resource": resource.key, "rv": rv, "start": list(last or ("", ""))}
        return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")

    def _decode_continue(self, resource: Resource, token: str) -> tuple[int, Key]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            rv, (namespace, name) = int(data["rv"]), data["start"]
            if data.get("v") != "meta.k8s.io/v1" or data.get("resource") != resource.key:
                raise ValueError("the token belongs to another list")
            if not (isinstance(namespace, str) and isinstance(name, str)) or not 0 < rv <= self._rv:
                raise ValueError("the token does not describe a list of this server")
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as err:
            raise bad_request(f"invalid continue token: {err}") from None
        if rv < self._floor():
            raise gone(_CONTINUE_EXPIRED)
        return rv, (namespace, name)

    def unregister(self, watcher: Watcher) -> None:
        """Stop publishing to ``watcher`` (called by :meth:`Watcher.close`)."""
        with self._lock:
            self._watchers.get(watcher.resource.key, set()).discard(watcher)
