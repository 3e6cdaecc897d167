"""A real API server in the test process: the daemon's ApiServer and ServerThread over HTTPS on loopback
(kubectl sends its token over TLS only), bootstrapped as the daemon bootstraps it, with one node and no
controllers or kubelets.

What it gives over the daemon is access to the store, so a test can check that a refused request changed
nothing, and a start in well under a second.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from labkit.sandbox import pki
from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.auth import TokenAuthority
from labkit.sandbox.api.server import ApiServer
from labkit.sandbox.api.serverthread import ServerThread
from labkit.sandbox.api.store import Store
from labkit.sandbox.daemon import bootstrap, write_kubeconfig
from labkit.sandbox.nodes import ensure_nodes

TOKEN = "harness-admin-token"


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """``call(method, path, body, content_type=…)`` over one keep-alive HTTPS connection, as the admin."""

    url: str
    tls: ssl.SSLContext
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def connection(self) -> http.client.HTTPConnection:
        address = urlparse(self.url)
        return http.client.HTTPSConnection(address.hostname or "127.0.0.1", address.port, timeout=30, context=self.tls)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        if data is not None:
            sent["Content-Type"] = content_type
        for attempt in range(2):  # the server may close a kept-alive connection after refusing a body
            if self._conn is None:
                self._conn = self.connection()
            started = time.perf_counter()
            try:
                self._conn.request(method, path, body=data, headers=sent)
                response = self._conn.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self._conn.close()
                self._conn = None
            return Reply(response.status, payload, time.perf_counter() - started)
        raise AssertionError("unreachable")


@dataclass
class LiveApi(Client):
    """A :class:`Client` of a server in this process, with its store at hand."""

    core: ApiCore = field(kw_only=True)
    log_dir: Path = field(kw_only=True)
    kubeconfig: Path = field(kw_only=True)

    def state(self) -> list[tuple[str, str, str, str]]:
        """Every stored object's identity and resourceVersion: what a refused request must leave alone."""
        with self.core.store.lock:
            return sorted(
                (resource, ns, name, version.text)
                for resource, table in self.core.store._objects.items()
                for (ns, name), version in table.items()
            )


def serve(root: Path) -> tuple[LiveApi, Callable[[], None]]:
    """Start a server with its state under ``root``; returns it and the function that stops it."""
    core = ApiCore(Store(root / "state.db"))
    bootstrap(core)
    ensure_nodes(core, 1, ready=True)
    ca, crt, key = pki.ensure_certificates(root)
    server = ApiServer(core, TokenAuthority(b"harness-secret", TOKEN), root / "pods")
    thread = ServerThread(server, ssl_context=pki.server_context(crt, key)).start()
    write_kubeconfig(root / "kubeconfig", thread.url, TOKEN, ca)
    api = LiveApi(thread.url, pki.client_context(ca), core=core, log_dir=root / "pods", kubeconfig=root / "kubeconfig")

    def stop() -> None:
        if api._conn is not None:
            api._conn.close()
        thread.stop()
        core.store.close()

    return api, stop


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    api, stop = serve(tmp_path_factory.mktemp("apiserver"))
    yield api
    stop()
