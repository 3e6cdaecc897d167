"""The sandbox daemon: one process per ``LABKIT_HOME``, shared by every kernel and terminal.

Run as ``python -m labkit.sandbox.daemon``; clients start and reach it through :mod:`labkit.sandbox.client`.

State lives in SQLite (``state.db``), so ``down``/``up`` and even a killed daemon lose nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from pathlib import Path

import yaml
from aiohttp import web

from labkit import config
from labkit.fsutil import write_atomic
from labkit.sandbox import client, pki
from labkit.sandbox.api.apicore import CLUSTER_DNS_IP, KUBERNETES_SERVICE_IP, ApiCore
from labkit.sandbox.api.auth import TokenAuthority
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.server import VERSION_INFO, ApiServer, ServerThread
from labkit.sandbox.api.store import Store
from labkit.sandbox.controllers import CONTROLLERS
from labkit.sandbox.kubelet.agent import NodeAgents
from labkit.sandbox.nodes import NODES, SANDBOX_NODE_LABEL, ensure_nodes

log = logging.getLogger("labkit.sandbox.daemon")


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
    write_atomic(path, yaml.safe_dump(document, sort_keys=False), mode=0o600)


# ---------------------------------------------------------------- client side
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
    paths = client.sandbox_paths(home)
    paths["root"].mkdir(parents=True, exist_ok=True)
    secret = _private_file(paths["secret"], secrets.token_bytes(32))
    token = _private_file(paths["token"], secrets.token_urlsafe(32).encode()).decode().strip()
    store = Store(paths["state"])
    core = ApiCore(store)
    bootstrap(core)
    existing = [n for n in store.list(NODES)[0] if n["metadata"].get("labels", {}).get(SANDBOX_NODE_LABEL) == "true"]
    ensure_nodes(core, nodes or max(len(existing), 1))
    previous = client._read_info(paths) or {}
    agents = NodeAgents.for_sandbox(core, paths["root"])  # the kubelets, and their node restarts
    server = ApiServer(core, TokenAuthority(secret, token), paths["pod_logs"], extra_routes=_admin_routes(core, agents))
    _, crt, key = pki.ensure_certificates(paths["root"])
    thread = ServerThread(
        server, port=_free_port(previous.get("port")), ssl_context=pki.server_context(crt, key)
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
    write_atomic(paths["info"], json.dumps(info), mode=0o600)
    log.info("labkit sandbox serving on %s (state %s)", thread.url, paths["state"])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    log.info("stopping")
    thread.call(lambda: [t.cancel() for t in tasks])
    thread.stop()
    store.close()
    if client._read_info(paths) == info:
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
