"""The sandbox daemon: one process per ``LABKIT_HOME``, shared by every kernel and terminal.

Run as ``python -m labkit.sandbox.daemon``; clients start and reach it through :mod:`labkit.sandbox.client`.

State lives in SQLite (``state.db``), so ``down``/``up`` and even a killed daemon lose nothing.
The daemon runs the API server and the controllers; each node's kubelet is a process of its own
(:mod:`labkit.sandbox.supervisor`), started by argv and speaking to the API server over HTTPS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import errno
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from labkit import config
from labkit.errors import LabkitError
from labkit.fsutil import write_atomic
from labkit.sandbox import client, execwire, netmap, pki
from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.auth import NODE_RULES, NODES_GROUP, TokenAuthority
from labkit.sandbox.api.discovery import VERSION_INFO
from labkit.sandbox.api.escalation import missing_rules
from labkit.sandbox.api.impersonation import CALLER
from labkit.sandbox.api.ipallocator import move_cluster_ips
from labkit.sandbox.api.kubeletexec import KubeletCommands
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.server import ApiServer
from labkit.sandbox.api.serverthread import ServerThread
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import Store
from labkit.sandbox.controllers import CONTROLLERS
from labkit.sandbox.controllers.nodelifecycle import run_node_lifecycle_controller
from labkit.sandbox.netmap import plan
from labkit.sandbox.netprocess import NetworkProcess, network_token
from labkit.sandbox.netslots import acquire_slot, remember_slot, remembered_slot
from labkit.sandbox.nodes import NODES, ensure_nodes, sandbox_nodes
from labkit.sandbox.supervisor import KubeletProcesses
from labkit.sandbox.usagefiles import usage_dir

log = logging.getLogger("labkit.sandbox.daemon")

#: The controller-manager's loops and the node lifecycle controller, which watches the kubelets' Leases.
DAEMON_CONTROLLERS = (*CONTROLLERS, run_node_lifecycle_controller)
#: How long ``POST /labkit/nodes`` waits for the nodes' kubelets to start (and post their status).
KUBELET_START_TIMEOUT_S = 30.0


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
def _find(core: ApiCore, res: Resource, ns: str | None, name: str) -> dict[str, Any] | None:
    try:
        return core.get(res, ns, name)
    except StatusError as err:
        if err.code == 404:
            return None
        raise


def _auto_update(role: dict[str, Any]) -> bool:
    """Whether the bootstrap may reconcile *role* (``rbac.authorization.kubernetes.io/autoupdate`` is not "false")."""
    annotations = role["metadata"].get("annotations") or {}
    return bool(annotations.get("rbac.authorization.kubernetes.io/autoupdate") != "false")


LOCAL_PATH_CLASS = {
    "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "rancher.io/local-path",
    "volumeBindingMode": "WaitForFirstConsumer",
    "reclaimPolicy": "Delete",
}


def bootstrap(core: ApiCore) -> None:
    """The objects a fresh k3s cluster has before anyone applies anything (at ``core.addresses``' Service IPs).

    A sandbox restarted in another address slot first moves its Services' ClusterIPs into the new range."""
    moved = move_cluster_ips(core.store, core.addresses)
    if moved:
        log.info(
            "address slot %d: %d Service ClusterIPs moved to %s",
            core.addresses.slot,
            moved,
            core.addresses.service_cidr,
        )
    ns_res = RESOURCES.served("", "namespaces")
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        if _find(core, ns_res, None, name) is None:
            core.create(ns_res, None, {"metadata": {"name": name}})
    services = RESOURCES.served("", "services")
    if _find(core, services, "default", "kubernetes") is None:
        core.create(
            services,
            "default",
            {
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {
                    "clusterIP": core.addresses.kubernetes_service_ip,
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                },
            },
        )
    if _find(core, services, "kube-system", "kube-dns") is None:
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
                    "clusterIP": core.addresses.cluster_dns_ip,
                    "selector": {"k8s-app": "kube-dns"},
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    ],
                },
            },
        )
    storage_classes = RESOURCES.served("storage.k8s.io", "storageclasses")
    if _find(core, storage_classes, None, "local-path") is None:
        # k3s's manifests/local-storage.yaml: the default class, served by the local-path provisioner
        core.create(storage_classes, None, LOCAL_PATH_CLASS)
    roles = RESOURCES.served("rbac.authorization.k8s.io", "clusterroles")
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]
    read = ["get", "list", "watch"]
    defaults = {
        "cluster-admin": everything,
        "admin": [
            {"apiGroups": ["", "apps", "batch", "discovery.k8s.io"], "resources": ["*"], "verbs": ["*"]},
            # upstream's admin writes roles and bindings but may not bind or escalate: what it grants, it must hold
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles", "rolebindings"],
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            },
        ],
        "edit": [
            {
                "apiGroups": ["", "apps", "batch", "discovery.k8s.io"],
                "resources": ["*"],
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }
        ],
        "view": [{"apiGroups": ["", "apps", "batch", "discovery.k8s.io"], "resources": ["*"], "verbs": read}],
        # the kubelet's rights as RBAC shows them (kubectl auth can-i --as=system:node:<name>)
        "system:node": copy.deepcopy(NODE_RULES),
        # every authenticated user may ask who it is and what it may do (kubectl auth whoami, auth can-i)
        "system:basic-user": [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            },
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
        ],
    }
    for name, rules in defaults.items():
        found = _find(core, roles, None, name)
        if found is None:
            core.create(
                roles,
                None,
                {
                    "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                    "rules": rules,
                },
            )
        elif (missing := missing_rules(found.get("rules") or [], rules)) and _auto_update(found):
            # as the API server reconciles its bootstrap roles at start: the missing rules are added
            # (computeReconciledRole in pkg/registry/rbac/reconciliation/reconcile_role.go)
            core.replace(roles, None, name, {**found, "rules": [*(found.get("rules") or []), *missing]})
    bindings = RESOURCES.served("rbac.authorization.k8s.io", "clusterrolebindings")
    for name, group in (
        ("cluster-admin", "system:masters"),  # upstream's bootstrap binding: what `auth can-i --list` shows admins
        ("system:basic-user", "system:authenticated"),
        ("system:node", NODES_GROUP),
    ):
        if _find(core, bindings, None, name) is None:
            core.create(
                bindings,
                None,
                {
                    "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
                },
            )


def _previous_port(paths: dict[str, Path]) -> int | None:
    """The port the last daemon served on: from server.json while it runs, else from the kubeconfig it wrote."""
    port = (client._read_info(paths) or {}).get("port")
    if isinstance(port, int):
        return port
    try:
        document = yaml.safe_load(paths["kubeconfig"].read_text())
        server = str(document["clusters"][0]["cluster"]["server"])
        return urllib.parse.urlsplit(server).port
    except (OSError, yaml.YAMLError, LookupError, TypeError, ValueError):
        return None


def choose_port(preferred: int | None, kubeconfig: Path) -> tuple[int, str]:
    """(port, notice): *preferred* when it is free, so a copied kubeconfig keeps working; else 0 (any) and why."""
    if not preferred or not 0 < preferred < 65536:
        return 0, ""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred, ""
        except OSError as err:
            why = "is taken" if err.errno == errno.EADDRINUSE else "cannot be used"
            return 0, (
                f"port {preferred} {why} ({err.strerror}), so the sandbox API server listens on another port; "
                f"{kubeconfig} is rewritten with it, and a copy of the old kubeconfig needs the new address"
            )


def serve(home: Path, nodes: int | None, run_kubelets: bool = True) -> None:
    paths = client.sandbox_paths(home)
    config.private_dir(paths["root"])  # refuses a state directory other users can write
    for room in ("pod_logs", "nodes", "kubelets", "images", "module_cache"):  # the sandbox's own directories
        config.private_dir(paths[room])
    secret = _private_file(paths["secret"], secrets.token_bytes(32))
    token = _private_file(paths["token"], secrets.token_urlsafe(32).encode()).decode().strip()
    # this sandbox's address ranges on the machine, held until the process ends (labkit.sandbox.netslots)
    slot = acquire_slot(remembered_slot(paths["slot"]))
    remember_slot(paths["slot"], slot.slot)
    store = Store(paths["state"])
    core = ApiCore(store)
    core.addresses = plan(slot.slot)
    log.info("address slot %d: pods %s, Services %s", slot.slot, core.addresses.pod_cidr, core.addresses.service_cidr)
    bootstrap(core)
    ensure_nodes(core, nodes or max(len(sandbox_nodes(core)), 1), ready=False)
    tokens = TokenAuthority(secret, token)
    net_token = network_token(core, tokens)  # the Service proxy and cluster DNS (sandbox/network/)
    _, crt, key = pki.ensure_certificates(paths["root"], core.addresses.kubernetes_service_ip)
    kubelets = KubeletProcesses(paths["root"], paths["ca"], slot.slot)
    nodes_door = NodesDoor(core, tokens, kubelets, run_kubelets)
    server = ApiServer(
        core, tokens, paths["pod_logs"], extra_routes=nodes_door.routes(), usage_dir=usage_dir(paths["root"])
    )
    # pods/exec dials the pod's kubelet with this credential, which only the daemon and its kubelets can read
    _private_file(execwire.token_file(paths["root"]), secrets.token_urlsafe(32).encode())
    server.pod_streams.commands = KubeletCommands(core, execwire.token_file(paths["root"]))
    port, notice = choose_port(_previous_port(paths), paths["kubeconfig"])
    thread = ServerThread(server, port=port, ssl_context=pki.server_context(crt, key)).start()
    if notice:
        notice += f" ({thread.url})"
        log.warning("%s", notice)
    kubelets.server = thread.url
    network = NetworkProcess(paths["root"], paths["ca"], slot.slot)
    if run_kubelets:
        nodes_door.network = lambda: network.ensure(thread.url, net_token)
    nodes_door.start_kubelets(sandbox_nodes(core))
    tasks = thread.call(lambda: [asyncio.ensure_future(controller(core)) for controller in DAEMON_CONTROLLERS])
    write_kubeconfig(paths["kubeconfig"], thread.url, token, paths["ca"])
    info = {
        "pid": os.getpid(),
        "server": thread.url,
        "port": thread.port,
        "version": VERSION_INFO["gitVersion"],
        "started": time.time(),
        "slot": slot.slot,
        **({"notice": notice} if notice else {}),
    }
    write_atomic(paths["info"], json.dumps(info), mode=0o600)
    log.info("labkit sandbox serving on %s (state %s)", thread.url, paths["state"])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    log.info("stopping")
    kubelets.stop_all()  # first, so no node writes to an API server that is going away
    network.stop()
    thread.call(lambda: [t.cancel() for t in tasks])
    thread.stop()
    store.close()
    if client._read_info(paths) == info:
        paths["info"].unlink(missing_ok=True)
    slot.release()  # after every child that used the addresses has stopped


class NodesDoor:
    """The daemon's admin API for nodes (admin token only).

    - ``POST /labkit/nodes {"count": N}``: register N nodes (keep the count when absent), start the kubelet
      processes that are missing, and answer once every kubelet has started and posted its node's status;
    - ``POST /labkit/nodes/{name}/restart``: restart that node's k3s (containerd config re-rendered and re-read);
    - ``GET /labkit/processes``: the API server's PID and each node's PID and state (Ready, NotReady, missing).
    """

    def __init__(self, core: ApiCore, tokens: TokenAuthority, kubelets: KubeletProcesses, run_kubelets: bool) -> None:
        self.core, self.tokens, self.kubelets, self.run_kubelets = core, tokens, kubelets, run_kubelets
        self.network: Callable[[], object] | None = None  # starts the network process unless it runs

    def start_kubelets(self, names: list[str]) -> list[str]:
        """Start the nodes' missing kubelet processes (with ``--no-kubelets``, only write their credentials)."""
        if self.network is not None:
            self.network()
        if not self.run_kubelets:
            for name in names:
                self.kubelets.write_credentials(name, self.tokens.issue_node(name))
            return []
        return self.kubelets.ensure({name: self.tokens.issue_node(name) for name in names})

    def node_state(self, name: str) -> str:
        if self.run_kubelets and self.kubelets.pid(name) is None:
            return "missing"
        try:
            node = self.core.get(NODES, None, name)
        except StatusError:
            return "missing"
        conditions = (node.get("status") or {}).get("conditions") or ()
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return "Ready" if ready else "NotReady"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/labkit/nodes", self._admin(self.ensure)),
            web.post("/labkit/nodes/{name}/restart", self._admin(self.restart)),
            web.get("/labkit/processes", self._admin(self.processes)),
        ]

    @staticmethod
    def _admin(
        handler: Callable[[web.Request], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def guarded(request: web.Request) -> web.Response:
            user = request.get(CALLER)
            if user is None or not user.is_admin:
                return web.json_response({"message": "forbidden"}, status=403)
            return await handler(request)

        return guarded

    async def ensure(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            body = None
        count = (body.get("count") or len(sandbox_nodes(self.core)) or 1) if isinstance(body, dict) else None
        if type(count) is not int or not 1 <= count <= netmap.MAX_NODES:
            message = f"count must be a whole number of nodes from 1 to {netmap.MAX_NODES}"
            return web.json_response({"message": message}, status=422)
        names = ensure_nodes(self.core, count, ready=False)
        started = self.start_kubelets(names)
        deadline = time.monotonic() + KUBELET_START_TIMEOUT_S
        # a kubelet has started once it reported its runtime (after posting its node's status); one that exited
        # at once is answered as missing, and its log says why
        while self.run_kubelets and time.monotonic() < deadline:
            if all(self.kubelets.pid(name) is None or self.kubelets.report(name) for name in names):
                break
            await asyncio.sleep(0.05)
        return web.json_response({"nodes": names, "started": started, **self._processes(names)})

    async def restart(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            report = await self.kubelets.restart_runtime(name)
        except KeyError:
            return web.json_response({"message": f'node "{name}" is not a running sandbox node'}, status=404)
        except TimeoutError as err:
            return web.json_response({"node": name, "message": str(err)}, status=504)
        if "error" in report:
            return web.json_response(
                {"node": name, "message": f"containerd did not start: {report['error']}"}, status=422
            )
        return web.json_response({k: report[k] for k in ("node", "defaultRuntime", "runtimes", "ignoredKeys")})

    async def processes(self, request: web.Request) -> web.Response:
        return web.json_response(self._processes(sandbox_nodes(self.core)))

    def _processes(self, names: list[str]) -> dict[str, Any]:
        return {
            "apiServer": {"pid": os.getpid()},
            "nodes": [{"name": name, "pid": self.kubelets.pid(name), "state": self.node_state(name)} for name in names],
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.sandbox.daemon", description="run the labkit sandbox daemon"
    )
    parser.add_argument("--home", type=Path, default=config.sandbox_dir())
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument(
        "--no-kubelets",
        action="store_true",
        help="register the nodes and write their credentials but start no kubelet processes (tests run their own)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(args.home, args.nodes, run_kubelets=not args.no_kubelets)
    except LabkitError as err:
        log.error("%s", err)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
