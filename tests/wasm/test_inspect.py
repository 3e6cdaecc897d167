"""The pure-Python wasm parser: agrees with wabt's wasm-objdump, and explains non-wasm input."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.errors import WasmError
from labkit.wasm import inspect
from labkit.wasm.apps import module_path

WAT_DIR = Path(__file__).parent / "wat"
needs_wabt = pytest.mark.skipif(
    shutil.which("wasm-objdump") is None or shutil.which("wat2wasm") is None,
    reason="wabt not installed (apt-get install wabt)",
)
_IMPORT_LINE = re.compile(r"^ - (func|memory|table|global|tag)\[\d+\] (.*) <- (.+)$")
_TYPE_LINE = re.compile(r"^ - type\[(\d+)\] (.+)$")


def objdump(path: Path, section: str) -> list[str]:
    out = subprocess.run(
        ["wasm-objdump", "-x", "-j", section, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [line for line in out.splitlines() if line.startswith(" - ")]


def objdump_imports(path: Path) -> list[tuple[str, str, str]]:
    """(kind, "module.name", what) per import line of ``wasm-objdump -x -j Import``; *what* is a
    signature for funcs (looked up in the Type section) or the limits/type text otherwise."""
    types = {int(m[1]): m[2] for line in objdump(path, "Type") if (m := _TYPE_LINE.match(line))}
    rows = []
    for line in objdump(path, "Import"):
        m = _IMPORT_LINE.match(line)
        assert m, f"unparsed wasm-objdump line: {line!r}"
        kind, middle, full_name = m.groups()
        if kind == "func":
            signature = re.match(r"sig=(\d+)", middle)
            assert signature is not None, middle
            what = types[int(signature[1])]
        else:
            what = " ".join(re.sub(r"<[^>]*>", "", middle).replace("pages: ", "").replace("type=", "").split())
            what = what.replace("initial=", "min=")
        rows.append((kind, full_name, what))
    return rows


def ours(path: Path) -> list[tuple[str, str, str]]:
    return [(i.kind, f"{i.module}.{i.name}", i.signature or i.detail or "") for i in inspect(path).imports]


@pytest.fixture(scope="module")
def wat_modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wat")
    built = {}
    for wat in sorted(WAT_DIR.glob("*.wat")):
        target = out / f"{wat.stem}.wasm"
        subprocess.run(["wat2wasm", "--enable-threads", "--debug-names", str(wat), "-o", str(target)], check=True)
        built[wat.stem] = target
    return built


@needs_wabt
def test_shipped_demo_imports_match_objdump() -> None:
    path = module_path("wasi-demo")
    expected = objdump_imports(path)
    assert ours(path) == expected
    assert {name.split(".")[0] for _, name, _ in expected} == {"wasi_snapshot_preview1"}


@needs_wabt
def test_rebuilt_demo_imports_match_objdump(rebuilt_dir: Path) -> None:
    path = rebuilt_dir / "wasi-demo.wasm"
    assert ours(path) == objdump_imports(path)


@needs_wabt
@pytest.mark.parametrize("name", ["wasi_nn_client", "wasmedge_sockets"])
def test_wat_modules_match_objdump(wat_modules: dict[str, Path], name: str) -> None:
    assert ours(wat_modules[name]) == objdump_imports(wat_modules[name])


@needs_wabt
def test_wasi_nn_module_details(wat_modules: dict[str, Path]) -> None:
    info = inspect(wat_modules["wasi_nn_client"])
    nn = {i.name: i.signature for i in info.imports_from("wasi_ephemeral_nn")}
    assert nn["compute"] == "(i32) -> i32"
    assert nn["load"] == "(i32, i32, i32, i32, i32) -> i32"
    assert info.import_modules == ["wasi_ephemeral_nn", "wasi_snapshot_preview1", "env"]
    assert info.imports_from("wasi_snapshot_preview1")[0].signature == "(i32) -> nil"
    assert info.start == 8  # 7 imported funcs, then $main (7), $noop (8)
    assert [(e.name, e.kind, e.index) for e in info.exports] == [
        ("_start", "func", 7),
        ("tbl", "table", 0),
        ("gm2", "global", 1),
    ]
    assert [str(m) for m in info.memories] == ["min=1 max=16"]
    assert info.module_name == "nn_client"
    assert info.function_count == 2 and info.kind == "core"


@needs_wabt
def test_sockets_module_shared_memory_and_multivalue(wat_modules: dict[str, Path]) -> None:
    info = inspect(wat_modules["wasmedge_sockets"])
    assert info.memories[0].shared and info.memories[0].maximum == 2
    assert "() -> (i32, i64)" in info.types
    assert "sock_getaddrinfo" in {i.name for i in info.imports_from("wasi_snapshot_preview1")}


def _custom(name: str, payload: bytes) -> bytes:
    body = _name(name) + payload
    return b"\x00" + _leb(len(body)) + body


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _name(text: str) -> bytes:
    return _leb(len(text.encode())) + text.encode()


EMPTY_MODULE = b"\x00asm\x01\x00\x00\x00"


def test_producers_and_name_sections() -> None:
    producers = _leb(2) + _name("language") + _leb(1) + _name("C11") + _name("") + _name("processed-by") + _leb(2)
    producers += _name("clang") + _name("14.0.6") + _name("labkit") + _name("0.1")
    module_name = b"\x00" + _leb(len(_name("demo"))) + _name("demo")
    info = inspect(
        EMPTY_MODULE
        + _custom("producers", producers)
        + _custom("name", module_name)
        + _custom(".debug_info", b"\x01\x02")
    )
    assert info.custom_sections == ["producers", "name", ".debug_info"]
    assert info.producers == {"language": {"C11": ""}, "processed-by": {"clang": "14.0.6", "labkit": "0.1"}}
    assert info.module_name == "demo"


def test_component_is_told_apart_from_core_module() -> None:
    info = inspect(b"\x00asm\x0d\x00\x01\x00" + _custom("producers", _leb(0)))
    assert (info.kind, info.version, info.layer) == ("component", 13, 1)
    assert info.imports == [] and info.custom_sections == ["producers"]
    assert inspect(EMPTY_MODULE).kind == "core"


@pytest.mark.parametrize(
    ("data", "looks_like", "fix"),
    [
        (Path(sys.executable).resolve().read_bytes()[:4096], "an ELF executable", "labkit apps build"),
        (b"(module (func))\n", "WebAssembly text format (WAT)", "wat2wasm"),
        (b"apiVersion: v1\nkind: Pod\n", "a text file", "clang --target=wasm32-wasi"),
        (b"", "an empty file", "labkit apps build"),
    ],
)
def test_non_wasm_file_is_named_with_what_it_looks_like(tmp_path: Path, data: bytes, looks_like: str, fix: str) -> None:
    path = tmp_path / "app.wasm"
    path.write_bytes(data)
    with pytest.raises(WasmError) as err:
        inspect(path)
    text = str(err.value)
    assert str(path) in text and looks_like in text and "fix:" in text and fix in text


def test_truncated_module_names_the_offset() -> None:
    data = module_path("wasi-demo").read_bytes()[:300]
    with pytest.raises(WasmError, match=r"not a valid wasm module: .* at byte offset \d+"):
        inspect(data)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(WasmError, match="does not exist"):
        inspect(tmp_path / "nope.wasm")
    with pytest.raises(WasmError, match="is a directory"):
        inspect(tmp_path)
