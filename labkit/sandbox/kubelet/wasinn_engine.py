"""The GGML backend of the sandbox's WASI-NN: llama.cpp through llama-cpp-python's C bindings.

It follows WasmEdge's GGML backend (``plugins/wasi_nn/GGML/``; read at WasmEdge commit d516c5d):

- a **graph** holds a llama model and one llama context (``core/ggml_core.cpp`` ``load``: model and
  context are the graph's); an **execution context** holds the prompt tokens, the outputs and a sampler;
- ``compute`` clears the context, evaluates the prompt (``PromptTooLong`` past ``n_ctx - 4`` tokens), then
  samples until an end-of-generation token, ``n-predict`` tokens, the ``reverse-prompt`` or a full context
  (``ContextFull``, returned) (``compute/compute_engine.cpp``, ``compute/inference_manager.cpp``);
  every sampled token's piece is appended to the output, the end token's too;
- ``compute_single`` evaluates the prompt on its first call and then samples one token per call,
  ``EndOfSequence`` (100) at the end; output index 1 is the metadata JSON
  ``{"input_tokens": …, "output_tokens": …, "llama_build_number": …, "llama_commit": "…"}``
  (``core/output_generator.cpp``).

**Sharing.** llama.cpp mmaps a GGUF by default, so two pods using the same file share its pages through the
page cache anyway; on top of that one node process loads each file **once** (:class:`SharedModels`, keyed by
the file's device, inode, size and mtime, so a replaced file is loaded anew) and every graph gets its own
llama context on the shared model. A llama model is read-only after loading and llama.cpp supports several
contexts on one model; each context is used by one container's thread at a time.

**Bounds** (labkit's, for a hostile guest): a prompt of at most :data:`MAX_PROMPT` bytes, metadata of at most
:data:`MAX_METADATA`, an output of at most :data:`MAX_OUTPUT` bytes (generation stops there as at an end
token), ``ctx-size`` at most the model's training context, threads at most the node's CPUs (2 by default).
**Cancel**: ``compute`` calls *cancel* between tokens; the kubelet's raises when the pod is killed.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import llama_cpp

from labkit.sandbox.kubelet.wasinn_abi import NnErr

MAX_PROMPT = 1 << 20
MAX_METADATA = 64 << 10
MAX_OUTPUT = 1 << 20
DEFAULT_CTX = 4096  # common_params' n_ctx (llama.cpp common/common.h), which the plugin keeps
DEFAULT_BATCH = 2048  # common_params' n_batch
MAX_THREADS = max(1, min(2, os.cpu_count() or 1))
_LOG_CB: list[Any] = []


def _quiet() -> None:
    """llama.cpp logs to the node process's stderr unless told: drop it (the plugin logs only with enable-log)."""
    if not _LOG_CB:
        callback = llama_cpp.llama_log_callback(lambda _level, _text, _data: None)
        _LOG_CB.append(callback)
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()


@dataclass
class _Loaded:
    model: Any
    refs: int = 0


class SharedModels:
    """One loaded llama model per file per node process, counted by the graphs that use it."""

    def __init__(self) -> None:
        self._models: dict[tuple[int, int, int, int], _Loaded] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str) -> tuple[int, int, int, int]:
        st = os.stat(path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def acquire(self, path: str) -> tuple[tuple[int, int, int, int], Any]:
        _quiet()
        key = self.key(path)
        with self._lock:  # one load at a time: two pods starting together must not load the file twice
            loaded = self._models.get(key)
            if loaded is None:
                params = llama_cpp.llama_model_default_params()
                params.n_gpu_layers = 0
                model = llama_cpp.llama_model_load_from_file(path.encode(), params)
                if not model:
                    raise NnError(NnErr.INVALID_ARGUMENT, "load: unable to init model.")
                loaded = self._models[key] = _Loaded(model)
            loaded.refs += 1
            return key, loaded.model

    def release(self, key: tuple[int, int, int, int]) -> None:
        with self._lock:
            loaded = self._models.get(key)
            if loaded is None:
                return
            loaded.refs -= 1
            if loaded.refs <= 0:
                del self._models[key]
                llama_cpp.llama_model_free(loaded.model)

    def count(self) -> int:
        with self._lock:
            return len(self._models)


MODELS = SharedModels()


class NnError(Exception):
    """A WASI-NN error code and the GGML backend's log line."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Config:
    """The metadata keys the sandbox honours (``GGML/metadata/metadata_parser.cpp`` names); others are accepted
    and ignored, as keys a CPU build does not use (``n-gpu-layers``, ``main-gpu``…) are upstream."""

    ctx_size: int = DEFAULT_CTX
    batch_size: int = DEFAULT_BATCH
    threads: int = MAX_THREADS
    n_predict: int = -1
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.0
    seed: int = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: random
    reverse_prompt: str = ""
    enable_log: bool = False

    _INTS: ClassVar[dict[str, str]] = {
        "ctx-size": "ctx_size",
        "batch-size": "batch_size",
        "threads": "threads",
        "n-predict": "n_predict",
        "top-k": "top_k",
        "seed": "seed",
    }
    _FLOATS: ClassVar[dict[str, str]] = {"temp": "temp", "top-p": "top_p", "repeat-penalty": "repeat_penalty"}

    def update(self, raw: bytes) -> tuple[bool, bool]:
        """Apply a metadata JSON; returns (context params changed, sampler params changed)."""
        if len(raw) > MAX_METADATA:
            raise NnError(NnErr.TOO_LARGE, "setInput: metadata too large.")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise NnError(NnErr.INVALID_ARGUMENT, "parse metadata error.") from None
        if not isinstance(doc, dict):
            raise NnError(NnErr.INVALID_ARGUMENT, "parse metadata error.")
        before = (
            (self.ctx_size, self.batch_size, self.threads),
            (self.temp, self.top_k, self.top_p, self.repeat_penalty, self.seed),
        )
        try:
            for key, attr in self._INTS.items():
                if key in doc:
                    setattr(self, attr, int(doc[key]))
            for key, attr in self._FLOATS.items():
                if key in doc:
                    setattr(self, attr, float(doc[key]))
        except (TypeError, ValueError, OverflowError):
            raise NnError(NnErr.INVALID_ARGUMENT, "parse metadata error.") from None
        if "reverse-prompt" in doc:
            self.reverse_prompt = str(doc["reverse-prompt"])
        if "enable-log" in doc:
            self.enable_log = bool(doc["enable-log"])
        self.threads = max(1, min(self.threads, MAX_THREADS))
        self.batch_size = max(1, min(self.batch_size, DEFAULT_BATCH))
        self.seed &= 0xFFFFFFFF
        after = (
            (self.ctx_size, self.batch_size, self.threads),
            (self.temp, self.top_k, self.top_p, self.repeat_penalty, self.seed),
        )
        return before[0] != after[0], before[1] != after[1]


class Graph:
    """A loaded model (shared) with its own llama context."""

    def __init__(self, path: str, config: Config, models: SharedModels = MODELS) -> None:
        self.models = models
        self.key, self.model = models.acquire(path)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.config = config
        self.ctx: Any = None  # made at first use, so metadata set right after load costs one context, not two

    def context(self) -> Any:
        """The llama context, created on first use with the current config [inferred equivalent: upstream
        creates it in load() and again when metadata changes its parameters]."""
        if not self.ctx:
            self.new_context()
        return self.ctx

    def new_context(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        train = llama_cpp.llama_model_n_ctx_train(self.model)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max(16, min(self.config.ctx_size, train)) if self.config.ctx_size > 0 else train
        params.n_batch = params.n_ubatch = self.config.batch_size
        params.n_threads = params.n_threads_batch = self.config.threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise NnError(NnErr.INVALID_ARGUMENT, "load: unable to init context.")

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            self.model = None
            self.models.release(self.key)

    def tokenize(self, text: bytes) -> list[int]:
        size = len(text) + 8
        tokens = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self.vocab, text, len(text), tokens, size, True, True)
        if n < 0:
            raise NnError(NnErr.INVALID_ARGUMENT, "setInput: failed to tokenize the prompt.")
        return list(tokens[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)]


@dataclass
class ExecContext:
    """One execution context: inputs, outputs, a sampler (``GGML/core/ggml_type.h`` ``Context``)."""

    graph: Graph
    inputs: list[int] = field(default_factory=list)
    outputs: bytearray = field(default_factory=bytearray)
    output_tokens: list[int] = field(default_factory=list)
    n_pos: int = 0
    single_started: bool = False
    sampler: Any = None

    def set_input(self, index: int, data: bytes) -> None:
        if index == 1:  # metadata (input_processor.cpp): may recreate the graph's context and the sampler
            ctx_changed, sampler_changed = self.graph.config.update(data)
            if ctx_changed and self.graph.ctx:
                self.graph.new_context()
            if sampler_changed:
                self.free_sampler()
            return
        if len(data) > MAX_PROMPT:
            raise NnError(NnErr.TOO_LARGE, "setInput: the prompt is too large.")
        self.inputs = self.graph.tokenize(data)

    def free_sampler(self) -> None:
        if self.sampler:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None

    def _sampler(self) -> Any:
        if not self.sampler:
            c = self.graph.config
            chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(64, c.repeat_penalty, 0, 0))
            if c.temp <= 0:
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            else:
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(c.top_k))
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(c.top_p, 1))
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(c.temp))
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(c.seed))
            self.sampler = chain
        return self.sampler

    def _clear(self) -> None:
        ctx = self.graph.context()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        llama_cpp.llama_sampler_reset(self._sampler())
        self.n_pos = 0
        self.outputs.clear()
        self.output_tokens.clear()

    def _evaluate(self, tokens: list[int], cancel: Callable[[], None]) -> None:
        ctx = self.graph.ctx
        n_ctx = llama_cpp.llama_n_ctx(ctx)
        if self.n_pos + len(tokens) > n_ctx:
            raise NnError(NnErr.CONTEXT_FULL, f"the context is full ({self.n_pos + len(tokens)} / {n_ctx} tokens).")
        step = self.graph.config.batch_size
        for start in range(0, len(tokens), step):
            cancel()
            chunk = tokens[start : start + step]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            status = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(array, len(chunk)))
            if status != 0:
                raise NnError(NnErr.RUNTIME_ERROR, "evaluateTokens: failed to llama_decode.")
            self.n_pos += len(chunk)

    def _evaluate_input(self, cancel: Callable[[], None]) -> None:
        if not self.inputs:
            raise NnError(NnErr.INVALID_ARGUMENT, "compute: llama input is not set!")
        limit = llama_cpp.llama_n_ctx(self.graph.ctx) - 4
        if len(self.inputs) > limit:
            raise NnError(
                NnErr.PROMPT_TOO_LONG,
                f"compute: the prompt is too long. Your input has {len(self.inputs)} tokens. "
                f"Please reduce it to {limit} tokens.",
            )
        self._evaluate(self.inputs, cancel)

    def _sample(self, cancel: Callable[[], None], single: bool) -> None:
        """One token (``sampleOutput``): raises NnError(END_OF_SEQUENCE) at the end."""
        token = llama_cpp.llama_sampler_sample(self._sampler(), self.graph.ctx, -1)
        self.output_tokens.append(token)
        self.outputs += self.graph.piece(token)
        if (
            not single
            and self.graph.config.reverse_prompt
            and self.graph.config.reverse_prompt.encode() in self.outputs
        ):
            raise NnError(NnErr.END_OF_SEQUENCE)
        if llama_cpp.llama_vocab_is_eog(self.graph.vocab, token) or len(self.outputs) >= MAX_OUTPUT:
            raise NnError(NnErr.END_OF_SEQUENCE)
        self._evaluate([token], cancel)

    def compute(self, cancel: Callable[[], None]) -> None:
        self._clear()
        self._evaluate_input(cancel)
        budget = self.graph.config.n_predict if self.graph.config.n_predict >= 0 else 1 << 31
        try:
            for _ in range(budget):
                cancel()
                self._sample(cancel, single=False)
        except NnError as err:
            if err.code != NnErr.END_OF_SEQUENCE:
                raise

    def compute_single(self, cancel: Callable[[], None]) -> None:
        if not self.single_started:
            self.single_started = True
            self._clear()
            try:
                self._evaluate_input(cancel)
            except NnError:
                self.single_started = False
                raise
        try:
            self._sample(cancel, single=True)
        except NnError:
            self.single_started = False
            raise

    def fini_single(self) -> None:
        """``finiSingle``: end a compute_single run; the next one starts from the prompt again."""
        self.single_started = False
        self.output_tokens.clear()
        self.outputs.clear()
        self.n_pos = 0

    def output(self, index: int, single: bool) -> bytes:
        if index == 1:
            return json.dumps(
                {
                    "input_tokens": len(self.inputs),
                    "output_tokens": len(self.output_tokens),
                    "llama_build_number": 0,
                    "llama_commit": f"llama-cpp-python-{llama_cpp.__version__}",
                },
                separators=(", ", ": "),
            ).encode()
        if single:
            return self.graph.piece(self.output_tokens[-1]) if self.output_tokens else b""
        return bytes(self.outputs)

    def close(self) -> None:
        self.free_sampler()
