"""``wasi_ephemeral_nn``: WasmEdge's WASI-NN plugin (GGML backend) as a host extension of sandbox nodes.

**When a pod gets it.** As under the runwasi shim, which loads plugins inside the container
(``PluginManager::load(None)``, runwasi ``crates/containerd-shim-wasmedge/src/instance.rs``): only when the
pod *sees* ``libwasmedgePluginWasiNN.so`` where ``WASMEDGE_PLUGIN_PATH`` points, and every library it needs
at a path the loader searches, all through the pod's mounts (``labkit/sandbox/wasmedge/podview.py``).
Otherwise the functions are not defined and instantiation fails with WasmEdge's ``unknown import, Code:
0x302`` lines (``wasmrun.wasmedge_link_error``), preceded by the plugin's load-failure lines where WasmEdge
logs them (``loading failed: invalid path, Code: 0x100`` and ``load library failed:<dlerror>``).
``WASMEDGE_WASINN_PRELOAD`` is parsed as the shim parses it (``wasinn_abi.parse_preload``); a malformed value
fails the start (exit 137) with the SDK's words. Its path is a guest path, resolved through the pod's mounts
when a graph is loaded: a path no mount holds, or that a symlink leads out of its mount (hence out of the
node's root), is ``ModelNotFound`` (103), as a missing file is upstream (``GGML/core/ggml_core.cpp``).

**The functions** (``wasinn_abi.FUNCTIONS``) check guest memory as WasmEdge's ``wasinnfunc.cpp`` does: an
out-of-bounds pointer or span is ``InvalidArgument`` (1) before anything happens, an output that does not fit
is ``TooLarge`` (7) with the needed size written to ``bytes_written``. Graphs and contexts are per container
(WasmEdge's ``WasiNNEnvironment`` is per process, and the shim runs one container per process); the llama
models behind them are shared per node process (``wasinn_engine.SharedModels``). ``compute`` runs on the
guest's thread and enters the guest's engine between tokens, so a kill (an epoch bump) ends it within a token
(wasmrun.py, **Kill**), and ``limits.cpu`` is charged as for guest code.

llama-cpp-python is optional (``labkit[llm]``): without it a pod that sees the plugin still fails to link,
and its log says why (a labkit line, not a WasmEdge one).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import wasmtime

from labkit.models import INSTALL_ENGINE, engine_available
from labkit.sandbox.kubelet import hostfunc
from labkit.sandbox.kubelet.wasi_sockabi import Fault, Guest
from labkit.sandbox.kubelet.wasinn_abi import (
    BUILDER,
    ENCODING_GGML,
    ENV_PRELOAD,
    FUNCTIONS,
    LOAD_DEVICES,
    MODULE,
    TENSOR,
    TENSOR_TYPES,
    U32,
    NnErr,
    PreloadError,
    StartFailed,
    parse_preload,
)
from labkit.sandbox.wasmedge.podview import PodFiles, load_plugins

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.wasinn_engine import ExecContext, Graph

TICK_WAT = '(module (func (export "tick")))'
MAX_BUILDERS = 16  # graph builders one load may pass (a model and its config; upstream reads any number)
MAX_HANDLES = 64  # graphs, and contexts, one container may hold
_tick_artifact: list[bytes] = []


class PodView(Protocol):
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def mounts(self) -> Mapping[str, str]: ...


@dataclass
class Startup:
    """What happened when the runtime started: the plugin's guest path (None: not loaded) and the lines logged."""

    plugin: str | None
    lines: list[str] = field(default_factory=list)
    preload: dict[str, str] = field(default_factory=dict)  # alias -> guest path


def _tick_module(engine: wasmtime.Engine) -> wasmtime.Module:
    if _tick_artifact:
        with contextlib.suppress(wasmtime.WasmtimeError):
            return wasmtime.Module.deserialize(engine, _tick_artifact[0])
    module = wasmtime.Module(engine, TICK_WAT)
    _tick_artifact[:] = [bytes(module.serialize())]
    return module


class _Failed(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _nn_call(func: Callable[..., int]) -> Callable[..., int]:
    """Errors as WASI-NN codes; a kill (a trap from the guest's engine) still unwinds the guest."""

    @functools.wraps(func)
    def call(*args: int) -> int:
        from labkit.sandbox.kubelet.wasinn_engine import NnError

        try:
            return func(*args)
        except _Failed as err:
            return err.code
        except NnError as err:
            return err.code
        except Fault:
            return NnErr.INVALID_ARGUMENT

    return call


def _close_all(graphs: dict[int, Any], contexts: dict[int, Any]) -> None:
    for ctx in list(contexts.values()):
        ctx.close()
    contexts.clear()
    for graph in list(graphs.values()):
        graph.close()
    graphs.clear()


class NnHost:
    """The WASI-NN functions of one container."""

    def __init__(self, store: wasmtime.Store, engine: wasmtime.Engine, startup: Startup, files: PodFiles) -> None:
        self.startup, self.files = startup, files
        tick = wasmtime.Instance(store, _tick_module(engine), []).exports(store)["tick"]
        assert isinstance(tick, wasmtime.Func)
        self._tick = tick
        self.graphs: dict[int, Graph] = {}
        self.contexts: dict[int, ExecContext] = {}
        self.names: dict[str, int] = {}
        self._next = 0
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self.graphs, self.contexts)

    def close(self) -> None:
        """Free the container's graphs and contexts (a model file another pod still uses stays mapped)."""
        with self._lock:
            _close_all(self.graphs, self.contexts)

    def define(self, linker: wasmtime.Linker) -> None:
        for name, arity in FUNCTIONS.items():
            hostfunc.define(linker, MODULE, name, [hostfunc.I32] * arity, _nn_call(getattr(self, name)))

    # -- helpers ---------------------------------------------------------------------------------

    def _handle(self) -> int:
        if len(self.graphs) + len(self.contexts) >= 2 * MAX_HANDLES:
            raise _Failed(NnErr.RUNTIME_ERROR)  # "handle space is exhausted" (wasinnfunc.cpp)
        self._next += 1
        return self._next - 1

    def _graph(self, graph_id: int) -> Graph:
        graph = self.graphs.get(graph_id)
        if graph is None:
            raise _Failed(NnErr.INVALID_ARGUMENT)
        return graph

    def _context(self, ctx_id: int) -> ExecContext:
        ctx = self.contexts.get(ctx_id)
        if ctx is None or ctx.graph.model is None:
            raise _Failed(NnErr.INVALID_ARGUMENT)
        return ctx

    def _model_path(self, guest: str) -> str:
        host = self.files.host(guest)
        if host is None or not host.is_file():
            raise _Failed(NnErr.MODEL_NOT_FOUND)  # "load: model file not found."
        return str(host)

    def _build(self, model: bytes, config: bytes | None) -> int:
        from labkit.sandbox.kubelet.wasinn_engine import Config, Graph

        path = self._model_path(model[8:].decode("utf-8", "replace")) if model.startswith(b"preload:") else None
        settings = Config()
        if config:
            settings.update(config)
        if path is not None:
            graph = Graph(path, settings)
        else:  # model bytes: upstream writes them to a file first (ggml-model.bin); here a private temp file
            with tempfile.NamedTemporaryFile(prefix="labkit-wasinn-", suffix=".gguf") as tmp:
                tmp.write(model)
                tmp.flush()
                graph = Graph(tmp.name, settings)
        graph_id = self._handle()
        self.graphs[graph_id] = graph
        return graph_id

    def cancel(self, caller: wasmtime.Caller) -> Callable[[], None]:
        return lambda: self._tick(caller)

    # -- the functions ---------------------------------------------------------------------------

    def load(self, caller: wasmtime.Caller, builders: int, count: int, encoding: int, target: int, out: int) -> int:
        g = Guest(caller)
        g.check(out, 4)
        if target not in LOAD_DEVICES:
            return NnErr.INVALID_ARGUMENT  # "[WASI-NN] Unknown device"
        count &= 0xFFFFFFFF
        raw = g.read(builders, count * BUILDER.size)
        if count > MAX_BUILDERS:
            return NnErr.INVALID_ARGUMENT
        parts = [g.read(*BUILDER.unpack_from(raw, k * BUILDER.size)) for k in range(count)]
        if encoding != ENCODING_GGML:
            return NnErr.INVALID_ENCODING  # "[WASI-NN] Unknown backend"
        if not parts:
            return NnErr.INVALID_ARGUMENT
        g.put(U32, out, self._build(parts[0], parts[1] if len(parts) > 1 else None))
        return NnErr.SUCCESS

    def load_by_name(self, caller: wasmtime.Caller, name: int, length: int, out: int) -> int:
        return self.load_by_name_with_config(caller, name, length, 0, 0, out)

    def load_by_name_with_config(
        self, caller: wasmtime.Caller, name: int, length: int, config: int, config_len: int, out: int
    ) -> int:
        g = Guest(caller)
        g.check(out, 4)
        alias = g.read(name, length).decode("utf-8", "replace")
        settings = g.read(config, config_len) if config_len else None
        with self._lock:
            if alias in self.names and self.names[alias] in self.graphs:  # mdGet
                g.put(U32, out, self.names[alias])
                return NnErr.SUCCESS
            path = self.startup.preload.get(alias)
            if path is None:
                return NnErr.NOT_FOUND  # mdBuild: no such preload
            graph_id = self._build(f"preload:{path}".encode(), settings)
            self.names[alias] = graph_id
        g.put(U32, out, graph_id)
        return NnErr.SUCCESS

    def init_execution_context(self, caller: wasmtime.Caller, graph_id: int, out: int) -> int:
        from labkit.sandbox.kubelet.wasinn_engine import ExecContext

        g = Guest(caller)
        g.check(out, 4)
        ctx = ExecContext(self._graph(graph_id))
        ctx_id = self._handle()
        self.contexts[ctx_id] = ctx
        g.put(U32, out, ctx_id)
        return NnErr.SUCCESS

    def set_input(self, caller: wasmtime.Caller, ctx_id: int, index: int, tensor: int) -> int:
        g = Guest(caller)
        dims, dims_len, rtype, data, data_len = g.unpack(TENSOR, tensor)
        g.check(dims, dims_len * 4)
        payload = g.read(data, data_len)
        if rtype not in TENSOR_TYPES:
            return NnErr.INVALID_ARGUMENT  # "[WASI-NN] Unknown tensor type"
        self._context(ctx_id).set_input(index & 0xFFFFFFFF, payload)
        return NnErr.SUCCESS

    def _get_output(
        self, caller: wasmtime.Caller, ctx_id: int, index: int, buf: int, size: int, out: int, single: bool
    ) -> int:
        g = Guest(caller)
        size &= 0xFFFFFFFF
        g.check(buf, size)
        g.check(out, 4)
        data = self._context(ctx_id).output(index & 0xFFFFFFFF, single)
        g.put(U32, out, len(data))
        if len(data) > size:
            return NnErr.TOO_LARGE  # "output buffer too small, need {} bytes but got {}."
        g.write(buf, data)
        return NnErr.SUCCESS

    def get_output(self, caller: wasmtime.Caller, ctx: int, index: int, buf: int, size: int, out: int) -> int:
        return self._get_output(caller, ctx, index, buf, size, out, single=False)

    def get_output_single(self, caller: wasmtime.Caller, ctx: int, index: int, buf: int, size: int, out: int) -> int:
        return self._get_output(caller, ctx, index, buf, size, out, single=True)

    def compute(self, caller: wasmtime.Caller, ctx_id: int) -> int:
        self._context(ctx_id).compute(self.cancel(caller))
        return NnErr.SUCCESS

    def compute_single(self, caller: wasmtime.Caller, ctx_id: int) -> int:
        self._context(ctx_id).compute_single(self.cancel(caller))
        return NnErr.SUCCESS

    def fini_single(self, caller: wasmtime.Caller, ctx_id: int) -> int:
        self._context(ctx_id).fini_single()
        return NnErr.SUCCESS

    def unload(self, caller: wasmtime.Caller, graph_id: int) -> int:
        graph = self.graphs.pop(graph_id, None)
        if graph is None:
            return NnErr.INVALID_ARGUMENT
        for ctx_id in [k for k, c in self.contexts.items() if c.graph is graph]:
            self.contexts.pop(ctx_id).close()
        self.names = {k: v for k, v in self.names.items() if v != graph_id}
        graph.close()
        return NnErr.SUCCESS

    def finalize_execution_context(self, caller: wasmtime.Caller, ctx_id: int) -> int:
        ctx = self.contexts.pop(ctx_id, None)
        if ctx is None:
            return NnErr.INVALID_ARGUMENT
        ctx.close()
        return NnErr.SUCCESS


class WasiNN:
    """The host extension: considered for every wasm pod, defined only when the pod can load the plugin."""

    name = "wasmedge-wasi-nn"
    import_module = MODULE

    def applies(self, context: PodView) -> bool:
        return True  # WasmEdge looks for plugins in every run; define() decides whether the module is there

    def startup(self, context: PodView) -> Startup:
        """What WasmEdge logs and loads when the shim starts this container; raises StartFailed for a bad
        ``WASMEDGE_WASINN_PRELOAD`` (the shim's start function fails: exit 137)."""
        env = context.env
        files = PodFiles(context.mounts)
        loaded = load_plugins(files, env)
        result = Startup(loaded.plugin, list(loaded.lines))
        if ENV_PRELOAD in env:
            try:
                preload = parse_preload(env[ENV_PRELOAD])
            except PreloadError as err:
                # runwasi logs it (executor.rs: "error running start function: {err}") and exits 137; on k3s the
                # line is in the shim's log, the sandbox shows it in the pod's log [inferred: where it surfaces]
                raise StartFailed([*result.lines, f"error running start function: {err}"]) from None
            if preload.encoding.lower() == "ggml":
                result.preload[preload.alias] = preload.path
        if result.plugin is not None and not engine_available():
            result.lines.append(f"[labkit] the sandbox's WASI-NN engine is not installed: {INSTALL_ENGINE}")
            result.plugin = None
        return result

    def startup_lines(self, context: PodView) -> list[str]:
        return self.startup(context).lines

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store, context: PodView) -> Callable[[], None] | None:
        startup = self.startup(context)
        if startup.plugin is None:
            return None  # the imports stay unknown: Code 0x302 at instantiation
        host = NnHost(store, linker.engine, startup, PodFiles(context.mounts))
        host.define(linker)
        return host.close
