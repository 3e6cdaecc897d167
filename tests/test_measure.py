"""labkit.measure: the functions benchmarks/ and notebook 07 share, against local servers and a fake watch."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit import measure


def test_percentile_is_by_rank():
    assert measure.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert measure.percentile([1.0, 2.0], 99) == 2.0
    assert measure.percentile([5.0], 0) == 5.0


class _Slow:
    """A watch stream whose lines arrive only when the test releases them."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.more = threading.Condition()
        self.closed = False

    def push(self, line: bytes) -> None:
        with self.more:
            self.lines.append(line)
            self.more.notify_all()

    def readline(self) -> bytes:
        with self.more:
            self.more.wait_for(lambda: self.lines or self.closed)
            return self.lines.pop(0) if self.lines else b""


def event(name: str, ready: bool) -> bytes:
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return json.dumps({"type": "MODIFIED", "object": {"metadata": {"name": name}, "status": status}}).encode() + b"\n"


def test_create_to_ready_times_each_pod_from_the_watch():
    stream = _Slow()
    watch = measure.ReadyWatch(stream)
    created = []

    def create(name: str) -> None:
        created.append(name)
        stream.push(event(name, False))
        stream.push(b"\n")
        stream.push(event(name, True))

    samples = measure.create_to_ready(create, watch, ["a", "b"], timeout=5)
    assert created == ["a", "b"] and len(samples) == 2 and all(s >= 0 for s in samples)
    with pytest.raises(TimeoutError, match="never"):
        watch.wait(["never"], timeout=0.05)
    stream.closed = True
    stream.push(b"")


class _Breaks:
    """A watch stream whose read fails once it is closed, as urllib3's response does."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def readline(self) -> bytes:
        self.gate.wait(5)
        raise ValueError("I/O operation on closed file")

    def close(self) -> None:
        self.gate.set()


def test_closing_a_ready_watch_ends_its_reader_quietly():
    errors: list[BaseException] = []
    hook, threading.excepthook = threading.excepthook, lambda args: errors.append(args.exc_value)
    try:
        watch = measure.ReadyWatch(_Breaks())
        watch.close()
    finally:
        threading.excepthook = hook
    assert not watch._reader.is_alive() and errors == []


def test_closing_a_quiet_urllib3_watch_returns_at_once():
    """A watch with no events: the reader blocks in readline; close must not wait for the server's timeout."""
    import socket

    import urllib3

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def quiet() -> None:
        conn, _ = server.accept()
        held.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")

    threading.Thread(target=quiet, daemon=True).start()
    http = urllib3.PoolManager()
    stream = http.request("GET", f"http://127.0.0.1:{server.getsockname()[1]}/watch", preload_content=False)
    watch = measure.ReadyWatch(stream)
    started = time.monotonic()
    watch.close()
    took = time.monotonic() - started
    for conn in held:
        conn.close()
    server.close()
    assert took < 3 and not watch._reader.is_alive()


def test_ready_watch_reads_a_plain_stream():
    watch = measure.ReadyWatch(io.BytesIO(event("x", False) + event("x", True) + event("y", False)))
    watch.wait(["x"], timeout=5)
    assert "y" not in watch.ready


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/chat/completions":
            out = json.dumps({"choices": [{"message": {"content": "hi there"}}], "usage": {"completion_tokens": 2}})
            code = 200
        else:
            out, code = "{}", 404
        self.send_response(code)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_port
    httpd.shutdown()


def test_load_counts_requests_and_failures(server):
    ok = measure.load("127.0.0.1", server, 0.3, 2)
    assert ok.failures == 0 and len(ok.latencies_ms) > 2 and ok.requests_per_s > 0
    assert ok.p50_ms <= ok.p99_ms
    bad = measure.load("127.0.0.1", server, 0.1, 1, path="/nope")
    assert bad.failures == len(bad.latencies_ms) > 0


def test_chat_times_one_completion(server):
    done = measure.chat(f"http://127.0.0.1:{server}", "hello", 2)
    assert done.tokens == 2 and done.text == "hi there" and done.tokens_per_s > 0
    with pytest.raises(ValueError, match="http"):
        measure.chat("file:///etc/passwd", "x", 1)
