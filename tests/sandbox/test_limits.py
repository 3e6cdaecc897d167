"""resources.limits on wasm containers: modules that try to take the node's memory or CPU, and are held.

Real modules (WAT) run by wasmtime; the cluster test runs a pod through a real daemon and kubelet.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
import wasmtime

from labkit.sandbox.kubelet.limits import Limits, quantity
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, ModuleCache, WasmContainer
from tests.sandbox.test_kubelet import Cluster

MiB = 2**20
PAGE = 65536


def grow_module(total_mib: int, step_mib: int = 16, ignore_failure: bool = False) -> bytes:
    """Grows its memory *step_mib* at a time to *total_mib*, touching each new chunk; exits 3 when a grow fails
    (or, with *ignore_failure*, carries on spinning as a guest that handles its own OOM would)."""
    on_failure = "" if ignore_failure else "(call $exit (i32.const 3))"
    step = step_mib * MiB // PAGE
    return bytes(
        wasmtime.wat2wasm(f"""(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32)
        (loop $l
          (if (i32.eq (memory.grow (i32.const {step})) (i32.const -1)) (then {on_failure}))
          (i32.store (i32.sub (i32.mul (memory.size) (i32.const {PAGE})) (i32.const 4)) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const {total_mib // step_mib}))))
        {"(loop $spin (br $spin))" if ignore_failure else ""}))""")
    )


SPIN = bytes(wasmtime.wat2wasm('(module (func (export "_start") (loop $l (br $l))))'))


def start(module: bytes, limits: Limits) -> WasmContainer:
    container = WasmContainer(ContainerSpec(module, ["/m.wasm"], limits=limits))
    container.start()
    return container


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64Mi", 64 * MiB),
        ("128M", 128 * 10**6),
        ("1e9", 10**9),
        ("100m", Decimal("0.1")),
        ("2", 2),
        ("1.5Gi", 3 * 2**29),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert quantity(text) == value


def test_limits_of_a_container_round_up() -> None:
    limits = Limits.of({"resources": {"limits": {"memory": "1000.5", "cpu": "0.0001"}, "requests": {"cpu": "1"}}})
    assert limits == Limits(1001, 10)  # a quota is at least MinQuotaPeriod: 1 ms per 100 ms
    assert Limits.of({}) == Limits() == Limits.of({"resources": {"limits": {"memory": "0", "cpu": "0"}}})
    with pytest.raises(ValueError, match="must match the regular expression"):
        Limits.of({"resources": {"limits": {"memory": "lots"}}})


def test_memory_within_the_limit_runs() -> None:
    assert start(grow_module(256), Limits(memory_bytes=512 * MiB)).wait(20) == 0


def test_a_limited_module_with_data_segments_runs(tmp_path: Path) -> None:
    # data segments are what C and Rust modules have (wasi-demo): they must not need copy-on-write images
    module = bytes(
        wasmtime.wat2wasm(
            """(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1) (data (i32.const 100) "*")
      (func (export "_start") (call $exit (i32.load8_u (i32.const 100)))))"""
        )
    )
    cache = ModuleCache(tmp_path)
    for limits in (Limits(memory_bytes=64 * MiB), Limits(), Limits(memory_bytes=64 * MiB)):
        container = WasmContainer(ContainerSpec(module, ["/m.wasm"], limits=limits), cache=cache)
        container.start()
        assert container.wait(10) == 42, limits
    assert cache.stats["compiles"] == 1  # one artifact serves limited and unlimited engines


@pytest.mark.parametrize("ignore_failure", [False, True])
def test_growing_past_the_memory_limit_is_an_oom_kill(ignore_failure: bool) -> None:
    container = start(grow_module(256, ignore_failure=ignore_failure), Limits(memory_bytes=64 * MiB))
    # exit 3 (it saw the failed grow) or a spin that ignores it: either way the OOM killer ends it
    assert container.wait(10) == 137 and container.outcome == "oom-killed"
    assert container.guard.memory is not None and container.guard.memory.used <= 64 * MiB


@pytest.mark.parametrize("address", ["65536", "0x7ffffff0", "0xfffffff0"])
def test_a_limited_module_reading_outside_its_memory_traps_and_the_node_lives_on(address: str) -> None:
    # the memory creator reserves what wasmtime asks (4 GiB and the guard, inaccessible): every out-of-bounds
    # access must be wasmtime's trap, not a fault in the node's process
    module = bytes(
        wasmtime.wat2wasm(
            f'(module (memory (export "memory") 1) (func (export "_start") (drop (i32.load (i32.const {address})))))'
        )
    )
    errors: list[str] = []
    container = WasmContainer(
        ContainerSpec(module, ["/m.wasm"], limits=Limits(memory_bytes=64 * MiB)), on_stderr=errors.append
    )
    container.start()
    assert container.wait(10) == 137 and container.outcome == "trapped"
    assert any("out of bounds memory access" in line for line in errors)


def test_a_module_whose_initial_memory_exceeds_the_limit_is_oom_killed() -> None:
    big = bytes(wasmtime.wat2wasm('(module (memory 2048) (func (export "_start")))'))  # 128 MiB at start
    container = start(big, Limits(memory_bytes=64 * MiB))
    assert container.wait(10) == 137 and container.outcome == "oom-killed"


def test_a_cpu_limit_throttles_a_spinning_module_and_a_kill_is_still_prompt() -> None:
    # not a timing benchmark (benchmarks/bench_limits.py measures the share): the throttle engages, and however
    # loaded the machine, the limited guest never used more than its share plus one period's quota and a tick
    limited, free = start(SPIN, Limits(cpu_millis=100)), start(SPIN, Limits())
    deadline = time.monotonic() + 15
    while limited.guard.throttled_s == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limited.guard.throttled_s > 0
    for container in (limited, free):
        container.kill()
        assert container.wait(2) == 137 and container.outcome == "killed"
    wall = (limited.finished_at or 0.0) - (limited.started_at or 0.0)
    assert limited.guard.cpu_s <= 0.1 * wall + 0.01 + 0.05
    assert free.guard.throttled_s == 0


def test_a_64mi_pod_allocating_256mi_ends_oom_killed_and_restarts(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        image = cluster.import_module(grow_module(256), "hog")
        limits = {"limits": {"memory": "64Mi", "cpu": "500m"}}
        cluster.run_pod("hog", image=image, restartPolicy="OnFailure", container={"resources": limits})
        status = cluster.wait_for(
            lambda: (s := cluster.container("hog")).get("restartCount", 0) >= 1 and s,
            "the OOM-killed container to restart",
            timeout=20,
        )
        terminated = status["lastState"]["terminated"]
        assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    finally:
        cluster.close()
