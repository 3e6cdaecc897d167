"""Speed of the sandbox store: creates, GET, LIST and cross-thread watch delivery.

Run: ``/work/venv/bin/python benchmarks/bench_store.py [--pods 1000]``

Targets for the whole API server (the store must be a small fraction of each):
GET p50 <= 2 ms, watch delivery p50 <= 10 ms, 1,000 creates <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import parse_label_selector
from labkit.sandbox.api.store import Store

PODS = RESOURCES.served("", "pods")


def sample_pod(i: int) -> dict[str, Any]:
    """A pod of realistic size (about 1.5 KB of JSON): labels, one container with env and mounts, a status."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"web-{i:05d}",
            "namespace": f"lab-{i % 4}",
            "labels": {"app": "web" if i % 2 else "api", "app.kubernetes.io/part-of": "labkit", "labkit.io/lab": "05"},
            "annotations": {"module.wasm.image/variant": "compat-smart"},
        },
        "spec": {
            "runtimeClassName": "wasmedge",
            "nodeName": f"node-{i % 3}",
            "containers": [
                {
                    "name": "app",
                    "image": "ghcr.io/containerd/runwasi/wasi-demo-app:latest",
                    "args": ["/wasi-demo-app.wasm", "daemon"],
                    "env": [{"name": "DNS_SERVER", "value": "10.43.0.10:53"}, {"name": "RUST_LOG", "value": "info"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "volumeMounts": [{"name": "plugin", "mountPath": "/opt/wasmedge/plugin", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "plugin", "hostPath": {"path": "/opt/wasmedge/plugin", "type": "Directory"}}],
        },
        "status": {
            "phase": "Running",
            "podIP": f"127.1.{i // 250}.{i % 250 + 1}",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-11-27T00:00:00Z"}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-11-27T00:00:00Z"}},
                }
            ],
        },
    }


def percentiles(samples: list[float]) -> str:
    """p50 / p99 of seconds, printed in microseconds."""
    qs = statistics.quantiles(samples, n=100)
    return f"p50 {qs[49] * 1e6:8.1f} µs   p99 {qs[98] * 1e6:8.1f} µs"


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def watch_latency(store: Store, count: int) -> list[float]:
    """Write on a separate thread, one write at a time; measure until the loop holds the event."""
    latencies: list[float] = []
    seen = threading.Event()
    written: dict[int, float] = {}  # write number -> when it started

    def writer() -> None:
        body = store.get(PODS, "lab-0", "web-00000")
        assert body is not None, "the benchmark's pods were not created"
        for n in range(count):
            body["metadata"]["annotations"]["bench/n"] = str(n)
            seen.clear()
            written[n] = time.perf_counter()  # before the write, so the reader always finds it
            body = store.update(PODS, body)
            seen.wait(5)

    with store.watch(PODS, "lab-0", since_rv=store.rv) as watcher:
        thread = threading.Thread(target=writer)
        thread.start()
        for n in range(count):
            event = await watcher.next(5.0)
            arrived = time.perf_counter()
            assert event is not None, "a watch event did not arrive within 5 s"
            latencies.append(arrived - written[n])  # one writer, one write at a time: the n-th event is write n
            seen.set()
        thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "state.db") as store:
        start = time.perf_counter()
        for i in range(args.pods):
            store.create(PODS, sample_pod(i))
        total = time.perf_counter() - start
        print(f"create {args.pods} pods: {total:.3f} s total ({total / args.pods * 1e6:.1f} µs each)")

        names = [(f"lab-{i % 4}", f"web-{i:05d}") for i in range(args.pods)]
        gets = iter(names * 10)
        print(f"GET                  {percentiles(timed(lambda: store.get(PODS, *next(gets)), len(names) * 10))}")
        print(f"LIST all {args.pods:5d}       {percentiles(timed(lambda: store.list(PODS), 50))}")
        web = parse_label_selector("app=web")
        print(f"LIST app=web (half)  {percentiles(timed(lambda: store.list(PODS, label_selector=web), 50))}")
        print(f"LIST limit=500 page  {percentiles(timed(lambda: store.list(PODS, limit=500), 50))}")
        print(f"watch delivery       {percentiles(asyncio.run(watch_latency(store, 500)))}  (writer thread -> loop)")


if __name__ == "__main__":
    main()
