"""Native containers: the Python programs labkit ships (:mod:`labkit.apps`) run as subprocesses of their node.

**What runs.** Only an image in the ``python`` layout (``labkit/wasm/oci.py``: Entrypoint ``[python3,
/app/<prog>.py]``, the ``io.labkit.program`` label, the program in its layer) whose program is byte for byte one
labkit ships (:func:`labkit.apps.shipped`). Any other image whose entrypoint is not wasm stays an unknown Linux
image and fails exactly as before (kubelet/runtime.py). A manifest's ``command``/``args`` are resolved as a
runtime would resolve them *inside the image*, whose rootfs holds only the interpreter and the program: the
program itself (it starts with ``#!``), or the interpreter followed by the program, then the program's own
arguments. Anything else is not in the image (runc's ``executable file not found in $PATH``) or is refused
(interpreter options such as ``-c``/``-m``, another script): a pod cannot run a host binary or its own code.

**How.** ``<node's python> -I nativeshim.py <config>`` (kubelet/nativeshim.py maps the pod's files, addresses and
DNS, then runs the program as ``__main__``). ``-I`` makes the interpreter ignore ``PYTHONPATH``,
``PYTHONSTARTUP`` and every other ``PYTHON*`` variable, and the dynamic loader's variables (``LD_PRELOAD``,
``LD_LIBRARY_PATH``, ... glibc's unsecure list, sysdeps/generic/unsecvars.h) are removed from the environment,
so env cannot inject code into the interpreter. The program's own ``os.environ`` is the container's env otherwise.
Its working directory is its ``workingDir`` inside its own rootfs directory (the program is unpacked there,
``run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/rootfs`` in the node root, as k3s's containerd
has it), never outside it.

**Lifecycle**, with the interface of :class:`~labkit.sandbox.kubelet.wasmrun.WasmContainer`, so the pod worker's
restarts, back-off, CrashLoopBackOff and status code serve both: stdout/stderr as lines to the CRI log writer; the
exit code (a signal ``n`` gives ``128+n``, as containerd reports it); :meth:`NativeContainer.terminate` is SIGTERM
to the container's process group, :meth:`~NativeContainer.kill` SIGKILL, and the pod worker sends SIGKILL when
the grace period ends; when the program's main process ends, the rest of its group is killed, as a PID
namespace ends with its init. Each container is spawned from one long-lived thread with ``PR_SET_PDEATHSIG``
(which fires when the *thread* that forked ends), so containers die with their node process, also on
``kill -9``: none outlives a kubelet restart.

**Limits.** ``limits.memory``: a watchdog samples the process group's resident memory every
:data:`SAMPLE_S` seconds and SIGKILLs it past the limit, so the container ends ``OOMKilled`` with 137 as when
the kernel's cgroup OOM killer ends it (a spike shorter than a sample can pass: inferred equivalence); a
``RLIMIT_DATA`` of the limit plus :data:`DATA_SLACK` backs it, so no allocation can outrun the sampling by
much (beyond it allocations fail with ``MemoryError``). ``limits.cpu`` is not enforced for native containers
(a learner's wasm pods are the ones that spin). Readiness is "running", as for wasm containers.

**exec** (for the API server's ``pods/exec``, another module): :func:`run_in_container` starts a second
process in a running native container, with the same argv rules, env, files and network view, and returns
the :class:`subprocess.Popen` with pipes; :func:`exec_sync` is CRI's ``ExecSync`` on top of it (exec probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from labkit import apps
from labkit.sandbox import netmap
from labkit.sandbox.kubelet.failures import ContainerFailure
from labkit.sandbox.kubelet.limits import Limits
from labkit.sandbox.kubelet.output import LineBuffer, LineCallback
from labkit.sandbox.kubelet.probe_handlers import ExecFailed, WasmExec
from labkit.sandbox.kubelet.volumes import confined

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.podfiles import PodFiles
    from labkit.sandbox.kubelet.wasmrun import Mount

SHIM = Path(__file__).with_name("nativeshim.py")
SAMPLE_S = 0.1
DATA_SLACK = 256 << 20
EXIT_KILLED = 137
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: glibc's "unsecure" variables (removed for setuid programs, sysdeps/generic/unsecvars.h), plus every LD_*
LOADER_VARIABLES = frozenset(
    {"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE"}
    | {"NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR"}
)


def _unsafe(name: str) -> bool:
    return name.startswith("LD_") or name in LOADER_VARIABLES


# ---------------------------------------------------------------- what runs


@dataclass(frozen=True)
class NativeLaunch:
    """What the runtime decided to run: a program labkit ships, with the program's own arguments."""

    app: str
    program: bytes
    interpreter: str  # in the image (the node runs its own Python)
    program_path: str  # in the image
    args: list[str]


class NotInImage(ContainerFailure):
    """argv[0] names no file of the image: the runtime's ``executable file not found`` (kubelet/runtime.py)."""

    def __init__(self, arg0: str) -> None:
        super().__init__(f"executable file `{arg0}` not found in the image")
        self.arg0 = arg0


def _resolve(arg: str, env: Mapping[str, str], working_dir: str, search_path: bool) -> list[str]:
    if arg.startswith("/"):
        return [os.path.normpath(arg)]
    if "/" in arg or not search_path:
        return [os.path.normpath(str(PurePosixPath(working_dir or "/") / arg))]
    return [os.path.normpath(str(PurePosixPath(d or "/") / arg)) for d in env.get("PATH", DEFAULT_PATH).split(":")]


def plan_native(
    entrypoint: list[str], program: bytes | None, argv: list[str], env: Mapping[str, str], working_dir: str
) -> NativeLaunch | None:
    """The program to run for *argv* in a ``python`` image, or None when the image's program is not one labkit
    ships (then it is an unknown Linux image). Raises :class:`ContainerFailure` for an argv the image cannot run."""
    app = apps.shipped(program) if program is not None and len(entrypoint) == 2 else None
    if app is None or program is None:
        return None
    interpreter, program_path = entrypoint
    interpreters = {
        str(PurePosixPath(interpreter).parent / n) for n in ("python", "python3", PurePosixPath(interpreter).name)
    }
    arg0 = argv[0] if argv else ""
    found = next((p for p in _resolve(arg0, env, working_dir, True) if p in interpreters | {program_path}), None)
    if found is None:
        raise NotInImage(arg0)
    if found == program_path:  # the program itself, by its #! line
        return NativeLaunch(app, program, interpreter, program_path, list(argv[1:]))
    script = argv[1] if len(argv) > 1 else ""
    if script.startswith("-") or not script or _resolve(script, env, working_dir, False)[0] != program_path:
        raise ContainerFailure(
            f"the labkit sandbox runs only the image's program with its interpreter: {found} {program_path} [ARG...]"
            f" (not {' '.join(argv[1:2]) or 'an interactive interpreter'})",
            fix="give only the program's arguments (args:), or no command at all",
        )
    return NativeLaunch(app, program, interpreter, program_path, list(argv[2:]))


# ---------------------------------------------------------------- the process


@dataclass
class NativeSpec:
    """A native container after the image, pod spec and pod files are resolved (host paths are the node's)."""

    name: str
    launch: NativeLaunch
    env: Mapping[str, str]
    working_dir: str
    rootfs: Path
    #: container path -> node path: the pod's files and the container's volumeMounts
    paths: Mapping[str, str]
    pod_ip: str
    api_endpoint: tuple[str, int]
    resolv_conf: Path
    hosts: Path
    limits: Limits = field(default_factory=Limits)
    #: called about every minute while the container runs (the pod's token renewal)
    tick: Callable[[], None] | None = None


class _Spawner:
    """One long-lived thread forks every container: ``PR_SET_PDEATHSIG`` fires when the forking *thread* ends,
    so a pool thread that retires would kill the containers it started."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="native-spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((argv, kwargs, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            argv, kwargs, done = self._requests.get()
            try:
                done.set_result(subprocess.Popen(argv, **kwargs))  # our interpreter and shim only
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                done.set_exception(err)


_spawner = _Spawner()


def _process_env(env: Mapping[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in env.items() if not _unsafe(k) and "\0" not in k + v and "=" not in k}
    clean.setdefault("PATH", DEFAULT_PATH)
    return clean


def _spawn(spec: NativeSpec, argv: list[str], config_name: str, **pipes: Any) -> subprocess.Popen[bytes]:
    """Write the shim's config beside the rootfs and start ``python -I nativeshim.py config``."""
    config = {
        "parent_pid": os.getpid(),
        "program": str(spec.rootfs / spec.launch.program_path.lstrip("/")),
        "argv": argv,
        "paths": dict(spec.paths),
        "pod_ip": spec.pod_ip,
        "resolv_conf": str(spec.resolv_conf),
        "hosts": str(spec.hosts),
        "netmap": netmap.__file__,
        "dns_port": netmap.host_port(53),
        # the kubernetes Service of the pod's address slot (the pod's own IP says which)
        "api_service": [netmap.plan(netmap.slot_of(spec.pod_ip) or 0).kubernetes_service_ip, 443],
        "api_endpoint": list(spec.api_endpoint),
        "data_limit": spec.limits.memory_bytes + DATA_SLACK if spec.limits.memory_bytes else None,
    }
    path = spec.rootfs.parent / config_name
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    inside = os.path.normpath("/" + spec.working_dir).lstrip("/")  # as in the container: /.. is /
    try:  # and no symlink may lead out of the rootfs either
        cwd = confined(spec.rootfs, spec.rootfs / inside, create=True)
    except ValueError:  # PathEscape
        raise ContainerFailure(f"workingDir {spec.working_dir} leaves the container's root") from None
    return _spawner.popen(
        [sys.executable, "-I", str(SHIM), str(path)],
        cwd=cwd,
        env=_process_env(spec.env),
        start_new_session=True,  # its own process group: signals reach everything it started
        close_fds=True,
        **pipes,
    )


def _group_sum(pgid: int, proc_file: str, read: Callable[[str], int]) -> int:
    """The sum of *read* over ``/proc/<pid>/<proc_file>`` of every live process in group *pgid*; a process that
    ends while being read is left out."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
            with open(f"/proc/{entry}/{proc_file}") as f:
                total += read(f.read())
        except (OSError, ValueError, IndexError):
            continue
    return total


def _stat_ticks(stat: str) -> int:
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # utime and stime: the stat fields 14 and 15, in ticks


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user and system) the live processes of group *pgid* have used (``/proc/<pid>/stat``)."""
    return _group_sum(pgid, "stat", _stat_ticks) / os.sysconf("SC_CLK_TCK")


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group (statm's second field, in pages)."""
    return _group_sum(pgid, "statm", lambda statm: int(statm.split()[1])) * os.sysconf("SC_PAGE_SIZE")


class NativeContainer:
    """One running native container: ``start()``, ``wait()``, ``terminate()``, ``kill()`` (as WasmContainer)."""

    thread_id = None  # usage.py samples a wasm guest's thread; a native container has a process group instead

    def __init__(self, spec: NativeSpec, on_stdout: LineCallback | None = None, on_stderr: LineCallback | None = None):
        self.spec = spec
        self._buffers = LineBuffer(on_stdout), LineBuffer(on_stderr)
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.outcome: str | None = None  # "exited", "killed" or "oom-killed"
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.memory_bytes = 0
        self._oom = False
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        #: the commands ``kubectl exec`` started in it: they end with it, as processes in its PID namespace do
        self._execs: set[subprocess.Popen[bytes]] = set()
        self._execs_lock = threading.Lock()
        self._execs_ended = False

    def start(self) -> None:
        launch = self.spec.launch
        self.process = _spawn(
            self.spec,
            [launch.program_path, *launch.args],
            "native.json",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.started_at = time.monotonic()
        pumps = [(self.process.stdout, self._buffers[0]), (self.process.stderr, self._buffers[1])]
        self._threads = [
            threading.Thread(target=_pump, args=(pipe, buffer), name=f"native-out-{self.spec.name}", daemon=True)
            for pipe, buffer in pumps
        ]
        self._threads.append(threading.Thread(target=self._watch, name=f"native-{self.spec.name}", daemon=True))
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and not self._done.is_set()

    def _signal(self, sig: int) -> None:
        if self.process is not None and not self._done.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def adopt(self, process: subprocess.Popen[bytes]) -> None:
        """Make *process* (an exec in this container) end with the container; at once if it already ended."""
        with self._execs_lock:
            self._execs = {p for p in self._execs if p.poll() is None}
            self._execs.add(process)
            ended = self._execs_ended
        if ended:
            self._kill_execs()

    def _kill_execs(self) -> None:
        with self._execs_lock:
            execs, self._execs, self._execs_ended = self._execs, set(), True
        for process in execs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM to the container's processes: the start of a graceful stop."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the container's processes; returns at once, then ``wait()``."""
        self._signal(signal.SIGKILL)

    def cpu_seconds(self) -> float | None:
        """CPU seconds its processes have used, or None when it is not running (usage.py's sample)."""
        if self.process is None or self.process.poll() is not None:
            return None
        return group_cpu_seconds(self.process.pid)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after *timeout* seconds (output read to its end first)."""
        if self.process is None:
            raise ContainerFailure(f"container {self.spec.name!r} was never started")
        return self.exit_code if self._done.wait(timeout) else None

    def _watch(self) -> None:
        """Sample memory (the OOM kill), renew the pod's files, then record the end."""
        assert self.process is not None
        limit, last_tick = self.spec.limits.memory_bytes, time.monotonic()
        while self.process.poll() is None:
            self.memory_bytes = _group_rss(self.process.pid)
            if limit and self.memory_bytes > limit and not self._oom:
                self._oom = True
                os.killpg(self.process.pid, signal.SIGKILL)
            if self.spec.tick is not None and time.monotonic() - last_tick >= 60:
                last_tick = time.monotonic()
                self.spec.tick()
            try:
                self.process.wait(SAMPLE_S)
            except subprocess.TimeoutExpired:
                continue
        code = self.process.returncode
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the rest of the group, as a PID namespace ends with its init
        self._kill_execs()  # and its exec'd commands, which runc puts in the same namespace
        for thread in self._threads[:2]:
            thread.join(5)
        for buffer in self._buffers:
            buffer.close()
        if self._oom:
            self.exit_code, self.outcome = EXIT_KILLED, "oom-killed"
        elif code < 0:
            self.exit_code, self.outcome = 128 - code, "killed"
        else:
            self.exit_code, self.outcome = code, "exited"
        self.finished_at = time.monotonic()
        shutil.rmtree(self.spec.rootfs.parent, ignore_errors=True)  # containerd removes the task's bundle
        self._done.set()


def _pump(pipe: IO[bytes] | None, buffer: LineBuffer) -> None:
    if pipe is None:
        return
    with pipe:
        while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
            buffer.feed(chunk)


def unpack_rootfs(node_root: Path, container_id: str, launch: NativeLaunch) -> Path:
    """The container's rootfs in the node root, holding the image's program (mode 0755)."""
    bundle = node_root / "run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io" / container_id
    rootfs = bundle / "rootfs"
    target = rootfs / launch.program_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(launch.program)
    target.chmod(0o755)
    return rootfs


def start_native(
    node_root: Path,
    container_id: str,
    name: str,
    launch: NativeLaunch,
    env: Mapping[str, str],
    working_dir: str,
    mounts: list[Mount],
    files: PodFiles,
    pod_ip: str,
    api_server: str,
    limits: Limits,
    output: tuple[LineCallback, LineCallback],
    tick: Callable[[], None] | None = None,
) -> NativeContainer:
    """Unpack the program and start the container (blocking: a thread of the kubelet's pool calls it)."""
    url = urlsplit(api_server)
    paths = files.mapped_paths()
    paths.update({m.guest_path: str(m.host_dir) for m in mounts})  # a volumeMount wins over the pod's files
    spec = NativeSpec(
        name=name,
        launch=launch,
        env=env,
        working_dir=working_dir,
        rootfs=unpack_rootfs(node_root, container_id.split("://", 1)[-1], launch),
        paths=paths,
        pod_ip=pod_ip,
        api_endpoint=(url.hostname or "127.0.0.1", url.port or 443),
        resolv_conf=files.resolv_conf,
        hosts=files.hosts,
        limits=limits,
        tick=tick,
    )
    container = NativeContainer(spec, *output)
    container.start()
    return container


# ---------------------------------------------------------------- exec


class ExecRefused(ContainerFailure):
    """``kubectl exec`` of an argv the container's image cannot run; ``problem`` has runc's exec wording."""


def run_in_container(container: NativeContainer, argv: list[str], stdin: bool = False) -> subprocess.Popen[bytes]:
    """Start *argv* inside the running native *container*, as ``kubectl exec`` does, and return the process.

    The argv follows the container's rules (the image's program, alone or after its interpreter, then its
    arguments); its env, working dir, files and network view are the container's. stdout and stderr are
    pipes, and stdin too when *stdin*. The caller reads them, waits, and kills the process when done; it dies
    with the container (killed when the container's main process ends) and with the node. Raises
    :class:`ExecRefused` with runc's words for any other argv.
    """
    spec = container.spec
    if not container.running:
        raise ExecRefused(f"container {spec.name} is not running")
    entrypoint = [spec.launch.interpreter, spec.launch.program_path]
    try:
        launch = plan_native(entrypoint, spec.launch.program, argv, spec.env, spec.working_dir)
    except NotInImage as err:
        raise ExecRefused(
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{err.arg0}": executable file not found in $PATH: unknown'
        ) from None
    except ContainerFailure as err:
        raise ExecRefused(err.problem, fix=err.fix) from None
    assert launch is not None  # the running container's program is one labkit ships
    process = _spawn(
        spec,
        [launch.program_path, *launch.args],
        f"exec-{os.urandom(4).hex()}.json",
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    container.adopt(process)  # it ends with the container
    return process


def exec_sync(container: NativeContainer, command: list[str], limit_s: float) -> tuple[int, bytes]:
    """CRI ``ExecSync`` for a native container (blocking): (exit code, stdout + stderr), as an exec probe wants it.

    Raises :class:`ExecRefused` when the image cannot run *command*, ``TimeoutError`` (the process killed) past
    *limit_s* seconds. The probes' ``CommandRunner`` for native containers can wrap it in a thread.
    """
    process = run_in_container(container, command)
    try:
        out, err = process.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise TimeoutError(f"command {' '.join(command)!r} timed out") from None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # what it left behind
    return (128 - process.returncode if process.returncode < 0 else process.returncode), out + err


class PodExec:
    """The exec runner of one pod (the probes' ``CommandRunner``): a native container runs the command
    (:func:`exec_sync`, in a thread); a wasm container answers as runwasi's shim does (:class:`WasmExec`)."""

    def __init__(self, process_of: Callable[[str], object]) -> None:
        self._process_of = process_of

    async def exec_sync(
        self, container: str, container_id: str, command: Sequence[str], limit_s: float
    ) -> tuple[int, bytes]:
        process = self._process_of(container)
        if not isinstance(process, NativeContainer):
            return await WasmExec().exec_sync(container, container_id, command, limit_s)
        try:
            return await asyncio.to_thread(exec_sync, process, list(command), limit_s)
        except ExecRefused as e:
            raise ExecFailed(str(e)) from e
