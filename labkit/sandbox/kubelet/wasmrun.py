"""Run a container's wasm module the way the runwasi WasmEdge shim would, with wasmtime.

What a sandbox node's wasm handler needs (docs/architecture.md, §2):

- :func:`check_arg0`: the shim's arg0 rules (``wasmedge executor can't handle spec``);
- :class:`ModuleCache`: compile once, keep ``Module.serialize()`` artifacts on disk;
- :class:`WasmContainer`: args, env, mounts as preopened directories (nothing
  else of the host filesystem), stdout/stderr as complete lines, host
  extensions, exit codes, and a prompt :meth:`~WasmContainer.kill`.

**Kill.** Every container has its own :class:`wasmtime.Engine` (creating one
costs ~30 µs and a cached module deserialises into it in ~0.2 ms), so a kill
can bump *its* epoch without interrupting its neighbours; the store's epoch
deadline is one tick, and its epoch callback (:mod:`~labkit.sandbox.kubelet.limits`,
which also enforces ``resources.limits``) ends a killed guest at the next function
entry or loop back-edge. A guest blocked in a host call is only interrupted when that
call returns, and WASI's sleep (``poll_oneoff`` on a clock) would keep the
wasi-demo daemon asleep for up to a second. So the runner replaces
``poll_oneoff`` (and ``clock_time_get``, to keep absolute deadlines on the same
clock) with Python versions that wait on the container's kill event: a kill
wakes a sleeping guest at once. fd subscriptions report ready at once, as
WASI does for files; stdin is always empty here.

**Files.** Directory mounts are preopened at their mount paths (read-only
mounts immutable); the mount holding ``working_dir`` is also preopened as
``.`` so relative paths work. Nothing else of the host is visible. File mounts
(e.g. a model) are not preopened: they are there for host extensions, which
read them host-side as a WasmEdge plugin would. Guest stdout/stderr go through
pipes (:class:`OutputPipe`) and reach the callbacks as complete lines.

**Exit codes**, as the shim reports them: ``proc_exit(n)`` → n, a normal
return → 0, a trap or a link failure → 137 with the reason on stderr (the
shim exits 137 when the wasm run fails), killed → 137.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as _dist_version
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import wasmtime

from labkit.errors import WasmError
from labkit.sandbox.kubelet.extensions import HostExtension, LogsAtStart, PodContext
from labkit.sandbox.kubelet.hostfunc import I32, I64, define
from labkit.sandbox.kubelet.limits import Limits, StoreGuard
from labkit.sandbox.kubelet.output import LineBuffer, LineCallback, OutputPipe
from labkit.sandbox.kubelet.wasi_sockabi import Fault, Guest
from labkit.sandbox.kubelet.wasinn_abi import StartFailed

WASM_MAGIC = b"\0asm"
SHIM_CANT_HANDLE = "wasmedge executor can't handle spec"
EXIT_FAILED = 137  # the shim's exit code for a failed or killed wasm run
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WASMTIME_VERSION = _dist_version("wasmtime")


class CantHandleSpec(WasmError):
    """arg0 is not a wasm module: the shim fails the task with ``wasmedge executor can't handle spec``.

    ``native`` is true when arg0 is an ELF binary or a ``#!`` script, which the
    real shim would run as an ordinary Linux container instead.
    """

    def __init__(self, arg0: str, reason: str, native: bool = False, modules: Sequence[str] = ()) -> None:
        super().__init__(
            f"{SHIM_CANT_HANDLE} ({reason}; Note: arg0 must be a path to a Wasm file)",
            f"set the container's command to the module the image holds: {', '.join(modules)}"
            if modules
            else "the image holds no wasm module: build it with one (labkit image build)",
        )
        self.arg0, self.native = arg0, native


class Entrypoint(NamedTuple):
    """What the shim runs: the module found for arg0 and the function to call."""

    path: str
    module: bytes
    func: str


def _resolve(arg0: str, image_files: Mapping[str, bytes], env: Mapping[str, str], working_dir: str) -> str | None:
    """The image path arg0 names: absolute, relative to the working dir, or found on PATH."""
    if arg0.startswith("/"):
        candidates = [arg0]
    elif "/" in arg0:
        candidates = [str(PurePosixPath(working_dir) / arg0)]
    else:
        dirs = env.get("PATH", DEFAULT_PATH).split(":")
        candidates = [str(PurePosixPath(d or "/") / arg0) for d in dirs] + [str(PurePosixPath(working_dir) / arg0)]
    normalised = (os.path.normpath(c) for c in candidates)
    return next((c for c in normalised if c in image_files), None)


def check_arg0(
    args: Sequence[str],
    image_files: Mapping[str, bytes],
    wasm_layers: Mapping[str, bytes] | None = None,
    env: Mapping[str, str] | None = None,
    working_dir: str = "/",
) -> Entrypoint:
    """Apply the shim's arg0 rules to a container and return its entrypoint.

    *image_files* maps absolute paths in the image rootfs to their bytes;
    *wasm_layers* maps module names to the modules of an image in runwasi's
    OCI wasm-layer format (then arg0's file name only names the module). arg0
    may end in ``#func`` (default ``_start``). Anything that is not a wasm
    module (``\\0asm`` magic) or a ``.wat`` file raises :class:`CantHandleSpec`.

    >>> check_arg0(["/app.wasm", "x"], {"/app.wasm": b"\\0asm\\1\\0\\0\\0"}).path
    '/app.wasm'
    """
    if not args or not args[0]:
        raise CantHandleSpec("", "the container has no command or entrypoint")
    arg0, _, func = args[0].partition("#")
    func = func or "_start"
    if wasm_layers:
        name = PurePosixPath(arg0).name
        if len(wasm_layers) == 1:
            return Entrypoint(arg0, next(iter(wasm_layers.values())), func)
        matches = [m for n, m in wasm_layers.items() if PurePosixPath(n).name == name]
        if len(matches) != 1:
            raise CantHandleSpec(arg0, f"the image has {len(wasm_layers)} wasm layers and arg0 names none of them")
        return Entrypoint(arg0, matches[0], func)
    path = _resolve(arg0, image_files, env or {}, working_dir)
    modules = sorted(p for p, data in image_files.items() if data.startswith(WASM_MAGIC))
    if path is None:
        raise CantHandleSpec(arg0, f"{arg0!r} is not a file in the image", modules=modules)
    data = image_files[path]
    if data.startswith(WASM_MAGIC):
        return Entrypoint(path, data, func)
    if path.endswith(".wat"):
        try:
            return Entrypoint(path, bytes(wasmtime.wat2wasm(data.decode())), func)
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as err:
            raise CantHandleSpec(arg0, f"{path} is not valid WebAssembly text: {err}") from None
    native = data.startswith((b"\x7fELF", b"#!"))
    raise CantHandleSpec(arg0, f"{path} is not a wasm module (no \\0asm magic)", native=native, modules=modules)


_UNKNOWN_IMPORT = re.compile(r"unknown import: `([^`]*)::([^`]*)` has not been defined")


def wasmedge_link_error(wasmtime_message: str) -> list[str] | None:
    """WasmEdge's stderr lines for a wasmtime "unknown import" error, else ``None``.

    >>> wasmedge_link_error("unknown import: `wasi_ephemeral_nn::compute` has not been defined")[1]
    '[error]     When linking module: "wasi_ephemeral_nn" , function name: "compute"'
    """
    found = _UNKNOWN_IMPORT.search(wasmtime_message)
    if not found:
        return None
    module, name = found.groups()
    return [
        "[error] instantiation failed: unknown import, Code: 0x302",
        f'[error]     When linking module: "{module}" , function name: "{name}"',
        "[error]     At AST node: import description",
        "[error]     At AST node: import section",
        "[error]     At AST node: module",
    ]


def engine_config() -> wasmtime.Config:
    """The engine settings every cached artifact is compiled for."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    # copy-on-write memory images need wasmtime's own mmap memories: with the memory creator of a memory-limited
    # container (kubelet/limits.py) instantiating a module with data segments panics (wasmtime 50: "memory_image
    # is Some only for mmap-based memories"), and the setting is part of an artifact, so it is off for all
    config.memory_init_cow = False
    return config


def new_engine(guard: StoreGuard | None = None) -> wasmtime.Engine:
    return wasmtime.Engine(guard.engine_config(engine_config()) if guard else engine_config())


class ModuleCache:
    """Compile each module once; keep ``Module.serialize()`` artifacts in memory and on disk.

    Artifacts are keyed by sha256 of the module bytes plus the wasmtime
    version and engine settings, since an artifact only loads into the
    wasmtime that produced it.

    >>> import tempfile
    >>> cache = ModuleCache(Path(tempfile.mkdtemp()))
    >>> m = cache.get(wasmtime.wat2wasm("(module)"))
    >>> cache.stats["compiles"], cache.get(wasmtime.wat2wasm("(module)")) is not None, cache.stats["memory_hits"]
    (1, True, 1)
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.engine = new_engine()
        self.stats = {"memory_hits": 0, "disk_hits": 0, "compiles": 0}
        self._artifacts: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(module_bytes: bytes) -> str:
        return f"{hashlib.sha256(module_bytes).hexdigest()}-wasmtime{WASMTIME_VERSION}-epoch-nocow"

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.cwasm"

    def _artifact(self, module_bytes: bytes) -> bytes:
        key = self.key(module_bytes)
        with self._lock:
            if key in self._artifacts:
                self.stats["memory_hits"] += 1
                return self._artifacts[key]
            path = self._path(key)
            if path.is_file():
                artifact = path.read_bytes()
                self.stats["disk_hits"] += 1
            else:
                artifact = self._compile(module_bytes, path)
            self._artifacts[key] = artifact
            return artifact

    def _compile(self, module_bytes: bytes, path: Path) -> bytes:
        try:
            artifact = bytes(wasmtime.Module(self.engine, module_bytes).serialize())
        except wasmtime.WasmtimeError as err:
            raise WasmError(
                f"the module is not valid WebAssembly: {err}",
                "rebuild it for wasm32-wasip1 and check it with wasm-validate",
            ) from None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(artifact)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        self.stats["compiles"] += 1
        return artifact

    def get(self, module_bytes: bytes, engine: wasmtime.Engine | None = None) -> wasmtime.Module:
        """The compiled module for *engine* (default: the cache's own engine)."""
        artifact = self._artifact(module_bytes)
        try:
            return wasmtime.Module.deserialize(engine or self.engine, artifact)
        except wasmtime.WasmtimeError:
            # a stale or foreign artifact on disk: drop it and compile afresh
            with self._lock:
                self._artifacts.pop(self.key(module_bytes), None)
                self._path(self.key(module_bytes)).unlink(missing_ok=True)
            return wasmtime.Module.deserialize(engine or self.engine, self._artifact(module_bytes))


class Mount(NamedTuple):
    """A volume: *host_dir* appears at *guest_path* inside the container."""

    host_dir: Path
    guest_path: str
    read_only: bool = True


@dataclass
class ContainerSpec:
    """A wasm container as a runtime sees it after the image and pod spec are resolved.

    ``args[0]`` is the command path (the guest's argv[0]); *entry* is the
    exported function to run (``path#func`` in arg0, see :func:`check_arg0`).
    *mounts* are ``(host_dir, guest_path, read_only)``.
    """

    module: bytes
    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    mounts: Sequence[Mount | tuple[Path, str, bool]] = ()
    entry: str = "_start"
    name: str = "container"
    #: crun's WasmEdge handler exits 0 whenever the run ends without a trap, proc_exit(n) included, and 1
    #: otherwise (crun src/libcrun/handlers/wasmedge.c: exit (EXIT_SUCCESS)): the WASI exit code is lost.
    crun_exit_status: bool = False
    limits: Limits = field(default_factory=Limits)


class _Killed(Exception):
    """Raised inside a host call to unwind a guest that is being killed."""


# WASI preview1 constants used by the sleep/clock overrides
_ERRNO_SUCCESS, _ERRNO_FAULT, _ERRNO_INVAL = 0, 21, 28
_CLOCKS: dict[int, Callable[[], int]] = {
    0: time.time_ns,
    1: time.monotonic_ns,
    2: time.process_time_ns,
    3: time.thread_time_ns,
}
_SUBSCRIPTION = struct.Struct("<QB7xI4xQQH6x")  # userdata, tag, clock id, timeout, precision, flags (48 B)
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags (32 B)


def _directory_mounts(mounts: Sequence[Mount | tuple[Path, str, bool]]) -> list[Mount]:
    """The mounts with their sources resolved: wasmtime preopens the real directory, never a symlink that could be
    swapped after the kubelet confined it to the node (kubelet/volumes.py)."""
    checked = []
    for raw in mounts:
        mount = Mount(Path(os.path.realpath(raw[0])), str(raw[1]), bool(raw[2]) if len(raw) > 2 else True)
        if not mount.host_dir.exists():
            raise WasmError(
                f"mount source {mount.host_dir} does not exist", "create it on the node or fix the volume's path"
            )
        checked.append(mount)
    return checked


class WasmContainer:
    """One running wasm container: ``start()``, ``wait()``, ``kill()``.

    >>> spec = ContainerSpec(wasmtime.wat2wasm('(module (func (export "_start")))'), ["/m.wasm"])
    >>> c = WasmContainer(spec); c.start(); c.wait(5)
    0
    """

    def __init__(
        self,
        spec: ContainerSpec,
        cache: ModuleCache | None = None,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        extensions: Sequence[HostExtension] = (),
        context: PodContext | None = None,
    ) -> None:
        self.spec = spec
        self.mounts = _directory_mounts(spec.mounts)
        self._cache = cache
        self._stdout, self._stderr = LineBuffer(on_stdout), LineBuffer(on_stderr)
        self.extensions = list(extensions)
        self.context = context or PodContext(
            name=spec.name, env=dict(spec.env), mounts={m.guest_path: str(m.host_dir) for m in self.mounts}
        )
        self._killed = threading.Event()
        self.guard = StoreGuard(spec.limits, self._killed, self.kill)
        self.engine = new_engine(self.guard)
        self.exit_code: int | None = None
        #: how the run ended: "exited", "trapped", "link-failed", "killed" or "oom-killed"
        self.outcome: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        #: the guest's linear memory in bytes, sampled on its own thread (a Store is not Sync): at start, each host call
        self.memory_bytes = 0
        self._guest: Guest | None = None
        self._releases: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name=f"wasm-{spec.name}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the module in its own thread."""
        self.started_at = time.monotonic()
        self._thread.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or ``None`` if still running after *timeout* seconds."""
        if self._thread.ident is None:
            raise WasmError(f"container {self.spec.name!r} was never started", "call start() before wait()")
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self.exit_code

    def kill(self) -> None:
        """Stop the guest (SIGKILL semantics: exit code 137); returns at once, then ``wait()``."""
        self._killed.set()  # before the epoch bump: see the check after set_epoch_deadline in _run_in
        self.engine.increment_epoch()

    def terminate(self) -> None:
        """The start of a graceful stop: a wasm guest has no signals to catch, so it is a kill."""
        self.kill()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def thread_id(self) -> int | None:
        """The pthread the guest runs on while it runs (its CPU clock is the container's CPU time)."""
        return self._thread.ident if self._thread.is_alive() else None

    # -- the run ---------------------------------------------------------------------------

    def _module(self) -> wasmtime.Module:
        if self._cache is not None:
            return self._cache.get(self.spec.module, self.engine)
        return wasmtime.Module(self.engine, self.spec.module)

    def _wasi(self, stdout: OutputPipe, stderr: OutputPipe) -> wasmtime.WasiConfig:
        wasi = wasmtime.WasiConfig()
        wasi.argv = list(self.spec.args)
        wasi.env = [[k, v] for k, v in self.spec.env.items()]
        wasi.stdout_file = stdout.path
        wasi.stderr_file = stderr.path
        for mount in self.mounts:
            if mount.host_dir.is_dir():  # file mounts are for host extensions (e.g. a model file)
                wasi.preopen_dir(str(mount.host_dir), mount.guest_path, fs_mutable=not mount.read_only)
        cwd = self._working_dir_mount()
        if cwd is not None:
            # wasi-libc and Rust resolve relative paths against a "." preopen
            wasi.preopen_dir(str(cwd[0]), ".", fs_mutable=not cwd[1])
        return wasi

    def _working_dir_mount(self) -> tuple[Path, bool] | None:
        """The host directory behind the working dir, when a directory mount holds it."""
        wd = PurePosixPath(self.spec.working_dir or "/")
        best: Mount | None = None
        for mount in self.mounts:
            guest = PurePosixPath(mount.guest_path)
            holds_wd = mount.host_dir.is_dir() and (wd == guest or guest in wd.parents)
            if holds_wd and (best is None or len(guest.parts) > len(PurePosixPath(best.guest_path).parts)):
                best = mount
        if best is None:
            return None
        # resolved, and only inside its mount: a symlink a pod planted there must not make "." the host's
        host = Path(os.path.realpath(best.host_dir / wd.relative_to(best.guest_path)))
        inside = host == best.host_dir or best.host_dir in host.parents
        return (host, best.read_only) if inside and host.is_dir() else None

    def _linker(self, store: wasmtime.Store) -> wasmtime.Linker:
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        linker.allow_shadowing = True  # our sleep/clock, and extensions adding to WASI
        wasi = "wasi_snapshot_preview1"
        define(linker, wasi, "clock_time_get", [I32, I64, I32], self._clock_time_get)
        define(linker, wasi, "poll_oneoff", [I32] * 4, self._poll_oneoff)
        for ext in self.extensions:
            if isinstance(ext, LogsAtStart):  # e.g. WasmEdge's plugin loader: its lines come before any link error
                for line in ext.startup_lines(self.context):
                    self._stderr.line(line)
            release = ext.define(linker, store, self.context)
            if release is not None:
                self._releases.append(release)
        return linker

    def _run(self) -> None:
        pipes = OutputPipe(self._stdout), OutputPipe(self._stderr)
        try:
            self.exit_code, self.outcome = self._execute(*pipes)
        except Exception as err:  # noqa: BLE001 - anything else is a runtime failure the kubelet must see
            if not self._killed.is_set():
                self._stderr.line(f"[error] {type(err).__name__}: {err}")
            self.exit_code, self.outcome = EXIT_FAILED, "killed" if self._killed.is_set() else "trapped"
        if self.spec.crun_exit_status and self.outcome != "killed":
            self.exit_code = 0 if self.outcome == "exited" else 1
        if self.guard.oom_killed:  # killed past its memory limit, however the guest ended meanwhile
            self.exit_code, self.outcome = EXIT_FAILED, "oom-killed"
        for pipe in pipes:  # the store is closed: wasmtime's write ends are too
            pipe.close()
        self._stdout.close()
        self._stderr.close()
        self.finished_at = time.monotonic()

    def _execute(self, stdout: OutputPipe, stderr: OutputPipe) -> tuple[int, str]:
        # closing the store drops its WASI context, whose stdout/stderr ends give the pipes EOF;
        # waiting for garbage collection instead could take forever (traps hold reference cycles)
        with wasmtime.Store(self.engine) as store:
            self.guard.attach(store, self.engine)
            try:
                return self._run_in(store, stdout, stderr)
            finally:
                self.guard.detach()
                # the guest has stopped: its sockets and models go now, as a dead process's descriptors do (a
                # trap's reference cycles would keep them until a garbage collection: a killed pod's connections
                # then hung open for minutes)
                for release in self._releases:
                    release()
                self._releases.clear()

    def _run_in(self, store: wasmtime.Store, stdout: OutputPipe, stderr: OutputPipe) -> tuple[int, str]:
        store.set_wasi(self._wasi(stdout, stderr))
        stdout.attached()
        stderr.attached()
        module = self._module()
        try:
            linker = self._linker(store)
        except StartFailed as failed:
            for line in failed.lines:
                self._stderr.line(line)
            return EXIT_FAILED, "link-failed"
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.WasmtimeError as err:
            for line in wasmedge_link_error(str(err)) or [f"[error] instantiation failed: {err}"]:
                self._stderr.line(line)
            return EXIT_FAILED, "link-failed"
        memory = instance.exports(store).get("memory")
        self.memory_bytes = memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0
        entry = instance.exports(store).get(self.spec.entry)
        if not isinstance(entry, wasmtime.Func):
            self._stderr.line(f'[error] wasm function "{self.spec.entry}" not found in the module exports')
            return EXIT_FAILED, "link-failed"
        if self._killed.is_set():
            return EXIT_FAILED, "killed"
        try:
            entry(store)
        except wasmtime.ExitTrap as exit_trap:
            return exit_trap.code, "exited"
        except _Killed:
            return EXIT_FAILED, "killed"
        except wasmtime.WasmtimeError as trap:  # Trap and errors raised while running
            if self._killed.is_set():
                return EXIT_FAILED, "killed"
            for line in str(trap).rstrip().splitlines():
                self._stderr.line(line)
            return EXIT_FAILED, "trapped"
        return 0, "exited"

    # -- WASI overrides: sleeping that a kill can interrupt --------------------------------

    def _clock_time_get(self, caller: wasmtime.Caller, clock_id: int, _precision: int, out_ptr: int) -> int:
        clock = _CLOCKS.get(clock_id)
        if clock is None:
            return _ERRNO_INVAL
        return self._store_bytes(caller, out_ptr, struct.pack("<Q", clock()))

    def _store_bytes(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> int:
        try:  # the memory is looked up once per run: clock_time_get is a hot call
            self._guest = self._guest.refresh(caller) if self._guest else Guest(caller)
            self.memory_bytes = self._guest.size
            self._guest.write(ptr, data)
        except Fault:
            return _ERRNO_FAULT
        return _ERRNO_SUCCESS

    def _poll_oneoff(self, caller: wasmtime.Caller, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> int:
        memory = caller.get("memory")
        if nsubs <= 0:
            return _ERRNO_INVAL
        if not isinstance(memory, wasmtime.Memory) or in_ptr + nsubs * _SUBSCRIPTION.size > memory.data_len(caller):
            return _ERRNO_FAULT
        raw = memory.read(caller, in_ptr, in_ptr + nsubs * _SUBSCRIPTION.size)
        clocks: list[tuple[int, int]] = []  # (userdata, nanoseconds from now)
        ready: list[bytes] = []
        for k in range(nsubs):
            userdata, tag, clock_id, timeout, _precision, flags = _SUBSCRIPTION.unpack_from(raw, k * _SUBSCRIPTION.size)
            if tag == 0:
                now = _CLOCKS.get(clock_id, time.monotonic_ns)()
                clocks.append((userdata, timeout - now if flags & 1 else timeout))
            elif tag in (1, 2):  # fd_read / fd_write: files and empty stdin are always ready
                ready.append(_EVENT.pack(userdata, _ERRNO_SUCCESS, tag, 0, 0))
            else:
                return _ERRNO_INVAL
        if not ready and clocks:
            wait_ns = max(0, min(delay for _, delay in clocks))
            if self._killed.wait(wait_ns / 1e9):
                raise _Killed()
            ready = [_EVENT.pack(u, _ERRNO_SUCCESS, 0, 0, 0) for u, delay in clocks if delay <= wait_ns]
        else:
            ready += [_EVENT.pack(u, _ERRNO_SUCCESS, 0, 0, 0) for u, delay in clocks if delay <= 0]
        status = self._store_bytes(caller, out_ptr, b"".join(ready))
        return status or self._store_bytes(caller, nevents_ptr, struct.pack("<I", len(ready)))
