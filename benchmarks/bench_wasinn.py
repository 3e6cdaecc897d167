"""WASI-NN in the sandbox (issue 13): the kit's LLM server in a pod, reached through its Service, against the same
engine (llama-cpp-python) called directly in this process. Run:

    python benchmarks/bench_wasinn.py [--tokens 48] [--runs 3]

- **latency**: the same ChatML prompt (the server's default system prompt, rendered here as the server renders
  it), greedy, ``max_tokens`` = tokens, n_ctx 512, 2 threads, through (a) ``llama_cpp.Llama`` directly (prompt
  prefix reuse off: every request evaluates the prompt, as the server does) and (b) ``POST /v1/chat/completions``
  to ``wasm-apps/llama-server`` in a 1-node sandbox pod via its Service's ClusterIP (the sandbox's service proxy,
  the pod's WasmEdge-ABI sockets, wasi_ephemeral_nn). Rounds alternate (a, b, a, b, ...) after a warm-up of
  each, so a noisy neighbour slows both sides alike; printed: p50 latency and tokens/s of each and the ratio
  b/a of the p50 latencies. Goal: <= 1.2.
- **first token**: ``stream: true`` through the Service, to the first SSE chunk with content; and directly
  (``Llama(..., stream=True)``) to its first chunk.
- **a second replica**: the node's memory (``kubectl top node``: the node process's RSS) with one replica and
  with two on the same model file: the model is loaded once per node (``wasinn_engine.SharedModels``, one mmap),
  so the second pod costs its llama context and wasm memory only.

Numbers on a shared 2-core VM vary with the neighbours' load: read the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTION = "Write a long story about a lighthouse keeper and a cat."
SYSTEM = "Answer as concisely as possible."  # llama-server's default ChatML system prompt (LlamaEdge's)


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


class Direct:
    """llama-cpp-python on the model file, as the sandbox's engine uses it (n_ctx 512, 2 threads)."""

    def __init__(self) -> None:
        import llama_cpp

        from labkit.models import smollm2_gguf

        self.llm = llama_cpp.Llama(str(smollm2_gguf()), n_ctx=512, n_threads=2, n_threads_batch=2, verbose=False)
        # the server's rendering (prompt.c): system, user, then "<|im_start|>assistant" without a newline
        self.prompt = (
            f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant"
        )

    def complete(self, tokens: int) -> tuple[float, int]:
        self.llm.reset()  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        out: Any = self.llm(self.prompt, max_tokens=tokens, temperature=0)
        return time.perf_counter() - started, int(out["usage"]["completion_tokens"])

    def first_token(self) -> float:
        self.llm.reset()  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        for _chunk in self.llm(self.prompt, max_tokens=8, temperature=0, stream=True):
            return time.perf_counter() - started
        return float("nan")


class OverHttp:
    """POST /v1/chat/completions to an address: the Service's ClusterIP (the sandbox's proxy), or a pod's."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port

    def _post(self, body: dict[str, Any]) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.ip, self.port, timeout=300)
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        return conn.getresponse()

    def body(self, tokens: int, stream: bool = False) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": tokens, "temperature": 0,
                "stream": stream}  # fmt: skip

    def complete(self, tokens: int) -> tuple[float, int]:
        started = time.perf_counter()
        response = self._post(self.body(tokens))
        answer = json.loads(response.read())
        return time.perf_counter() - started, int(answer["usage"]["completion_tokens"])

    def first_token(self) -> float:
        started = time.perf_counter()
        response = self._post(self.body(8, stream=True))
        while line := response.readline():
            if line.startswith(b"data: {") and b'"content":"' in line:
                elapsed = time.perf_counter() - started
                response.read()  # the rest of the stream, so the connection ends cleanly
                return elapsed
        return float("nan")


def node_memory_mib(kubectl: Any) -> int:
    time.sleep(11)  # the node samples its usage every 5 s; two samples make a reading
    out = kubectl("top", "node", "--no-headers").stdout
    return int(out.strip().splitlines()[-1].split()[3].removesuffix("Mi"))


def report(times: dict[str, list[float]], tokens: dict[str, list[int]], first: dict[str, float]) -> None:
    for name in ("direct", "service"):
        rate = sum(tokens[name]) / sum(times[name])
        label = "(a) llama-cpp-python direct" if name == "direct" else "(b) llama-server pod via Service"
        print(f"{label}: p50 {p50(times[name]) * 1000:7.0f} ms for {tokens[name]} tokens, {rate:5.1f} tokens/s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times[name])} s)")  # fmt: skip
    print(f"ratio b/a of p50 latency: {p50(times['service']) / p50(times['direct']):.2f} (goal <= 1.2)")
    print(f"first token (stream): direct {first['direct'] * 1000:.0f} ms, via Service {first['service'] * 1000:.0f} ms")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from labkit.models import smollm2_gguf
    from labkit.sandbox.netmap import host_port
    from tests.sandbox.conftest import KUBECTL, Kubectl
    from tests.sandbox.test_llama_server import llama_deployment
    from tests.sandbox.test_wasi_sockets import free_port
    from tests.sandboxes import sandbox_daemon

    if KUBECTL is None:
        raise SystemExit("kubectl is not installed")
    home = Path(tempfile.mkdtemp(prefix="bench-wasinn-"))
    port = free_port()
    with sandbox_daemon(home, nodes=1) as info:
        kubectl = Kubectl({**os.environ, "KUBECONFIG": str(info.kubeconfig), "HOME": str(home)})
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llama"},
                   "spec": {"selector": {"app": "llama"}, "ports": [{"port": port, "targetPort": "http"}]}}  # fmt: skip
        deployment = llama_deployment(port)
        for manifest in (deployment, service):
            kubectl("apply", "-f", "-", input=json.dumps(manifest))
        deadline = time.monotonic() + 240
        while f"Listening on 0.0.0.0:{port}" not in kubectl("logs", "deploy/llama", check=False).stdout:
            if time.monotonic() > deadline:
                raise SystemExit(kubectl("describe", "pods", check=False).stdout)
            time.sleep(0.5)
        ip = json.loads(kubectl("get", "service", "llama", "-o", "json").stdout)["spec"]["clusterIP"]
        served, direct = OverHttp(ip, host_port(port)), Direct()
        for side in (direct, served):  # warm-up: the server's first request also makes its llama context
            side.complete(4)
        times: dict[str, list[float]] = {"direct": [], "service": []}
        tokens: dict[str, list[int]] = {"direct": [], "service": []}
        for _ in range(args.runs):
            for name, side in (("direct", direct), ("service", served)):
                seconds, n = side.complete(args.tokens)
                times[name].append(seconds)
                tokens[name].append(n)
        first = {name: p50([side.first_token() for _ in range(args.runs)])
                 for name, side in (("direct", direct), ("service", served))}  # fmt: skip
        report(times, tokens, first)
        one = node_memory_mib(kubectl)
        deployment["spec"]["replicas"] = 2
        kubectl("apply", "-f", "-", input=json.dumps(deployment))
        deadline = time.monotonic() + 240
        while kubectl("logs", "-l", "app=llama", "--tail=-1", check=False).stdout.count("Listening on") < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the second replica did not start")
            time.sleep(0.5)
        pods = json.loads(kubectl("get", "pods", "-l", "app=llama", "-o", "json").stdout)["items"]
        for pod in pods:  # each replica serves once, so each has made its llama context (made at first use)
            OverHttp(pod["status"]["podIP"], host_port(port)).complete(4)
        two = node_memory_mib(kubectl)
    model_mib = smollm2_gguf().stat().st_size / 2**20
    print(f"node memory: {one} MiB with one replica, {two} MiB with two: +{two - one} MiB for the second "
          f"(the model file is {model_mib:.0f} MiB, loaded once per node)")  # fmt: skip


if __name__ == "__main__":
    main()
