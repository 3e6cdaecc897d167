"""Safety benchmark (issue 10): what holding pods to their limits costs, and whether the CPU limit holds.

A real 1-node daemon and kubelet process running real wasm pods. Prints:

- ``limits_cost()``: pod create → Ready p50/p99 without ``resources.limits`` and with memory and CPU limits
  (a limited container gets its own memory creator and an epoch callback);
- ``cpu_share()``: the CPU the node process uses over 10 s while one spinning pod runs, limited to 100m
  (goal: about 10 % of a core) and unlimited (a whole core), from /proc/<pid>/stat.

    python benchmarks/bench_limits.py [--samples 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime
from bench_apiserver import Connection, percentile
from bench_kubelet import NS, WASI_DEMO, ReadyWatch, wasm_pod

from labkit.imagestore import ImageStore
from labkit.sandbox import client as daemon
from labkit.wasm.oci import build_image

NODE = "labkit-server-0"
LIMITS = {"limits": {"memory": "64Mi", "cpu": "500m"}}
SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'


def pod_with(name: str, image: str, resources: dict[str, Any] | None) -> dict[str, Any]:
    pod = wasm_pod(name, image)
    if resources:
        pod["spec"]["containers"][0]["resources"] = resources
    return pod


def ready_ms(api: Connection, watch: ReadyWatch, name: str, image: str, resources: dict[str, Any] | None) -> float:
    started = time.perf_counter()
    status, body = api.call("POST", f"/api/v1/namespaces/{NS}/pods", pod_with(name, image, resources))
    assert status == 201, body
    watch.wait([name])
    return (watch.ready[name] - started) * 1000


def limits_cost(api: Connection, watch: ReadyWatch, samples: int) -> dict[str, list[float]]:
    """Create → Ready in ms, one pod at a time, alternating without and with limits (so drift hits both)."""
    found: dict[str, list[float]] = {"without limits": [], "with limits": []}
    ready_ms(api, watch, "warmup", WASI_DEMO, None)  # the first pull and compile are not what we measure
    api.call("DELETE", f"/api/v1/namespaces/{NS}/pods/warmup")
    for i in range(samples):
        for label, resources in (("without limits", None), ("with limits", LIMITS)):
            name = f"{'lim' if resources else 'free'}-{i}"
            found[label].append(ready_ms(api, watch, name, WASI_DEMO, resources))
            api.call("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}")
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(api: Connection, watch: ReadyWatch, node_pid: int, image: str, cpu: str | None, seconds: float) -> float:
    """The node process's CPU use over *seconds* while one spinning pod (limited to *cpu*) runs, in cores."""
    name = f"spin-{cpu or 'free'}"
    ready_ms(api, watch, name, image, {"limits": {"cpu": cpu}} if cpu else None)
    time.sleep(0.5)  # past the start-up
    before, started = cpu_seconds(node_pid), time.monotonic()
    time.sleep(seconds)
    share = (cpu_seconds(node_pid) - before) / (time.monotonic() - started)
    api.call("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}")
    return share


def limits_report(samples: int, seconds: float) -> None:
    """Run limits_cost() and cpu_share() on a fresh sandbox and print them."""
    home = Path(tempfile.mkdtemp(prefix="labkit-bench-")) / "sandbox"
    home.mkdir(parents=True)
    spin = build_image(bytes(wasmtime.wat2wasm(SPIN_WAT)), "bench/spin", "v1", "runwasi", home / "spin.tar")
    ImageStore(home / "images").import_archive(spin.path)
    info = daemon.ensure_running(nodes=1, home=home)
    try:
        api = Connection(info)
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        watch = ReadyWatch(info)
        cost = limits_cost(api, watch, samples)
        node_pid = next(p.pid for p in info.node_processes if p.name == NODE)
        assert node_pid is not None
        idle_before = cpu_seconds(node_pid)
        time.sleep(2)
        idle = (cpu_seconds(node_pid) - idle_before) / 2
        limited = cpu_share(api, watch, node_pid, spin.ref, "100m", seconds)
        free = cpu_share(api, watch, node_pid, spin.ref, None, seconds)

        print("labkit sandbox safety benchmark (1 node, wasi-demo and a spinning WAT module)")
        for label, samples in cost.items():
            print(
                f"  create → Ready {label:<15} p50 {percentile(samples, 50):6.1f} ms  "
                f"p99 {percentile(samples, 99):6.1f} ms  ({len(samples)} pods; limits: memory 64Mi, cpu 500m)"
            )
        print(f"  node process CPU, idle:                      {idle * 100:5.1f} % of a core")
        print(
            f"  node process CPU, spinning pod limited 100m: {limited * 100:5.1f} % of a core over "
            f"{seconds:.0f} s   goal ≈ 10 %"
        )
        print(f"  node process CPU, spinning pod unlimited:    {free * 100:5.1f} % of a core")
    finally:
        daemon.stop(home=home)
        shutil.rmtree(home.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    limits_report(args.samples, args.seconds)


if __name__ == "__main__":
    main()
