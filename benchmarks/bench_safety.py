"""What the API server's safety costs and guarantees (issue 10): prints

- ``/readyz`` latency (p50, p99, max) while a 10 MB log, a 5,000-item LIST and the same LIST as a Table are
  served, against the idle baseline; the goal is a ``/readyz`` answer within 100 ms throughout;
- the time to refuse a "billion laughs" YAML and 100,000 nested brackets (goal: < 1 s, a 4xx);
- fuzz examples per second (tests/sandbox/apifuzz.py's requests against every route);
- the cost of the limits: pod create → Ready p50/p99 with and without ``resources.limits``, and the CPU a
  spinning pod limited to 100m takes over 10 s (goal: about 10 % of a core): bench_limits.py's report, on a real
  1-node sandbox of its own (``--samples 0`` leaves it out).

It runs a real API server (the daemon's ApiServer and ServerThread over HTTPS, no controllers or kubelets:
tests/sandbox/apiserver_harness.py), so the numbers are the API server's alone: for the latencies in a process
of its own, as kubectl would reach it (a client in the same process would share its GIL); for the fuzz rate in
this process, whose check reads the store.

    PYTHONPATH=. python benchmarks/bench_safety.py [--items 5000] [--log-mb 10] [--fuzz 300] [--samples 20]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench_limits import limits_report
from hypothesis import HealthCheck, given, settings

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.logs import PodLogs
from tests.sandbox import apifuzz
from tests.sandbox.apiserver_harness import Client, LiveApi, serve

CONFIGMAPS = RESOURCES.served("", "configmaps")
PODS = RESOURCES.served("", "pods")
NS = "default"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


def _readyz_while(api: Client, load: Callable[[], None]) -> tuple[list[float], float]:
    """``/readyz`` latencies (ms) polled on their own connection while ``load`` runs, and ``load``'s seconds."""
    samples: list[float] = []
    done = threading.Event()

    def poll() -> None:
        conn = api.connection()
        while not done.is_set():
            started = time.perf_counter()
            conn.request("GET", "/readyz")
            conn.getresponse().read()
            samples.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)
        conn.close()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.05)
    started = time.perf_counter()
    load()
    elapsed = time.perf_counter() - started
    done.set()
    poller.join()
    return samples, elapsed


def _fill(api: LiveApi, items: int, log_mb: int) -> None:
    """``items`` ConfigMaps of about 2 KB (a LIST of about 10 MB) and a pod with a ``log_mb`` MB log."""
    payload = {f"key-{k}": "v" * 180 for k in range(10)}
    for i in range(items):
        api.core.store.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i:05d}", "namespace": NS}, "data": payload})
    pod = {"metadata": {"name": "chatty"}, "spec": {"containers": [{"name": "c", "image": "docker.io/x/y:1"}]}}
    created = api.core.create(PODS, NS, pod)[0]
    running = {"containerStatuses": [{"name": "c", "restartCount": 0, "state": {"running": {}}}]}
    api.core.store.update(PODS, {**created, "status": running}, check_rv=False)
    directory = PodLogs(api.log_dir).directory(created, "c")
    directory.mkdir(parents=True, exist_ok=True)
    line = "2026-01-01T00:00:00.000000000Z stdout F " + "x" * 100 + "\n"
    (directory / "0.log").write_text(line * (log_mb * 1024 * 1024 // len(line)))


def readyz_under_load(api: Client, items: int = 5000, log_mb: int = 10) -> None:
    """Print /readyz latency idle and while a big log, a big LIST and a big Table are served (the server filled
    by :func:`_fill`)."""
    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    loads: dict[str, Callable[[], None]] = {
        "idle": lambda: time.sleep(1.0),
        f"GET a {log_mb} MB log": lambda: _expect_ok(api, f"/api/v1/namespaces/{NS}/pods/chatty/log"),
        f"LIST {items} ConfigMaps": lambda: _expect_ok(api, f"/api/v1/namespaces/{NS}/configmaps"),
        f"LIST {items} as a Table": lambda: _expect_ok(api, f"/api/v1/namespaces/{NS}/configmaps", table),
    }
    print("/readyz latency (ms) while ... is served  [goal: max < 100 ms]")
    for label, load in loads.items():
        samples, elapsed = _readyz_while(api, load)
        print(
            f"  {label:<28} p50 {statistics.median(samples):6.1f}  p99 {percentile(samples, 99):6.1f}  "
            f"max {max(samples):6.1f}  ({len(samples)} probes; the load took {elapsed * 1000:.0f} ms)"
        )


def _expect_ok(api: Client, path: str, headers: dict[str, str] | None = None) -> None:
    reply = api.call("GET", path, headers=headers)
    assert reply.status == 200, reply.body[:300]


def bombs(api: Client) -> None:
    """Print how fast the request bombs are refused."""
    path = f"/api/v1/namespaces/{NS}/configmaps"
    cases = {
        "billion laughs (YAML)": (apifuzz.laughs(), "application/yaml"),
        "100,000 nested brackets (JSON)": (b'{"a":' + b"[" * 100_000, "application/json"),
        "100,000 nested brackets (YAML)": (b"a: " + b"[" * 100_000, "application/yaml"),
    }
    print("request bombs  [goal: a 4xx in < 1 s]")
    for label, (body, content_type) in cases.items():
        reply = api.call("POST", path, body, content_type=content_type)
        print(f"  {label:<32} {reply.status} in {reply.seconds * 1000:7.1f} ms")


def fuzz_rate(api: LiveApi, examples: int = 300) -> None:
    """Print how many fuzz examples per second run against every route (each checked as the test checks it)."""
    count = 0

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(request=apifuzz.requests())
    def run(request: apifuzz.Request) -> None:
        nonlocal count
        apifuzz.check(api, request)
        count += 1

    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    print(f"fuzz: {count} examples in {elapsed:.1f} s = {count / elapsed:.0f} examples/s (no 5xx, no change on a 4xx)")


def _serve_filled(root: Path, items: int, log_mb: int) -> None:
    """The server process: serve, fill, print the address and CA, run until stdin closes."""
    api, stop = serve(root)
    _fill(api, items, log_mb)
    print(json.dumps({"url": api.url, "ca": str(root / "ca.crt")}), flush=True)
    sys.stdin.read()
    stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--log-mb", type=int, default=10)
    parser.add_argument("--fuzz", type=int, default=300)
    parser.add_argument("--samples", type=int, default=20, help="pods per case for the cost of limits (0: skip)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the CPU share is measured")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process's own mode
    args = parser.parse_args()
    if args.serve:
        _serve_filled(args.serve, args.items, args.log_mb)
        return
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, __file__, "--serve", tmp, "--items", str(args.items), "--log-mb", str(args.log_mb)]
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as server:
            assert server.stdout is not None and server.stdin is not None
            address = json.loads(server.stdout.readline())
            client = Client(address["url"], ssl.create_default_context(cafile=address["ca"]))
            bombs(client)
            readyz_under_load(client, args.items, args.log_mb)
            server.stdin.close()
    with tempfile.TemporaryDirectory() as tmp:
        api, stop = serve(Path(tmp))
        try:
            fuzz_rate(api, args.fuzz)
        finally:
            stop()
    if args.samples:
        limits_report(args.samples, args.seconds)


if __name__ == "__main__":
    main()
