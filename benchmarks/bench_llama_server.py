"""llama-server (wasm-apps/llama-server): tokens/s through its HTTP API vs through the WASI-NN ABI alone. Run:

    python benchmarks/bench_llama_server.py [--tokens 48] [--runs 3]

- **ABI**: ``wasm-apps/wasinn-chat --single`` (compute_single + get_output_single per token, the calls the server
  makes), timed from container start to exit (instantiation, prompt evaluation, generation).
- **server log**: the tokens/s the server logs per generation (from its first compute_single to the end), without
  HTTP or the client.
- **server, JSON** and **server, stream**: one long-running llama-server (same model, n_ctx 512, greedy), timed
  from sending ``POST /v1/chat/completions`` (``max_completion_tokens`` = tokens) to the last byte; the stream
  counts its chunks, the JSON answer its ``usage.completion_tokens``.

The prompts differ slightly (the server renders upstream's ChatML with its default system prompt, wasinn-chat
SmolLM2's own), so compare rates, not times. Numbers on a shared 2-core VM swing with the neighbours: bests are
printed next to medians. A slow run is one where llama.cpp's two threads spin on each other while a neighbour
holds a core (measured: 9.5 s of CPU for 8.8 s wall vs 2.0 s for 1.0 s in a fast run of the same request), and
either path can get one; the server's own log line shows whether the time went to generation or to HTTP.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.noderoot import prepare_node_root
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, Mount, WasmContainer
from labkit.wasm.apps import module_path

QUESTION = "Write a long story about a lighthouse keeper and a cat."
HOME = "/home/runner/.wasmedge"
MODEL = "/home/runner/models/SmolLM2-135M-Instruct.Q4_1.gguf"
ENV = {
    "WASMEDGE_PLUGIN_PATH": f"{HOME}/plugin",
    "LD_LIBRARY_PATH": f"{HOME}/lib",
    "WASMEDGE_WASINN_PRELOAD": f"default:GGML:CPU:{MODEL}",
}


def container(root: Path, app: str, args: list[str], lines: list[str]) -> WasmContainer:
    mounts = [
        Mount(root / path.lstrip("/"), path)
        for path in (f"{HOME}/plugin", f"{HOME}/lib", "/lib/x86_64-linux-gnu", MODEL)
    ]
    context = PodContext(name="bench", env=ENV, mounts={m.guest_path: str(m.host_dir) for m in mounts})
    spec = ContainerSpec(module_path(app).read_bytes(), [f"/{app}.wasm", *args], ENV, mounts=mounts, name="bench")
    return WasmContainer(spec, None, lines.append, lines.append, extensions_for(context), context)


def via_abi(root: Path, tokens: int) -> float:
    lines: list[str] = []
    guest = container(root, "wasinn-chat", ["--single", "--n-predict", str(tokens), "default", QUESTION], lines)
    start = time.perf_counter()
    guest.start()
    if guest.wait(600) != 0:
        raise SystemExit(f"wasinn-chat failed: {lines}")
    elapsed = time.perf_counter() - start
    meta = json.loads(next(line for line in lines if line.startswith("metadata: "))[len("metadata: ") :])
    return float(meta["output_tokens"]) / elapsed


def via_server(port: int, tokens: int, stream: bool) -> float:
    body = json.dumps(
        {"messages": [{"role": "user", "content": QUESTION}], "max_completion_tokens": tokens, "stream": stream}
    ).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(head.encode() + body)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - start
    text = data.decode()
    if stream:
        count = text.count('"finish_reason":null')  # one chunk per token
    else:
        count = json.loads(text[text.index("\r\n\r\n") + 4 :])["usage"]["completion_tokens"]
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-llama-server-"))
    root = prepare_node_root(scratch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines: list[str] = []
    server = container(
        root,
        "llama-server",
        ["--prompt-template", "chatml", "--ctx-size", "512", "--temp", "0", "--port", str(port)],
        lines,
    )
    server.start()
    while not any("Listening on" in line for line in lines):
        time.sleep(0.05)
    try:
        via_abi(root, 4)  # warm-ups
        via_server(port, 4, False)
        rates: dict[str, list[float]] = {"ABI (wasinn-chat --single)": [], "server, JSON": [], "server, stream": []}
        for _ in range(args.runs):  # interleaved, so the neighbours' load falls on all three alike
            rates["ABI (wasinn-chat --single)"].append(via_abi(root, args.tokens))
            rates["server, JSON"].append(via_server(port, args.tokens, False))
            rates["server, stream"].append(via_server(port, args.tokens, True))
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)
    # the server's own count: generation alone (after the prompt), as it logs each one
    logged = [float(line.split("(")[1].split()[0]) for line in lines if line.startswith("[INFO] generated ")]
    rates["server log, generation only"] = logged[-2 * args.runs :]
    for name, values in rates.items():
        print(
            f"{name:28s} {statistics.median(values):6.1f} tokens/s median, {max(values):6.1f} best "
            f"({', '.join(f'{v:.1f}' for v in values)})"
        )
    abi = rates["ABI (wasinn-chat --single)"]
    for name in ("server, JSON", "server, stream"):
        print(
            f"ABI / {name}: {statistics.median(abi) / statistics.median(rates[name]):.2f} of medians, "
            f"{max(abi) / max(rates[name]):.2f} of bests"
        )


if __name__ == "__main__":
    main()
