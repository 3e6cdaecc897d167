"""Read a WebAssembly binary in pure Python: imports, exports, memories, custom sections.

The labs use it to show *why* a module fails to link (its ``wasi_ephemeral_nn``
imports), to tell a core module from a component, and to validate modules
before packaging them. Its import list agrees with ``wasm-objdump -x -j Import``.

>>> info = inspect(module_path("wasi-demo"))            # doctest: +SKIP
>>> [i.name for i in info.imports_from("wasi_snapshot_preview1")][:2]   # doctest: +SKIP
['args_get', 'args_sizes_get']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import WasmError

MAGIC = b"\0asm"
#: Bytes 4..8 of the header: version 1 / layer 0 is a core module; layer 1 a component.
CORE_VERSION = b"\x01\x00\x00\x00"

VALUE_TYPES = {
    0x7F: "i32",
    0x7E: "i64",
    0x7D: "f32",
    0x7C: "f64",
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
}
EXTERNAL_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
SECTION_NAMES = {
    0: "custom",
    1: "type",
    2: "import",
    3: "function",
    4: "table",
    5: "memory",
    6: "global",
    7: "export",
    8: "start",
    9: "element",
    10: "code",
    11: "data",
    12: "datacount",
    13: "tag",
}


@dataclass(frozen=True)
class Limits:
    """Size limits of a memory (in 64 KiB pages) or a table (in elements)."""

    minimum: int
    maximum: int | None = None
    shared: bool = False
    memory64: bool = False

    def __str__(self) -> str:
        text = f"min={self.minimum}" + (f" max={self.maximum}" if self.maximum is not None else "")
        return text + (" shared" if self.shared else "") + (" i64" if self.memory64 else "")


@dataclass(frozen=True)
class Import:
    """One import: ``module.name`` of a *kind*; funcs carry their type index and signature."""

    module: str
    name: str
    kind: str
    type_index: int | None = None
    signature: str | None = None
    detail: str | None = None  # memory/table limits, global type

    def __str__(self) -> str:
        what = self.signature or self.detail or ""
        return f"{self.kind:<6} {self.module}.{self.name} {what}".rstrip()


@dataclass(frozen=True)
class Export:
    name: str
    kind: str
    index: int


@dataclass
class ModuleInfo:
    """What :func:`inspect` found. ``kind`` is ``"core"`` or ``"component"``."""

    kind: str
    version: int
    layer: int
    size: int
    types: list[str] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    memories: list[Limits] = field(default_factory=list)
    tables: list[Limits] = field(default_factory=list)
    start: int | None = None
    function_count: int = 0  # functions defined in the module (imports excluded)
    global_count: int = 0
    data_count: int = 0
    sections: list[str] = field(default_factory=list)
    custom_sections: list[str] = field(default_factory=list)
    producers: dict[str, dict[str, str]] = field(default_factory=dict)
    module_name: str | None = None

    def imports_from(self, module: str) -> list[Import]:
        """The imports whose module is *module*, e.g. ``"wasi_ephemeral_nn"``."""
        return [i for i in self.imports if i.module == module]

    @property
    def import_modules(self) -> list[str]:
        """Distinct import module names, in first-seen order."""
        return list(dict.fromkeys(i.module for i in self.imports))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def signature(params: list[str], results: list[str]) -> str:
    """Format a function type like wasm-objdump: ``(i32, i32) -> i32``; no results is ``nil``.

    >>> signature(["i32", "i64"], [])
    '(i32, i64) -> nil'
    """
    result = "nil" if not results else results[0] if len(results) == 1 else f"({', '.join(results)})"
    return f"({', '.join(params)}) -> {result}"


class _Reader:
    """A cursor over wasm bytes with LEB128 decoding; errors carry the offset."""

    def __init__(self, data: bytes | memoryview, origin: str, base: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.origin = origin
        self.base = base  # offset of data[0] in the file, for error messages

    def fail(self, what: str) -> WasmError:
        return WasmError(
            f"{self.origin} is not a valid wasm module: {what} at byte offset {self.base + self.pos}",
            "rebuild the module (labkit apps build, or your compiler) and check it with wasm-validate",
        )

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"a length of {n} runs past the end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        pos = self.pos
        if pos < len(self.data) and self.data[pos] < 0x80:  # fast path: most numbers fit in one byte
            self.pos = pos + 1
            return self.data[pos]
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise self.fail("LEB128 number too long")

    def name(self) -> str:
        raw = bytes(self.bytes(self.u32()))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a name that is not UTF-8") from None

    def value_type(self) -> str:
        code = self.byte()
        if code in VALUE_TYPES:
            return VALUE_TYPES[code]
        if code in (0x63, 0x64):  # (ref null? heaptype) from the GC/function-references proposals
            self.s33()
            return "ref"
        raise self.fail(f"unknown value type 0x{code:02x}")

    def s33(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result - (1 << shift) if b & 0x40 else result

    def limits(self) -> Limits:
        flags = self.byte()
        if flags > 0x07:
            raise self.fail(f"unknown limits flags 0x{flags:02x}")
        minimum = self.u32()
        maximum = self.u32() if flags & 0x01 else None
        return Limits(minimum, maximum, shared=bool(flags & 0x02), memory64=bool(flags & 0x04))

    def global_type(self) -> str:
        vt = self.value_type()
        mutable = self.byte()
        return f"{vt} mutable={mutable}"


def describe_bytes(head: bytes) -> str:
    """Guess what a file is from its first bytes, for error messages.

    >>> describe_bytes(b"\\x7fELF\\x02")
    'an ELF executable or library (native code, not wasm)'
    """
    if not head:
        return "an empty file"
    signatures = [
        (b"\x7fELF", "an ELF executable or library (native code, not wasm)"),
        (b"MZ", "a Windows PE executable"),
        (b"\x1f\x8b", "a gzip archive (an image layer or .tar.gz? unpack it first)"),
        (b"PK\x03\x04", "a zip archive"),
        (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
        (b"#!", "a script (starts with #!)"),
    ]
    for magic, what in signatures:
        if head.startswith(magic):
            return what
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive (an OCI image? use `labkit image` commands, or read_image())"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8].hex(' ')}"
    stripped = text.lstrip()
    if stripped.startswith(("(module", "(component", ";;")):
        return "WebAssembly text format (WAT), not a binary module"
    if stripped.startswith(("{", "[")):
        return "a JSON text file"
    return "a text file"


def _fix_for(head: bytes) -> str:
    if describe_bytes(head).startswith("WebAssembly text"):
        return "convert it with `wat2wasm FILE.wat -o FILE.wasm` (wabt) or wasmtime.wat2wasm()"
    return (
        "point to a .wasm binary: build one with `labkit apps build` or "
        "`clang --target=wasm32-wasi`, or use labkit.wasm.module_path('wasi-demo')"
    )


def load_bytes(path_or_bytes: str | Path | bytes, origin: str | None = None) -> tuple[bytes, str]:
    """The bytes of a module given as a path or as bytes, plus a name for messages."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), origin or "the given bytes"
    path = Path(path_or_bytes)
    try:
        return path.read_bytes(), origin or str(path)
    except FileNotFoundError:
        raise WasmError(
            f"wasm module {path} does not exist", "check the path; build the kit's modules with `labkit apps build`"
        ) from None
    except IsADirectoryError:
        raise WasmError(f"{path} is a directory, not a wasm module", "point to the .wasm file inside it") from None
    except PermissionError:
        raise WasmError(
            f"cannot read {path}: permission denied", "make the file readable, or copy it somewhere you can read"
        ) from None


def check_header(data: bytes, origin: str) -> tuple[int, int]:
    """Validate the 8-byte header; return ``(version, layer)`` or raise :class:`WasmError`."""
    if not data.startswith(MAGIC):
        raise WasmError(
            f"{origin} is not a WebAssembly binary: it looks like {describe_bytes(data[:512])} "
            f"(first bytes {data[:8].hex(' ') or 'none'}, a wasm module starts with 00 61 73 6d)",
            _fix_for(data[:512]),
        )
    if len(data) < 8:
        raise WasmError(f"{origin} is a truncated wasm module ({len(data)} bytes, header needs 8)", _fix_for(data))
    version = int.from_bytes(data[4:6], "little")
    layer = int.from_bytes(data[6:8], "little")
    return version, layer


def inspect(path_or_bytes: str | Path | bytes, *, origin: str | None = None) -> ModuleInfo:
    """Parse a wasm binary (a path or its bytes) into a :class:`ModuleInfo`.

    Raises :class:`~labkit.errors.WasmError` naming the file and what it looks
    like when it is not wasm, or the offset where a malformed module breaks.
    """
    data, origin = load_bytes(path_or_bytes, origin)
    version, layer = check_header(data, origin)
    kind = "core" if data[4:8] == CORE_VERSION else "component" if layer == 1 else "unknown"
    info = ModuleInfo(kind=kind, version=version, layer=layer, size=len(data))
    reader = _Reader(data, origin)
    reader.pos = 8
    while not reader.at_end():
        section_id = reader.byte()
        size = reader.u32()
        start = reader.pos
        body = _Reader(reader.bytes(size), origin, base=start)
        if section_id == 0:
            _custom_section(body, info)
            continue
        if kind != "core":
            # Component sections use other ids; only custom sections are read.
            info.sections.append(f"component-section-{section_id}")
            continue
        name = SECTION_NAMES.get(section_id)
        if name is None:
            reader.pos = start
            raise reader.fail(f"unknown section id {section_id}")
        info.sections.append(name)
        handler = _SECTION_HANDLERS.get(section_id)
        if handler:
            handler(body, info)
    return info


def _type_section(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.u32()):
        form = r.byte()
        if form != 0x60:
            raise r.fail(f"type form 0x{form:02x} (GC proposal types are not supported)")
        params = [r.value_type() for _ in range(r.u32())]
        results = [r.value_type() for _ in range(r.u32())]
        info.types.append(signature(params, results))


def _import_section(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.u32()):
        module, name = r.name(), r.name()
        code = r.byte()
        kind = EXTERNAL_KINDS.get(code)
        if kind == "func":
            index = r.u32()
            sig = info.types[index] if index < len(info.types) else None
            info.imports.append(Import(module, name, kind, type_index=index, signature=sig))
        elif kind == "table":
            elem = r.value_type()
            info.imports.append(Import(module, name, kind, detail=f"{elem} {r.limits()}"))
        elif kind == "memory":
            limits = r.limits()
            info.memories.append(limits)
            info.imports.append(Import(module, name, kind, detail=str(limits)))
        elif kind == "global":
            info.imports.append(Import(module, name, kind, detail=r.global_type()))
        elif kind == "tag":
            r.byte()  # attribute, always 0 (exception)
            index = r.u32()
            info.imports.append(Import(module, name, kind, type_index=index))
        else:
            raise r.fail(f"unknown import kind 0x{code:02x} for {module}.{name}")


def _function_section(r: _Reader, info: ModuleInfo) -> None:
    info.function_count = r.u32()


def _table_section(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.u32()):
        r.value_type()
        info.tables.append(r.limits())


def _memory_section(r: _Reader, info: ModuleInfo) -> None:
    info.memories.extend(r.limits() for _ in range(r.u32()))


def _global_section(r: _Reader, info: ModuleInfo) -> None:
    info.global_count = r.u32()


def _export_section(r: _Reader, info: ModuleInfo) -> None:
    for _ in range(r.u32()):
        name = r.name()
        code = r.byte()
        info.exports.append(Export(name, EXTERNAL_KINDS.get(code, f"kind-{code}"), r.u32()))


def _start_section(r: _Reader, info: ModuleInfo) -> None:
    info.start = r.u32()


def _data_section(r: _Reader, info: ModuleInfo) -> None:
    info.data_count = r.u32()


def _custom_section(r: _Reader, info: ModuleInfo) -> None:
    name = r.name()
    info.custom_sections.append(name)
    if name == "producers":
        for _ in range(r.u32()):
            field_name = r.name()
            info.producers[field_name] = {r.name(): r.name() for _ in range(r.u32())}
    elif name == "name":
        while not r.at_end():
            sub_id = r.byte()
            sub = _Reader(r.bytes(r.u32()), r.origin, base=r.base + r.pos)
            if sub_id == 0:
                info.module_name = sub.name()


_SECTION_HANDLERS = {
    1: _type_section,
    2: _import_section,
    3: _function_section,
    4: _table_section,
    5: _memory_section,
    6: _global_section,
    7: _export_section,
    8: _start_section,
    11: _data_section,
}
