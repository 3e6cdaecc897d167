"""One keep-alive HTTPS session to the API server; the only place that turns HTTP failures into :class:`ApiError`.

>>> client = KubeClient("https://127.0.0.1:6443", token, ca_path)          # doctest: +SKIP
>>> pod = await client.get(resource_path("v1", "pods", "default", "web"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from labkit.errors import LabkitError
from labkit.sandbox import pki

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
#: a watch stays open this long before the client re-watches from its last resourceVersion
WATCH_TIMEOUT_S = 300
#: Connections for ordinary requests (watches have their own). The API server answers on one event loop, so more
#: connections add no throughput, only TLS handshakes: a burst of pods used to open ~30 per kubelet, each a
#: handshake on both ends. client-go multiplexes everything over one HTTP/2 connection; with HTTP/1.1 a small
#: pool is the nearest thing (our choice, not a Kubernetes number).
REQUEST_CONNECTIONS = 6


class ApiError(LabkitError):
    """The API server refused a request; ``status`` is its Status object, ``code`` the HTTP status."""

    def __init__(self, code: int, status: dict[str, Any]) -> None:
        super().__init__(f"API server answered {code}: {status.get('message') or status.get('reason') or ''}")
        self.code = code
        self.status = status


def resource_path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None, subresource: str = ""
) -> str:
    """``/api/v1/namespaces/ns/pods/name/status`` and friends.

    >>> resource_path("coordination.k8s.io/v1", "leases", "kube-node-lease", "n1")
    '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1'
    >>> resource_path("v1", "nodes", None, "n1", "status")
    '/api/v1/nodes/n1/status'
    """
    prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    parts = [prefix]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeClient:
    """Requests over a small pool of keep-alive connections, watches over connections of their own (aiohttp
    sessions created lazily on the running loop), authenticated by a bearer token."""

    def __init__(self, server: str, token: str, ca: Path, user_agent: str = "labkit-sandbox") -> None:
        self.server = server.rstrip("/")
        self.ca_file = Path(ca)  # the cluster CA, which the kubelet also gives pods as their ca.crt
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": user_agent, "Accept": JSON}
        self._ssl = pki.client_context(ca)
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session for requests: at most :data:`REQUEST_CONNECTIONS` connections, the rest wait their turn."""
        if self._session is None or self._session.closed:
            self._session = self._new_session(REQUEST_CONNECTIONS)
        return self._session

    def watch_session(self) -> aiohttp.ClientSession:
        """The session for watches: each holds its connection for minutes, so they must not starve requests."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = self._new_session(0)  # 0: no limit
        return self._watch_session

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=limit, keepalive_timeout=60)
        return aiohttp.ClientSession(connector=connector, headers=self._headers)

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """Send one request; the decoded JSON answer, or :class:`ApiError`."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        try:
            async with self.session().request(
                method, self.server + path, params=params, data=data, headers=headers
            ) as response:
                payload = await response.read()
                status = response.status
        except aiohttp.ClientError as err:
            raise ApiError(0, {"reason": "Unreachable", "message": f"{method} {path}: {err}"}) from err
        decoded = _decode(payload)
        if status >= 400:
            raise ApiError(status, decoded if decoded.get("kind") == "Status" else {"message": payload.decode()})
        return decoded

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: dict[str, Any], content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(
        self, path: str, params: Mapping[str, str] | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.request("DELETE", path, params=params, body=options)

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events ``(type, object)`` until the server ends the stream; an ERROR event raises ApiError."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=WATCH_TIMEOUT_S + 30)
        try:
            async with self.watch_session().get(self.server + path, params=query, timeout=timeout) as response:
                if response.status >= 400:
                    raise ApiError(response.status, _decode(await response.read()))
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(int(status.get("code") or 500), status)
                    yield event["type"], event["object"]
        except (aiohttp.ClientError, ConnectionError) as err:
            raise ApiError(0, {"reason": "Unreachable", "message": f"watch {path}: {err}"}) from err


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(payload) if payload else {}
    except ValueError:
        return {"message": payload.decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {"value": decoded}
