"""The service-watcher (labkit/apps/service_watcher.py) against a real API server in this process (the daemon's
ApiServer over HTTPS, with RBAC) and a load balancer stand-in in Python that speaks the admin API
(the seed's load-balancer/src/main.rs): register, weight change within 2 s, delete, drift repair, 403 then RBAC,
an API server restart (the watch's resourceVersion is gone: 410, list again)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from kubernetes import client, config

from labkit.apps.service_watcher import LoadBalancer, ServiceWatcher
from labkit.manifests import service_watcher
from labkit.sandbox import pki
from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.auth import TokenAuthority
from labkit.sandbox.api.server import ApiServer
from labkit.sandbox.api.serverthread import ServerThread
from labkit.sandbox.api.store import Store
from labkit.sandbox.daemon import bootstrap, write_kubeconfig
from labkit.sandbox.nodes import ensure_nodes

TOKEN = "watcher-test-admin"


class FakeLb(BaseHTTPRequestHandler):
    """The admin API of the load balancer, in memory."""

    server: LbServer

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.server.lock:
            self._answer(200, json.dumps(list(self.server.registry.values())).encode())

    def do_POST(self) -> None:
        entry = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.registry[entry["name"]] = entry
            self.server.calls.append(f"register {entry['name']} {entry['weight']}")
        self._answer(200, b"Registered")

    def do_DELETE(self) -> None:
        name = unquote(self.path.removeprefix("/api/unregister/"))
        with self.server.lock:
            found = self.server.registry.pop(name, None)
            self.server.calls.append(f"unregister {name}")
        self._answer(200 if found else 404, b"Unregistered" if found else b"Service not found")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class LbServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeLb)
        self.lock = threading.Lock()
        self.registry: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Api:
    """An API server on a fixed port over a state directory, so it can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, 0
        self.thread: ServerThread | None = None
        self.start()
        self.admin = client.CoreV1Api(config.new_client_from_config(str(root / "kubeconfig")))

    def start(self) -> None:
        self.core = ApiCore(Store(self.root / "state.db"))
        bootstrap(self.core)
        ensure_nodes(self.core, 1, ready=True)
        ca, crt, key = pki.ensure_certificates(self.root)
        server = ApiServer(self.core, TokenAuthority(b"watcher-secret", TOKEN), self.root / "pods")
        self.thread = ServerThread(server, port=self.port, ssl_context=pki.server_context(crt, key)).start()
        self.port = self.thread.port
        write_kubeconfig(self.root / "kubeconfig", self.thread.url, TOKEN, ca)
        self.ca = ca

    def stop(self) -> None:
        assert self.thread is not None
        self.thread.stop()
        self.core.store.close()

    def kubeconfig_for(self, token: str, path: Path) -> Path:
        assert self.thread is not None
        write_kubeconfig(path, self.thread.url, token, self.ca)
        return path


def service(name: str, weight: str | None = "1", port: int = 8080, labelled: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"llamaedge/target": "true"} if labelled else {"app": name}}
    if weight is not None:
        meta["annotations"] = {"llamaedge/weight": weight}
    return {"metadata": meta, "spec": {"selector": {"app": name}, "ports": [{"port": port}]}}


def weight(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {"llamaedge/weight": value}}}


def eventually(check: Callable[[], Any], within: float = 5.0) -> float:
    """Seconds until check() is truthy (fails after *within*)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "condition not reached in time"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    server = Api(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def lb() -> Iterator[LbServer]:
    server = LbServer()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def start_watcher(core: Any, lb: LbServer, lines: list[str]) -> ServiceWatcher:
    return ServiceWatcher(core, LoadBalancer(lb.url), resync=0.5, log=lines.append).start()


def test_labelled_services_are_registered_updated_and_dropped(api: Api, lb: LbServer) -> None:
    api.admin.create_namespaced_service("default", service("llama-low", "3"))
    api.admin.create_namespaced_service("default", service("plain", labelled=False))
    lb.registry["stale"] = {"name": "stale", "weight": 1, "ip": "10.0.0.1", "port": 1}  # no Service backs it
    lines: list[str] = []
    watcher = start_watcher(api.admin, lb, lines)
    try:
        eventually(lambda: set(lb.registry) == {"llama-low"})
        low = api.admin.read_namespaced_service("llama-low", "default")
        assert lb.registry["llama-low"] == {"name": "llama-low", "weight": 3, "ip": low.spec.cluster_ip, "port": 8080}
        api.admin.create_namespaced_service("default", service("llama-high", None, port=9090))  # weight: default 1
        eventually(lambda: lb.registry.get("llama-high", {}).get("weight") == 1)
        assert lb.registry["llama-high"]["port"] == 9090
        api.admin.patch_namespaced_service("llama-low", "default", weight("7"))
        took = eventually(lambda: lb.registry["llama-low"]["weight"] == 7, within=2.0)
        assert took < 2.0
        lb.registry["llama-high"]["weight"] = 99  # drift (someone used the admin API): repaired on resync
        eventually(lambda: lb.registry["llama-high"]["weight"] == 1)
        api.admin.delete_namespaced_service("llama-high", "default")
        eventually(lambda: "llama-high" not in lb.registry)
        api.admin.patch_namespaced_service("llama-low", "default", {"metadata": {"labels": {"llamaedge/target": None}}})
        eventually(lambda: lb.registry == {})  # unlabelled: the watch reports it deleted
    finally:
        watcher.stop()
    assert "unregistered stale (no labelled service)" in lines
    changed = [line for line in lines if line.startswith("registered llama-low weight 7 ")]
    assert changed and "(was llama-low weight 3 " in changed[0]


def test_a_forbidden_watcher_says_what_rbac_it_lacks_then_recovers(api: Api, lb: LbServer, tmp_path: Path) -> None:
    api.admin.create_namespaced_service("default", service("llama-low", "3"))
    objects = service_watcher("labkit.local/service-watcher:0.1.0", namespace="default")
    api.admin.create_namespaced_service_account("default", objects[0])
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token = api.admin.create_namespaced_service_account_token("watcher-sa", "default", request).status.token
    own = client.CoreV1Api(config.new_client_from_config(str(api.kubeconfig_for(token, tmp_path / "sa.kubeconfig"))))
    lines: list[str] = []
    watcher = start_watcher(own, lb, lines)
    try:
        eventually(lambda: any(line.startswith("FORBIDDEN") for line in lines))
        line = next(line for line in lines if line.startswith("FORBIDDEN"))
        assert 'cannot list resource "services"' in line and "system:serviceaccount:default:watcher-sa" in line
        assert "ClusterRole with verbs get, list, watch on resources services" in line
        assert lb.registry == {}
        rbac = client.RbacAuthorizationV1Api(api.admin.api_client)
        rbac.create_cluster_role(objects[1])
        rbac.create_cluster_role_binding(objects[2])
        eventually(lambda: "llama-low" in lb.registry, within=10)  # the back-off retries, now allowed
    finally:
        watcher.stop()


@pytest.mark.slow
def test_an_api_server_restart_means_a_new_list(api: Api, lb: LbServer) -> None:
    api.admin.create_namespaced_service("default", service("llama-low", "3"))
    lines: list[str] = []
    watcher = start_watcher(api.admin, lb, lines)
    try:
        eventually(lambda: "llama-low" in lb.registry)
        # a write the watch does not see: the watcher's resourceVersion falls behind the server's
        api.admin.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})
        api.stop()
        eventually(lambda: any(line.startswith("lost the API server") for line in lines))
        api.start()  # same port, same state; the watch history is gone with the old process's memory
        api.admin.patch_namespaced_service("llama-low", "default", weight("5"))
        eventually(lambda: lb.registry["llama-low"]["weight"] == 5, within=15)
    finally:
        watcher.stop()
    assert any("410" in line and "listing again" in line for line in lines), lines
    assert watcher.relists >= 2
