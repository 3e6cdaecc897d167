"""How the API server reads request bodies and answers: JSON with warnings, and watch event streams.

A watch is one chunked response of newline-separated ``{"type": …, "object": …}`` events, as
client-go and kubectl read it; BOOKMARKs keep an idle stream's resourceVersion fresh when asked for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from labkit.sandbox.api import protobuf, tables
from labkit.sandbox.api.status import StatusError, bad_request, unsupported_media_type

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.watch import Watcher

JSON = "application/json"
WATCH_DEFAULT_TIMEOUT = 1800
BOOKMARK_EVERY = 30.0


def read_body(raw: bytes, content_type: str, resource: Resource) -> Any:
    """A request body in JSON, YAML or Kubernetes protobuf, decoded; 400 when it does not parse, 415 for
    another media type."""
    media_type = content_type.split(";")[0].strip()
    if protobuf.is_protobuf(media_type):
        return protobuf.decode(raw)
    try:
        if media_type in (JSON, ""):
            return json.loads(raw or b"{}")
        if media_type in ("application/yaml", "application/apply-patch+yaml"):
            return yaml.safe_load(raw) or {}
    except (ValueError, yaml.YAMLError) as e:
        kind = resource.kind
        raise bad_request(f'{kind} in version "{resource.version}" cannot be handled as a {kind}: {e}') from e
    raise unsupported_media_type(media_type)


def dumps(obj: Any) -> bytes:
    """Compact JSON, as the real server writes it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200, content_type: str = JSON, warnings: Sequence[str] = ()) -> web.Response:
    """``obj`` as JSON; each warning becomes a ``Warning: 299`` header, which kubectl prints."""
    response = web.Response(body=dumps(obj), status=status, content_type=content_type.split(";")[0])
    if ";" in content_type:
        response.headers["Content-Type"] = content_type
    for w in warnings:
        response.headers.add("Warning", f'299 - "{w}"')
    return response


def wants_table(request: web.Request) -> bool:
    """Whether the client asked for a ``meta.k8s.io/v1`` Table (kubectl get does)."""
    return "as=Table" in request.headers.get("Accept", "")


def flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter (``?watch=true``, ``?watch=1``)."""
    return request.query.get(name, "").lower() in ("1", "true")


def not_found_path() -> StatusError:
    """The 404 for a path the server does not serve (not for a missing object).

    Its ``details`` are empty but present, as the real server's: kubectl debug reads ``details.name`` of
    a 404 to tell a missing subresource from a missing pod and would crash on a Status without details."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


async def stream_watch(
    request: web.Request,
    watcher: Watcher,
    view: Resource,
    present: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Stream ``watcher``'s events until ``timeoutSeconds``, the client leaving or the watcher ending.

    Objects get the stored resource's ``apiVersion``/``kind`` when they lack them; ``view``/``present``
    show them as another API group does (events.k8s.io over core Events). Closes the watcher.
    """
    q = request.query
    stored = watcher.resource
    timeout = float(q.get("timeoutSeconds") or WATCH_DEFAULT_TIMEOUT)
    bookmarks = flag(request, "allowWatchBookmarks")
    as_table = wants_table(request)
    response = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_EVERY
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            event = await watcher.next(min(left, max(next_bookmark - time.monotonic(), 0.01)))
            if event is None:
                if watcher.closed:  # overflowed (a too-slow client) or the store closed
                    break
                if bookmarks and time.monotonic() >= next_bookmark:
                    # the watcher's own bookmark never claims an rv ahead of an event it still holds
                    bookmark = watcher.bookmark()
                    if bookmark is not None:
                        marker = {**bookmark.object, "apiVersion": view.api_version, "kind": view.kind}
                        await response.write(dumps({"type": "BOOKMARK", "object": marker}) + b"\n")
                    next_bookmark = time.monotonic() + BOOKMARK_EVERY
                continue
            obj = event.object
            obj.setdefault("apiVersion", stored.api_version)
            obj.setdefault("kind", stored.kind)
            if present:
                obj = present(obj)
            if as_table:
                obj = tables.table_event(view, event.type, obj)
            await response.write(dumps({"type": event.type, "object": obj}) + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watcher.close()
    return response
