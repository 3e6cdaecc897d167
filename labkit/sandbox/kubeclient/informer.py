"""List, then watch from the list's resourceVersion; re-list after 410 Gone, as client-go's reflector does.

The informer keeps the objects it saw (by ``namespace/name``) and tells a handler about each change.
A re-list also reports, as DELETED, the objects that vanished while no watch was open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from labkit.sandbox.kubeclient.https import ApiError, KubeClient

log = logging.getLogger("labkit.sandbox.kubeclient.informer")

#: Wait before listing again after the API server could not be reached.
RETRY_S = 0.5
Handler = Callable[[str, dict[str, Any]], None]


def object_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace') or ''}/{meta['name']}"


class Informer:
    """A cache of one resource's objects matching *params* (label/field selectors), kept by list + watch."""

    def __init__(self, client: KubeClient, path: str, params: dict[str, str] | None = None) -> None:
        self.client, self.path, self.params = client, path, dict(params or {})
        self.cache: dict[str, dict[str, Any]] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self._resource_version = ""

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.cache.get(f"{namespace or ''}/{name}")

    def _emit(self, event_type: str, obj: dict[str, Any]) -> None:
        for handler in self.handlers:
            handler(event_type, obj)

    async def relist(self) -> None:
        listed = await self.client.get(self.path, self.params)
        items = listed.get("items") or []
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            self._emit("DELETED", self.cache.pop(key))
        for key, obj in fresh.items():
            event_type = "MODIFIED" if key in self.cache else "ADDED"
            self.cache[key] = obj
            self._emit(event_type, obj)
        self._resource_version = (listed.get("metadata") or {}).get("resourceVersion", "")
        self.synced.set()

    async def run(self) -> None:
        """List and watch forever (cancel the task to stop)."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                params = {**self.params, "resourceVersion": self._resource_version}
                async for event_type, obj in self.client.watch(self.path, params):
                    self._resource_version = obj.get("metadata", {}).get("resourceVersion", self._resource_version)
                    if event_type == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    if event_type == "DELETED":
                        self.cache.pop(key, None)
                    else:
                        self.cache[key] = obj
                    self._emit(event_type, obj)
            except ApiError as err:
                if err.code == 410:  # our resourceVersion was compacted away: start over from a list
                    need_list = True
                    continue
                log.warning("watch %s: %s; listing again", self.path, err.problem)
                need_list = True
                await asyncio.sleep(RETRY_S)
