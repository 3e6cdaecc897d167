"""How the API server reads request bodies and answers: JSON with warnings, and watch event streams.

A watch is one chunked response of newline-separated ``{"type": …, "object": …}`` events, as
client-go and kubectl read it; BOOKMARKs keep an idle stream's resourceVersion fresh when asked for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from labkit.sandbox.api import limits, params, protobuf, tables
from labkit.sandbox.api.status import StatusError, unsupported_media_type

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.store import Store
    from labkit.sandbox.api.watch import Watcher

T = TypeVar("T")
JSON = "application/json"
SEND_CHUNK = 256 * 1024
#: How long a watch from a resourceVersion the store has not reached waits for it (the watch cache's
#: blockTimeout, k8s.io/apiserver pkg/storage/cacher) before answering 504 "Too large resource version".
FUTURE_RV_WAIT = 3.0
WATCH_DEFAULT_TIMEOUT = 1800
BOOKMARK_EVERY = 30.0


def read_body(raw: bytes, content_type: str, resource: Resource) -> Any:
    """A request body in JSON, YAML or Kubernetes protobuf, decoded within :mod:`limits` (an empty body is
    ``{}``); 400 when it does not parse or breaks a limit, 415 for another media type."""
    media_type = content_type.split(";")[0].strip()
    if protobuf.is_protobuf(media_type):
        return protobuf.decode(raw)
    if media_type not in (JSON, "", "application/yaml", "application/apply-patch+yaml"):
        raise unsupported_media_type(media_type)
    return limits.decode_document(raw, media_type, resource.kind) if raw.strip() else {}


SMALL_BODY = 8 * 1024
"""Bodies up to this many bytes are decoded on the event loop. A hop to a worker thread costs about 0.1 ms, more
than decoding a typical manifest in JSON; the slowest decoder, YAML, takes about 20 ms for 8 KiB, well inside the
100 ms that ``/readyz`` is allowed to wait."""


async def decode_off_loop(raw: bytes, decode: Callable[..., T], *args: Any) -> T:
    """``decode(*args)`` for the request body ``raw``: in a worker thread when ``raw`` is big (see :data:`SMALL_BODY`),
    so a large YAML never stalls other requests, and at once otherwise."""
    if len(raw) <= SMALL_BODY:
        return decode(*args)
    return await asyncio.to_thread(decode, *args)


def dumps(obj: Any) -> bytes:
    """Compact JSON, as the real server writes it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def dumps_chunked(obj: dict[str, Any], key: str) -> bytes:
    """``dumps(obj)`` one element of ``obj[key]`` (a list's items, a table's rows) at a time: run in a worker
    thread, each element's encoding is short, so the event loop's thread gets the GIL between them."""
    rest = dumps({k: v for k, v in obj.items() if k != key})
    head = rest[:-1] + (b"," if len(rest) > 2 else b"") + f'"{key}":['.encode()
    return head + b",".join(dumps(item) for item in obj[key]) + b"]}"


async def send_large(request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
    """Send a big ``body`` in 256 KiB writes, each encrypted and queued on its own with the loop free in
    between, so other requests (``/readyz``) are served while it goes out."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = len(body)
    await response.prepare(request)
    view = memoryview(body)
    for start in range(0, len(body), SEND_CHUNK):
        await response.write(view[start : start + SEND_CHUNK])
        await asyncio.sleep(0)  # write() awaits only a full socket buffer: on loopback it rarely is
    await response.write_eof()
    return response


async def json_response_off_loop(request: web.Request, obj: dict[str, Any], key: str) -> web.StreamResponse:
    """:func:`json_response` for a big list or table: encoded in a worker thread (see :func:`dumps_chunked`) and
    sent in pieces (:func:`send_large`)."""
    return await send_large(request, await asyncio.to_thread(dumps_chunked, obj, key), JSON)


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


def created_status() -> dict[str, Any]:
    """The Success Status a create that makes no object answers (a binding, an eviction), with code 201."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def deleted_status(resource: Resource, name: str, uid: str | None) -> dict[str, Any]:
    """The Success Status a DELETE answers once an object without finalizers is gone."""
    details = {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def not_found_path() -> StatusError:
    """The 404 for a path the server does not serve (not for a missing object).

    Its ``details`` are empty but present, as the real server's: kubectl debug reads ``details.name`` of
    a 404 to tell a missing subresource from a missing pod and would crash on a Status without details."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


async def wait_for_resource_version(store: Store, wanted: int) -> None:
    """Return once the store reached ``wanted``, as the watch cache's ``waitUntilFreshAndBlock``; after
    :data:`FUTURE_RV_WAIT` seconds raise 504 with ``NewTooLargeResourceVersionError``."""
    deadline = time.monotonic() + FUTURE_RV_WAIT
    while store.rv < wanted and time.monotonic() < deadline:  # noqa: ASYNC110 (the store has no "rv reached" event)
        await asyncio.sleep(0.05)
    if store.rv < wanted:
        raise params.too_large_resource_version(wanted, store.rv)


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
    timeout = params.int64_param(q, "timeoutSeconds") or WATCH_DEFAULT_TIMEOUT
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
            item = await watcher.next_item(min(left, max(next_bookmark - time.monotonic(), 0.01)))
            if item is None:
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
            kind, text, _, shared = item
            if shared is not None and not (present or as_table) and "apiVersion" in shared and "kind" in shared:
                # the stored text is already the object's compact JSON: no parse and no re-encoding per watcher
                await response.write(f'{{"type":"{kind}","object":{text}}}\n'.encode())
                continue
            obj = json.loads(text)
            obj.setdefault("apiVersion", stored.api_version)
            obj.setdefault("kind", stored.kind)
            if present:
                obj = present(obj)
            if as_table:
                obj = tables.table_event(view, kind, obj)
            await response.write(dumps({"type": kind, "object": obj}) + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watcher.close()
    return response
