"""WASI-NN in the sandbox: tokens/s through the ABI from a wasm guest vs llama-cpp-python directly, and what a
second pod on the same model costs in memory. Run:

    python benchmarks/bench_wasinn.py [--tokens 64] [--runs 3]

- **throughput**: the same greedy completion (SmolLM2, ChatML prompt, n_ctx 512, 2 threads) through
  ``llama_cpp.Llama`` and through ``wasm-apps/wasinn-chat`` in the kubelet's runner (load_by_name, set_input,
  compute, get_output). Both timings cover prompt evaluation and generation; the guest's also covers
  instantiation and the graph's context (the model itself stays loaded on the node, as while a pod serves).
  Goal: direct / ABI ≤ 1.2.
- **second pod**: the node process's RSS after one graph (a pod's model + llama context) and after a second
  graph on the same file: the model is loaded once (``wasinn_engine.SharedModels``), so the second costs its
  context only.

Numbers on a shared 2-core VM vary with the neighbours' load: read the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path, PurePosixPath

from labkit.measure import engine_direct
from labkit.models import chatml, smollm2_gguf
from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.noderoot import prepare_node_root
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, Mount, WasmContainer
from labkit.wasm.apps import module_path

QUESTION = "Explain in a few sentences what WebAssembly is and why it is useful on servers."
HOME = PurePosixPath("/home/runner/.wasmedge")
MODEL = "/home/runner/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def direct(tokens: int, runs: int) -> list[float]:
    return [c.tokens_per_s for c in engine_direct(QUESTION, tokens, runs)]


def via_abi(tokens: int, runs: int, root: Path) -> list[float]:
    mounts = [
        Mount(root / str(HOME / "plugin").lstrip("/"), str(HOME / "plugin")),
        Mount(root / str(HOME / "lib").lstrip("/"), str(HOME / "lib")),
        Mount(root / "lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"),
        Mount(root / MODEL.lstrip("/"), MODEL),
    ]
    env = {
        "WASMEDGE_PLUGIN_PATH": str(HOME / "plugin"),
        "LD_LIBRARY_PATH": str(HOME / "lib"),
        "WASMEDGE_WASINN_PRELOAD": f"default:GGML:CPU:{MODEL}",
    }
    module = module_path("wasinn-chat").read_bytes()
    rates = []
    for k in range(runs + 1):
        lines: list[str] = []
        context = PodContext(name="bench", env=env, mounts={m.guest_path: str(m.host_dir) for m in mounts})
        args = ["/wasinn-chat.wasm", "--n-predict", str(tokens if k else 4), "default", QUESTION if k else "Hi"]
        spec = ContainerSpec(module, args, env, mounts=mounts, name="bench")
        container = WasmContainer(spec, None, lines.append, lines.append, extensions_for(context), context)
        start = time.perf_counter()
        container.start()
        code = container.wait(600)
        elapsed = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"the guest failed ({code}): {lines}")
        meta = json.loads(next(line for line in lines if line.startswith("metadata: "))[len("metadata: ") :])
        if k:  # the first run is the warm-up
            rates.append(meta["output_tokens"] / elapsed)
    return rates


def second_pod_rss() -> tuple[float, float, float]:
    from labkit.sandbox.kubelet.wasinn_engine import Config, ExecContext, Graph

    base = rss_mb()
    path = str(smollm2_gguf())
    pods = []
    after = []
    for _ in range(2):
        graph = Graph(path, Config(ctx_size=512, batch_size=512))
        ctx = ExecContext(graph)
        ctx.set_input(1, b'{"n-predict": 8, "temp": 0}')
        ctx.set_input(0, chatml("Hi").encode())
        ctx.compute(lambda: None)  # touch the weights, as a serving pod does
        pods.append((graph, ctx))
        after.append(rss_mb())
    for graph, ctx in pods:
        ctx.close()
        graph.close()
    return base, after[0], after[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import tempfile

    from labkit.sandbox.kubelet.wasinn_engine import Config, Graph

    root = prepare_node_root(Path(tempfile.mkdtemp(prefix="bench-wasinn-")))
    keep = Graph(str(root / MODEL.lstrip("/")), Config(ctx_size=64))  # the node's model stays loaded
    abi = via_abi(args.tokens, args.runs, root)
    keep.close()
    base, one, two = second_pod_rss()
    plain = direct(args.tokens, args.runs)
    d, a = statistics.median(plain), statistics.median(abi)
    print(f"direct llama-cpp-python: {d:6.1f} tokens/s (median of {args.runs}: {', '.join(f'{r:.1f}' for r in plain)})")
    print(f"wasm guest via WASI-NN:  {a:6.1f} tokens/s (median of {args.runs}: {', '.join(f'{r:.1f}' for r in abi)})")
    print(f"ratio direct / ABI: {d / a:.2f} of medians, {max(plain) / max(abi):.2f} of bests (goal <= 1.2)")
    print(
        f"RSS: process {base:.0f} MB, first pod +{one - base:.0f} MB, second pod on the same file +{two - one:.0f} MB"
    )


if __name__ == "__main__":
    main()
