"""connect(): allow-list, kubeconfig errors, fast failure; Cluster calls over real HTTP (labkit.cluster)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from labkit.cluster import ObjectRef, api_call, connect, default_kubeconfig
from labkit.errors import (
    ApiError,
    ClusterUnreachable,
    ContextNotAllowed,
    LabkitError,
    PrerequisiteMissing,
    SandboxError,
)


def test_prod_context_is_refused_without_an_allow_list(clean_env):
    started = time.monotonic()
    with pytest.raises(ContextNotAllowed) as e:
        connect(backend="kubeconfig", context="prod")
    assert time.monotonic() - started < 1  # decided before any file or network access
    assert "'prod'" in str(e.value) and "LABKIT_ALLOWED_CONTEXTS=prod" in str(e.value)


def test_current_context_must_be_allowed_too(clean_env, write_kubeconfig, closed_port):
    path = write_kubeconfig(f"https://127.0.0.1:{closed_port}", contexts=("prod",), current="prod")
    with pytest.raises(ContextNotAllowed):
        connect("kubeconfig", kubeconfig=path)


def test_environment_allow_list_admits_the_context(clean_env, write_kubeconfig, closed_port):
    clean_env.setenv("LABKIT_ALLOWED_CONTEXTS", "lab")
    cluster = connect("kubeconfig", kubeconfig=write_kubeconfig(f"https://127.0.0.1:{closed_port}"))
    assert (cluster.backend, cluster.context) == ("kubeconfig", "lab")
    assert cluster.server == f"https://127.0.0.1:{closed_port}"


def test_unknown_context_lists_the_kubeconfig_contexts(clean_env, write_kubeconfig, closed_port):
    path = write_kubeconfig(f"https://127.0.0.1:{closed_port}", contexts=("lab", "k3d-lab"))
    with pytest.raises(LabkitError) as e:
        connect("kubeconfig", "kind-lab", allowed_contexts=["kind-lab"], kubeconfig=path)
    assert "'kind-lab' is not in kubeconfig" in e.value.problem and "lab, k3d-lab" in e.value.problem


def test_missing_kubeconfig_names_path_and_fix(clean_env, tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PrerequisiteMissing) as e:
        connect("kubeconfig", "lab", allowed_contexts=["lab"], kubeconfig=missing)
    assert str(missing) in e.value.problem and "KUBECONFIG" in str(e.value.fix)


def test_missing_kubeconfig_in_a_notebook_cell_shows_problem_and_fix_not_a_traceback(clean_env, tmp_path):
    """A real IPython kernel: the cell's error output is the problem and the fix, no stack frames."""
    import nbformat
    from nbclient import NotebookClient

    cell = f"import labkit\nlabkit.connect('kubeconfig', kubeconfig={str(tmp_path / 'nope.yaml')!r})"
    debug = "import os\nos.environ['LABKIT_DEBUG'] = '1'\n" + cell
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell), nbformat.v4.new_code_cell(debug)])
    NotebookClient(nb, kernel_name="python3", timeout=60, allow_errors=True).execute()
    debug_error = nb.cells[1].outputs[-1]
    assert debug_error["traceback"][0] == "Traceback (most recent call last):"  # LABKIT_DEBUG: the stack again
    error = nb.cells[0].outputs[-1]
    assert error["ename"] == "PrerequisiteMissing"
    problem, fix = error["traceback"]
    assert problem == f"PrerequisiteMissing: kubeconfig file {tmp_path / 'nope.yaml'} does not exist"
    assert fix.startswith("  fix: pass kubeconfig=... or set KUBECONFIG")


def test_context_naming_a_missing_cluster_is_a_labkit_error(clean_env, tmp_path):
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [],
                "users": [],
                "contexts": [{"name": "lab", "context": {"cluster": "gone", "user": "u"}}],
            }
        )
    )
    clean_env.setenv("LABKIT_ALLOWED_CONTEXTS", "lab")
    with pytest.raises(LabkitError, match=r"context 'lab', cannot be used: .*gone") as err:
        connect("kubeconfig", "lab", kubeconfig=path)
    assert "kubectl config view" in str(err.value)


def test_kubeconfig_without_current_context(clean_env, write_kubeconfig, closed_port):
    path = write_kubeconfig(f"https://127.0.0.1:{closed_port}", current=None)
    with pytest.raises(LabkitError, match="no current-context"):
        connect("kubeconfig", kubeconfig=path)


def test_default_kubeconfig_is_first_kubeconfig_entry(clean_env, tmp_path):
    clean_env.setenv("KUBECONFIG", f"{tmp_path}/a.yaml:{tmp_path}/b.yaml")
    assert default_kubeconfig() == tmp_path / "a.yaml"


def test_closed_port_is_unreachable_fast(clean_env, write_kubeconfig, closed_port):
    cluster = connect(
        "kubeconfig", "lab", allowed_contexts=["lab"], kubeconfig=write_kubeconfig(f"https://127.0.0.1:{closed_port}")
    )
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as e:
        cluster.ping()
    assert time.monotonic() - started < 5
    assert f"https://127.0.0.1:{closed_port}" in e.value.problem and "k3s" in str(e.value.fix)


def test_sandbox_start_failure_is_unreachable(clean_env, monkeypatch):
    def ensure_running(nodes=None, timeout=60.0):
        raise SandboxError("port in use", "labkit sandbox logs")

    monkeypatch.setattr("labkit.sandbox.client.ensure_running", ensure_running)
    with pytest.raises(ClusterUnreachable, match="port in use") as e:
        connect()
    assert isinstance(e.value.__cause__, SandboxError)


def test_connect_asks_the_sandbox_for_nodes(clean_env, monkeypatch):
    asked = []

    def ensure_running(nodes=None, timeout=60.0):
        asked.append(nodes)
        raise SandboxError("stop here", "")

    monkeypatch.setattr("labkit.sandbox.client.ensure_running", ensure_running)
    for nodes in (3, None):
        with pytest.raises(ClusterUnreachable):
            connect("sandbox", nodes=nodes)
    assert asked == [3, None]  # None: keep the sandbox's current node count


# --- a tiny real HTTP server answering like an API server, to exercise the client end to end ---

NODE_INFO = {
    "architecture": "amd64",
    "bootID": "b",
    "containerRuntimeVersion": "containerd://2.0",
    "kernelVersion": "6.1",
    "kubeProxyVersion": "v1.32.0",
    "kubeletVersion": "v1.32.0",
    "machineID": "m",
    "operatingSystem": "linux",
    "osImage": "Debian",
    "systemUUID": "u",
}
NODE = {
    "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "true"}},
    "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": NODE_INFO},
}
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+fake",
    "gitCommit": "0",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
NOT_READY = {"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}


class FakeApi(BaseHTTPRequestHandler):
    routes: ClassVar[dict[tuple[str, str], tuple[int, dict[str, Any]]]] = {}
    seen: ClassVar[list[tuple[str, str]]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path))
        code, body = self.routes.get(
            (self.command, self.path.split("?")[0].rstrip("/")),
            (
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 404,
                    "reason": "NotFound",
                    "message": f"the server could not find the requested resource ({self.path})",
                },
            ),
        )
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_DELETE = _answer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def fake_api(clean_env, write_kubeconfig):
    FakeApi.routes = {
        ("GET", "/version"): (200, VERSION),
        ("GET", "/api/v1/nodes"): (200, {"kind": "NodeList", "items": [NODE, NOT_READY]}),
    }
    FakeApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    yield connect("kubeconfig", "lab", allowed_contexts=["lab"], kubeconfig=write_kubeconfig(url))
    server.shutdown()
    server.server_close()


def test_version_and_ping(fake_api):
    assert fake_api.version()["gitVersion"] == "v1.32.0+fake"
    assert fake_api.ping() == "v1.32.0+fake"


def test_nodes_are_summarised(fake_api):
    n1, n2 = fake_api.nodes()
    assert n1 == {
        "name": "n1",
        "ready": True,
        "roles": ["control-plane"],
        "version": "v1.32.0",
        "runtime": "containerd://2.0",
    }
    assert (n2["ready"], n2["roles"], n2["version"]) == (False, ["<none>"], "")


def test_api_exception_becomes_api_error_with_status(fake_api):
    with pytest.raises(ApiError) as e:
        api_call(fake_api.core.read_namespace, "missing")
    assert (e.value.code, e.value.reason) == (404, "NotFound")
    assert e.value.status["message"].startswith("the server could not find")
    assert e.value.__cause__ is not None


def test_labelled_objects_skip_contents_of_labelled_namespaces(fake_api):
    def labelled(name, ns=None):
        return {"metadata": {"name": name, **({"namespace": ns} if ns else {})}}

    FakeApi.routes[("GET", "/api/v1/namespaces")] = (200, {"items": [labelled("lab-01")]})
    FakeApi.routes[("GET", "/api/v1/services")] = (
        200,
        {"items": [labelled("in-lab", "lab-01"), labelled("web", "default")]},
    )
    FakeApi.routes[("GET", "/apis/node.k8s.io/v1/runtimeclasses")] = (200, {"items": [labelled("wasmedge")]})
    for kind in (
        "apis/apps/v1/deployments",
        "apis/batch/v1/jobs",
        "api/v1/pods",
        "api/v1/configmaps",
        "api/v1/secrets",
        "api/v1/serviceaccounts",
        "apis/rbac.authorization.k8s.io/v1/rolebindings",
        "apis/rbac.authorization.k8s.io/v1/roles",
        "apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "apis/rbac.authorization.k8s.io/v1/clusterroles",
    ):
        FakeApi.routes[("GET", f"/{kind}")] = (200, {"items": []})
    found = fake_api.labelled_objects("01-wasi-demo-app")
    assert [str(r) for r in found] == ["namespace/lab-01", "service/web (namespace default)", "runtimeclass/wasmedge"]
    selectors = {parse_qs(urlsplit(path).query)["labelSelector"][0] for method, path in FakeApi.seen if method == "GET"}
    assert selectors == {"app.kubernetes.io/part-of=labkit,labkit.io/lab=01-wasi-demo-app"}
    FakeApi.routes[("DELETE", "/api/v1/namespaces/default/services/web")] = (
        200,
        {"kind": "Status", "status": "Success"},
    )
    fake_api.delete_object(found[1])
    fake_api.delete_object(ObjectRef("Pod", "gone", "default", "/api/v1/namespaces/default/pods/gone"))  # 404 is fine
    assert ("DELETE", "/api/v1/namespaces/default/services/web?propagationPolicy=Background") in FakeApi.seen


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_runs_against_the_cluster(fake_api):
    done = fake_api.kubectl("get", "--raw", "/version")
    assert json.loads(done.stdout)["gitVersion"] == "v1.32.0+fake"
    assert fake_api.kubectl_env()["KUBECONFIG"] == str(fake_api.kubeconfig)
    with pytest.raises(LabkitError, match="failed \\(exit 1\\)"):
        fake_api.kubectl("get", "--raw", "/nope")


def test_kubectl_missing_is_a_prerequisite(fake_api, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteMissing, match="kubectl is not installed"):
        fake_api.kubectl("get", "nodes")


def test_kubectl_that_hangs_is_a_labkit_error(fake_api, monkeypatch, tmp_path):
    hanging = tmp_path / "kubectl"
    hanging.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    hanging.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LabkitError, match=r"did not finish within 0\.5 s") as err:
        fake_api.kubectl("get", "nodes", timeout=0.5)
    assert "labkit doctor" in str(err.value)


def test_kill_node_kills_nothing_outside_the_sandbox_and_says_how(tmp_path) -> None:
    import kubernetes.client

    from labkit.cluster import Cluster

    live = Cluster(
        kubernetes.client.ApiClient(), backend="kubeconfig", context="k3s-lab", kubeconfig=tmp_path / "config"
    )
    done = live.kill_node("agent-1")
    assert not done.killed and done.name == "agent-1"
    assert str(done).startswith("node agent-1: not killed") and "k3s-killall.sh" in str(done)


def test_kill_node_without_a_running_sandbox_is_a_sandbox_error(tmp_path) -> None:
    from labkit.sandbox import client

    with pytest.raises(SandboxError, match="the sandbox is not running") as caught:
        client.kill_node("labkit-agent-0", home=tmp_path / "no-sandbox")
    assert caught.value.fix == "start it: labkit sandbox up"
