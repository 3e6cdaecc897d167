"""The sandbox daemon's client: start, find, stop and ask it, with the standard library only.

This is the one module of :mod:`labkit.sandbox` that the rest of labkit imports
(``labkit.connect()``, ``labkit sandbox up|down|status``, the sandbox Host door).
It speaks to the daemon over its HTTPS API with the admin token, and never
imports the API server, the controllers or the kubelets. How the processes fit
together: ``docs/architecture.md``.

>>> info = ensure_running(nodes=1)      # doctest: +SKIP
>>> info.kubeconfig                     # doctest: +SKIP
PosixPath('/home/me/.labkit/sandbox/kubeconfig')
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit import config
from labkit.errors import SandboxError
from labkit.sandbox import netmap, pki


@dataclass
class NodeProcess:
    """One node's kubelet process as the daemon sees it; ``pid`` is None when it is not running."""

    name: str
    pid: int | None
    state: str  # Ready, NotReady or missing


@dataclass
class SandboxInfo:
    kubeconfig: Path
    context: str
    server: str
    pid: int
    nodes: int
    version: str
    #: the kubelet processes, one per node (the API server is ``pid``)
    node_processes: list[NodeProcess] = field(default_factory=list)
    #: what the daemon wants the user to know about this start (its port changed)
    notice: str = ""
    #: the sandbox's address slot on this machine (labkit.sandbox.netmap.plan): 0 unless another sandbox runs
    slot: int = 0

    @property
    def cluster_dns(self) -> str:
        """``ip:53`` of this sandbox's cluster DNS (the kube-dns Service of its address slot)."""
        return f"{netmap.plan(self.slot).cluster_dns_ip}:53"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kubeconfig": str(self.kubeconfig), "apiServerPid": self.pid}


def sandbox_paths(home: Path | None = None) -> dict[str, Path]:
    root = home or config.sandbox_dir()
    return {
        "root": root,
        "state": root / "state.db",
        "info": root / "server.json",
        "kubeconfig": root / "kubeconfig",
        "secret": root / "secret",
        "token": root / "admin-token",
        "log": root / "daemon.log",
        "lock": root / "lock",
        "pod_logs": root / "pod-logs",
        "ca": root / "ca.crt",
        "nodes": root / "nodes",
        "kubelets": root / "kubelets",
        "images": root / "images",
        "module_cache": root / "module-cache",
        "slot": root / "netslot",  # the address slot the daemon had last (labkit.sandbox.netslots)
    }


# ---------------------------------------------------------------- client side
def _read_info(paths: dict[str, Path]) -> dict[str, Any] | None:
    try:
        info = json.loads(paths["info"].read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _alive(pid: int) -> bool:
    try:
        # When this process started the daemon, reap it: an exited child stays a zombie that kill(0) still finds.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ready(url: str, paths: dict[str, Path], timeout: float = 2.0) -> bool:
    # the URL is the daemon's own https address from server.json (S310: no file: or custom scheme reaches here)
    try:
        with urllib.request.urlopen(  # noqa: S310
            f"{url}/readyz", timeout=timeout, context=pki.client_context(paths["ca"])
        ) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def status(home: Path | None = None) -> SandboxInfo | None:
    """The running sandbox, or None when no daemon answers."""
    paths = sandbox_paths(home)
    info = _read_info(paths)
    if not info or not _alive(info["pid"]) or not _ready(info["server"], paths):
        return None
    processes = _node_processes(info["server"], paths)
    return SandboxInfo(
        paths["kubeconfig"],
        config.SANDBOX_CONTEXT,
        info["server"],
        info["pid"],
        len(processes),
        info.get("version", ""),
        processes,
        str(info.get("notice", "")),
        int(info.get("slot", 0)),
    )


def _api(url: str, paths: dict[str, Path], method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
    token = paths["token"].read_text().strip()
    request = urllib.request.Request(  # noqa: S310 - the daemon's https address, as in _ready
        f"{url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout, context=pki.client_context(paths["ca"])) as r:  # noqa: S310
        return json.loads(r.read())


def _node_processes(url: str, paths: dict[str, Path], answer: dict[str, Any] | None = None) -> list[NodeProcess]:
    """The nodes' kubelet processes, from *answer* or the daemon's ``GET /labkit/processes``."""
    if answer is None:
        try:
            answer = _api(url, paths, "GET", "/labkit/processes")
        except (urllib.error.URLError, OSError, ValueError):
            return []
    return [NodeProcess(n["name"], n.get("pid"), n.get("state", "missing")) for n in answer.get("nodes", [])]


def _private_root(paths: dict[str, Path]) -> None:
    """The state directory (and ``LABKIT_HOME`` around it) made 0700; refused when other users can write it."""
    if paths["root"].parent == config.labkit_home():
        config.private_dir(paths["root"].parent)
    config.private_dir(paths["root"])


@contextmanager
def _locked(paths: dict[str, Path]) -> Iterator[None]:
    """Serialise up/down across processes (two kernels starting at once share one daemon)."""
    paths["root"].mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(paths["lock"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_running(nodes: int | None = None, timeout: float = 60.0, home: Path | None = None) -> SandboxInfo:
    """Start the sandbox unless it runs (idempotent); with *nodes*, make exactly that many nodes exist.

    Node processes that are missing (a node that was killed) start again; returns once every node's kubelet
    has started and posted its status (Ready, or NotReady when containerd rejects the node's config).
    """
    if nodes is not None and nodes < 1:
        raise SandboxError(f"a sandbox needs at least one node, not {nodes}", "use --nodes 1 or more")
    if nodes is not None and nodes > netmap.MAX_NODES:
        raise SandboxError(
            f"a sandbox runs at most {netmap.MAX_NODES} nodes (each is a process), not {nodes}",
            f"use --nodes {netmap.MAX_NODES} or fewer",
        )
    paths = sandbox_paths(home)
    _private_root(paths)
    with _locked(paths):
        info = status(home)
        spawned = info is None
        if info is None:
            _spawn(paths, nodes, timeout)
            info = status(home)
        try:
            if info is None:
                raise SandboxError("the sandbox daemon started but does not answer", _log_hint(paths))
            _ensure_nodes(info, paths, nodes, timeout)
        except BaseException:
            if spawned:  # a daemon this call started and could not make whole is stopped, not left half-up
                _stop_locked(paths)
            raise
    return info


def _ensure_nodes(info: SandboxInfo, paths: dict[str, Path], nodes: int | None, timeout: float) -> None:
    """Start the node processes that are missing (a killed node comes back) and wait for them to be Ready.

    A daemon that lists no processes predates them and is left as it is.
    """
    count = nodes or len(info.node_processes)
    if not count:
        return
    try:
        answer = _api(info.server, paths, "POST", "/labkit/nodes", {"count": count}, timeout=timeout)
    except urllib.error.HTTPError as err:
        message = json.loads(err.read() or b"{}").get("message", str(err))
        raise SandboxError(f"the sandbox daemon could not start its nodes: {message}", _log_hint(paths)) from err
    except (urllib.error.URLError, OSError) as err:
        raise SandboxError(f"the sandbox daemon stopped answering: {err}", _log_hint(paths)) from err
    info.node_processes = _node_processes(info.server, paths, answer)
    info.nodes = len(info.node_processes)
    missing = [p.name for p in info.node_processes if p.state == "missing"]
    if missing:
        raise SandboxError(
            f"the kubelet process of node(s) {', '.join(missing)} exited at start",
            f"read its log: {paths['kubelets'] / missing[0] / 'kubelet.log'}",
        )


def _log_hint(paths: dict[str, Path]) -> str:
    try:
        tail = paths["log"].read_text(errors="replace").strip().splitlines()[-8:]
    except OSError:
        tail = []
    shown = ("\n    " + "\n    ".join(tail)) if tail else ""
    return f"read the daemon log: labkit sandbox logs ({paths['log']}){shown}"


def _spawn(paths: dict[str, Path], nodes: int | None, timeout: float) -> None:
    paths["info"].unlink(missing_ok=True)
    args = [sys.executable, "-m", "labkit.sandbox.daemon", "--home", str(paths["root"])]
    if nodes is not None:
        args += ["--nodes", str(nodes)]
    with os.fdopen(os.open(paths["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(f"the sandbox daemon exited at start (code {process.returncode})", _log_hint(paths))
        info = _read_info(paths)
        if info and _ready(info["server"], paths, 1.0):
            return
        time.sleep(0.05)
    process.terminate()
    raise SandboxError(f"the sandbox daemon did not become ready within {timeout:.0f} s", _log_hint(paths))


def stop(home: Path | None = None, timeout: float = 15.0) -> bool:
    """Stop the daemon; objects stay in state.db. Returns False when none was running."""
    paths = sandbox_paths(home)
    with _locked(paths):
        return _stop_locked(paths, timeout)


def _stop_locked(paths: dict[str, Path], timeout: float = 15.0) -> bool:
    info = _read_info(paths)
    if not info or not _alive(info["pid"]):
        paths["info"].unlink(missing_ok=True)
        return False
    os.kill(info["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(info["pid"]):
        os.kill(info["pid"], signal.SIGKILL)
    paths["info"].unlink(missing_ok=True)
    return True


def restart_node(name: str, home: Path | None = None) -> dict[str, Any]:
    """Ask the running daemon to restart sandbox node *name* as ``systemctl restart k3s`` would.

    Returns the runtimes containerd loaded; :class:`SandboxError` if no sandbox runs or the config does not load.
    """
    paths = sandbox_paths(home)
    info = _read_info(paths)
    if not info or not _alive(info["pid"]):
        raise SandboxError("the sandbox is not running", "start it: labkit sandbox up")
    try:
        report: dict[str, Any] = _api(info["server"], paths, "POST", f"/labkit/nodes/{name}/restart", {}, timeout=30)
        return report
    except urllib.error.HTTPError as err:
        message = json.loads(err.read() or b"{}").get("message", str(err))
        raise SandboxError(
            f"restarting node {name} failed: {message}",
            "fix the containerd template in the node's var/lib/rancher/k3s/agent/etc/containerd/ and restart again"
            if err.code == 422
            else "list the nodes: kubectl get nodes",
        ) from None


def kill_node(name: str, home: Path | None = None) -> int:
    """SIGKILL sandbox node *name*'s process, as a power cut would take a machine; returns the pid it had.

    Its pods die with it and nothing restarts it: the node goes ``NotReady`` once its Lease expires, and
    ``labkit sandbox up`` (or ``connect(nodes=…)``) starts it again. :class:`SandboxError` when no sandbox runs,
    the node is unknown, or it is not running.
    """
    running = status(home)
    if running is None:
        raise SandboxError("the sandbox is not running", "start it: labkit sandbox up")
    known = {p.name: p for p in running.node_processes}
    if name not in known:
        raise SandboxError(f"the sandbox has no node {name!r} (it has {', '.join(known)})", "kubectl get nodes")
    pid = known[name].pid
    if pid is None:
        raise SandboxError(f"node {name} is not running", "start it again: labkit sandbox up")
    os.kill(pid, signal.SIGKILL)
    return pid
