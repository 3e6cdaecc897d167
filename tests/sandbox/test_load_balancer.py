"""The load balancer (wasm-apps/load-balancer, a wasm module on WasmEdge's socket ABI) in wasmtime, in-process,
in front of Python HTTP backends on loopback: the seed's admin API (the seed's load-balancer/src/main.rs), its weighted
choice, and what the seed got wrong (9.5): whole request bodies, streamed responses, dead backends, limits."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from tests.sandbox.test_wasi_sockets import free_port, start_app

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.wasmrun import WasmContainer


class Backend(BaseHTTPRequestHandler):
    """Answers /v1/* with JSON naming itself and what it got; /v1/stream with chunked SSE events, one per write."""

    protocol_version = "HTTP/1.1"
    # buffered: the head and a body go out in one write, flushed after the handler (the stream flushes per event).
    # Unbuffered, the body's separate small write waits for the head's ACK (Nagle), which the load balancer
    # delays (delayed ACK): 40 ms per request
    wbufsize = -1
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1
        self.answered = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.answers_per_connection and self.answered == self.server.answers_per_connection:
            self.close_connection = True  # hang up without answering, as a backend closing an idle connection
            self.server.hangups += 1
            return
        self.answered += 1
        self.server.bodies.append(body)
        if self.path == "/v1/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                event = f'data: {{"n": {i}, "from": "{self.server.name}"}}\n\n'.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return
        out = json.dumps({"backend": self.server.name, "length": len(body), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if self.server.says_close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), Backend)
        self.name = name
        self.bodies: list[bytes] = []
        self.connections = self.hangups = 0
        self.answers_per_connection = 0  # 0: any number
        self.says_close = False

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def backends() -> Iterator[dict[str, Server]]:
    servers = {name: Server(name) for name in ("low", "high")}
    for s in servers.values():
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()
    yield servers
    for s in servers.values():
        s.shutdown()
        s.server_close()


class Lb:
    def __init__(self, port: int, container: WasmContainer, lines: list[str]) -> None:
        self.port, self.container, self.lines = port, container, lines

    def call(self, method: str, path: str, body: bytes | str | None = None, **headers: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def wait_for(self, check: Callable[[], bool], within: float = 5.0) -> None:
        """The log line is written after the answer is sent: the client may read it first."""
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, self.lines[-10:]
            time.sleep(0.01)

    def register(self, name: str, weight: int, port: int, ip: str = "127.0.0.1") -> None:
        body = json.dumps({"name": name, "weight": weight, "ip": ip, "port": port})
        assert self.call("POST", "/api/register", body) == (200, b"Registered")

    def raw(self, data: bytes, timeout: float = 10) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        return reply


def start_lb(*env: tuple[str, str]) -> tuple[Lb, WasmContainer]:
    port, lines = free_port(), list[str]()
    container = start_app("load-balancer", f"127.0.0.1:{port}", env=dict(env), sink=lines)
    deadline = time.monotonic() + 10
    while not any("listening" in line for line in lines):
        assert time.monotonic() < deadline and container.running, lines
        time.sleep(0.02)
    return Lb(port, container, lines), container


@pytest.fixture
def lb() -> Iterator[Lb]:
    balancer, container = start_lb(("LB_MAX_BODY", str(256 * 1024)))
    yield balancer
    assert container.running, balancer.lines  # nothing a test sent crashed it
    container.kill()
    container.wait(5)


def test_the_admin_api_speaks_the_seeds_words(lb: Lb, backends: dict[str, Server]) -> None:
    assert lb.call("GET", "/api/services") == (200, b"[]")
    lb.register("low", 3, backends["low"].port)
    lb.register("high", 1, backends["high"].port)
    lb.register("low", 5, backends["low"].port)  # upsert by name, in place
    status, body = lb.call("GET", "/api/services")
    assert status == 200
    assert json.loads(body) == [
        {"name": "low", "weight": 5, "ip": "127.0.0.1", "port": backends["low"].port},
        {"name": "high", "weight": 1, "ip": "127.0.0.1", "port": backends["high"].port},
    ]
    assert lb.call("DELETE", "/api/unregister/high") == (200, b"Unregistered")
    assert lb.call("DELETE", "/api/unregister/high") == (404, b"Service not found")
    assert [s["name"] for s in json.loads(lb.call("GET", "/api/services")[1])] == ["low"]
    assert lb.call("GET", "/healthz") == (200, b"ok\n")
    assert lb.call("GET", "/nowhere")[0] == 404
    lb.wait_for(lambda: any(ln.startswith("POST /api/register -> - 200 ") and "low weight 5" in ln for ln in lb.lines))


def test_an_empty_registry_is_503_with_a_json_error(lb: Lb) -> None:
    status, body = lb.call("POST", "/v1/chat/completions", b"{}")
    assert status == 503
    assert json.loads(body)["error"]["type"] == "no_backend"
    assert "no backends registered" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"name": "a", "weight": -1, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "a", "weight": 4294967296, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "a", "weight": 1.5, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "a", "weight": 1, "ip": "127.0.0.1", "port": 70000}',
        b'{"name": "a", "weight": 1, "ip": "my-host", "port": 80}',
        b'{"name": "", "weight": 1, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "a", "weight": 1, "ip": "127.0.0.1"}',
        b'{"name": "a", "name": "b", "weight": 1, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "a", "weight": 1, "ip": "127.0.0.1", "port": 80} trailing',
        b'{"name": "' + b"n" * 300 + b'", "weight": 1, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "\\ud800", "weight": 1, "ip": "127.0.0.1", "port": 80}',
        b'{"name": "a", "weight": 1, "ip": "127.0.0.1", "port": 80, "x": ' + b"[" * 100 + b"]" * 100 + b"}",
        b"\xff\xfe",
    ],
)
def test_bad_register_bodies_are_400_invalid_json_and_change_nothing(lb: Lb, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
    conn.request("POST", "/api/register", body=body)
    reply = conn.getresponse()
    assert (reply.status, reply.read()) == (400, b"Invalid JSON")
    assert reply.getheader("X-LB-Error")  # what was wrong, for a human
    assert lb.call("GET", "/api/services") == (200, b"[]")


def test_names_with_quotes_and_unicode_round_trip(lb: Lb) -> None:
    name = 'we"ird\\ näme \u2603'
    body = json.dumps({"name": name, "weight": 0, "ip": "10.43.0.5", "port": 8080, "extra": {"ignored": [1, 2]}})
    assert lb.call("POST", "/api/register", body) == (200, b"Registered")
    assert json.loads(lb.call("GET", "/api/services")[1])[0]["name"] == name
    from urllib.parse import quote

    assert lb.call("DELETE", "/api/unregister/" + quote(name)) == (200, b"Unregistered")


@pytest.mark.slow
def test_weights_split_the_traffic(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 3, backends["low"].port)
    lb.register("high", 1, backends["high"].port)
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)  # one kept-alive connection
    seen: Counter[str] = Counter()
    for _ in range(1000):
        conn.request("POST", "/v1/chat/completions", body=b'{"messages": []}')
        reply = conn.getresponse()
        assert reply.status == 200
        seen[json.loads(reply.read())["backend"]] += 1
    conn.close()
    # binomial(1000, 0.75): sd 13.7, so 6 sd is 82; a fair split lands outside with p < 1e-8
    assert abs(seen["low"] - 750) <= 82, seen
    assert seen["low"] + seen["high"] == 1000


def test_weight_zero_everywhere_takes_the_first(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 0, backends["low"].port)
    lb.register("high", 0, backends["high"].port)
    assert {json.loads(lb.call("GET", "/v1/models")[1])["backend"] for _ in range(20)} == {"low"}


def test_a_body_in_many_writes_arrives_whole(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 1, backends["low"].port)
    body = bytes(range(256)) * 800  # 200 KiB
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: lb\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as s:
        s.sendall(head % len(body))
        for i in range(0, len(body), 7000):
            s.sendall(body[i : i + 7000])
            time.sleep(0.002)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["length"] == len(body)
    assert backends["low"].bodies[-1] == body


def test_expect_100_continue_gets_its_interim_answer(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 1, backends["low"].port)
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as s:
        s.sendall(b"POST /v1/x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert b'"length": 5' in reply


def test_a_chunked_event_stream_passes_through_as_it_is_written(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 1, backends["low"].port)
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
    conn.request("POST", "/v1/stream", body=b"{}")
    reply = conn.getresponse()
    assert reply.status == 200 and reply.getheader("Transfer-Encoding") == "chunked"
    assert reply.getheader("Content-Type") == "text/event-stream"
    started, arrivals, events = time.monotonic(), [], []
    while line := reply.readline():
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
            arrivals.append(time.monotonic() - started)
    assert [e["n"] for e in events] == [0, 1, 2, 3, 4]
    assert arrivals[0] < arrivals[-1] - 0.1  # streamed, not gathered until the end
    conn.request("GET", "/api/services")  # the chunked body ended: the same connection goes on
    assert conn.getresponse().status == 200
    conn.close()


def test_a_dead_backend_costs_no_request(lb: Lb, backends: dict[str, Server]) -> None:
    dead = free_port()  # nothing listens there: connection refused
    lb.register("dead", 5, dead)
    lb.register("low", 1, backends["low"].port)
    results = [lb.call("POST", "/v1/chat/completions", b"{}") for _ in range(50)]
    assert all(status == 200 for status, _ in results)
    assert any(f"dead 127.0.0.1:{dead} failed: " in line and "trying another backend" in line for line in lb.lines)
    lb.call("DELETE", "/api/unregister/low")
    status, body = lb.call("POST", "/v1/chat/completions", b"{}")
    assert status == 502
    message = json.loads(body)["error"]["message"]
    # 16 tries: a ClusterIP's next connection may reach a live pod; the message names each backend once
    assert message.startswith(f"all backends unreachable (16 tries): dead 127.0.0.1:{dead} (")
    assert message.count("dead 127.0.0.1") == 1
    lb.wait_for(lambda: any(line.endswith(" (all backends unreachable)") for line in lb.lines))


def test_error_bodies_stay_json_with_quoted_names(lb: Lb) -> None:
    lb.register('say "hi"\\', 1, free_port())
    status, body = lb.call("GET", "/v1/models")
    assert status == 502
    assert 'say "hi"\\' in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v1/x HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413),
        (b"GET /v1/x HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /v1/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
        (b"GET /v1/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET http://elsewhere/ HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"\x00\x01\x02 garbage\r\n\r\n", 400),
        (b"GET /v1/x HTTP/1.1\r\n bad fold\r\n\r\n", 400),
    ],
)
def test_hostile_requests_get_4xx_and_the_server_goes_on(lb: Lb, request_bytes: bytes, status: int) -> None:
    reply = lb.raw(request_bytes)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    assert lb.call("GET", "/healthz") == (200, b"ok\n")


def test_a_body_over_the_limit_is_413_even_while_the_client_is_still_sending(lb: Lb) -> None:
    body = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as s:
        s.sendall(b"POST /v1/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        with contextlib.suppress(OSError):  # the server may have closed its side already
            s.sendall(body)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413 ")


def test_a_slow_client_does_not_stall_the_others(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 1, backends["low"].port)
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as slow:
        slow.sendall(b"POST /v1/x HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part")
        started = time.monotonic()
        assert lb.call("GET", "/v1/models")[0] == 200
        assert time.monotonic() - started < 2


def test_twenty_parallel_clients(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 1, backends["low"].port)
    lb.register("high", 1, backends["high"].port)

    def client(i: int) -> list[Any]:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=20)
        got = []
        for j in range(10):
            body = f"client {i} request {j} ".encode() * (i + 1)
            conn.request("POST", "/v1/chat/completions", body=body)
            reply = conn.getresponse()
            got.append((reply.status, json.loads(reply.read())["length"] == len(body)))
        conn.close()
        return got

    with ThreadPoolExecutor(20) as pool:
        results = [r for rs in pool.map(client, range(20)) for r in rs]
    assert results == [(200, True)] * 200
    lb.wait_for(lambda: sum(" 200 " in line and "/v1/chat/completions" in line for line in lb.lines) == 200)


def requests_through(lb: Lb, count: int) -> list[int]:
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
    statuses = []
    for _ in range(count):
        conn.request("POST", "/v1/chat/completions", body=b"{}")
        reply = conn.getresponse()
        reply.read()
        statuses.append(reply.status)
    conn.close()
    return statuses


def test_backend_connections_are_kept_alive_and_reused(lb: Lb, backends: dict[str, Server]) -> None:
    lb.register("low", 1, backends["low"].port)
    assert requests_through(lb, 20) == [200] * 20
    assert backends["low"].connections == 1
    # a second client's requests ride the same idle connection: the pool is by backend, not by client
    assert lb.call("POST", "/v1/chat/completions", b"{}")[0] == 200
    assert backends["low"].connections == 1


def test_a_backend_that_says_close_gets_a_new_connection_each_time(lb: Lb, backends: dict[str, Server]) -> None:
    backends["low"].says_close = True
    lb.register("low", 1, backends["low"].port)
    assert requests_through(lb, 5) == [200] * 5
    assert backends["low"].connections == 5


def test_an_idle_connection_the_backend_dropped_costs_no_request_and_no_failure(
    lb: Lb, backends: dict[str, Server]
) -> None:
    # each connection answers once, then hangs up on the next request unanswered: the load balancer sends every
    # second request on a kept-alive connection the backend has given up, and must quietly reconnect
    backends["low"].answers_per_connection = 1
    lb.register("low", 1, backends["low"].port)
    assert requests_through(lb, 6) == [200] * 6
    assert len(backends["low"].bodies) == 6
    assert backends["low"].hangups == 5  # requests 2-6 each met a given-up connection first
    lb.wait_for(lambda: sum("/v1/chat/completions -> low" in line for line in lb.lines) == 6)
    assert not any("failed" in line for line in lb.lines), lb.lines


def test_the_listen_address_must_be_ip_port() -> None:
    from tests.sandbox.test_wasi_sockets import run_app

    code, lines = run_app("load-balancer", "localhost")
    assert code == 2 and "IP:PORT" in lines[0]
