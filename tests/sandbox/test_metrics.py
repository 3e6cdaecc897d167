"""The usage behind ``kubectl top``: a real wasm guest's CPU clock and linear memory as the kubelet samples them,
and the metrics API reading the nodes' usage files (garbage and stale ones included)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import wasmtime

import tests.sandbox.controllers_harness as harness
from labkit.sandbox.api.metrics import DISCOVERY_RESOURCES, MetricsApi
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.kubelet.usage import UsageSampler
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.sandbox.nodes import ensure_nodes
from labkit.sandbox.usagefiles import STALE_AFTER_S, write_sample
from tests.sandbox.controllers_harness import NS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.kubelet.pod_workers import PodWorker

core = harness.core  # the fixture the API tests take
PAGE = 65536

#: grows its memory from 1 to 3 pages, then spins, calling clock_time_get (a host call) each round
SPINNER = """
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (memory.grow (i32.const 2)))
    (loop $spin
      (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 16)))
      (br $spin))))
"""


@dataclass
class _Run:
    process: WasmContainer
    name: str = "main"
    restart_count: int = 0


@dataclass
class _Worker:
    containers: list[_Run]
    ns: str = NS
    name: str = "spin"


def test_the_sampler_reports_the_guests_cpu_rate_and_linear_memory() -> None:
    guest = WasmContainer(ContainerSpec(wasmtime.wat2wasm(SPINNER), ["/spin.wasm"]))
    guest.start()
    workers = cast("Mapping[str, PodWorker]", {"uid-1": _Worker([_Run(guest)])})
    try:
        sampler = UsageSampler("node-a")
        first = sampler.sample(workers)
        assert first["pods"] == [] and first["cpuNanoCores"] is None  # a rate needs two samples
        time.sleep(0.5)
        second = sampler.sample(workers)
    finally:
        guest.kill()
        guest.wait(5)
    (pod,) = second["pods"]
    (usage,) = pod["containers"]
    assert usage["memoryBytes"] == 3 * PAGE  # 1 page declared + 2 grown
    assert usage["cpuNanoCores"] > 0.1e9  # a spinning guest keeps (most of) a core busy
    assert 0.4 < pod["window"] < 2.0
    assert second["cpuNanoCores"] >= usage["cpuNanoCores"] * 0.5 and second["memoryBytes"] > 3 * PAGE
    assert guest.thread_id is None  # gone: it would not be sampled again


def _sample(node: str, cpu: int, memory: int) -> dict[str, Any]:
    return {
        "node": node,
        "timestamp": "2026-01-01T00:00:00Z",
        "window": 5.0,
        "cpuNanoCores": cpu,
        "memoryBytes": memory,
        "pods": [],
    }


def test_the_metrics_api_reads_sound_files_and_skips_garbage_and_stale_ones(core: ApiCore, tmp_path: Path) -> None:
    nodes = ensure_nodes(core, 3)
    write_sample(tmp_path, nodes[0], _sample(nodes[0], 12_000_000, 64 * 1024 * 1024))
    (tmp_path / f"{nodes[1]}.json").write_text('{"node": "x", "cpuNano')  # torn or hostile
    write_sample(tmp_path, nodes[2], _sample(nodes[2], 1, 1))
    old = time.time() - STALE_AFTER_S - 5
    os.utime(tmp_path / f"{nodes[2]}.json", (old, old))  # a stopped node's last words
    (tmp_path / "list.json").write_text("[1, 2]")
    api = MetricsApi(core, tmp_path)
    nodes_res, pods_res = DISCOVERY_RESOURCES
    listing = api.answer(nodes_res, None, None, "")
    assert listing["kind"] == "NodeMetricsList"
    assert [(m["metadata"]["name"], m["usage"], m["window"]) for m in listing["items"]] == [
        (nodes[0], {"cpu": "12m", "memory": "64Mi"}, "5s")
    ]
    with pytest.raises(StatusError) as missing:
        api.answer(nodes_res, None, nodes[2], "")
    assert (missing.value.code, missing.value.message) == (404, f'nodemetrics.metrics.k8s.io "{nodes[2]}" not found')
    with pytest.raises(StatusError) as nothing:
        api.answer(pods_res, NS, "ghost", "")
    assert nothing.value.message == f'podmetrics.metrics.k8s.io "{NS}/ghost" not found'


@pytest.mark.parametrize(
    "path", [["namespaces", "x", "nodes"], ["secrets"], ["pods", "a", "b"], [], ["namespaces", "..", "pods", "x", "y"]]
)
def test_paths_the_metrics_api_does_not_serve_are_404(path: list[str]) -> None:
    with pytest.raises(StatusError) as refused:
        MetricsApi.target(path)
    assert refused.value.code == 404
