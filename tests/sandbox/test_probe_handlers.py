"""The probe handlers and the API server's probe rules, against a real wasm health-server on a pod address."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.sandbox.api.admission import apply_defaults
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.semantics import semantic_causes
from labkit.sandbox.kubelet import probe_handlers as h
from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.prober import ProbeBudget
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.wasm.apps import module_path

POD_IP = "127.42.200.7"  # a pod address no sandbox node hands out (node index 200)


def free_port(ip: str = POD_IP) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, list[str]]]:
    """health-server (no health file: /healthz always 200) serving on POD_IP, as in a pod."""
    port, lines = free_port(), list[str]()
    context = PodContext(name="health", pod_ip=POD_IP)
    spec = ContainerSpec(module_path("health-server").read_bytes(), ["/h.wasm", str(port)], {}, name="health")
    container = WasmContainer(spec, None, lines.append, lines.append, extensions_for(context), context)
    container.start()
    deadline = time.monotonic() + 10
    while not any("listening" in line for line in lines):
        assert time.monotonic() < deadline and container.running, lines
        time.sleep(0.02)
    yield port, lines
    container.kill()
    container.wait(5)


def logged(lines: list[str], line: str) -> None:
    """The server's output reaches *lines* through its pipe thread: wait for *line* a moment."""
    deadline = time.monotonic() + 5
    while line not in lines:
        assert time.monotonic() < deadline, lines
        time.sleep(0.02)


def http(port: int, path: str, limit_s: float = 2.0, host: str = POD_IP, **action: Any) -> h.Outcome:
    target = h.http_target({"port": port, "path": path, "host": host, **action}, {}, POD_IP)
    return asyncio.run(h.http_probe(target, limit_s))


def test_http_success_sends_kube_probe_user_agent(server: tuple[int, list[str]]) -> None:
    port, lines = server
    assert http(port, "/healthz") == h.Outcome(h.SUCCESS, "ok\n")
    logged(lines, "GET /healthz (User-Agent: kube-probe/1.32)")
    headers = [{"name": "User-Agent", "value": "mine"}]
    assert http(port, "/healthz", httpHeaders=headers).result == h.SUCCESS
    logged(lines, "GET /healthz (User-Agent: mine)")


def test_http_failure_names_the_status_only(server: tuple[int, list[str]]) -> None:
    port, _ = server
    assert http(port, "/status/500") == h.Outcome(h.FAILURE, "HTTP probe failed with statuscode: 500")
    assert http(port, "/status/204").result == h.SUCCESS
    assert http(port, "/status/399").result == h.WARNING  # 300-399 without a redirect: a success with a warning
    assert http(port, "/nothing").output == "HTTP probe failed with statuscode: 404"


def test_redirects_same_host_followed_other_host_not(server: tuple[int, list[str]]) -> None:
    port, lines = server
    assert http(port, "/redirect") == h.Outcome(h.SUCCESS, "ok\n")
    assert http(port, "/elsewhere") == h.Outcome(h.WARNING, "Probe terminated redirects, Response body: ")
    logged(lines, "GET /elsewhere (User-Agent: kube-probe/1.32)")  # and 192.0.2.1 was never asked: no route


def test_body_reading_is_bounded_to_10_kb(server: tuple[int, list[str]]) -> None:
    port, _ = server
    outcome = http(port, "/big")
    assert outcome.result == h.SUCCESS and len(outcome.output) == h.MAX_BODY == 10240


def test_timeout_is_enforced(server: tuple[int, list[str]]) -> None:
    port, _ = server
    start = time.monotonic()
    outcome = http(port, "/slow", limit_s=0.3)
    assert time.monotonic() - start < 1.5
    awaiting = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    assert outcome == h.Outcome(h.FAILURE, f'Get "http://{POD_IP}:{port}/slow": {awaiting}')


def test_refused_connections_read_as_go_prints_them() -> None:
    port = free_port()
    assert http(port, "/healthz").output == (
        f'Get "http://{POD_IP}:{port}/healthz": dial tcp {POD_IP}:{port}: connect: connection refused'
    )
    assert asyncio.run(h.tcp_probe(POD_IP, port, 1)).output == f"dial tcp {POD_IP}:{port}: connect: connection refused"


def test_tcp_success(server: tuple[int, list[str]]) -> None:
    assert asyncio.run(h.tcp_probe(POD_IP, server[0], 1)) == h.Outcome(h.SUCCESS)


def test_probes_never_leave_the_cluster_addresses() -> None:
    """A probe's host may not be the node's own loopback services nor another machine: nothing is dialled."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        for host in ("127.0.0.1", "192.0.2.1", "localhost"):
            outcome = http(port, "/", host=host)
            assert outcome.result == h.FAILURE and h.OUTSIDE in outcome.output, outcome
            assert h.OUTSIDE in asyncio.run(h.tcp_probe(host, port, 1)).output
        with pytest.raises(TimeoutError):
            listener.accept()


def test_a_header_value_with_a_newline_is_refused_as_go_refuses_it(server: tuple[int, list[str]]) -> None:
    headers = [{"name": "X-Evil", "value": "a\r\nHost: other"}]
    outcome = http(server[0], "/healthz", httpHeaders=headers)
    assert outcome.output.endswith('net/http: invalid header field value for "X-Evil"')


def test_named_ports_resolve_from_the_container() -> None:
    container = {"ports": [{"name": "web", "containerPort": 8080}]}
    assert h.resolve_port("web", container) == 8080
    with pytest.raises(LookupError, match='port "api" not found'):
        h.resolve_port("api", container)


def test_exec_in_a_wasm_container_errors_with_runwasis_answer() -> None:
    outcome = asyncio.run(h.exec_probe(h.WasmExec(), "demo", "containerd://x", ["cat", "/tmp/healthy"], 1))
    assert outcome.result == h.UNKNOWN and outcome.error is not None
    assert outcome.error.startswith("rpc error: code = NotFound desc = failed to exec in container:")
    assert outcome.error.endswith("/containerd.task.v2.Task/Exec is not supported: not found")


def test_grpc_connects_but_says_the_health_call_is_not_simulated(server: tuple[int, list[str]]) -> None:
    outcome = asyncio.run(h.grpc_probe(POD_IP, server[0], "", 1))
    assert outcome.result == h.UNKNOWN and "does not simulate gRPC health checks" in (outcome.error or "")
    closed = free_port()
    assert asyncio.run(h.grpc_probe(POD_IP, closed, "", 1)).output == (
        f'timeout: failed to connect service "{POD_IP}:{closed}" within 1s: context deadline exceeded'
    )


def test_the_budget_bounds_concurrency_and_rate() -> None:
    async def main() -> tuple[int, int]:
        budget = ProbeBudget(concurrent=4, per_second=20)
        running = peak = started = 0
        start = time.monotonic()

        async def one() -> None:
            nonlocal running, peak, started
            async with budget.slot():
                started += time.monotonic() - start < 0.5
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.01)
                running -= 1

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(30))), 5)
        return peak, started

    peak, early = asyncio.run(main())
    assert peak <= 4
    assert early <= 11  # 20 per second: about 10 starts in the first half second, never all 30


# ---------------------------------------------------------------- the API server's rules


def causes(container_extra: dict[str, Any]) -> list[tuple[str, str]]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", **container_extra}]},
    }
    return [(c["field"], c["message"]) for c in semantic_causes(RESOURCES.by_kind("", "v1", "Pod"), pod)]


def test_defaults_are_upstreams() -> None:
    pod = apply_defaults(
        "Pod", {"spec": {"containers": [{"name": "c", "image": "i", "livenessProbe": {"httpGet": {"port": 80}}}]}}
    )
    probe = pod["spec"]["containers"][0]["livenessProbe"]
    assert probe == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_bad_probes_are_refused_with_upstreams_words() -> None:
    base = "spec.containers[0]"
    assert causes({"livenessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 2}}) == [
        (f"{base}.livenessProbe.successThreshold", "Invalid value: 2: must be 1")
    ]
    assert causes({"startupProbe": {"tcpSocket": {"port": 80}, "successThreshold": 3}}) == [
        (f"{base}.startupProbe.successThreshold", "Invalid value: 3: must be 1")
    ]
    assert causes({"readinessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 3}}) == []
    assert causes({"livenessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 0}}) == []  # 0 defaults to 1
    assert causes({"readinessProbe": {"periodSeconds": 5}}) == [
        (f"{base}.readinessProbe", "Required value: must specify a handler type")
    ]
    assert causes({"livenessProbe": {"tcpSocket": {"port": 80}, "httpGet": {"port": 80}}}) == [
        (f"{base}.livenessProbe.tcpSocket", "Forbidden: may not specify more than 1 handler type")
    ]
    assert causes({"readinessProbe": {"exec": {"command": []}}}) == [
        (f"{base}.readinessProbe.exec.command", "Required value")
    ]
    assert causes({"livenessProbe": {"tcpSocket": {"port": 0}, "initialDelaySeconds": -1}}) == [
        (f"{base}.livenessProbe.tcpSocket.port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
        (f"{base}.livenessProbe.initialDelaySeconds", "Invalid value: -1: must be greater than or equal to 0"),
    ]
    assert causes({"livenessProbe": {"grpc": {"port": 9000}, "terminationGracePeriodSeconds": 0}}) == [
        (f"{base}.livenessProbe.terminationGracePeriodSeconds", "Invalid value: 0: must be greater than 0")
    ]
    assert causes(
        {"readinessProbe": {"httpGet": {"port": "web", "scheme": "FTP"}, "terminationGracePeriodSeconds": 5}}
    ) == [
        (f"{base}.readinessProbe.httpGet.scheme", 'Unsupported value: "FTP": supported values: "HTTP", "HTTPS"'),
        (
            f"{base}.readinessProbe.terminationGracePeriodSeconds",
            "Invalid value: 5: must not be set for readinessProbes",
        ),
    ]
