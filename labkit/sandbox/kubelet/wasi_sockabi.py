"""WasmEdge's socket ABI: numbers, struct layouts and bounds-checked guest memory (see wasi_sockets.py).

Everything here is copied from WasmEdge's sources, which define the ABI (there
is no spec beyond them):

- ``thirdparty/wasi/api.hpp``: errno values, ``__wasi_address_t`` {buf, buf_len} (8 B),
  ``__wasi_addrinfo_t`` (28 B), ``__wasi_sockaddr_t`` (12 B), subscription (48 B) and event (32 B);
- ``include/host/wasi/environ.h``: ``WasiAddrStorage`` (u16 family + 126 address bytes = 128 B),
  ``kIOVMax`` = 1024;
- ``lib/host/wasi/linux.h``: ``fromErrNo`` / ``fromEAIErrNo`` (host errno → WASI errno).

A guest pointer or length is hostile until checked: :class:`Guest` raises
:class:`Fault` for anything outside the guest's memory, and the host functions
turn that into ``__WASI_ERRNO_FAULT`` as WasmEdge's ``getSpan``/``getPointer``
checks do. Misaligned pointers give ``__WASI_ERRNO_ADDRNOTAVAIL`` (WasmEdge's
``isMisaligned`` checks in ``lib/host/wasi/wasifunc.cpp``, an odd choice kept as is).

>>> wasi_errno(OSError(111, "refused"))
14
>>> ADDRINFO.size, SOCKADDR.size, ADDRESS.size, SUBSCRIPTION.size, EVENT.size
(28, 12, 8, 48, 32)
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

import wasmtime

#: __wasi_errno_t in api.hpp order: the index is the value (SUCCESS = 0 ... NOTCAPABLE = 76, then WasmEdge's AI* 77-87).
_ERRNO_NAMES = (  # noqa: SIM905 - one line per api.hpp group reads better than 88 quoted names
    "SUCCESS 2BIG ACCES ADDRINUSE ADDRNOTAVAIL AFNOSUPPORT AGAIN ALREADY BADF BADMSG BUSY CANCELED CHILD "
    "CONNABORTED CONNREFUSED CONNRESET DEADLK DESTADDRREQ DOM DQUOT EXIST FAULT FBIG HOSTUNREACH IDRM ILSEQ "
    "INPROGRESS INTR INVAL IO ISCONN ISDIR LOOP MFILE MLINK MSGSIZE MULTIHOP NAMETOOLONG NETDOWN NETRESET "
    "NETUNREACH NFILE NOBUFS NODEV NOENT NOEXEC NOLCK NOLINK NOMEM NOMSG NOPROTOOPT NOSPC NOSYS NOTCONN NOTDIR "
    "NOTEMPTY NOTRECOVERABLE NOTSOCK NOTSUP NOTTY NXIO OVERFLOW OWNERDEAD PERM PIPE PROTO PROTONOSUPPORT "
    "PROTOTYPE RANGE ROFS SPIPE SRCH STALE TIMEDOUT TXTBSY XDEV NOTCAPABLE AIADDRFAMILY AIAGAIN AIBADFLAG "
    "AIFAIL AIFAMILY AIMEMORY AINODATA AINONAME AISERVICE AISOCKTYPE AISYSTEM"
).split()
ERRNO = {name: value for value, name in enumerate(_ERRNO_NAMES)}
SUCCESS, AGAIN, BADF, FAULT, INVAL = ERRNO["SUCCESS"], ERRNO["AGAIN"], ERRNO["BADF"], ERRNO["FAULT"], ERRNO["INVAL"]
ADDRNOTAVAIL, INPROGRESS, NETUNREACH, NOSYS = (
    ERRNO["ADDRNOTAVAIL"],
    ERRNO["INPROGRESS"],
    ERRNO["NETUNREACH"],
    ERRNO["NOSYS"],
)

# Host errno names that differ from WASI's (glibc aliases: EWOULDBLOCK = EAGAIN, EOPNOTSUPP = ENOTSUP).
_HOST_ALIASES = {"EOPNOTSUPP": "NOTSUP", "EWOULDBLOCK": "AGAIN", "EDEADLOCK": "DEADLK"}
# getaddrinfo's EAI_* codes (negative on glibc) → WASI, as fromEAIErrNo.
_EAI = {
    getattr(socket, f"EAI_{host}"): ERRNO[wasi]
    for host, wasi in (
        ("ADDRFAMILY", "AIADDRFAMILY"),
        ("AGAIN", "AIAGAIN"),
        ("BADFLAGS", "AIBADFLAG"),
        ("FAIL", "AIFAIL"),
        ("FAMILY", "AIFAMILY"),
        ("MEMORY", "AIMEMORY"),
        ("NODATA", "AINODATA"),
        ("NONAME", "AINONAME"),
        ("SERVICE", "AISERVICE"),
        ("SOCKTYPE", "AISOCKTYPE"),
        ("SYSTEM", "AISYSTEM"),
    )
    if hasattr(socket, f"EAI_{host}")
}


def wasi_errno(err: OSError) -> int:
    """The WASI errno WasmEdge's ``fromErrNo`` (or ``fromEAIErrNo``) gives for a host error.

    Host errors WasmEdge has no case for are ``assumingUnreachable()`` upstream;
    here they become ``__WASI_ERRNO_IO`` [inferred: a value the guest can handle].
    """
    code = err.errno or 0
    if isinstance(err, socket.gaierror):
        return _EAI.get(code, ERRNO["AIFAIL"])
    name = errno.errorcode.get(code, "")
    name = _HOST_ALIASES.get(name, name.removeprefix("E"))
    return ERRNO.get(name, ERRNO["IO"])


# -- enums (api.hpp) ---------------------------------------------------------------------------
AF_INET4, AF_INET6 = 1, 2  # __wasi_address_family_t (UNSPEC = 0, AF_UNIX = 3)
SOCK_ANY, SOCK_DGRAM, SOCK_STREAM = 0, 1, 2  # __wasi_sock_type_t
FILETYPE_SOCKET_STREAM = 6  # fromFileType(S_IFSOCK): WasmEdge reports every socket as a stream socket
FDFLAGS_NONBLOCK = 1 << 2
RIFLAGS_PEEK, RIFLAGS_WAITALL = 1, 2
ROFLAGS_TRUNCATED = 1
EVENTRWFLAGS_HANGUP = 1
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2
#: __wasi_sock_opt_so_t 0..14 → the host's SOL_SOCKET option (linux.h toSockOptSoName)
SOCKOPTS = (
    socket.SO_REUSEADDR,
    socket.SO_TYPE,
    socket.SO_ERROR,
    socket.SO_DONTROUTE,
    socket.SO_BROADCAST,
    socket.SO_SNDBUF,
    socket.SO_RCVBUF,
    socket.SO_KEEPALIVE,
    socket.SO_OOBINLINE,
    socket.SO_LINGER,
    socket.SO_RCVLOWAT,
    socket.SO_RCVTIMEO,
    socket.SO_SNDTIMEO,
    socket.SO_ACCEPTCONN,
    socket.SO_BINDTODEVICE,
)
#: __wasi_aiflags_t bits → the host's AI_* (linux.h toAIFlags)
AIFLAGS = (
    (1, socket.AI_PASSIVE),
    (2, socket.AI_CANONNAME),
    (4, socket.AI_NUMERICHOST),
    (8, socket.AI_NUMERICSERV),
    (16, socket.AI_V4MAPPED),
    (32, socket.AI_ALL),
    (64, socket.AI_ADDRCONFIG),
)
#: __wasi_protocol_t ↔ host protocol numbers (IPPROTO_IP, TCP, UDP)
PROTOCOLS = (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP)
#: socket rights (lib/host/wasi/vinode.cpp VINode::sockOpen / sockAccept)
RIGHTS_OPENED = (1 << 1) | (1 << 3) | (1 << 6) | sum(1 << b for b in range(27, 36))
RIGHTS_ACCEPTED = (1 << 1) | (1 << 3) | (1 << 6) | (1 << 27) | (1 << 28) | sum(1 << b for b in range(32, 36))

# -- layouts (api.hpp static_asserts) -----------------------------------------------------------
ADDRESS = struct.Struct("<II")  # __wasi_address_t: buf ptr, buf_len
IOVEC = struct.Struct("<II")  # __wasi_iovec_t / __wasi_ciovec_t: buf ptr, buf_len
#: __wasi_addrinfo_t: flags u16, family u8, socktype u8, protocol u8, addrlen @8, addr @12, canonname @16,
#: canonname_len @20, next @24
ADDRINFO = struct.Struct("<HBBB3xIIIII")
SOCKADDR = struct.Struct("<B3xII")  # __wasi_sockaddr_t: family u8, sa_data_len @4, sa_data ptr @8
SUBSCRIPTION = struct.Struct("<QB7xI4xQQH6x")  # userdata, tag, clock id | fd, timeout, precision, flags
EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags
FDSTAT = struct.Struct("<BxH4xQQ")  # filetype, flags, rights base, rights inheriting
ADDR_STORAGE = 128  # WasiAddrStorage: u16 family, then the address bytes
IOV_MAX = 1024  # kIOVMax
U16, U32 = struct.Struct("<H"), struct.Struct("<I")


class Fault(Exception):
    """A guest pointer or length that leaves the guest's memory (→ ``__WASI_ERRNO_FAULT``)."""


class Misaligned(Exception):
    """A misaligned guest pointer (→ ``__WASI_ERRNO_ADDRNOTAVAIL``, as WasmEdge answers)."""


def u32(value: int) -> int:
    """A wasm i32 argument as the unsigned value WasmEdge's ``uint32_t`` parameters see."""
    return value & 0xFFFFFFFF


class Guest:
    """The calling guest's linear memory, every access bounds-checked.

    Reads and writes go straight through the memory's base address (wasmtime-py's
    ``Memory.read``/``write`` ask wasmtime for base and size on every call, which
    is most of a small ``sock_recv``'s cost); the memory cannot grow or move while
    a host function runs, since the guest is not running.
    """

    def __init__(self, caller: wasmtime.Caller, memory: wasmtime.Memory | None = None) -> None:
        found = memory or caller.get("memory")
        if not isinstance(found, wasmtime.Memory):
            raise Fault("the guest exports no memory")
        self.memory, self.size, self._base = found, -1, 0
        self.refresh(caller)

    def refresh(self, caller: wasmtime.Caller) -> Guest:
        """Ready for another host call: the base address moves only when the memory grows, so a same size keeps it."""
        size = self.memory.data_len(caller)
        if size != self.size:
            self.size = size
            self._base = ctypes.cast(self.memory.data_ptr(caller), ctypes.c_void_p).value or 0
        return self

    @staticmethod
    def aligned(ptr: int, alignment: int) -> int:
        ptr = u32(ptr)
        if ptr % alignment:
            raise Misaligned(ptr)
        return ptr

    def _span(self, ptr: int, length: int) -> int:
        # a negative i32 length is a huge u32 one; a computed length (count * size) may exceed 32 bits: never wrap it
        ptr, length = u32(ptr), u32(length) if length < 0 else length
        if ptr + length > self.size:
            raise Fault(f"{length} bytes at {ptr:#x} leave the guest's {self.size} bytes")
        return ptr

    def read(self, ptr: int, length: int) -> bytes:
        start = self._span(ptr, length)
        return ctypes.string_at(self._base + start, u32(length) if length < 0 else length)

    def write(self, ptr: int, data: bytes | bytearray) -> None:
        start = self._span(ptr, len(data))
        ctypes.memmove(self._base + start, data if isinstance(data, bytes) else bytes(data), len(data))

    def view(self, ptr: int, length: int) -> memoryview:
        """The guest's bytes at *ptr* as a writable buffer, for socket calls to read into or send from in place.

        Valid during this host call only (the memory may move when the guest grows it later).
        """
        start = self._span(ptr, length)
        return memoryview((ctypes.c_char * length).from_address(self._base + start)).cast("B")

    def check(self, ptr: int, length: int) -> None:
        """Fail now (before any side effect) if an output span is out of bounds."""
        self._span(ptr, length)

    def unpack(self, layout: struct.Struct, ptr: int) -> tuple[int, ...]:
        return layout.unpack(self.read(ptr, layout.size))

    def put(self, layout: struct.Struct, ptr: int, *values: int) -> None:
        self.write(ptr, layout.pack(*values))

    def iovecs(self, ptr: int, count: int, cap: int) -> list[tuple[int, int]]:
        """An iovec array as (ptr, len) pairs, every buffer checked and the total capped at *cap* bytes.

        Capping is a short read/write, which stream sockets allow; it keeps a
        guest from making the host allocate gigabytes.
        """
        count = u32(count)
        if count > IOV_MAX:
            raise ValueError(count)
        raw = self.read(self.aligned(ptr, 4), count * IOVEC.size)
        vecs = []
        for k in range(count):
            buf, length = IOVEC.unpack_from(raw, k * IOVEC.size)
            self._span(buf, length)
            take = min(length, cap)
            cap -= take
            vecs.append((buf, take))
        return vecs

    def address(self, ptr: int) -> bytes:
        """The bytes a ``__wasi_address_t`` at *ptr* points to."""
        buf, length = self.unpack(ADDRESS, self.aligned(ptr, 4))
        return self.read(buf, length)
