"""The host door (docs/architecture.md, "The two doors"): actions on a node's machine rather than through the API.

Cluster actions go through the Kubernetes API; host actions (importing images
into the node's containerd, containerd config templates, restarting k3s) go
through a :class:`Host`. ``LocalHost`` acts on a real k3s machine,
``SandboxHost`` on a sandbox node's directory and image store.

Every host change runs through the same code here, whatever the backend:
plan (:meth:`Host.plan_crun_swap`) → :meth:`Host.preview` (a diff) →
:meth:`Host.apply` (validate the rendered config, back up, write atomically,
restart k3s, wait until the node is Ready) → :meth:`Host.verify_default_runtime`
→ :meth:`Host.restore` (one call, byte-identical files). A backend supplies
only ``node_root``, :meth:`Host.restart_k3s` and, where it has one, a live view
of the runtime (:meth:`Host.live_runtime_info`).
"""

from __future__ import annotations

import abc
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.containerd import (
    CRI_RUNTIME_PLUGIN,
    ContainerdConfigError,
    ContainerdPaths,
    RuntimeInfo,
    detect_runtimes,
    read_runtime_info,
    render_node_config,
)
from labkit.errors import LabkitError, PrerequisiteMissing
from labkit.host import changes, commands
from labkit.host.changes import Backup, HostChange, HostChangeError
from labkit.host.crun_swap import crun_swap_plan, set_default_runtime
from labkit.host.ldd import LddEntry, LddOutputRefused, LddRun, LibraryNotFound, check_path, parse_ldd

if TYPE_CHECKING:
    from labkit.cluster import Cluster
    from labkit.imagestore import ImageRecord

#: The containerd config version current k3s renders (containerd 2.x); sandbox nodes model it.
DEFAULT_CONFIG_VERSION = 3
#: Runtime name for labkit's crun table when k3s already auto-detected a ``crun`` (its table lacks pod_annotations).
CRUN_WASM_NAME = "crun-wasm"
CRUN_FIX = (
    "build crun with WasmEdge support (./autogen.sh && ./configure --with-wasmedge && make && "
    "sudo make install) and install it to /usr/local/bin, then restart k3s"
)


class RuntimeVerificationError(LabkitError):
    """The node's container runtime does not report what a change was meant to make it."""


@dataclass(frozen=True)
class HostRuntimeInfo(RuntimeInfo):
    """The node's runtime info, from the most authoritative source available.

    ``source`` names it: ``k3s crictl info`` (what the running containerd
    loaded: authoritative) or ``config.toml`` (the rendered file containerd
    reads at its next start). ``rendered`` is always the file's view, so a
    disagreement between the two is visible; ``note`` says why no live view was used.
    """

    source: str
    rendered: RuntimeInfo
    note: str = ""

    def __str__(self) -> str:
        """One line for a notebook: ``default runtime 'crun' (k3s crictl info); runtimes: crun, runc, wasmedge``."""
        return (
            f"default runtime {self.default_runtime!r} ({self.source}); runtimes: {', '.join(sorted(self.runtimes))}"
            + (f"; ignored keys: {len(self.ignored_keys)}" if self.ignored_keys else "")
        )


class Host(abc.ABC):
    """What labkit may do on a node's machine.

    ``node_root`` is where the node's filesystem starts on this machine: ``/``
    for a real k3s node, the node's directory for a sandbox node.
    """

    node_root: Path

    @abc.abstractmethod
    def import_image(self, archive: Path) -> list[str]:
        """Import an OCI image archive into the node's image store; return the refs imported.

        Same effect as ``k3s ctr -n k8s.io images import --all-platforms <archive>``.
        """

    @abc.abstractmethod
    def list_images(self) -> list[ImageRecord]:
        """The images the node's container runtime has."""

    @abc.abstractmethod
    def restart_k3s(self) -> object:
        """Restart k3s on the node (containerd re-renders and re-reads its config); return once it runs again."""

    # ------------------------------------------------------------------ reading the node

    def containerd_paths(self) -> ContainerdPaths:
        """The node's containerd config, templates and k3s config file, as paths on this machine."""
        return ContainerdPaths(self.node_root)

    def containerd_version(self) -> int:
        """The containerd config version the node's containerd prefers: 3 (containerd 2.x) or 2 (1.7).

        This default is what current k3s ships (containerd 2) and what sandbox nodes model.
        """
        return DEFAULT_CONFIG_VERSION

    def read_node_files(self, paths: list[Path]) -> dict[Path, str | None]:
        """The text of each node file (``None`` if absent), read with the privileges the file needs."""
        try:
            found = changes.read_files(paths)
        except PermissionError:
            found = self._execute("read", {"paths": [str(p) for p in paths]})
        except OSError as err:  # a directory where a file should be, an I/O error: name the path and stop
            raise changes.HostChangeError(
                f"cannot read {err.filename}: {err.strerror or err}",
                "check that the path is a readable file on the node",
            ) from err
        return {p: found[str(p)] for p in paths}

    def read_containerd_config(self) -> str:
        """The node's rendered ``config.toml`` (what containerd loaded at the last k3s start)."""
        path = self.containerd_paths().config
        text = self.read_node_files([path])[path]
        if text is None:
            raise ContainerdConfigError(
                f"{path} does not exist: containerd on this node has no config",
                "start (or restart) k3s so it renders the config from its template",
            )
        return text

    def live_runtime_info(self) -> tuple[str, RuntimeInfo] | None:
        """``(source, info)`` from the running container runtime, where this host can ask it; else ``None``.

        A sandbox node's ``config.toml`` is rendered only when its k3s (re)starts, so
        the file already is what runs; a real node asks containerd (``k3s crictl info``).
        """
        return None

    def runtime_info(self) -> HostRuntimeInfo:
        """Default runtime and runtimes of the node: the live view if there is one, else the rendered config."""
        rendered = read_runtime_info(self.read_containerd_config())
        live = self.live_runtime_info()
        if live is None:
            return HostRuntimeInfo(
                rendered.version,
                rendered.default_runtime,
                rendered.runtimes,
                rendered.ignored_keys,
                "config.toml",
                rendered,
                self._no_live_note(),
            )
        source, info = live
        return HostRuntimeInfo(
            rendered.version, info.default_runtime, info.runtimes, rendered.ignored_keys, source, rendered
        )

    def _no_live_note(self) -> str:
        return "the rendered config.toml is what this node's runtime loaded at its last start"

    # ------------------------------------------------------------------ inspecting the node's files (WASI-NN mounts)

    def wasmedge_version_text(self, binaries: tuple[str, ...] = ()) -> str | None:
        """What ``wasmedge -v`` prints on the node (the first of ``wasmedge`` on PATH and the node paths
        *binaries* that runs), or ``None`` where it cannot be run: a sandbox node's CLI is a stand-in."""
        return None

    def _local(self, path: str) -> Path:
        """Where node *path* (plain and absolute) is on this machine."""
        return Path(os.path.realpath(self.node_root)) / check_path(path).lstrip("/")

    def node_realpath(self, path: str) -> str | None:
        """The canonical node path of node *path* (symlinks and ``..`` resolved, as ``realpath -e``), or ``None``
        when nothing is there. Under a node root other than ``/``, a path that resolves out of it is refused."""
        if not path.startswith("/") or any(ord(c) < 0x20 for c in path):
            check_path(path)
        real = os.path.realpath(self.node_root / path.lstrip("/"))
        if not os.path.exists(real):
            return None
        root = os.path.realpath(self.node_root)
        if root == "/":
            return real
        if real != root and not real.startswith(root + "/"):
            raise LddOutputRefused(
                f"{path} resolves to {real}, outside the node's root {root}",
                "a node path must stay on the node: replace the symlink with the file it stands for",
            )
        return "/" + os.path.relpath(real, root) if real != root else "/"

    def node_kind(self, path: str) -> str | None:
        """``"file"``, ``"directory"`` or ``None`` (absent, or something else) for node *path*."""
        local = self._local(path)
        return "file" if local.is_file() else "directory" if local.is_dir() else None

    def read_node_head(self, path: str, size: int) -> bytes:
        """The first *size* bytes of node file *path* (a file's magic number); a file that cannot be read
        raises :class:`~labkit.errors.PrerequisiteMissing` naming it."""
        try:
            with open(self._local(path), "rb") as f:
                return f.read(size)
        except OSError as err:
            raise PrerequisiteMissing(
                f"cannot read {path} on the node: {err.strerror or err}", "check the path and its permissions"
            ) from err

    def ldd(self, path: str, library_path: str | None = None, timeout: float = 30.0) -> LddRun:
        """The real ``ldd`` of node file *path* (with ``LD_LIBRARY_PATH=<library_path>``, node paths), run
        through the host's command runner; every path in its output mapped to a node path. A library ldd
        finds nowhere raises :class:`~labkit.host.ldd.LibraryNotFound` naming it.

        On a node root other than ``/`` (a sandbox node) ``ldd`` runs on this machine: a library found in the
        node root maps back to its node path; one found in this machine's system directories counts only if
        the node has its copy at the same path (a sandbox node has them), else it is refused.
        """
        local = self._local(path)
        head = self.read_node_head(path, 18)
        if head[:4] != b"\x7fELF" or len(head) < 18 or head[16] != 3:  # ET_DYN: ldd lists a shared object's deps
            raise LddOutputRefused(
                f"{path} is not an ELF shared object, so labkit does not run ldd on it",
                "point labkit at WasmEdge's libwasmedgePluginWasiNN.so",
            )
        env = {"LD_LIBRARY_PATH": library_path} if library_path else {}
        local_env = {"LD_LIBRARY_PATH": str(self._local(library_path))} if library_path else None
        result = commands.run(["ldd", str(local)], env=local_env, timeout=timeout)
        if result.exit_code == commands.NOT_FOUND:
            raise PrerequisiteMissing("ldd is not installed on this machine", "apt-get install libc-bin")
        if not result.stdout.strip():
            raise LddOutputRefused(f"ldd {path} failed: {result.message}", "run ldd on the plugin by hand")
        parsed = parse_ldd(result.stdout)
        missing = [e.name for e in parsed if e.missing]
        if missing:  # the plugin cannot load on the node: that is the news, whatever else ldd printed
            raise LibraryNotFound(path, missing)
        entries = tuple(LddEntry(e.name, self._node_path(e) if e.path else None, e.line) for e in parsed)
        return LddRun(("ldd", path), env, result.stdout, entries)

    def _node_path(self, entry: LddEntry) -> str:
        assert entry.path is not None
        root = os.path.realpath(self.node_root)
        if root == "/":
            return entry.path
        if entry.path.startswith(root + "/"):
            return "/" + entry.path[len(root) + 1 :]
        if self.node_kind(entry.path) != "file":
            raise LddOutputRefused(
                f"ldd found {entry.name or entry.path} at {entry.path} on this machine, "
                f"but the node has no {entry.path}",
                "the node lacks a library the plugin needs: recreate the sandbox (labkit sandbox down, then up) "
                "so its nodes get WasmEdge's files again",
            )
        return entry.path

    # ------------------------------------------------------------------ planning and checking a change

    def plan_crun_swap(
        self,
        binary: str = "/usr/local/bin/crun",
        default: bool = True,
        name: str | None = None,
        route: str = "config",
    ) -> HostChange:
        """Plan the runc→crun swap: a template adding a crun runtime table and, with *default*, the default runtime.

        *route* names where the default goes: ``config`` (k3s's ``default-runtime`` in
        ``/etc/rancher/k3s/config.yaml``) or ``template`` (the template's ``…containerd``
        table, the journey's route). *name* defaults to ``crun``, or to ``crun-wasm``
        when k3s already auto-detects a ``crun`` binary (its own table would clash
        with ours, and lacks the ``pod_annotations`` crun's wasm handler needs).
        """
        if not (self.node_root / binary.lstrip("/")).is_file():
            raise PrerequisiteMissing(f"{binary} does not exist on the node, so it cannot be its runtime", CRUN_FIX)
        detected = detect_runtimes(self.node_root)
        name = name or (CRUN_WASM_NAME if "crun" in detected else "crun")
        if name in detected:
            raise ContainerdConfigError(
                f"k3s already declares a runtime named {name!r} (it found {detected[name].binary_name})",
                f"pick another name, e.g. plan_crun_swap(name={CRUN_WASM_NAME!r})",
            )
        version = self.containerd_version()
        paths = self.containerd_paths()
        files = crun_swap_plan(paths, version, binary, default=default and route == "template", name=name, route=route)
        if (
            default and route == "config"
        ):  # read k3s's config with the privileges it needs (it may hold the join token, mode 0600)
            files[paths.k3s_config] = set_default_runtime(
                self.read_node_files([paths.k3s_config])[paths.k3s_config] or "", name
            )
        what = f"crun ({binary}) as runtime {name!r}" + (", the node's default runtime" if default else "")
        return HostChange(self.node_root, files, what, version, name if default else None)

    def preview(self, change: HostChange) -> str:
        """A unified diff per file of *change* against the node's files (new files shown whole)."""
        current = self.read_node_files(list(change.files))
        return "".join(changes.unified_diff(change.node_path(p), current[p], text) for p, text in change.files.items())

    def validate(self, change: HostChange) -> RuntimeInfo:
        """The runtime info containerd would load after *change* and a restart; raises if it would not load.

        Renders the node's template as k3s would (with the change's files in
        place, in a scratch copy) and parses it as containerd does. A TOML error, a
        key under the wrong version's prefix or a default runtime without a table
        raises :class:`ContainerdConfigError`; nothing is written.
        """
        paths = self.containerd_paths()
        inputs = [paths.template_v2, paths.template_v3, paths.k3s_config]
        current = self.read_node_files(inputs)
        with tempfile.TemporaryDirectory(prefix="labkit-validate-") as scratch:
            sim = ContainerdPaths(Path(scratch))
            for local in inputs:
                text = change.files.get(local, current[local])
                if text is not None:
                    target = sim.root / local.relative_to(self.node_root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
            rendered = render_node_config(sim, change.version, detect_runtimes(self.node_root))
        info = read_runtime_info(rendered)
        if info.ignored_keys:
            raise ContainerdConfigError(
                f"the rendered config is version {info.version}, but containerd would ignore tables in it "
                "(and start without those runtimes); its log would say:\n" + "\n".join(info.ignored_keys),
                f"write runtime tables under the version {info.version} prefix "
                f"(plugins.'{CRI_RUNTIME_PLUGIN[info.version]}'.containerd.runtimes)",
            )
        if info.default_runtime not in info.runtimes:
            raise ContainerdConfigError(
                f"the default runtime {info.default_runtime!r} has no runtime table "
                f"(declared: {', '.join(sorted(info.runtimes))}); containerd would refuse to start",
                f"declare runtimes.{info.default_runtime!r} in the template, or set default-runtime to a declared one",
            )
        return info

    # ------------------------------------------------------------------ changing the node

    def require_privileges(self) -> None:
        """Raise unless this process may write the node's files and restart it (checked before any change)."""
        if not self.node_root.is_dir():
            raise PrerequisiteMissing(
                f"the node root {self.node_root} does not exist",
                "start the cluster first (labkit sandbox up), then retry",
            )

    def apply(self, change: HostChange, cluster: Cluster | None = None, timeout: float = 180.0) -> Backup:
        """Validate, back up, write atomically, restart k3s and wait until the node is Ready; returns the backup.

        If k3s does not come back, the backup is restored (and k3s restarted) before the error is raised.
        """
        self.require_privileges()
        self.validate(change)
        payload = {
            "node_root": str(self.node_root),
            "files": {str(p): t for p, t in change.files.items()},
            "description": change.description,
        }
        backup = Backup.from_json(self._execute("apply", payload))
        try:
            self._restart_and_wait(cluster, timeout)
        except LabkitError as err:
            self._execute("restore", {"backup": backup.to_json()})
            try:
                self.restart_k3s()
                rolled = f"the change was rolled back from {backup.dir}"
            except LabkitError as again:
                rolled = f"the files were restored from {backup.dir}, but k3s did not restart either ({again.problem})"
            raise HostChangeError(f"k3s did not come back after the change ({err.problem}); {rolled}", err.fix) from err
        return backup

    def restore(self, backup: Backup, cluster: Cluster | None = None, timeout: float = 180.0) -> None:
        """Put the node's files back as *backup* holds them (byte-identical), restart k3s and wait for the node."""
        if backup.node_root != self.node_root:
            raise changes.HostChangeError(
                f"{backup} belongs to the node root {backup.node_root}, not to this host's {self.node_root}",
                "restore it with the host of that node (host.backups() lists this node's); nothing was written",
            )
        self.require_privileges()
        self._execute("restore", {"backup": backup.to_json()})
        self._restart_and_wait(cluster, timeout)

    def restart(self, cluster: Cluster | None = None, timeout: float = 180.0) -> RuntimeInfo:
        """Restart k3s on the node and wait for it, after checking that its current config would load.

        A template edited by hand that containerd would reject raises :class:`ContainerdConfigError`
        before the restart, so a restart never reports success on a config that does not load.
        """
        self.require_privileges()
        info = self.validate(HostChange(self.node_root, {}, "restart", self.containerd_version()))
        self._restart_and_wait(cluster, timeout)
        return info

    def backups(self) -> list[Backup]:
        """The node's labkit backups, oldest first."""
        return [Backup.from_json(b) for b in self._execute("backups", {"node_root": str(self.node_root)})]

    def verify_default_runtime(self, expected: str) -> HostRuntimeInfo:
        """Check that the node's runtime reports *expected* as its default; raise with the evidence otherwise."""
        info = self.runtime_info()
        if info.default_runtime == expected and expected in info.runtimes:
            return info
        evidence = (
            f"{info.source} reports default runtime {info.default_runtime!r} with runtimes "
            f"{', '.join(sorted(info.runtimes))}; the rendered config.toml says {info.rendered.default_runtime!r}"
        )
        if info.ignored_keys:
            evidence += "; ignored keys: " + "; ".join(info.ignored_keys)
        raise RuntimeVerificationError(
            f"the node's default runtime is not {expected!r}: {evidence}",
            "if config.toml already says the new default, k3s was not restarted since the change (restart it); "
            "else check default-runtime in /etc/rancher/k3s/config.yaml and the k3s service's --default-runtime flag",
        )

    def node_name(self) -> str | None:
        """The Kubernetes node this host is, for the Ready wait; ``None``: wait for every node."""
        return None

    def _restart_and_wait(self, cluster: Cluster | None, timeout: float) -> None:
        since = datetime.now(UTC)
        self.restart_k3s()
        if cluster is not None:
            wait_node_ready(cluster, self.node_name(), since, timeout)

    def _execute(self, op: str, payload: dict[str, Any]) -> Any:
        """Run a file operation of :mod:`labkit.host.changes` with the privileges it needs (here: this process's)."""
        try:
            return changes.execute(op, payload)
        except PermissionError as err:
            raise PrerequisiteMissing(
                f"no permission to change {err.filename}",
                "run the notebook's host steps as the owner of the node's files",
            ) from err
        except OSError as err:
            raise changes.HostChangeError(
                f"{op} failed on {err.filename or 'the node'}: {err.strerror or err}",
                "check the node's disk and the paths named; backups stay in var/lib/labkit/backups under the node root",
            ) from err


def _ready(node: Any, since: datetime | None) -> bool:
    """Ready=True, and (with *since*) a heartbeat posted after *since* (the restarted kubelet's)."""
    for cond in node.status.conditions or ():
        if cond.type == "Ready":
            beat = cond.last_heartbeat_time
            # heartbeats have second granularity
            return cond.status == "True" and (
                since is None or (beat is not None and beat >= since - timedelta(seconds=1))
            )
    return False


def wait_node_ready(cluster: Cluster, node: str | None, since: datetime, timeout: float) -> None:
    """Wait (watching the API) until *node* is Ready with a heartbeat after *since*; ``None``: every node Ready.

    The API server of a k3s server node restarts with k3s, so connection
    failures are retried until *timeout*.
    """
    import urllib3  # lazy: `import labkit` stays fast
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            listed: Any = cluster.core.list_node(_request_timeout=10)
            names = {n.metadata.name for n in listed.items}
            target = node if node in names else None  # an unknown name (renamed node): fall back to all nodes
            state = {n.metadata.name: n for n in listed.items if target in (None, n.metadata.name)}
            if state and all(_ready(n, since if target else None) for n in state.values()):
                return
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                cluster.core.list_node,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            )
            for event in stream:
                if event["type"] == "ERROR":  # e.g. 410 Gone: list again
                    break
                obj: Any = event["object"]
                if target in (None, obj.metadata.name):
                    state[obj.metadata.name] = obj
                if state and all(_ready(n, since if target else None) for n in state.values()):
                    return
            last = {name: _conditions(n) for name, n in state.items()}
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:  # the API server restarts with k3s: retry
            last = {"(api)": f"{type(err).__name__}: {err}"}
            time.sleep(1.0)
    raise HostChangeError(
        f"the node did not report Ready within {timeout:.0f} s after the restart at "
        f"{since.isoformat(timespec='seconds')}: {last}",
        "read `journalctl -u k3s` and /var/lib/rancher/k3s/agent/containerd/containerd.log",
    )


def _conditions(node: Any) -> str:
    """``Ready=True (heartbeat 2026-01-01T10:00:00+00:00)``: the state, and whether the kubelet reported since."""
    return (
        ", ".join(
            f"{c.type}={c.status} (heartbeat {c.last_heartbeat_time.isoformat() if c.last_heartbeat_time else 'never'})"
            for c in node.status.conditions or ()
            if c.type == "Ready"
        )
        or "no Ready condition"
    )
