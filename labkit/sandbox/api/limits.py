"""What one request may cost the API server: body size, nesting depth, YAML aliasing, stored object size.

kube-apiserver reads at most 3 MiB of a request body (``MaxRequestBodyBytes``, k8s.io/apiserver
pkg/server/config.go; ``limitedReadBody`` in pkg/endpoints/handlers/rest.go answers 413
``Request entity too large: limit is 3145728``), decodes YAML with go-yaml, which since
CVE-2019-11253 stops a document whose aliases do most of the decoding ("yaml: document contains
excessive aliasing", ``allowedAliasRatio`` in go-yaml's decode.go), and stores objects in etcd,
whose default ``--max-request-bytes`` is 1.5 MiB ("etcdserver: request is too large").

Python's recursive decoders and copies would fail on deep nesting with RecursionError long before
Go's 10,000-level limits, so the sandbox bounds nesting at :data:`MAX_DEPTH` levels, which no
Kubernetes object comes near (a Deployment with an env valueFrom nests 14 deep, through its managedFields).

>>> decode_document(b"a: &x [1, 2]\\nb: *x\\n", "application/yaml", "Pod")
{'a': [1, 2], 'b': [1, 2]}
>>> decode_document(b'{"a":' + b"[" * 100_000, "application/json", "Pod")
Traceback (most recent call last):
...
labkit.sandbox.api.status.StatusError: the object provided is unrecognized (must be of type Pod): \
couldn't get version/kind; json parse error: exceeded max depth of 100 ({"a":[[[[[[[[[[[[[[[[[[[[[[[[[ ...)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
)

from labkit.sandbox.api.status import StatusError, bad_request

if TYPE_CHECKING:
    from aiohttp import web

#: kube-apiserver's MaxRequestBodyBytes (3 MiB).
MAX_REQUEST_BODY = 3 * 1024 * 1024
#: etcd's default --max-request-bytes (1.5 MiB): the largest object the store accepts once encoded. etcd
#: measures the protobuf encoding, the sandbox its compact JSON: a little stricter, never looser.
MAX_OBJECT_BYTES = 3 * 1024 * 1024 // 2
#: The deepest nesting of lists and maps a request body may have (see the module docstring).
MAX_DEPTH = 100

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_READ_CHUNK = 64 * 1024


def request_too_large(limit: int = MAX_REQUEST_BODY) -> StatusError:
    """apimachinery's ``NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", limit))``."""
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def object_too_large() -> StatusError:
    """An object larger than etcd takes. Upstream passes etcd's error through as a 500 (kubernetes#112152,
    open); the sandbox keeps etcd's words but answers 413, since the client is the one to change."""
    return StatusError(413, "RequestEntityTooLarge", "etcdserver: request is too large")


def check_object_size(text: str) -> None:
    """Raise 413 when an object's stored JSON ``text`` (ASCII: ``json.dumps`` escapes the rest) is over
    :data:`MAX_OBJECT_BYTES`."""
    if len(text) > MAX_OBJECT_BYTES:
        raise object_too_large()


async def read_body(request: web.Request, limit: int = MAX_REQUEST_BODY) -> bytes:
    """The request body, read up to ``limit`` bytes: 413 as soon as it is longer, without reading the rest."""
    if request.content_length is not None and request.content_length > limit:
        raise request_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise request_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def summarize(data: bytes, max_length: int = 30) -> str:
    """apiserver's ``summarizeData``: a JSON object's first bytes as text, anything else in hex."""
    if not data:
        return "<empty>"
    if data[:1] == b"{":
        text = data[:max_length].decode(errors="replace")
        return text + " ..." if len(data) > max_length else text
    return data[:max_length].hex() + (" ..." if len(data) > max_length else "")


def unrecognized(kind: str, error: str, body: bytes) -> StatusError:
    """The 400 ``transformDecodeError`` builds when a body fails before its kind is known."""
    return bad_request(f"the object provided is unrecognized (must be of type {kind}): {error} ({summarize(body)})")


def _allowed_alias_ratio(decodes: int) -> float:
    """go-yaml's ``allowedAliasRatio``: 99% of the decodes up to 400,000, falling to 10% at 4,000,000."""
    if decodes <= 400_000:
        return 0.99
    if decodes >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * (decodes - 400_000) / 3_600_000


def check_yaml(raw: bytes | str) -> None:
    """Refuse a YAML document that is nested deeper than :data:`MAX_DEPTH` or whose aliases expand too far.

    Walks the parser's events once (no objects are built) and counts what go-yaml's decoder counts:
    one decode per node, and for each alias the decodes of its anchor's whole (expanded) value, which
    are the alias decodes. go-yaml checks the ratio at every decode; within one alias expansion the
    alias share only grows, so checking after each alias reaches the same verdict.
    Raises ``ValueError`` with go-yaml's wording.
    """
    decodes = aliased = 0
    sizes: dict[str, int] = {}  # anchor -> decodes of its expanded value
    open_nodes: list[list[Any]] = []  # [decodes so far, anchor] of each collection being read
    for event in yaml.parse(raw, Loader=_LOADER):
        if isinstance(event, DocumentStartEvent):
            decodes += 1
        elif isinstance(event, AliasEvent):
            anchor = event.anchor or ""
            if any(node[1] == anchor for node in open_nodes):
                raise ValueError(f"yaml: anchor '{anchor}' value contains itself")
            size = 1 + sizes.get(anchor, 0)
            decodes, aliased = decodes + size, aliased + size - 1
            if open_nodes:
                open_nodes[-1][0] += size
            if aliased > 100 and decodes > 1000 and aliased / decodes > _allowed_alias_ratio(decodes):
                raise ValueError("yaml: document contains excessive aliasing")
        elif isinstance(event, CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise ValueError(f"yaml: exceeded max depth of {MAX_DEPTH}")
            decodes += 1
            open_nodes.append([1, event.anchor])
        elif isinstance(event, CollectionEndEvent):
            size, anchor = open_nodes.pop()
            if anchor:
                sizes[anchor] = size
            if open_nodes:
                open_nodes[-1][0] += size
        elif isinstance(event, NodeEvent):  # a scalar
            decodes += 1
            if event.anchor:
                sizes[event.anchor] = 1
            if open_nodes:
                open_nodes[-1][0] += 1


def check_depth(value: Any) -> None:
    """Raise ``ValueError`` when decoded JSON data nests deeper than :data:`MAX_DEPTH` (iteratively: no
    recursion, whatever the depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_DEPTH:
                    raise ValueError(f"exceeded max depth of {MAX_DEPTH}")
                stack.append((child, depth + 1))


def load_json(raw: bytes) -> Any:
    """``json.loads`` bounded in depth; ``ValueError`` for bad or too deep JSON (Python's parser would raise
    RecursionError on 100,000 brackets)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"exceeded max depth of {MAX_DEPTH}") from None
    check_depth(value)
    return value


def load_yaml(raw: bytes) -> Any:
    """``yaml.safe_load`` after :func:`check_yaml`; ``ValueError`` or ``yaml.YAMLError`` when refused."""
    check_yaml(raw)
    return yaml.load(raw, Loader=_LOADER)  # CSafeLoader or SafeLoader: safe


def decode_document(raw: bytes, media_type: str, kind: str) -> Any:
    """A JSON or YAML body, decoded within the limits; 400 with upstream's decode-failure wording otherwise.

    ``media_type`` is ``application/json`` (or empty) or a YAML type; ``kind`` names the expected kind.
    """
    is_yaml = "yaml" in media_type
    try:
        if is_yaml:
            return load_yaml(raw)
        return load_json(raw)
    except yaml.YAMLError as e:
        raise unrecognized(kind, f"yaml: {e}".replace("\n", " "), raw) from None
    except ValueError as e:
        error = str(e) if is_yaml else f"couldn't get version/kind; json parse error: {e}"
        raise unrecognized(kind, error, raw) from None
