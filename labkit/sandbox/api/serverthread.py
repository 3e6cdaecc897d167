"""The thread an :class:`~labkit.sandbox.api.server.ApiServer` serves from: its own event loop, so the daemon's
main thread stays free to supervise the node processes, and controllers run on the server's loop via :meth:`call`.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from labkit.sandbox.api import schemas

if TYPE_CHECKING:
    from labkit.sandbox.api.server import ApiServer


class ServerThread:
    """Runs an ``ApiServer`` on 127.0.0.1 in a dedicated thread with its own event loop."""

    def __init__(
        self, server: ApiServer, port: int = 0, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.server, self.host, self.port, self.ssl_context = server, host, port, ssl_context
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="labkit-apiserver", daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            # Open watches would hold shutdown for a minute; clients re-watch after a restart anyway.
            self._runner = web.AppRunner(self.server.app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            self.loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
            self.loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]  # the port the OS picked
        except Exception as e:  # noqa: BLE001 (whatever stops the server from listening is re-raised by start())
            self._error = e
            return
        finally:
            self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        # What is loaded by now (modules, the official schemas, the store's objects) lives as long as the server:
        # frozen, the full collections that big LISTs trigger no longer walk it (bench_safety.py: /readyz stalls).
        schemas.schemas()
        gc.collect()
        gc.freeze()
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run *fn* on the server's loop thread and return its result (for controllers and shutdown)."""
        return asyncio.run_coroutine_threadsafe(_as_coroutine(fn), self.loop).result()

    def stop(self) -> None:
        if self._runner is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


async def _as_coroutine(fn: Callable[[], Any]) -> Any:
    return fn()
