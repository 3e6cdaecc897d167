"""Measuring functions shared by ``benchmarks/`` and notebook 07: percentiles, pod create → Ready from a watch
stream, an HTTP load generator, pod memory from the metrics API, and one timed chat completion (through a
server, or the engine directly).

>>> from labkit import measure
>>> measure.percentile([3.0, 1.0, 2.0], 50)
2.0
>>> measure.load("127.0.0.1", port, seconds=1, clients=2).p50_ms               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from labkit.cluster import Cluster


def percentile(samples: list[float], p: float) -> float:
    """The *p*-th percentile by rank (no interpolation): the value below which *p* % of *samples* fall."""
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


class ReadyWatch:
    """Records when each pod first reports Ready=True, read from a pod watch stream in a thread.

    *stream* is anything with ``readline()`` that yields the API server's watch lines (one JSON event each):
    a raw ``http.client`` response, or ``core.list_namespaced_pod(ns, watch=True, _preload_content=False)``.
    """

    def __init__(self, stream: Any) -> None:
        self.ready: dict[str, float] = {}
        self.changed = threading.Condition()
        self.stream = stream
        self.closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """End the watch: the reader ends quietly (a read interrupted by the close is not an error).

        A urllib3 response is shut down first: closing it while the reader is blocked in ``readline`` would wait
        for the reader's lock, that is for the next event or the watch's own timeout (minutes).
        """
        self.closed = True
        shutdown = getattr(self.stream, "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(ValueError, RuntimeError, OSError):  # no socket to shut down: close does it
                shutdown()
            self._reader.join(5)
        self.stream.close()
        self._reader.join(5)

    def _read(self) -> None:
        try:
            self._read_lines()
        except Exception:
            if not self.closed:
                raise

    def _read_lines(self) -> None:
        while line := self.stream.readline():
            if not line.strip():
                continue
            pod = json.loads(line).get("object") or {}
            conditions = (pod.get("status") or {}).get("conditions") or ()
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                seen = time.perf_counter()
                with self.changed:
                    self.ready.setdefault(pod["metadata"]["name"], seen)
                    self.changed.notify_all()

    def wait(self, names: list[str], timeout: float = 60.0) -> None:
        """Block until every pod in *names* is Ready (woken by the reader, not polling); TimeoutError if not."""
        with self.changed:
            if not self.changed.wait_for(lambda: all(n in self.ready for n in names), timeout):
                missing = [n for n in names if n not in self.ready]
                raise TimeoutError(f"pods not Ready after {timeout:.0f} s: {missing[:5]}")


def create_to_ready(
    create: Callable[[str], None], watch: ReadyWatch, names: list[str], *, timeout: float = 60.0
) -> list[float]:
    """Create → Ready in ms for each pod in *names*, one at a time: ``create(name)`` posts the pod."""
    samples = []
    for name in names:
        started = time.perf_counter()
        create(name)
        watch.wait([name], timeout)
        samples.append((watch.ready[name] - started) * 1000)
    return samples


@dataclass
class LoadResult:
    """What :func:`load` measured: every request's latency (ms), the rate and the failures."""

    latencies_ms: list[float]
    seconds: float
    failures: int

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


CHAT_BODY = b'{"model": "bench", "messages": [{"role": "user", "content": "hi"}]}'


def load(
    host: str,
    port: int,
    seconds: float,
    clients: int,
    *,
    method: str = "POST",
    path: str = "/v1/chat/completions",
    body: bytes | None = CHAT_BODY,
) -> LoadResult:
    """*clients* threads, one kept-alive connection each, sending requests for *seconds*; non-200 is a failure."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    stop = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"} if body is not None else {}

    def run(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                failures[i] += 1
            latencies[i].append((time.perf_counter() - started) * 1000)
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(sorted(x for xs in latencies for x in xs), time.monotonic() - began, sum(failures))


@dataclass
class Completion:
    """One timed completion: wall seconds from request to the whole answer, and the tokens generated."""

    seconds: float
    tokens: int
    text: str = field(default="", repr=False)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def chat(url: str, question: str, max_tokens: int, *, timeout: float = 300.0) -> Completion:
    """POST one OpenAI chat completion to ``<url>/v1/chat/completions`` and time it to the last byte."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    body = json.dumps({"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})  # noqa: S310
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) checked above)
        answer = json.load(response)
    elapsed = time.perf_counter() - started
    return Completion(elapsed, int(answer["usage"]["completion_tokens"]), answer["choices"][0]["message"]["content"])


def engine_direct(question: str, max_tokens: int, runs: int, *, n_ctx: int = 512, threads: int = 2) -> list[Completion]:
    """The same greedy completion through ``llama_cpp.Llama`` in this process: the sandbox's WASI-NN engine,
    without wasm, a pod or HTTP (SmolLM2, the ChatML prompt). Needs the ``llm`` extra."""
    import llama_cpp

    from labkit.models import chatml, smollm2_gguf

    llm = llama_cpp.Llama(str(smollm2_gguf()), n_ctx=n_ctx, n_threads=threads, verbose=False)
    llm(chatml("Hi"), max_tokens=4, temperature=0)  # warm up
    done = []
    for _ in range(runs):
        llm.reset()  # type: ignore[no-untyped-call]  # no prompt-prefix reuse: every run evaluates the prompt, as a server does per request
        started = time.perf_counter()
        out: Any = llm(chatml(question), max_tokens=max_tokens, temperature=0)  # one answer: stream is off
        done.append(
            Completion(time.perf_counter() - started, int(out["usage"]["completion_tokens"]), out["choices"][0]["text"])
        )
    return done


def pod_memory(cluster: Cluster, namespace: str, names: list[str], *, timeout: float = 30.0) -> dict[str, int]:
    """Each pod's memory in bytes as metrics.k8s.io reports it (``kubectl top pod``, unrounded), summed over
    its containers; waits until every pod in *names* has a sample (a node samples every few seconds, and a
    container needs two samples). TimeoutError names the pods still without one."""
    import kubernetes.client
    from kubernetes.utils import parse_quantity

    api = kubernetes.client.CustomObjectsApi(cluster.api_client)
    deadline = time.monotonic() + timeout
    while True:
        listing = cast(
            "dict[str, Any]", api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", namespace, "pods")
        )
        found = {
            item["metadata"]["name"]: int(sum(parse_quantity(c["usage"]["memory"]) for c in item["containers"]))  # type: ignore[no-untyped-call]
            for item in listing.get("items", [])
            if item.get("containers")
        }
        missing = [n for n in names if n not in found]
        if not missing:
            return {n: found[n] for n in names}
        if time.monotonic() > deadline:
            raise TimeoutError(f"no memory sample after {timeout:.0f} s for {missing[:5]}")
        time.sleep(1.0)
