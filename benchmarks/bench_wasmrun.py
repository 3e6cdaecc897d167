"""Benchmark the sandbox wasm runner: start latency (cold / warm module cache) and kill latency.

Start latency is create → first instruction: from constructing a
``WasmContainer`` (and ``start()``) until the guest's first call into the host
(a ``bench.mark`` import provided by a host extension). Run:

    /work/venv/bin/python benchmarks/bench_wasmrun.py [--runs 50]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from labkit.sandbox.kubelet.wasmrun import WASMTIME_VERSION, ContainerSpec, ModuleCache, WasmContainer

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.extensions import PodContext

TINY_WAT = """(module
  (import "bench" "mark" (func $mark))
  (memory (export "memory") 1)
  (func (export "_start") (call $mark)))"""

# A libc program: marks on entering main, then sleeps like the wasi-demo daemon.
PROBE_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((import_module("bench"), import_name("mark"))) void mark(void);
int main(int argc, char **argv) {
  mark();
  if (argc > 1) for (;;) { printf("This is a song that never ends.\n"); fflush(stdout); sleep(1); }
  return 0;
}
"""
SPIN_WAT = """(module (import "bench" "mark" (func $mark)) (memory (export "memory") 1)
  (func (export "_start") (call $mark) (loop $l (br $l))))"""


class Mark:
    """Host extension recording when the guest first calls ``bench.mark``."""

    name, import_module = "bench-mark", "bench"

    def __init__(self) -> None:
        self.at: float | None = None
        self.event = threading.Event()

    def applies(self, context: PodContext) -> bool:
        return True

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store, context: PodContext) -> None:
        def mark() -> None:
            if self.at is None:
                self.at = time.perf_counter()
                self.event.set()

        linker.define_func("bench", "mark", wasmtime.FuncType([], []), mark)


def start_once(module: bytes, cache: ModuleCache, args: list[str]) -> tuple[float, WasmContainer]:
    mark = Mark()
    t0 = time.perf_counter()
    container = WasmContainer(ContainerSpec(module, args), cache=cache, extensions=[mark])
    container.start()
    if not mark.event.wait(30):
        raise RuntimeError(f"the module never reached its first instruction (exit {container.wait(1)})")
    assert mark.at is not None
    return mark.at - t0, container


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(label: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"  {label:<34} n={len(ms):<4} p50={statistics.median(ms):8.3f} ms  "
        f"p99={pct(ms, 99):8.3f} ms  max={max(ms):8.3f} ms"
    )


def bench_start(name: str, module: bytes, runs: int, workdir: Path) -> None:
    print(f"{name} ({len(module):,} bytes): create -> first instruction")
    cold = []
    for i in range(max(5, runs // 5)):
        t, c = start_once(module, ModuleCache(workdir / f"cold-{i}"), ["/m.wasm"])
        c.wait(10)
        cold.append(t)
    report("cold (compile + cache write)", cold)
    shared = workdir / "warm"
    start_once(module, ModuleCache(shared), ["/m.wasm"])[1].wait(10)
    disk = []
    for _ in range(runs):
        t, c = start_once(module, ModuleCache(shared), ["/m.wasm"])
        c.wait(10)
        disk.append(t)
    report("warm, disk artifact (fresh cache)", disk)
    cache = ModuleCache(shared)
    memory = []
    for _ in range(runs):
        t, c = start_once(module, cache, ["/m.wasm"])
        c.wait(10)
        memory.append(t)
    report("warm, in-memory artifact", memory)


def bench_kill(label: str, module: bytes, args: list[str], runs: int, workdir: Path, settle: float) -> None:
    cache = ModuleCache(workdir / "kill")
    latencies = []
    for _ in range(runs):
        _, c = start_once(module, cache, args)
        time.sleep(settle)  # let the guest get into its sleep / loop
        t0 = time.perf_counter()
        c.kill()
        if c.wait(5) != 137:
            raise RuntimeError("kill did not end the container with 137")
        latencies.append(time.perf_counter() - t0)
    report(label, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    runs = parser.parse_args().runs
    print(f"wasmtime-py {WASMTIME_VERSION}: runner benchmark, {runs} runs per warm case")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_start("tiny WAT module", bytes(wasmtime.wat2wasm(TINY_WAT)), runs, work / "tiny")
        clang = shutil.which("clang")
        probe: bytes | None = None
        if clang:
            (work / "probe.c").write_text(PROBE_C)
            build = [
                clang,
                "--target=wasm32-wasi",
                "-O2",
                "-Wl,--allow-undefined",
                "-o",
                str(work / "probe.wasm"),
                str(work / "probe.c"),
            ]
            subprocess.run(build, check=True)
            probe = (work / "probe.wasm").read_bytes()
            bench_start("C program (wasi-libc)", probe, runs, work / "c")
        else:
            print("clang not found: skipping the C program")
        print("kill -> exit code 137 reported by wait()")
        bench_kill("busy loop (epoch interruption)", bytes(wasmtime.wat2wasm(SPIN_WAT)), ["/spin.wasm"], 20, work, 0.05)
        if probe is not None:
            bench_kill("daemon asleep in poll_oneoff (1 s)", probe, ["/d.wasm", "daemon"], 20, work, 0.3)


if __name__ == "__main__":
    main()
