"""Sandbox API server benchmark: a real daemon over HTTPS on loopback, the way kubectl reaches it.

Prints GET p50/p99, time to create 1,000 pods, LIST of 1,000 pods, watch delivery latency p50/p99
and the daemon's RSS at 1,000 pods. Goals (issues 3 and 9): GET p50 ≤ 2 ms, watch p50 ≤ 10 ms,
1,000 creates ≤ 1 s, RSS ≤ 300 MB.

    python benchmarks/bench_apiserver.py [--pods 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from labkit.sandbox import client as daemon


class Connection:
    """One keep-alive HTTPS connection with the admin token."""

    def __init__(self, info: daemon.SandboxInfo) -> None:
        root = info.kubeconfig.parent
        self.token = (root / "admin-token").read_text().strip()
        self.context = ssl.create_default_context(cafile=str(root / "ca.crt"))
        url = urlparse(info.server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port
        self.conn = self.open()

    def open(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)

    def call(self, method: str, path: str, body: dict[str, Any] | bytes | None = None) -> tuple[int, bytes]:
        """One request; a ``bytes`` body is sent as it is (already JSON)."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()


from labkit.measure import percentile  # noqa: E402  (bench_kubelet imports it from here too)


def pod(i: int) -> dict[str, Any]:
    # Bound to a node no kubelet runs, so the numbers are the API server's alone (no scheduling, no containers).
    return {
        "metadata": {"name": f"bench-{i:04d}", "labels": {"app": "bench"}},
        "spec": {
            "nodeName": "bench-absent-node",
            "containers": [{"name": "c", "image": "docker.io/labkit/wasi-demo:latest", "args": ["daemon"]}],
        },
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (``/proc/<pid>/stat`` fields 14 and 15): on a shared
    machine, what a process costs is steadier than how long it takes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_latency(info: daemon.SandboxInfo, samples: int) -> list[float]:
    """Time from sending a write to seeing its event on an open watch stream."""
    reader, writer = Connection(info), Connection(info)
    base = "/api/v1/namespaces/bench/configmaps"
    _status, body = writer.call("POST", base, {"metadata": {"name": "probe"}, "data": {"i": "0"}})
    rv = json.loads(body)["metadata"]["resourceVersion"]
    reader.conn.request(
        "GET",
        f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=120",
        headers={"Authorization": f"Bearer {reader.token}"},
    )
    stream = reader.conn.getresponse()
    seen: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            line = stream.readline()
            if not line:
                return
            event = json.loads(line)
            seen[event["object"]["data"]["i"]] = time.perf_counter()

    threading.Thread(target=read, daemon=True).start()
    sent: dict[str, float] = {}
    for i in range(1, samples + 1):
        sent[str(i)] = time.perf_counter()
        writer.conn.request(
            "PATCH",
            f"{base}/probe",
            body=json.dumps({"data": {"i": str(i)}}),
            headers={"Authorization": f"Bearer {writer.token}", "Content-Type": "application/merge-patch+json"},
        )
        writer.conn.getresponse().read()
        deadline = time.monotonic() + 5
        while str(i) not in seen and time.monotonic() < deadline:
            time.sleep(0.0002)
    done.set()
    return [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labkit-bench-"))
    info = daemon.ensure_running(nodes=3, home=home / "sandbox")
    try:
        api = Connection(info)
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
        bodies = [json.dumps(pod(i)).encode() for i in range(args.pods)]  # the client's encoding is not timed
        daemon_cpu = cpu_seconds(info.pid)
        started = time.perf_counter()
        for encoded in bodies:
            status, body = api.call("POST", "/api/v1/namespaces/bench/pods", encoded)
            assert status == 201, body
        create_s = time.perf_counter() - started
        create_cpu_ms = (cpu_seconds(info.pid) - daemon_cpu) / args.pods * 1000

        gets = []
        for i in range(500):
            t = time.perf_counter()
            status, _ = api.call("GET", f"/api/v1/namespaces/bench/pods/bench-{i % args.pods:04d}")
            gets.append((time.perf_counter() - t) * 1000)
            assert status == 200

        lists = []
        body = b"{}"
        for _ in range(10):
            t = time.perf_counter()
            status, body = api.call("GET", "/api/v1/namespaces/bench/pods")
            lists.append((time.perf_counter() - t) * 1000)
        count = len(json.loads(body)["items"])

        watch = watch_latency(info, 200)
        rss = rss_mb(info.pid)
        print(f"labkit sandbox API server benchmark ({args.pods} pods, 3 nodes, HTTPS on loopback)")
        print(
            f"  create {args.pods} pods:     {create_s:.2f} s  ({args.pods / create_s:.0f}/s)   goal ≤ 1 s   "
            f"(daemon CPU {create_cpu_ms:.2f} ms a create)"
        )
        get_p50, get_p99 = percentile(gets, 50), percentile(gets, 99)
        print(f"  GET pod:              p50 {get_p50:.2f} ms  p99 {get_p99:.2f} ms   goal p50 ≤ 2 ms")
        print(f"  LIST {count} pods:      p50 {statistics.median(lists):.0f} ms  max {max(lists):.0f} ms")
        print(
            f"  watch delivery:       p50 {percentile(watch, 50):.2f} ms  p99 {percentile(watch, 99):.2f} ms "
            f"({len(watch)} events)   goal p50 ≤ 10 ms"
        )
        print(f"  daemon RSS:           {rss:.0f} MB   goal ≤ 300 MB")
    finally:
        daemon.stop(home=home / "sandbox")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
