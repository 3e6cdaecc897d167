"""wasm-apps/llama-server: LlamaEdge's llama-api-server subset, run in-process with WasmEdge's socket ABI and
wasi_ephemeral_nn on the real SmolLM2 model; its HTTP reader against split, pipelined, oversized and hostile
requests; and its prompts compared with what LlamaEdge's chat-prompts crate renders.

Expected prompts are written out from LlamaEdge/LlamaEdge v0.28.1 (550146e9):
crates/chat-prompts/src/chat/chatml.rs (ChatMLPrompt::build, create_system_prompt, append_user_message,
append_assistant_message, append_tool_message) and crates/chat-prompts/src/chat/llama.rs (Llama3ChatPrompt).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.noderoot import prepare_node_root
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.wasm.apps import module_path
from tests.sandbox.test_wasi_sockets import free_port
from tests.sandbox.test_wasinn import HOME, full_env, mounts_for, needs_engine

pytestmark = needs_engine
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = prepare_node_root(tmp_path_factory.mktemp("node"))
    if not (root / HOME.lstrip("/") / "plugin/libwasmedgePluginWasiNN.so").is_file():
        pytest.skip("no C compiler here to build the plugin's ELF files")
    return root


class Server:
    def __init__(self, node: Path, args: list[str]) -> None:
        self.lines: list[str] = []
        mounts = mounts_for(node)
        env = full_env()
        context = PodContext(name="llama", env=env, mounts={m.guest_path: str(m.host_dir) for m in mounts})
        spec = ContainerSpec(
            module_path("llama-server").read_bytes(), ["/llama-server.wasm", *args], env, mounts=mounts, name="llama"
        )
        self.container = WasmContainer(
            spec, None, self.lines.append, self.lines.append, extensions_for(context), context
        )
        self.container.start()

    def wait(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline and self.container.running, self.lines
            time.sleep(0.02)

    def stop(self) -> None:
        self.container.kill()
        self.container.wait(10)


def start(node: Path, *args: str) -> tuple[Server, int]:
    port = free_port()
    server = Server(node, [*args, "--port", str(port)] if "--socket-addr" not in args else list(args))
    return server, port


@pytest.fixture(scope="module")
def chatml(node: Path) -> Iterator[tuple[Server, int]]:
    server, port = start(
        node,
        "--prompt-template",
        "chatml",
        "--model-name",
        "smollm2",
        "--temp",
        "0",
        "--n-predict",
        "16",
        "--log-prompts",
    )
    server.wait("Listening on")
    yield server, port
    server.stop()


# -- a small HTTP/1.1 client that shows the bytes ---------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(sock: socket.socket, buf: bytearray, head: bool = False) -> Response:
    """One response from *sock* (bytes after it stay in *buf*): Content-Length or chunked bodies."""

    def fill() -> None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed; have {bytes(buf)!r}")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    lines = buf[:end].decode("latin-1").split("\r\n")
    del buf[: end + 4]
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    if status == 100:
        return read_response(sock, buf, head)
    body = bytearray()
    if head:
        pass
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            while b"\r\n" not in buf:
                fill()
            i = buf.index(b"\r\n")
            size = int(buf[:i], 16)
            del buf[: i + 2]
            while len(buf) < size + 2:
                fill()
            body += buf[:size]
            del buf[: size + 2]
            if size == 0:
                break
    else:
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            fill()
        body += buf[:length]
        del buf[:length]
    return Response(status, headers, bytes(body))


def request_bytes(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def http(port: int, method: str, path: str, body: Any = None, timeout: float = 120, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes(method, path, raw, {"Connection": "close", **headers}))
        return read_response(sock, bytearray(), head=method == "HEAD")


def chat(port: int, messages: list[dict[str, Any]], **extra: Any) -> Response:
    return http(port, "POST", CHAT, {"model": "anything", "messages": messages, **extra})


def prompt_of(server: Server, port: int, messages: list[dict[str, Any]]) -> str:
    """The prompt the server renders (--log-prompts), without generating: max_completion_tokens 0."""
    before = len(server.lines)
    assert chat(port, messages, max_completion_tokens=0).status == 200
    return logged_prompt(server, before)


def logged_prompt(server: Server, before: int) -> str:
    """The first prompt logged after line *before* (the log reaches us through a pipe: it may lag the answer)."""
    deadline = time.monotonic() + 10
    while True:
        line = next((line for line in server.lines[before:] if line.startswith("[INFO] prompt: ")), None)
        if line is not None:
            return str(json.loads(line[len("[INFO] prompt: ") :]))
        assert time.monotonic() < deadline, server.lines[before:]
        time.sleep(0.02)


def sse_events(body: bytes) -> list[str]:
    assert body.endswith(b"\n\n")
    events = body.decode().split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: ") :] for e in events]


# -- routes ---------------------------------------------------------------------------------------------------


def test_echo_models_info_and_unknown_routes(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    r = http(port, "GET", "/echo")
    assert (r.status, r.body) == (200, b"echo test")
    assert http(port, "POST", "/echo/anything", b"x").body == b"echo test"  # upstream matches the first segment
    r = http(port, "GET", "/v1/models")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    models = r.json()
    assert models["object"] == "list" and len(models["data"]) == 1
    model = models["data"][0]
    assert list(model) == ["id", "created", "object", "owned_by"]  # endpoints::models::Model
    assert (model["id"], model["object"], model["owned_by"]) == ("smollm2", "model", "Not specified")
    assert abs(model["created"] - time.time()) < 3600
    info = http(port, "GET", "/v1/info").json()
    assert info["type"] == "llama" and info["chat_model"]["name"] == "smollm2"
    assert info["chat_model"]["prompt_template"] == "chatml" and info["port"] == str(port)
    r = http(port, "GET", "/v1/nothing")
    assert (r.status, r.body) == (404, b"404 The requested service endpoint is not found: /v1/nothing")
    assert http(port, "GET", "/index.html").status == 404  # no web UI
    assert http(port, "POST", "/v1/embeddings", {}).status == 501
    r = http(port, "OPTIONS", CHAT)
    assert r.status == 200 and r.headers["access-control-allow-origin"] == "*" and r.body == b""
    r = http(port, "GET", CHAT)
    assert (r.status, r.headers["allow"]) == (405, "POST, OPTIONS")
    assert http(port, "DELETE", "/v1/models").status == 405
    r = http(port, "HEAD", "/v1/models")
    assert r.status == 200 and int(r.headers["content-length"]) > 50


@pytest.mark.slow
def test_a_chat_completion_names_the_server_model_and_counts_tokens(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    r = chat(port, [{"role": "user", "content": "What is 2+2?"}])
    assert r.status == 200, r.body
    body = r.json()
    assert list(body) == ["id", "object", "created", "model", "choices", "usage"]  # ChatCompletionObject
    assert body["object"] == "chat.completion" and body["model"] == "smollm2"
    assert body["id"].startswith("chatcmpl-") and r.headers["user"] == body["id"]
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content and content == content.strip() and "4" in content  # greedy SmolLM2: "... is 4."
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 10 and 0 < usage["completion_tokens"] <= 17
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.slow
def test_streaming_sends_one_chunk_per_token_then_done(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    r = chat(
        port,
        [{"role": "user", "content": "What is 2+2?"}],
        stream=True,
        max_completion_tokens=6,
        stream_options={"include_usage": True},
    )
    assert r.status == 200 and r.headers["content-type"] == "text/event-stream"
    events = sse_events(r.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage = chunks.pop()  # include_usage: a last chunk with no choices and the usage
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] >= 6
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "smollm2" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text.strip(), chunks
    assert len([c for c in chunks if c["choices"][0]["delta"]["content"]]) == 6  # one per token
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # without include_usage and with an end of sequence: chunks, then [DONE] (no finish chunk, as upstream)
    r = chat(port, [{"role": "user", "content": "Say OK."}], stream=True, max_completion_tokens=40)
    events = sse_events(r.body)
    assert events[-1] == "[DONE]" and all(json.loads(e)["choices"] for e in events[:-1])


# -- the HTTP reader ------------------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        buf = bytearray()
        sock.sendall(request_bytes("GET", "/v1/models"))
        assert read_response(sock, buf).status == 200
        sock.sendall(request_bytes("GET", "/echo"))
        assert read_response(sock, buf).body == b"echo test"
        # pipelined: two requests and a bad chat request in one write, answered in order
        sock.sendall(
            request_bytes("GET", "/echo") + request_bytes("POST", CHAT, b"{}") + request_bytes("GET", "/v1/info")
        )
        assert read_response(sock, buf).body == b"echo test"
        assert read_response(sock, buf).status == 400
        assert read_response(sock, buf).json()["type"] == "llama"
        assert buf == b""


def test_head_and_body_split_across_writes(chatml: tuple[Server, int]) -> None:
    server, port = chatml
    body = json.dumps({"messages": [{"role": "user", "content": "split " + "x" * 3000}], "max_completion_tokens": 0})
    raw = request_bytes("POST", CHAT, body.encode())
    before = len(server.lines)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pieces = [
            raw[:7],
            raw[7:30],
            raw[30 : len(raw) - len(body) - 1],
            raw[len(raw) - len(body) - 1 : -2000],
            raw[-2000:-3],
            raw[-3:],
        ]
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.05)
        r = read_response(sock, bytearray())
    assert r.status == 200, r.body
    assert "split " + "x" * 3000 + "<|im_end|>" in logged_prompt(server, before)


def test_expect_100_continue(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        body = b'{"messages": 1}'
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_response(sock, bytearray()).status == 400


def test_oversized_bodies_and_heads_are_refused_before_reading(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nContent-Length: {2 << 20}\r\n\r\n".encode() + b"{" * 1000)
        r = read_response(sock, bytearray())
        assert r.status == 413 and r.headers["connection"] == "close"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert read_response(sock, bytearray()).status == 431
    many = "".join(f"X-{i}: y\r\n" for i in range(200))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /echo HTTP/1.1\r\n{many}\r\n".encode())
        assert read_response(sock, bytearray()).status == 431
    assert http(port, "GET", "/echo").body == b"echo test"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "EOF while parsing an object at line 1 column 1"),
        (b"not json", "expected value at line 1 column 1"),
        (b"{}", "missing field `messages`"),
        (b'{"messages": {}}', "expected a sequence"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "unknown variant"),
        (b'{"messages": [{"role": "user"}]}', "missing field `content`"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "expected a boolean"),
        (b'{"messages": []}', "at least one"),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "lone leading surrogate"),
        (b'{"messages": [{"role": "user", "content": "\xff"}]}', "invalid unicode code point"),
        (b'{"messages": [{"role": "user", "content": "a\nb"}]}', "control character"),
        (b"[" * 5000, "recursion limit exceeded"),
        (b'{"messages": [], "x": 1} x', "trailing characters"),
    ],
)
def test_bad_chat_requests_are_400_with_the_reason(chatml: tuple[Server, int], body: bytes, reason: str) -> None:
    r = http(chatml[1], "POST", CHAT, body)
    assert r.status == 400, r.body
    assert r.body.startswith(b"400 Bad Request: Fail to deserialize chat completion request: ")
    assert reason.encode() in r.body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /echo HTTP/2.0\r\n\r\n", 505),
        (b"GET echo HTTP/1.1\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"GET /echo HTTP/1.1\r\n folded\r\n\r\n", 400),
    ],
)
def test_bad_request_heads(chatml: tuple[Server, int], raw: bytes, status: int) -> None:
    with socket.create_connection(("127.0.0.1", chatml[1]), timeout=10) as sock:
        sock.sendall(raw)
        assert read_response(sock, bytearray()).status == status


def test_unicode_escapes_reach_the_prompt_and_the_output_is_escaped(chatml: tuple[Server, int]) -> None:
    server, port = chatml
    content = 'caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ tab\\t \\u0001'
    body = ('{"messages": [{"role": "user", "content": "' + content + '"}], "max_completion_tokens": 0}').encode()
    before = len(server.lines)
    assert http(port, "POST", CHAT, body).status == 200
    assert 'café 😀 "q" \\ / tab\t \x01<|im_end|>' in logged_prompt(server, before)
    assert any("\\u0001" in line for line in server.lines[before:])  # control characters written as \u00XX


@pytest.mark.slow
def test_fuzzed_requests_get_4xx_and_never_crash_the_server(chatml: tuple[Server, int]) -> None:
    server, port = chatml
    rng = random.Random(1234)
    base = json.dumps({"messages": [{"role": "user", "content": "héllo \\u00e9"}], "max_completion_tokens": 0})
    bodies: list[bytes] = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(40)
    ]  # random bytes
    for _ in range(80):  # byte mutations of a valid request
        b = bytearray(base.encode())
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(b))
            b[i] = rng.choice([rng.randrange(256), ord('"'), ord("\\"), ord("{"), ord("]"), ord(",")])
        bodies.append(bytes(b))
    bodies += [
        b'{"messages":' + b"[" * 100000,  # deep nesting
        b'{"a":' * 30000 + b"1" + b"}" * 30000,
        b'{"messages": "' + b"a" * 900_000 + b'"}',  # a huge string
        b'{"messages": [' + b"1," * 200_000 + b"1]}",  # many values
        b'{"messages": [{"role": "user", "content": "' + b"\\u12" + b'"}]}',
        b'{"messages": [{"role": "user", "content": "' + b"\\" * 7 + b'"}]}',
        b"-" + b"9" * 5000,
        b"1e999999",
        b"\xef\xbb\xbf{}",  # a BOM is not JSON
    ]
    for body in bodies:
        r = http(port, "POST", CHAT, body, timeout=30)
        assert r.status in (200, 400), (body[:80], r.status, r.body[:200])
    # raw garbage as whole requests: answered 4xx or closed, never a crash
    for _ in range(40):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(junk + b"\r\n\r\n")
            try:
                r = read_response(sock, bytearray())
                assert 400 <= r.status < 500 or r.status == 505, r.status
            except ConnectionError:
                pass
    assert server.container.running
    assert http(port, "GET", "/echo").body == b"echo test"


def random_text(rng: random.Random, n: int) -> str:
    """Code points from every UTF-8 length (no surrogates: JSON cannot carry them alone)."""
    ranges = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(n))


def random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(7 if depth < 20 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**53, rng.uniform(-1e300, 1e300), 1e-300, rng.randrange(-(10**30), 10**30)])
    if kind in (2, 3, 4):
        return random_text(rng, rng.randrange(20))
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_text(rng, rng.randrange(6)): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_any_json_python_writes_is_read_and_strings_come_back_exactly(chatml: tuple[Server, int]) -> None:
    """Differential: random documents as json.dumps writes them (escaped or raw UTF-8, any spacing) with a random
    user message and unknown members of any shape; the prompt the server logs holds the message exactly."""
    server, port = chatml
    rng = random.Random(99)
    for k in range(30):
        content = "<" + random_text(rng, rng.randrange(1, 60)) + ">"  # no whitespace at the ends to trim
        doc = {"extra": random_value(rng, 0), "messages": [{"role": "user", "content": content}]}
        doc["max_completion_tokens"] = 0
        raw = json.dumps(doc, ensure_ascii=k % 2 == 0, indent=rng.choice([None, 0, 2])).encode()
        before = len(server.lines)
        r = http(port, "POST", CHAT, raw)
        assert r.status == 200, (raw[:300], r.body)
        assert logged_prompt(server, before).endswith(f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant")


@pytest.mark.slow
def test_other_connections_are_answered_during_a_generation(chatml: tuple[Server, int]) -> None:
    _, port = chatml
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "Write a long story about a cat."}],
            "stream": True,
            "max_completion_tokens": 48,
            "temperature": 0,
        }
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as streaming:
        streaming.sendall(request_bytes("POST", CHAT, body))
        buf = bytearray()
        while b"data: " not in buf:  # the first token is out: the generation is running
            buf += streaming.recv(65536)
        t0 = time.monotonic()
        assert http(port, "GET", "/v1/models").status == 200
        assert http(port, "GET", "/echo").body == b"echo test"
        waited = time.monotonic() - t0
        # a second chat request is queued, not dropped: answered after the first
        queued = chat(port, [{"role": "user", "content": "Hi"}], max_completion_tokens=2)
        assert queued.status == 200 and queued.json()["usage"]["completion_tokens"] >= 1
        rest = read_response(streaming, buf).body
    assert waited < 5, waited
    assert sse_events(rest)[-1] == "[DONE]"


@pytest.mark.slow
def test_a_streaming_client_that_goes_away_ends_its_generation(chatml: tuple[Server, int]) -> None:
    server, port = chatml
    body = {"messages": [{"role": "user", "content": "Count to one thousand."}], "stream": True}
    raw = request_bytes("POST", CHAT, json.dumps({**body, "max_completion_tokens": 400}).encode())
    before = len(server.lines)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(raw)
        buf = b""
        while b"data: " not in buf:
            buf += sock.recv(65536)
    server.wait("client gone after", timeout=30)
    assert not any("generated 400 tokens" in line for line in server.lines[before:])
    assert http(port, "GET", "/echo").body == b"echo test"


# -- prompts, exactly as the chat-prompts crate renders them ------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "  Hi there \n"},
    {"role": "assistant", "content": " Hello! "},
    {"role": "tool", "content": '{"t": 1}'},
    {"role": "system", "content": "ignored: not the first message"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "part one"},
            {"type": "image_url", "image_url": {"url": "x"}},
            {"type": "text", "text": "part two"},
        ],
    },
]


def test_chatml_prompts_match_chat_prompts_chatml_rs(chatml: tuple[Server, int]) -> None:
    server, port = chatml
    assert prompt_of(server, port, CONVERSATION) == (
        "<|im_start|>system\nYou are terse.<|im_end|>"
        "\n<|im_start|>user\nHi there<|im_end|>"
        "\n<|im_start|>assistant\nHello!<|im_end|>"
        '\n<|im_start|>tool\n{"t": 1}<|im_end|>'
        "\n<|im_start|>user\npart one\npart two<|im_end|>"
        "\n<|im_start|>assistant"
    )
    # no system message: create_system_prompt's default; an empty one: the default too
    default = "<|im_start|>system\nAnswer as concisely as possible.<|im_end|>"
    assert prompt_of(server, port, [{"role": "user", "content": "q"}]) == (
        f"{default}\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant"
    )
    assert prompt_of(server, port, [{"role": "system", "content": ""}, {"role": "user", "content": "q"}]) == (
        f"{default}\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant"
    )
    # Rust's trim() is Unicode whitespace: U+3000 and U+00A0 go, U+200B (not White_Space) stays
    assert prompt_of(server, port, [{"role": "user", "content": "\u3000\u00a0x\u200b "}]) == (
        f"{default}\n<|im_start|>user\nx\u200b<|im_end|>\n<|im_start|>assistant"
    )
    # an assistant message first: the history is empty, so the system prompt is never used (as upstream)
    assert prompt_of(server, port, [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]) == (
        "<|im_start|>assistant\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant"
    )


def test_llama3_prompts_match_chat_prompts_llama_rs_and_socket_addr_binds_there(node: Path) -> None:
    port = free_port()
    server = Server(node, ["--prompt-template", "llama-3-chat", "--socket-addr", f"127.0.0.1:{port}", "--log-prompts"])
    try:
        assert server.wait("Listening on").endswith(f"Listening on 127.0.0.1:{port}")
        assert prompt_of(server, port, CONVERSATION) == (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            " <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"  # the crate's space
            "<|start_header_id|>user<|end_header_id|>\n\npart one\npart two<|eot_id|>"  # tool: skipped
            "<|start_header_id|>assistant<|end_header_id|>"
        )
        assert prompt_of(server, port, [{"role": "user", "content": "q"}]) == (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful, respectful and "
            "honest assistant. Always answer as short as possible, while being safe.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
        )
    finally:
        server.stop()


# -- the command line, as clap refuses it ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--prompt-template", "chatml", "--bogus"], "error: unexpected argument '--bogus' found"),
        (
            ["--prompt-template", "chatml", "--port", "1", "--socket-addr", "0.0.0.0:2"],
            "error: the argument '--socket-addr <SOCKET_ADDR>' cannot be used with '--port <PORT>'",
        ),
        ([], "error: the following required arguments were not provided:"),
        (["--prompt-template", "vicuna"], "error: invalid value 'vicuna' for '--prompt-template <PROMPT_TEMPLATE>'"),
        (["--prompt-template", "chatml", "--ctx-size", "big"], "error: invalid value 'big' for '--ctx-size'"),
    ],
)
def test_bad_command_lines_exit_2_as_clap(node: Path, args: list[str], first_line: str) -> None:
    server = Server(node, args)
    assert server.container.wait(30) == 2, server.lines
    assert server.lines[0] == first_line, server.lines


def test_an_unknown_model_alias_fails_the_start(node: Path) -> None:
    server = Server(node, ["--prompt-template", "chatml", "--model-alias", "other"])
    assert server.container.wait(30) == 1
    assert "WASI-NN error 8" in "\n".join(server.lines)


# -- a real sandbox pod behind a Service ----------------------------------------------------------------------


def llama_deployment(port: int) -> dict[str, Any]:
    """llama-server as the seed's k3s_deployment.yaml runs llama-api-server: the plugin, WasmEdge's lib dir, the
    system libraries and the model mounted read-only at the same paths, and WasmEdge's env vars."""
    model = "/home/runner/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    paths = {
        "plugin": (f"{HOME}/plugin/libwasmedgePluginWasiNN.so", "File"),
        "wasmedge-lib": (f"{HOME}/lib", "Directory"),
        "system-lib": ("/lib/x86_64-linux-gnu", "Directory"),
        "model": (model, "File"),
    }
    container = {
        "name": "llama",
        "image": "labkit/llama-server:latest",
        "args": [
            "--prompt-template",
            "chatml",
            "--model-name",
            "smollm2-pod",
            "--ctx-size",
            "512",
            "--port",
            str(port),
        ],
        "ports": [{"name": "http", "containerPort": port}],
        "env": [
            {"name": "WASMEDGE_PLUGIN_PATH", "value": f"{HOME}/plugin"},
            {"name": "LD_LIBRARY_PATH", "value": f"{HOME}/lib"},
            {"name": "WASMEDGE_WASINN_PRELOAD", "value": f"default:GGML:CPU:{model}"},
        ],
        "volumeMounts": [{"name": n, "mountPath": p, "readOnly": True} for n, (p, _) in paths.items()],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "llama"}},
            "template": {
                "metadata": {"labels": {"app": "llama"}},
                "spec": {
                    "runtimeClassName": "wasmedge",
                    "containers": [container],
                    "volumes": [{"name": n, "hostPath": {"path": p, "type": t}} for n, (p, t) in paths.items()],
                },
            },
        },
    }


@pytest.mark.slow
def test_a_pod_serves_chat_completions_through_its_service(tmp_path: Path) -> None:
    from labkit.sandbox.netmap import host_port
    from tests.sandbox.conftest import KUBECTL, Kubectl
    from tests.sandboxes import sandbox_daemon

    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    # pod and Service addresses are loopback ones (127.42/16, 127.43/16) that every sandbox on the machine shares:
    # a random port, so another sandbox's pod or Service on the same address cannot hold it
    port = free_port()
    with sandbox_daemon(tmp_path, nodes=1) as info:
        kubectl = Kubectl({**os.environ, "KUBECONFIG": str(info.kubeconfig), "HOME": str(tmp_path)})
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "llama"},
            "spec": {"selector": {"app": "llama"}, "ports": [{"port": port, "targetPort": "http"}]},
        }
        for manifest in (llama_deployment(port), service):
            kubectl("apply", "-f", "-", input=json.dumps(manifest))

        def logs() -> str:
            return kubectl("logs", "deploy/llama", check=False).stdout

        deadline = time.monotonic() + 180  # a node's first start on a busy machine is slow
        while f"Listening on 0.0.0.0:{port}" not in logs():
            assert time.monotonic() < deadline, (logs(), kubectl("describe", "pods", check=False).stdout)
            time.sleep(0.5)
        ip = json.loads(kubectl("get", "service", "llama", "-o", "json").stdout)["spec"]["clusterIP"]
        deadline = time.monotonic() + 30
        models: Any = None
        while models is None:  # the proxy's listener for the ClusterIP comes up with the endpoints
            try:
                models = http_to(ip, host_port(port), "GET", "/v1/models").json()
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert models["data"][0]["id"] == "smollm2-pod"
        body = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_completion_tokens": 8}
        r = http_to(ip, host_port(port), "POST", CHAT, json.dumps(body).encode())
        assert r.status == 200 and r.json()["model"] == "smollm2-pod"
        assert r.json()["choices"][0]["message"]["content"]
        deadline = time.monotonic() + 10
        while "POST /v1/chat/completions -> 200" not in logs():  # kubectl logs may lag the answer
            assert time.monotonic() < deadline, logs()
            time.sleep(0.2)


def http_to(ip: str, port: int, method: str, path: str, body: bytes | None = None) -> Response:
    with socket.create_connection((ip, port), timeout=120) as sock:
        sock.sendall(request_bytes(method, path, body, {"Connection": "close"}))
        return read_response(sock, bytearray())


@pytest.mark.slow
def test_a_server_killed_mid_generation_closes_every_connection_at_once(node: Path) -> None:
    # a pod deleted while it computes: its clients (here a load balancer's kept-alive connection and the caller
    # waiting for its answer) must see the connection end then, as with a killed process, not at a later
    # garbage collection (a killed guest's host objects sit in reference cycles with the trap)
    server, port = start(node, "--prompt-template", "chatml", "--temp", "0", "--n-predict", "2000")
    server.wait("Listening on")
    body = json.dumps({"messages": [{"role": "user", "content": "List the numbers from 1 to 10000."}]}).encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as idle,
        socket.create_connection(("127.0.0.1", port), timeout=10) as waiting,
    ):
        idle.sendall(request_bytes("GET", "/echo"))
        assert read_response(idle, bytearray()).status == 200  # kept alive, idle now
        waiting.sendall(request_bytes("POST", CHAT, body))
        time.sleep(2)  # into the generation (2,000 tokens take ~20 s)
        server.stop()
        for sock in (idle, waiting):
            sock.settimeout(2)
            assert sock.recv(65536) == b""
