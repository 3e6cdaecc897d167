"""Benchmarks for issue 5: app build time, image build time and archive size per layout, inspect time on a 5 MB module.

Run: python benchmarks/bench_wasm.py   (prints numbers; no pass/fail)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from labkit.wasm import build_apps, build_image, inspect, module_path

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time of *repeat* calls (at least one), and the last result."""
    started = time.perf_counter()
    result = fn()
    times = [time.perf_counter() - started]
    for _ in range(repeat - 1):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def name(text: str) -> bytes:
    data = text.encode()
    return leb(len(data)) + data  # wasm names are length-prefixed in bytes, not characters


def section(section_id: int, items: list[bytes]) -> bytes:
    body = leb(len(items)) + b"".join(items)
    return bytes([section_id]) + leb(len(body)) + body


def big_module(functions: int = 36_000, imports: int = 4_000, data_bytes: int = 200_000) -> bytes:
    """A valid core module of about 5 MB: many types, imports, functions, exports and a data segment."""
    kinds = [0x7F, 0x7E, 0x7D, 0x7C]
    types = [b"\x60" + leb(n % 9) + bytes(kinds[(n + i) % 4] for i in range(n % 9)) + b"\x01\x7f" for n in range(500)]
    import_items = [
        name("wasi_ephemeral_nn" if i % 2 else "wasi_snapshot_preview1") + name(f"host_fn_{i}") + b"\x00" + leb(i % 500)
        for i in range(imports)
    ]
    funcs = [leb(0) for _ in range(functions)]  # all of type 0: () -> i32 ... see the bodies
    memory = [b"\x01" + leb(32) + leb(256)]
    exports = [name(f"exported_function_number_{i}") + b"\x00" + leb(imports + i) for i in range(functions)]
    body = b"\x00" + b"\x01" * 90 + b"\x41\x00\x0b"  # no locals, 90 nops, i32.const 0, end
    code = [leb(len(body)) + body for _ in range(functions)]
    data = [b"\x00\x41\x00\x0b" + leb(data_bytes) + bytes(i % 251 for i in range(data_bytes))]
    types[0] = b"\x60\x00\x01\x7f"
    return b"\0asm\x01\x00\x00\x00" + b"".join(
        [
            section(1, types),
            section(2, import_items),
            section(3, funcs),
            section(5, memory),
            section(7, exports),
            section(10, code),
            section(11, data),
        ]
    )


def main() -> None:
    print(f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if shutil.which("clang"):
            seconds, apps = timed(lambda: build_apps(out_dir=out / "apps"), 3)
            sizes = ", ".join(f"{a.name} {a.size:,} B" for a in apps)
            print(f"apps build (clang -Oz, all apps): {seconds * 1000:.0f} ms median of 3 ({sizes})")
        else:
            print("apps build: skipped (clang not installed)")

        demo = module_path("wasi-demo")
        for layout in ("runwasi", "compat"):
            seconds, img = timed(partial(build_image, demo, "wasi-demo", "latest", layout, out / f"{layout}.tar"), 10)
            print(
                f"image build {layout:<7}: {seconds * 1000:.1f} ms median of 10, archive {img.size:,} B "
                f"(module {demo.stat().st_size:,} B)"
            )

        module = big_module()
        path = out / "big.wasm"
        path.write_bytes(module)
        if shutil.which("wasm-validate"):
            valid = subprocess.run(["wasm-validate", str(path)], capture_output=True, check=False).returncode == 0
            print(f"generated module: {len(module) / 1e6:.1f} MB, wasm-validate: {'ok' if valid else 'INVALID'}")
        seconds, info = timed(lambda: inspect(module), 5)
        print(
            f"inspect 5 MB module: {seconds * 1000:.0f} ms median of 5 "
            f"({len(info.imports):,} imports, {len(info.exports):,} exports, {info.function_count:,} functions)"
        )
        seconds, _ = timed(lambda: inspect(demo), 20)
        print(f"inspect wasi-demo ({demo.stat().st_size:,} B): {seconds * 1000:.2f} ms median of 20")
        if shutil.which("wasm-objdump"):
            seconds, _ = timed(
                lambda: subprocess.run(
                    ["wasm-objdump", "-x", "-j", "Import", str(path)], capture_output=True, check=True
                ),
                3,
            )
            print(f"for comparison, wasm-objdump -x -j Import on it: {seconds * 1000:.0f} ms median of 3")


if __name__ == "__main__":
    main()
