"""Wasm pod networking benchmark: TCP echo round trips through the kit's echo-server, against direct Python.

Runs the shipped ``echo-server`` module in a sandbox WasmContainer (WasmEdge's
socket ABI over real loopback sockets, labkit/sandbox/kubelet/wasi_sockets.py)
and a plain Python echo server on loopback, then times small round trips from a
Python client process to each. Prints p50/p99 of both and their ratio. Goal (issue 12):
a wasm pod's round trip ≤ 3 times the direct one. It also prints the cost of an empty
host call (defined as the kubelet defines every sock_* function), the floor under each of them.

Then (unless ``--no-sandbox``) it starts one sandbox (2 nodes, a temporary LABKIT_HOME) and measures issue 12's
full path: a wasm ``echo-client`` pod → the ``echo`` Service's ClusterIP (DNAT in the client's kubelet) → a wasm
``echo-server`` pod, timed inside the guest, against the direct Python echo; the cluster DNS's query latency
(p50/p99) over UDP and over TCP (a connection per query, as the wasm nslookup makes); and bulk throughput to the
echo pod, straight to its IP and through ``kubectl port-forward`` (WebSocket + SPDY/3.1 through the API server).
kubectl is the one on PATH. Everything is printed, with its ratios, by one run.

    python benchmarks/bench_network.py [--rounds 2000] [--size 64] [--megabytes 8] [--no-sandbox]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import wasmtime

from labkit.sandbox.kubelet import hostfunc
from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.wasm.apps import module_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_echo(port: int) -> threading.Thread:
    """The direct baseline: one thread echoing one connection, blocking reads as the wasm app does."""
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            while data := conn.recv(16384):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def wasm_echo(port: int) -> WasmContainer:
    lines: list[str] = []
    context = PodContext(name="echo")
    spec = ContainerSpec(module_path("echo-server").read_bytes(), ["/echo-server.wasm", str(port)], name="echo")
    container = WasmContainer(spec, None, lines.append, lines.append, extensions_for(context), context)
    container.start()
    deadline = time.monotonic() + 10
    while not any("listening" in line for line in lines):
        if time.monotonic() > deadline:
            raise SystemExit(f"echo-server did not start: {lines}")
        time.sleep(0.01)
    return container


def round_trips(port: int, rounds: int, size: int) -> list[float]:
    payload = b"x" * size
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for k in range(rounds + 50):
            started = time.perf_counter()
            conn.sendall(payload)
            got = 0
            while got < size:
                got += len(conn.recv(65536))
            if k >= 50:  # warm-up
                times.append(time.perf_counter() - started)
    return times


def client(port: int, rounds: int, size: int) -> list[float]:
    """Round trips timed from a separate process, as a real client is: one process would also time GIL hand-offs."""
    argv = [sys.executable, __file__, "--client", str(port), "--rounds", str(rounds), "--size", str(size)]
    return list(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout))


def host_call_floor(calls: int = 20000) -> float:
    """Microseconds of one empty host-function call from wasm, defined as the kubelet defines every ``sock_*``
    function (labkit/sandbox/kubelet/hostfunc.py: wasmtime's unchecked C calling convention through ctypes)."""
    engine = wasmtime.Engine()
    store, linker = wasmtime.Store(engine), wasmtime.Linker(engine)
    hostfunc.define(linker, "h", "f", [hostfunc.I32, hostfunc.I32], lambda _caller, _a, _b: 0)
    wat = """(module (import "h" "f" (func $f (param i32 i32) (result i32)))
      (func (export "run") (param $n i32)
        (loop $l (drop (call $f (i32.const 1) (i32.const 2)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n)))))"""
    run = linker.instantiate(store, wasmtime.Module(engine, wat)).exports(store)["run"]
    assert isinstance(run, wasmtime.Func)
    started = time.perf_counter()
    run(store, calls)
    return (time.perf_counter() - started) / calls * 1e6


def quantiles(times: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(times, n=100)
    return cuts[49] * 1e6, cuts[98] * 1e6


class Kubectl:
    """The ``kubectl`` on PATH (found as ``labkit.port_forward`` finds it) with the sandbox's kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        exe = shutil.which("kubectl")
        if exe is None:
            raise SystemExit("kubectl is not on PATH: install kubectl 1.32 (`labkit doctor` says how)")
        self.exe, self.env = exe, {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def __call__(self, *args: str, data: object = None) -> str:
        """kubectl's stdout; *data* goes to its stdin as JSON."""
        stdin = json.dumps(data) if data is not None else None
        done = subprocess.run([self.exe, *args], env=self.env, input=stdin, capture_output=True, text=True, check=True)
        return done.stdout


def wasm_pod(name: str, image: str, args: list[str], labels: dict[str, str], restart: str) -> dict[str, object]:
    spec = {
        "runtimeClassName": "wasmedge",
        "restartPolicy": restart,
        "containers": [{"name": name, "image": image, "args": args}],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def start_echo_service(kubectl: Kubectl) -> tuple[str, str]:
    """A wasm echo-server pod on port 80 behind the Service ``echo``: (ClusterIP, pod IP) once it has an endpoint."""
    kubectl("apply", "-f", "-", data=wasm_pod("echo", "labkit/echo-server:latest", ["80"], {"app": "echo"}, "Always"))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80}]},
    }
    kubectl("apply", "-f", "-", data=service)
    kubectl("wait", "--for=condition=Ready", "pod/echo", "--timeout=60s")
    ip = kubectl("get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}")
    slices = ["get", "endpointslices", "-l", "kubernetes.io/service-name=echo"]
    deadline = time.monotonic() + 30
    while kubectl(*slices, "-o", "jsonpath={.items[*].endpoints[*].addresses[*]}").strip() == "":
        if time.monotonic() > deadline:
            raise SystemExit("the echo Service got no endpoint")
        time.sleep(0.2)
    time.sleep(1.0)  # the network process writes its rules on the slice's event
    return ip, kubectl("get", "pod", "echo", "-o", "jsonpath={.status.podIP}")


def service_round_trips(kubectl: Kubectl, ip: str, rounds: int, size: int) -> tuple[float, float]:
    """(p50, p99) in µs of a wasm ``echo-client`` pod → the ``echo`` Service's ClusterIP → the wasm echo pod."""
    client_args = [f"{ip}:80", str(rounds), str(size)]
    kubectl("apply", "-f", "-", data=wasm_pod("client", "labkit/echo-client:latest", client_args, {}, "Never"))
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/client", "--timeout=300s")
    log = kubectl("logs", "client")
    found = re.search(r"p50 ([\d.]+) us p99 ([\d.]+) us", log)
    if not found or f"connected to {ip}:80" not in log:
        raise SystemExit(f"echo-client: {log}")
    return float(found.group(1)), float(found.group(2))


def dns_queries(kubectl: Kubectl, rounds: int) -> dict[str, tuple[float, float]]:
    """{"udp"/"tcp": (p50, p99) in µs} of an A query to the cluster DNS (TCP: a connection per query, as nslookup).

    The server is kube-dns's ClusterIP, which depends on the sandbox's address slot (labkit.sandbox.netmap)."""
    from dnslib import DNSRecord

    from labkit.sandbox.netmap import host_port

    dns: dict[str, tuple[float, float]] = {}
    query = DNSRecord.question("echo.default.svc.cluster.local", "A").pack()
    address = (
        kubectl("get", "service", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"),
        host_port(53),
    )
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        for _ in range(rounds + 50):
            started = time.perf_counter()
            udp.sendto(query, address)
            assert DNSRecord.parse(udp.recv(4096)).rr
            times.append(time.perf_counter() - started)
    dns["udp"] = quantiles(times[50:])
    times = []
    for _ in range(rounds + 50):
        started = time.perf_counter()
        with socket.create_connection(address, timeout=5) as tcp:
            tcp.sendall(len(query).to_bytes(2, "big") + query)
            size_bytes = tcp.recv(2)
            reply = b""
            while len(reply) < int.from_bytes(size_bytes, "big"):
                reply += tcp.recv(4096)
        assert DNSRecord.parse(reply).rr
        times.append(time.perf_counter() - started)
    dns["tcp"] = quantiles(times[50:])
    return dns


def throughput(host: str, port: int, megabytes: int) -> float:
    """MB/s of echoing *megabytes* through ``host:port`` in 16 KiB steps, each read back before the next is sent.

    16 KiB is the echo-server's buffer (wasm-apps/echo-server/main.c ``BUF``), so a step comes back in one send.
    With 64 KiB steps the app echoes four 16 KiB pieces, and Nagle holds each piece after the first until the
    client ACKs, which it delays up to 40 ms: 1.5 MB/s, the same for a plain Python echo with a 16 KiB buffer,
    so a TCP effect and not the socket layer's (WasmEdge's ABI has no TCP_NODELAY, only SOL_SOCKET options).
    """
    step = (bytes(range(256)) * 64)[: 16 * 1024]  # starts with no "GET "/"HEAD", so the app echoes
    rounds = megabytes * 64
    with socket.create_connection((host, port), timeout=30) as conn:
        started = time.perf_counter()
        for _ in range(rounds):
            conn.sendall(step)
            got = 0
            while got < len(step):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    raise SystemExit("connection closed mid-transfer")
                got += len(chunk)
        elapsed = time.perf_counter() - started
    return rounds * len(step) / elapsed / 1e6


def port_forward_throughput(kubectl: Kubectl, pod_ip: str, megabytes: int) -> tuple[list[float], list[float]]:
    """MB/s of three runs straight to the echo pod (``podIP:80``, on the wire its moved port) and three through
    ``kubectl port-forward pod/echo :80`` (WebSocket + SPDY/3.1 through the API server)."""
    from labkit.sandbox.netmap import host_port

    direct = [throughput(pod_ip, host_port(80), megabytes) for _ in range(3)]
    argv = [kubectl.exe, "port-forward", "--address", "127.0.0.1", "pod/echo", ":80"]
    forward = subprocess.Popen(argv, env=kubectl.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert forward.stdout is not None
        local = int(forward.stdout.readline().split(":")[1].split()[0])  # "Forwarding from 127.0.0.1:PORT -> 80"
        forwarded = [throughput("127.0.0.1", local, megabytes) for _ in range(3)]
    finally:
        forward.terminate()
        forward.wait(10)
    return direct, forwarded


def sandbox_benchmarks(args: argparse.Namespace, direct: tuple[float, float]) -> None:
    """Everything that needs a cluster, on one fresh 2-node sandbox (its own LABKIT home), printed as ratios."""
    from labkit.sandbox import client as sandbox

    home = Path(tempfile.mkdtemp(prefix="bench-net-")) / "sandbox"
    info = sandbox.ensure_running(nodes=2, home=home)
    try:
        kubectl = Kubectl(info.kubeconfig)
        cluster_ip, pod_ip = start_echo_service(kubectl)
        p50, p99 = service_round_trips(kubectl, cluster_ip, args.rounds, args.size)
        dns = dns_queries(kubectl, args.rounds // 4)
        moved, forwarded = port_forward_throughput(kubectl, pod_ip, args.megabytes)
    finally:
        sandbox.stop(home=home)
        shutil.rmtree(home.parent, ignore_errors=True)
    print("wasm echo-client pod -> Service ClusterIP (DNAT in its kubelet) -> wasm echo-server pod, timed in guest")
    print(f"  wasm->Service->wasm: p50 {p50:7.1f} us   p99 {p99:7.1f} us")
    print(f"  ratio to direct    : p50 {p50 / direct[0]:5.2f}x     p99 {p99 / direct[1]:5.2f}x   (goal <= 3x)")
    print(f"cluster DNS, A query for a Service, {args.rounds // 4} queries each")
    for proto, (q50, q99) in dns.items():
        print(f"  over {proto.upper()}: p50 {q50:7.1f} us   p99 {q99:7.1f} us")
    print(f"  ratio TCP/UDP: p50 {dns['tcp'][0] / dns['udp'][0]:5.2f}x   (TCP: a connection per query, as nslookup)")
    best_direct, best_forwarded = max(moved), max(forwarded)
    print(f"TCP echo throughput to the echo pod, {args.megabytes} MiB each way in 16 KiB lockstep, best of 3")
    print(f"  direct to podIP:80       : {best_direct:7.1f} MB/s   (runs {', '.join(f'{x:.1f}' for x in moved)})")
    print(
        f"  kubectl port-forward     : {best_forwarded:7.1f} MB/s   (runs {', '.join(f'{x:.1f}' for x in forwarded)})"
    )
    print(f"  ratio forward/direct     : {best_forwarded / best_direct:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--megabytes", type=int, default=8, help="per port-forward throughput run")
    parser.add_argument("--no-sandbox", action="store_true", help="only the in-process wasm echo against direct")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(round_trips(args.client, args.rounds, args.size)))
        return

    port = free_port()
    python_echo(port)
    direct = quantiles(client(port, args.rounds, args.size))

    port = free_port()
    container = wasm_echo(port)
    try:
        wasm = quantiles(client(port, args.rounds, args.size))
    finally:
        container.kill()
        container.wait(5)

    print(f"TCP echo round trip, {args.size} B x {args.rounds} on loopback")
    print(f"  direct Python echo : p50 {direct[0]:7.1f} us   p99 {direct[1]:7.1f} us")
    print(f"  wasm echo-server   : p50 {wasm[0]:7.1f} us   p99 {wasm[1]:7.1f} us")
    print(f"  ratio wasm/direct  : p50 {wasm[0] / direct[0]:5.2f}x     p99 {wasm[1] / direct[1]:5.2f}x   (goal <= 3x)")
    floor = host_call_floor()
    print(f"  floor: one empty wasm->host call costs {floor:.1f} us (hostfunc.py); echo-server makes 3 per round trip")
    print(f"         (poll_oneoff, sock_recv, sock_send) = {3 * floor:.1f} us before any socket work")
    if not args.no_sandbox:
        sandbox_benchmarks(args, direct)


if __name__ == "__main__":
    main()
