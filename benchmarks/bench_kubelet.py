"""Sandbox kubelet benchmark: a real 3-node daemon running real wasm pods (wasi-demo, runtimeClassName wasmedge).

Prints pod create → Ready latency p50/p99 with a cold module cache (every pod's
module is new, so it is compiled) and a warm one (the same module again), then
the time for 100 pods spread over 3 nodes to be all Ready, and the RSS of the API
server (daemon) and of each node's kubelet process with them running, with the CPU
seconds each spent on those 100 pods (steadier than times on a shared machine).
Goals (issue 9): warm p50 ≤ 20 ms, 100 pods Ready ≤ 1 s.

    python benchmarks/bench_kubelet.py [--samples 20] [--pods 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_apiserver import Connection, cpu_seconds, percentile, rss_mb

from labkit import measure
from labkit.imagestore import ImageStore
from labkit.sandbox import client as daemon
from labkit.wasm.apps import module_path
from labkit.wasm.oci import build_image

NS = "bench"
WASI_DEMO = "docker.io/labkit/wasi-demo:latest"


def wasm_pod(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "runtimeClassName": "wasmedge",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "demo", "image": image, "imagePullPolicy": "IfNotPresent"}],
        },
    }


def ReadyWatch(info: daemon.SandboxInfo) -> measure.ReadyWatch:  # noqa: N802
    """labkit.measure's watch on one raw watch stream of the bench namespace's pods."""
    conn = Connection(info)
    conn.conn.request(
        "GET",
        f"/api/v1/namespaces/{NS}/pods?watch=true&timeoutSeconds=600",
        headers={"Authorization": f"Bearer {conn.token}"},
    )
    return measure.ReadyWatch(conn.conn.getresponse())


def distinct_images(home: Path, count: int) -> list[str]:
    """*count* images of wasi-demo, each with a different custom section, so each module compiles afresh."""
    base = module_path("wasi-demo").read_bytes()
    store = ImageStore(home / "images")
    refs = []
    for i in range(count):
        payload = b"\x05bench" + i.to_bytes(4, "little")  # custom section: name "bench", then 4 bytes
        module = base + b"\x00" + bytes([len(payload)]) + payload
        built = build_image(module, f"bench/cold{i}", "v1", "runwasi", home / f"cold{i}.tar")
        store.import_archive(built.path)
        refs.append(built.ref)
    return refs


def latencies(api: Connection, watch: measure.ReadyWatch, prefix: str, images: list[str]) -> list[float]:
    """Create → Ready in ms for one pod at a time (each deleted after, so the nodes stay quiet)."""
    names = [f"{prefix}-{i}" for i in range(len(images))]
    samples = []
    for name, image in zip(names, images, strict=True):

        def create(name: str, image: str = image) -> None:
            status, body = api.call("POST", f"/api/v1/namespaces/{NS}/pods", wasm_pod(name, image))
            assert status == 201, body

        samples += measure.create_to_ready(create, watch, [name])
        api.call("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--pods", type=int, default=100)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labkit-bench-")) / "sandbox"
    home.mkdir(parents=True)
    cold_images = distinct_images(home, args.samples)
    info = daemon.ensure_running(nodes=3, home=home)
    try:
        api = Connection(info)
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        watch = ReadyWatch(info)
        latencies(api, watch, "pull", [WASI_DEMO])  # the first pull (simulated registry) is not what we measure
        cold = latencies(api, watch, "cold", cold_images)
        warm = latencies(api, watch, "warm", [WASI_DEMO] * args.samples)

        running = daemon.status(home=home)
        processes = [(n.name, n.pid) for n in (running.node_processes if running else []) if n.pid is not None]
        pids = [("API server (daemon)", info.pid), *((f"kubelet {name}", pid) for name, pid in processes)]
        cpu_before = [cpu_seconds(pid) for _, pid in pids]
        names = [f"many-{i:03d}" for i in range(args.pods)]
        started = time.perf_counter()
        for name in names:
            status, body = api.call("POST", f"/api/v1/namespaces/{NS}/pods", wasm_pod(name, WASI_DEMO))
            assert status == 201, body
        watch.wait(names)
        all_ready_s = max(watch.ready[n] for n in names) - started
        cpu_used = [cpu_seconds(pid) - before for (_, pid), before in zip(pids, cpu_before, strict=True)]
        status, body = api.call("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dbench")
        per_node: dict[str, int] = {}
        for pod in json.loads(body)["items"]:
            per_node[pod["spec"]["nodeName"]] = per_node.get(pod["spec"]["nodeName"], 0) + 1

        print("labkit sandbox kubelet benchmark (3 nodes, wasi-demo daemon pods, runtimeClassName wasmedge)")
        print(
            f"  create → Ready, cold module cache: p50 {percentile(cold, 50):.0f} ms  "
            f"p99 {percentile(cold, 99):.0f} ms "
            f"({len(cold)} pods, each a new module)"
        )
        print(
            f"  create → Ready, warm module cache: p50 {percentile(warm, 50):.0f} ms  "
            f"p99 {percentile(warm, 99):.0f} ms "
            f"({len(warm)} pods)   goal p50 ≤ 20 ms"
        )
        print(
            f"  {args.pods} pods all Ready:            {all_ready_s:.2f} s   goal ≤ 1 s   "
            f"(per node: {', '.join(f'{k} {v}' for k, v in sorted(per_node.items()))})"
        )
        print(f"  per process, with {args.pods} pods running: RSS, and CPU seconds spent starting the {args.pods}")
        for (label, pid), cpu in zip(pids, cpu_used, strict=True):
            print(f"    {label} (pid {pid}): {rss_mb(pid):.0f} MB, {cpu:.2f} s CPU")
        print(f"    all processes: {sum(cpu_used):.2f} s CPU ({sum(cpu_used) / args.pods * 1000:.1f} ms a pod)")
    finally:
        daemon.stop(home=home)
        shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
