"""The kubelet's status manager: the one writer of ``pods/status``, one PATCH per change, events first.

A pod worker sets the status it wants; a sync task per pod sends the newest one as a JSON merge patch
on the status subresource. Statuses set while a write is in flight coalesce into the next write, and an
unchanged status is never sent again (``pkg/kubelet/status/status_manager.go`` caches versioned status
the same way). Before writing, the pod's pending Events are flushed, so whoever sees the new status finds
the events that led to it. A status that may *settle* (a pod still starting) waits up to
:data:`STATUS_SETTLE_S` for a newer one, so a pod that starts at once costs one PATCH, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path

if TYPE_CHECKING:
    from labkit.sandbox.kubeclient.events import EventRecorder

log = logging.getLogger("labkit.sandbox.kubelet.status_manager")

#: How long a starting pod's first status may wait to be superseded: a warm wasm pod runs within ~10 ms, and
#: a burst of 100 pods within a second; a person never notices a quarter second of "Pending" for "ContainerCreating".
STATUS_SETTLE_S = 0.25
#: Answers worth retrying the same status for: unreachable (0), throttled, server errors.
TRANSIENT_CODES = frozenset({0, 429, 500, 502, 503, 504})
RETRY_S = 0.2


def _ready(status: dict[str, Any]) -> str | None:
    return next((c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"), None)


class StatusManager:
    """Writes pod statuses for one node."""

    def __init__(self, client: KubeClient, recorder: EventRecorder) -> None:
        self.client, self.recorder = client, recorder
        self._wanted: dict[str, tuple[str, str, dict[str, Any]]] = {}  # uid -> (namespace, name, status)
        self._written: dict[str, dict[str, Any]] = {}
        self._syncing: dict[str, asyncio.Task[None]] = {}
        self._settling: dict[str, asyncio.Event] = {}  # uid -> set when a status that must not wait arrives

    def set_status(self, namespace: str, name: str, uid: str, status: dict[str, Any], settle: bool = False) -> None:
        """Ask for *status* to be written in the background: at once, or with *settle* when no newer one came
        within :data:`STATUS_SETTLE_S`."""
        self._wanted[uid] = (namespace, name, status)
        if settle and uid not in self._written:
            self._settling.setdefault(uid, asyncio.Event())
        elif (settling := self._settling.pop(uid, None)) is not None:
            settling.set()
        if uid not in self._syncing:
            self._syncing[uid] = asyncio.ensure_future(self._sync(uid))

    async def flush(self, uid: str) -> None:
        """Wait until the newest status set for *uid* is written."""
        task = self._syncing.get(uid)
        if task is not None:
            await asyncio.shield(task)

    def reconcile(self, uid: str, live: dict[str, Any]) -> None:
        """Someone else changed the pod's Ready condition (the node lifecycle controller marks pods of a node
        it lost): write the kubelet's status again, as the status manager's periodic sync does upstream."""
        written = self._written.get(uid)
        if written is None or uid in self._syncing or _ready(live) == _ready(written):
            return
        del self._written[uid]
        namespace, name, status = self._wanted[uid]
        self.set_status(namespace, name, uid, status)

    def forget(self, uid: str) -> None:
        """The pod is gone from the node: drop its cached status."""
        self._wanted.pop(uid, None)
        self._written.pop(uid, None)
        if (settling := self._settling.pop(uid, None)) is not None:
            settling.set()

    async def _sync(self, uid: str) -> None:
        try:
            if (settling := self._settling.get(uid)) is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settling.wait(), STATUS_SETTLE_S)
                if self._settling.get(uid) is settling:
                    del self._settling[uid]
            while (wanted := self._wanted.get(uid)) is not None and wanted[2] != self._written.get(uid):
                namespace, name, status = wanted
                await self.recorder.flush(uid)
                try:
                    await self.client.patch(resource_path("v1", "pods", namespace, name, "status"), {"status": status})
                except ApiError as err:
                    if err.code == 404:  # the pod is gone; nothing left to report
                        return
                    log.warning("status of pod %s/%s not written: %s", namespace, name, err.problem)
                    if err.code in TRANSIENT_CODES:
                        await asyncio.sleep(RETRY_S)
                        continue
                    # refused as it is: retrying the same status would fail again, a newer one may not
                if uid in self._wanted:  # not forgotten meanwhile
                    self._written[uid] = status
        finally:
            self._syncing.pop(uid, None)
