"""The sandbox daemon: one process per ``LABKIT_HOME``, shared by every kernel and terminal.

Client side: ``ensure_running()``, ``status()``, ``stop()`` — what
``labkit.connect()`` and ``labkit sandbox up|down|status`` call. Daemon side:
``serve()``, run as ``python -m labkit.sandbox.daemon``. State lives in SQLite
(``state.db``), so ``down``/``up`` and even a killed daemon lose nothing.

>>> info = ensure_running(nodes=1)      # doctest: +SKIP
>>> info.kubeconfig                     # doctest: +SKIP
PosixPath('/home/me/.labkit/sandbox/kubeconfig')
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from labkit import config
from labkit.errors import SandboxError

from . import tls
from .apicore import CLUSTER_DNS_IP, KUBERNETES_SERVICE_IP, ApiCore
from .auth import TokenAuthority
from .endpoints import run_endpoints_controller
from .kubelet import NodeAgents
from .nodes import NODES, SANDBOX_NODE_LABEL, ensure_nodes, run_scheduler
from .registry import RESOURCES
from .server import VERSION_INFO, ApiServer, ServerThread
from .store import Store
from .workloads import run_deployment_controller, run_job_controller, run_replicaset_controller

log = logging.getLogger("labkit.sandbox.daemon")

#: The control loops the daemon runs on the API server's event loop, each ``async def loop(core)``.
CONTROLLERS = (
    run_scheduler,
    run_deployment_controller,
    run_replicaset_controller,
    run_job_controller,
    run_endpoints_controller,
)


@dataclass
class SandboxInfo:
    kubeconfig: Path
    context: str
    server: str
    pid: int
    nodes: int
    version: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kubeconfig": str(self.kubeconfig)}


def _paths(home: Path | None = None) -> dict[str, Path]:
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
        "images": root / "images",
        "module_cache": root / "module-cache",
    }


def _private_file(path: Path, make: bytes) -> bytes:
    """Read *path*, creating it with mode 0600 and content *make* the first time."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(make)
    return path.read_bytes()


def write_kubeconfig(path: Path, server: str, token: str, ca: Path) -> None:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": config.SANDBOX_CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()},
            }
        ],
        "users": [{"name": "labkit-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": config.SANDBOX_CONTEXT,
                "context": {"cluster": config.SANDBOX_CONTEXT, "user": "labkit-admin", "namespace": "default"},
            }
        ],
        "current-context": config.SANDBOX_CONTEXT,
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(document, f, sort_keys=False)
    os.replace(tmp, path)


# ---------------------------------------------------------------- client side
def _read_info(paths: dict[str, Path]) -> dict[str, Any] | None:
    try:
        return json.loads(paths["info"].read_text())
    except (OSError, ValueError):
        return None


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
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout, context=tls.client_context(paths["ca"])) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def status(home: Path | None = None) -> SandboxInfo | None:
    """The running sandbox, or None when no daemon answers."""
    paths = _paths(home)
    info = _read_info(paths)
    if not info or not _alive(info["pid"]) or not _ready(info["server"], paths):
        return None
    return SandboxInfo(
        paths["kubeconfig"],
        config.SANDBOX_CONTEXT,
        info["server"],
        info["pid"],
        _node_count(info["server"], paths),
        info.get("version", ""),
    )


def _api(url: str, paths: dict[str, Path], method: str, path: str, body: Any = None) -> Any:
    token = paths["token"].read_text().strip()
    request = urllib.request.Request(
        f"{url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=tls.client_context(paths["ca"])) as r:
        return json.loads(r.read())


def _node_count(url: str, paths: dict[str, Path]) -> int:
    try:
        nodes = _api(url, paths, "GET", f"/api/v1/nodes?labelSelector={SANDBOX_NODE_LABEL}%3Dtrue")
    except (urllib.error.URLError, OSError, ValueError):
        return 0
    return len(nodes.get("items", []))


@contextmanager
def _locked(paths: dict[str, Path]) -> Iterator[None]:
    """Serialise up/down across processes (two kernels starting at once share one daemon)."""
    paths["root"].mkdir(parents=True, exist_ok=True)
    with open(paths["lock"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_running(nodes: int | None = None, timeout: float = 60.0, home: Path | None = None) -> SandboxInfo:
    """Start the sandbox unless it runs (idempotent); with *nodes*, make exactly that many nodes exist."""
    if nodes is not None and nodes < 1:
        raise SandboxError(f"a sandbox needs at least one node, not {nodes}", "use --nodes 1 or more")
    paths = _paths(home)
    with _locked(paths):
        info = status(home)
        if info is None:
            _spawn(paths, nodes, timeout)
            info = status(home)
            if info is None:
                raise SandboxError("the sandbox daemon started but does not answer", _log_hint(paths))
        elif nodes is not None and info.nodes != nodes:
            _api(info.server, paths, "POST", "/labkit/nodes", {"count": nodes})
            info.nodes = _node_count(info.server, paths)
    return info


def _log_hint(paths: dict[str, Path]) -> str:
    try:
        tail = paths["log"].read_text(errors="replace").strip().splitlines()[-8:]
    except OSError:
        tail = []
    shown = ("\n    " + "\n    ".join(tail)) if tail else ""
    return f"read the daemon log: labkit sandbox logs ({paths['log']}){shown}"


def _spawn(paths: dict[str, Path], nodes: int | None, timeout: float) -> None:
    paths["root"].mkdir(parents=True, exist_ok=True)
    paths["info"].unlink(missing_ok=True)
    args = [sys.executable, "-m", "labkit.sandbox.daemon", "--home", str(paths["root"])]
    if nodes is not None:
        args += ["--nodes", str(nodes)]
    with open(paths["log"], "ab") as out:
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
    paths = _paths(home)
    with _locked(paths):
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


# ---------------------------------------------------------------- daemon side
def bootstrap(core: ApiCore) -> None:
    """The objects a fresh k3s cluster has before anyone applies anything."""
    ns_res = RESOURCES.by_plural("", "namespaces")
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        if core.store.get(ns_res, None, name) is None:
            core.create(ns_res, None, {"metadata": {"name": name}})
    services = RESOURCES.by_plural("", "services")
    if core.store.get(services, "default", "kubernetes") is None:
        core.create(
            services,
            "default",
            {
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {
                    "clusterIP": KUBERNETES_SERVICE_IP,
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                },
            },
        )
    if core.store.get(services, "kube-system", "kube-dns") is None:
        core.create(
            services,
            "kube-system",
            {
                "metadata": {
                    "name": "kube-dns",
                    "labels": {
                        "k8s-app": "kube-dns",
                        "kubernetes.io/cluster-service": "true",
                        "kubernetes.io/name": "CoreDNS",
                    },
                },
                "spec": {
                    "clusterIP": CLUSTER_DNS_IP,
                    "selector": {"k8s-app": "kube-dns"},
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    ],
                },
            },
        )
    roles = RESOURCES.by_plural("rbac.authorization.k8s.io", "clusterroles")
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]
    read = ["get", "list", "watch"]
    defaults = {
        "cluster-admin": everything,
        "admin": [
            {
                "apiGroups": ["", "apps", "batch", "rbac.authorization.k8s.io", "discovery.k8s.io"],
                "resources": ["*"],
                "verbs": ["*"],
            }
        ],
        "edit": [
            {
                "apiGroups": ["", "apps", "batch", "discovery.k8s.io"],
                "resources": ["*"],
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }
        ],
        "view": [{"apiGroups": ["", "apps", "batch", "discovery.k8s.io"], "resources": ["*"], "verbs": read}],
        # every authenticated user may ask what it may do (kubectl auth can-i)
        "system:basic-user": [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            }
        ],
    }
    for name, rules in defaults.items():
        if core.store.get(roles, None, name) is None:
            core.create(
                roles,
                None,
                {
                    "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                    "rules": rules,
                },
            )
    bindings = RESOURCES.by_plural("rbac.authorization.k8s.io", "clusterrolebindings")
    if core.store.get(bindings, None, "system:basic-user") is None:
        core.create(
            bindings,
            None,
            {
                "metadata": {"name": "system:basic-user", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:basic-user",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}
                ],
            },
        )


def _free_port(preferred: int | None) -> int:
    """The previous port when it is still free (so an old kubeconfig keeps working), else any."""
    if preferred:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    return 0


def serve(home: Path, nodes: int | None) -> None:
    paths = _paths(home)
    paths["root"].mkdir(parents=True, exist_ok=True)
    secret = _private_file(paths["secret"], secrets.token_bytes(32))
    token = _private_file(paths["token"], secrets.token_urlsafe(32).encode()).decode().strip()
    store = Store(paths["state"])
    core = ApiCore(store)
    bootstrap(core)
    existing = [n for n in store.list(NODES)[0] if n["metadata"].get("labels", {}).get(SANDBOX_NODE_LABEL) == "true"]
    ensure_nodes(core, nodes or max(len(existing), 1))
    previous = _read_info(paths) or {}
    agents = NodeAgents.for_sandbox(core, paths["root"])  # the kubelets, and their node restarts
    server = ApiServer(core, TokenAuthority(secret, token), paths["pod_logs"], extra_routes=_admin_routes(core, agents))
    _, crt, key = tls.ensure_certificates(paths["root"])
    thread = ServerThread(
        server, port=_free_port(previous.get("port")), ssl_context=tls.server_context(crt, key)
    ).start()
    tasks = thread.call(
        lambda: (
            [asyncio.ensure_future(controller(core)) for controller in CONTROLLERS]
            + [asyncio.ensure_future(agents.run())]
        )
    )
    write_kubeconfig(paths["kubeconfig"], thread.url, token, paths["ca"])
    info = {
        "pid": os.getpid(),
        "server": thread.url,
        "port": thread.port,
        "version": VERSION_INFO["gitVersion"],
        "started": time.time(),
    }
    tmp = paths["info"].with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, paths["info"])
    log.info("labkit sandbox serving on %s (state %s)", thread.url, paths["state"])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    log.info("stopping")
    thread.call(lambda: [t.cancel() for t in tasks])
    thread.stop()
    store.close()
    if _read_info(paths) == info:
        paths["info"].unlink(missing_ok=True)


def _admin_routes(core: ApiCore, agents: NodeAgents) -> list[web.RouteDef]:
    """Admin token only: ``POST /labkit/nodes {"count": N}`` resizes the sandbox;
    ``POST /labkit/nodes/{name}/restart`` restarts that node's k3s (containerd config re-rendered and re-read)."""

    def forbidden(request: web.Request) -> web.Response | None:
        user = request.get("user")
        if user is None or not user.is_admin:
            return web.json_response({"message": "forbidden"}, status=403)
        return None

    async def resize(request: web.Request) -> web.Response:
        if (denied := forbidden(request)) is not None:
            return denied
        count = int((await request.json()).get("count", 1))
        return web.json_response({"nodes": ensure_nodes(core, count)})

    async def restart(request: web.Request) -> web.Response:
        if (denied := forbidden(request)) is not None:
            return denied
        name = request.match_info["name"]
        try:
            info = await agents.restart(name)
        except KeyError:
            return web.json_response({"message": f'node "{name}" is not a running sandbox node'}, status=404)
        if info is None:
            error = agents.kubelets[name].runtime_error
            return web.json_response({"node": name, "message": f"containerd did not start: {error}"}, status=422)
        return web.json_response(
            {
                "node": name,
                "defaultRuntime": info.default_runtime,
                "runtimes": sorted(info.runtimes),
                "ignoredKeys": info.ignored_keys,
            }
        )

    return [web.post("/labkit/nodes", resize), web.post("/labkit/nodes/{name}/restart", restart)]


def restart_node(name: str, home: Path | None = None) -> dict[str, Any]:
    """Ask the running daemon to restart sandbox node *name* as ``systemctl restart k3s`` would.

    Returns the runtimes containerd loaded; :class:`SandboxError` if no sandbox runs or the config does not load.
    """
    paths = _paths(home)
    info = _read_info(paths)
    if not info or not _alive(info["pid"]):
        raise SandboxError("the sandbox is not running", "start it: labkit sandbox up")
    try:
        return _api(info["server"], paths, "POST", f"/labkit/nodes/{name}/restart", {})
    except urllib.error.HTTPError as err:
        message = json.loads(err.read() or b"{}").get("message", str(err))
        raise SandboxError(
            f"restarting node {name} failed: {message}",
            "fix the containerd template in the node's var/lib/rancher/k3s/agent/etc/containerd/ and restart again"
            if err.code == 422
            else "list the nodes: kubectl get nodes",
        ) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.sandbox.daemon", description="run the labkit sandbox daemon"
    )
    parser.add_argument("--home", type=Path, default=config.sandbox_dir())
    parser.add_argument("--nodes", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(args.home, args.nodes)


if __name__ == "__main__":
    main()
