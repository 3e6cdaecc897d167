"""SPDY/3.1 framing, the server's half: what ``kubectl port-forward`` speaks inside its stream.

kubectl 1.32 dials port-forward as a WebSocket whose subprotocol is ``SPDY/3.1+portforward.k8s.io`` and
carries a SPDY/3.1 session inside binary messages (client-go ``tools/portforward/tunneling_dialer.go``,
``tunneling_connection.go``); it falls back to a plain ``Upgrade: SPDY/3.1`` only when that upgrade fails.
Either way the bytes are the frames of draft-mbelshe-httpbis-spdy-00 (SPDY/3), as ``moby/spdystream``
(``spdy/types.go``, ``read.go``, ``write.go``) reads and writes them:

- a control frame: ``1`` bit control, 15 bits version (3), 16 bits type, 8 bits flags, 24 bits length;
- a data frame: ``0`` bit, 31 bits stream id, 8 bits flags (``FIN`` = 1), 24 bits length;
- header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib streams, one per direction for the whole
  session, primed with the protocol's fixed dictionary and flushed with Z_SYNC_FLUSH after each block.

Only what port-forward needs is here: SYN_STREAM in, SYN_REPLY/DATA/RST_STREAM/PING/GOAWAY out.
SETTINGS and WINDOW_UPDATE are read and ignored: spdystream does not enforce SPDY's flow-control windows
[inferred from its source: it sends data without waiting for WINDOW_UPDATE].

>>> codec = HeaderCodec()
>>> block = codec.encode({"streamtype": "data", "port": "8080"})
>>> HeaderCodec().decode(block)
{'streamtype': 'data', 'port': '8080'}
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
#: RST_STREAM status codes (spdystream ``RstStreamStatus``)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5
#: A frame longer than this ends the session: port-forward's frames are small (kubectl writes 32 KiB at most
#: [inferred]); 16 MiB, the protocol's limit, would let one frame hold that much of the API server's memory.
MAX_FRAME = 1 << 20
#: A header block that inflates past this is refused (a zlib bomb in a SYN_STREAM).
MAX_HEADER_BLOCK = 64 * 1024

# The SPDY/3 header-compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): 65 length-prefixed
# words, then a run of plain text. Its Adler-32 (0xE3C6A7C2) is checked below, as zlib checks it.
_WORDS = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2


class SpdyError(Exception):
    """The peer broke the protocol; the session ends (a GOAWAY with PROTOCOL_ERROR, then close)."""


class HeaderCodec:
    """One direction's header compression: a single zlib stream for the whole session."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._inflate = zlib.decompressobj(15, DICTIONARY)

    def encode(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            raw += struct.pack(">I", len(name)) + name.lower().encode()
            raw += struct.pack(">I", len(value.encode())) + value.encode()
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> dict[str, str]:
        """The block's headers; names lowercased as SPDY requires, several values of one name NUL-joined."""
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise SpdyError(f"bad header block: {e}") from None
        if self._inflate.unconsumed_tail:
            raise SpdyError("header block too large")
        try:
            (count,), at, headers = struct.unpack_from(">I", raw), 4, {}
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, at)
                name, at = raw[at + 4 : at + 4 + n].decode(), at + 4 + n
                (m,) = struct.unpack_from(">I", raw, at)
                value, at = raw[at + 4 : at + 4 + m].decode(), at + 4 + m
                headers[name.lower()] = value
        except (struct.error, UnicodeDecodeError) as e:
            raise SpdyError(f"bad header block: {e}") from None
        return headers


@dataclass
class Frame:
    """A parsed frame: ``kind`` 0 for DATA, else the control type; ``stream`` 0 for session frames."""

    kind: int
    flags: int
    stream: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0  # RST_STREAM / GOAWAY status, PING id, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class FrameReader:
    """Feed it bytes as they come (WebSocket messages split frames anywhere); it yields whole frames."""

    def __init__(self, codec: HeaderCodec) -> None:
        self._buffer = bytearray()
        self._codec = codec

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            word, flags_length = struct.unpack_from(">II", self._buffer)
            flags, length = flags_length >> 24, flags_length & 0xFFFFFF
            if length > MAX_FRAME:
                raise SpdyError(f"frame of {length} bytes is over the limit of {MAX_FRAME}")
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            if word & 0x80000000:
                version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
                if version != VERSION:
                    raise SpdyError(f"unsupported SPDY version {version}")
                frames.append(self._control(kind, flags, body))
            else:
                frames.append(Frame(0, flags, word & 0x7FFFFFFF, body))
        return frames

    def _control(self, kind: int, flags: int, body: bytes) -> Frame:
        try:
            if kind == SYN_STREAM:
                stream = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
                return Frame(kind, flags, stream, headers=self._codec.decode(body[10:]))
            if kind == HEADERS:
                stream = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
                return Frame(kind, flags, stream, headers=self._codec.decode(body[4:]))
            if kind in (RST_STREAM, WINDOW_UPDATE):
                stream, value = struct.unpack_from(">II", body)
                return Frame(kind, flags, stream & 0x7FFFFFFF, value=value)
            if kind == PING:
                return Frame(kind, flags, value=struct.unpack_from(">I", body)[0])
            if kind == GOAWAY:
                return Frame(kind, flags, value=struct.unpack_from(">I", body)[0] & 0x7FFFFFFF)
        except struct.error:
            raise SpdyError(f"control frame {kind} is too short") from None
        return Frame(kind, flags)  # SETTINGS, SYN_REPLY from a client, unknown types: read and ignored


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body


def syn_reply(codec: HeaderCodec, stream: int, headers: dict[str, str] | None = None) -> bytes:
    return _control(SYN_REPLY, 0, struct.pack(">I", stream) + codec.encode(headers or {}))


def rst_stream(stream: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream, status))


def ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def goaway(last_stream: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_stream, status))


def data(stream: int, payload: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload
