"""Load balancer benchmark: the wasm load balancer (wasm-apps/load-balancer in wasmtime, its own process) in front
of small Python HTTP backends (their own process), against the same backend reached directly.

Prints requests/s and p50/p99 latency through the load balancer and direct (the same client: CLIENTS threads,
one kept-alive connection each, small POSTs), measured in alternating rounds (direct, LB, direct, LB, ...) so that
a noisy neighbour slows both sides alike, and compared by their medians; the split error over 1,000 requests for
weights 3:1; and the time from a weight change (the llamaedge/weight annotation patched on a Service of a real
in-process API server) to the new weight in the load balancer's GET /api/services, with the service-watcher in
between. Goals (issue 14): throughput through the LB >= 70% of direct, p99 <= 2x direct; weight change < 2 s.

    python benchmarks/bench_loadbalancer.py [--seconds 3] [--rounds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps({"backend": self.server.server_port}).encode()  # type: ignore[attr-defined]
        # one write: head and body in separate segments would meet the client's delayed ACK (40 ms stalls)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(out)}\r\n\r\n"
        self.wfile.write(head.encode() + out)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve_backends(count: int) -> None:
    """Child process: count echo backends; prints their ports, then serves until stdin closes."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Echo) for _ in range(count)]
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(" ".join(str(s.server_port) for s in servers), flush=True)
    sys.stdin.read()


def serve_lb(port: int) -> None:
    """Child process: the wasm load balancer in wasmtime (as a sandbox node runs it)."""
    from tests.sandbox.test_wasi_sockets import start_app

    lines: list[str] = []
    container = start_app("load-balancer", f"127.0.0.1:{port}", sink=lines)
    while not any("listening" in line for line in lines):
        time.sleep(0.02)
    print("ready", flush=True)
    sys.stdin.read()
    container.kill()


def child(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def load(port: int, seconds: float, clients: int) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, failures) for `clients` kept-alive clients POSTing for `seconds`."""
    from labkit.measure import load as measure_load

    result = measure_load("127.0.0.1", port, seconds, clients)
    return result.requests_per_s, result.p50_ms, result.p99_ms, result.failures


def admin(port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body))
    reply = conn.getresponse()
    return reply.status, reply.read()


def split(port: int, ports: list[int]) -> Counter[int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen: Counter[int] = Counter()
    for _ in range(1000):
        conn.request("POST", "/v1/chat/completions", body=b"{}")
        seen[json.loads(conn.getresponse().read())["backend"]] += 1
    return seen


def weight_change(lb_port: int, rounds: int) -> list[float]:
    """Seconds from a patched llamaedge/weight annotation to the new weight in GET /api/services."""
    from kubernetes import client, config

    from labkit.apps.service_watcher import LoadBalancer, ServiceWatcher
    from tests.sandbox.test_service_watcher import Api, service, weight

    with tempfile.TemporaryDirectory() as tmp:
        api = Api(Path(tmp))
        core = client.CoreV1Api(config.new_client_from_config(str(Path(tmp) / "kubeconfig")))  # type: ignore[no-untyped-call]
        core.create_namespaced_service("default", service("bench-backend", "1"))  # type: ignore[arg-type]
        watcher = ServiceWatcher(core, LoadBalancer(f"http://127.0.0.1:{lb_port}"), resync=30, log=lambda _: None)
        watcher.start()

        def registered() -> int | None:
            entries = json.loads(admin(lb_port, "GET", "/api/services")[1])
            return next((e["weight"] for e in entries if e["name"] == "bench-backend"), None)

        while registered() != 1:
            time.sleep(0.01)
        took = []
        for i in range(rounds):
            value = 2 + i
            started = time.monotonic()
            core.patch_namespaced_service("bench-backend", "default", weight(str(value)))
            while registered() != value:
                time.sleep(0.002)
            took.append(time.monotonic() - started)
        watcher.stop()
        api.stop()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--serve-backends", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve-lb", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backends:
        return serve_backends(args.serve_backends)
    if args.serve_lb:
        return serve_lb(args.serve_lb)
    from tests.sandbox.test_wasi_sockets import free_port

    backends, ports_text = child("--serve-backends", "2")
    ports = [int(p) for p in ports_text.split()]
    lb_port = free_port()
    balancer, _ = child("--serve-lb", str(lb_port))
    try:
        admin(lb_port, "POST", "/api/register", {"name": "one", "weight": 1, "ip": "127.0.0.1", "port": ports[0]})
        rounds: dict[str, list[tuple[float, float, float, int]]] = {"direct": [], "load balancer": []}
        print(f"clients {args.clients}, {args.rounds} rounds of {args.seconds:g} s a side, POST /v1/chat/completions")
        for _ in range(args.rounds):
            for name, port in (("direct", ports[0]), ("load balancer", lb_port)):
                rounds[name].append(load(port, args.seconds, args.clients))
                rps, p50, p99, failed = rounds[name][-1]
                print(f"  {name:14}: {rps:7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  failed {failed}")
        median = {name: [statistics.median(r[k] for r in runs) for k in range(3)] for name, runs in rounds.items()}
        for name, (rps, p50, p99) in median.items():
            failed = sum(r[3] for r in rounds[name])
            print(f"{name:16}: {rps:7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  failed {failed} (medians)")
        direct, through = median["direct"], median["load balancer"]
        print(
            f"ratio           : throughput {through[0] / direct[0]:.0%} of direct (goal >= 70%), "
            f"p99 {through[2] / direct[2]:.2f}x direct (goal <= 2x)"
        )
        admin(lb_port, "POST", "/api/register", {"name": "one", "weight": 3, "ip": "127.0.0.1", "port": ports[0]})
        admin(lb_port, "POST", "/api/register", {"name": "two", "weight": 1, "ip": "127.0.0.1", "port": ports[1]})
        seen = split(lb_port, ports)
        share = seen[ports[0]] / 1000
        error = abs(share - 0.75) * 100
        print(f"split 3:1       : {seen[ports[0]]}/{seen[ports[1]]} of 1000, error {error:.1f} points")
        admin(lb_port, "DELETE", "/api/unregister/one")
        admin(lb_port, "DELETE", "/api/unregister/two")
        took = weight_change(lb_port, 10)
        print(
            f"weight change   : annotation -> GET /api/services p50 {statistics.median(took) * 1000:.0f} ms, "
            f"max {max(took) * 1000:.0f} ms over {len(took)} changes (goal < 2 s)"
        )
    finally:
        for proc in (balancer, backends):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)


if __name__ == "__main__":
    main()
