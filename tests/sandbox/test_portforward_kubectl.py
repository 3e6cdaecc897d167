"""pods/portforward, pods/exec and the proxy subresources, through the real kubectl 1.32 and the official Python
client, against a real sandbox daemon running a real wasm echo/HTTP server (wasm-apps/echo-server)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.sandboxes import is_pod_ip

if TYPE_CHECKING:
    from tests.sandbox.conftest import Kubectl

pytestmark = pytest.mark.slow

ECHO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      runtimeClassName: wasmedge
      containers:
      - name: echo
        image: docker.io/labkit/echo-server:latest
        args: ["8080"]
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


EP_IPS = "jsonpath={.subsets[*].addresses[*].ip}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def echo(kubectl: Kubectl) -> Iterator[str]:
    """The echo Deployment and Service in a namespace of their own; yields the namespace."""
    ns = "t-portforward"
    kubectl("create", "namespace", ns)
    kubectl("apply", "-n", ns, "-f", "-", input=ECHO)
    kubectl("rollout", "status", "-n", ns, "deploy/echo", "--timeout=60s")
    deadline = time.monotonic() + 30  # Ready is "started": wait for the module's socket and the Service's endpoint
    while not serving(kubectl, ns):
        assert time.monotonic() < deadline, "the echo server is not listening behind its Service"
        time.sleep(0.3)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def serving(kubectl: Kubectl, ns: str) -> bool:
    listening = "listening on 0.0.0.0:8080" in kubectl("logs", "-n", ns, "deploy/echo", check=False).stdout
    endpoints = kubectl("get", "endpoints", "echo", "-n", ns, "-o", EP_IPS).stdout.split()
    return listening and any(is_pod_ip(ip) for ip in endpoints)


def pod_name(kubectl: Kubectl, ns: str) -> str:
    return kubectl("get", "pods", "-n", ns, "-l", "app=echo", "-o", "jsonpath={.items[0].metadata.name}").stdout


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (http to loopback)
        return answer.read().decode()


class PortForward:
    """``kubectl port-forward`` running in the background until stopped."""

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self.process = subprocess.Popen(
            [kubectl.binary, "port-forward", *args],
            env=kubectl.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline()

    def stop(self) -> str:
        self.process.terminate()
        _, err = self.process.communicate(timeout=10)
        return err


@pytest.mark.parametrize("target", ["svc/echo", "deploy/echo", "pod"])
def test_kubectl_port_forward_then_http(kubectl: Kubectl, echo: str, target: str) -> None:
    local = free_port()
    remote = "80" if target.startswith("svc/") else "8080"  # kubectl maps the Service port to its targetPort
    name = f"pod/{pod_name(kubectl, echo)}" if target == "pod" else target
    forward = PortForward(kubectl, "-n", echo, "--address", "127.0.0.1", name, f"{local}:{remote}")
    try:
        assert forward.first_line.strip() == f"Forwarding from 127.0.0.1:{local} -> 8080"
        assert http_get(f"http://127.0.0.1:{local}/one") == "hello from echo-server (wasm): /one\n"
        assert http_get(f"http://127.0.0.1:{local}/two") == "hello from echo-server (wasm): /two\n"
        with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:  # raw bytes, both ways, 1 MiB
            blob = bytes(range(256)) * 4096
            conn.sendall(b"ab" + blob[2:])
            echoed = b""
            while len(echoed) < len(blob):
                echoed += conn.recv(1 << 16)
            assert echoed[2:] == blob[2:]
    finally:
        forward.stop()


def test_kubectl_port_forward_to_a_closed_port_prints_the_kubelets_error(kubectl: Kubectl, echo: str) -> None:
    local = free_port()
    forward = PortForward(kubectl, "-n", echo, "--address", "127.0.0.1", "deploy/echo", f"{local}:9999")
    try:
        with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:
            conn.settimeout(10)
            assert conn.recv(100) == b""  # closed once the error arrives
        time.sleep(0.5)
    finally:
        err = forward.stop()
    assert "an error occurred forwarding" in err and "-> 9999: error forwarding port 9999 to pod " in err
    assert "failed to execute portforward in network namespace" in err and "connect: connection refused" in err


def test_kubectl_port_forward_refuses_a_pod_that_is_not_running(kubectl: Kubectl, namespace: str) -> None:
    kubectl("run", "waiting", "-n", namespace, "--image=docker.io/labkit/nosuch:latest")
    done = kubectl("port-forward", "-n", namespace, "pod/waiting", "8080", check=False)
    assert done.returncode == 1
    assert "error: unable to forward port because pod is not running. Current status=Pending" in done.stderr


def test_python_client_portforward(api_client, kubectl: Kubectl, echo: str) -> None:
    from kubernetes import client
    from kubernetes.stream import portforward

    api = client.CoreV1Api(api_client)
    pod = pod_name(kubectl, echo)
    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, echo, ports="8080,9999")
    served = forward.socket(8080)
    served.settimeout(30)  # blocking, but a lost close fails the test instead of hanging the suite
    served.sendall(b"GET /py HTTP/1.1\r\nHost: echo\r\n\r\n")
    reply = b""
    while chunk := served.recv(4096):
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"hello from echo-server (wasm): /py\n")
    closed = forward.socket(9999)
    closed.settimeout(30)
    assert closed.recv(10) == b""
    assert forward.error(9999).startswith("error forwarding port 9999 to pod ")
    assert forward.error(9999).endswith(":9999: connect: connection refused")
    forward.close()


def test_kubectl_exec_into_wasm_gives_runwasis_answer(kubectl: Kubectl, echo: str) -> None:
    done = kubectl("exec", "-n", echo, "deploy/echo", "--", "sh", "-c", "echo hi", check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        "error: Internal error occurred: error executing command in container: failed to exec in container: "
        'failed to create exec "'
    )
    assert done.stderr.rstrip().endswith('": /containerd.task.v2.Task/Exec is not supported: not found')


def test_python_client_exec_into_wasm_reads_the_same_status(api_client, kubectl: Kubectl, echo: str) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    api = client.CoreV1Api(api_client)
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        pod_name(kubectl, echo),
        echo,
        command=["ls"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=10)
    status = json.loads(ws.read_channel(3))
    assert (status["status"], status["reason"], status["code"]) == ("Failure", "InternalError", 500)
    assert status["message"].endswith("/containerd.task.v2.Task/Exec is not supported: not found")


def test_service_and_pod_proxy(kubectl: Kubectl, echo: str) -> None:
    raw = kubectl("get", "--raw", f"/api/v1/namespaces/{echo}/services/echo:80/proxy/a/b?x=1").stdout
    assert raw == "hello from echo-server (wasm): /a/b?x=1\n"
    named = kubectl("get", "--raw", f"/api/v1/namespaces/{echo}/services/echo:http/proxy/").stdout
    assert named == "hello from echo-server (wasm): /\n"
    pod = pod_name(kubectl, echo)
    assert kubectl("get", "--raw", f"/api/v1/namespaces/{echo}/pods/{pod}/proxy/p").stdout.endswith(": /p\n")
    missing = kubectl("get", "--raw", f"/api/v1/namespaces/{echo}/services/echo:81/proxy/", check=False)
    assert 'Error from server (ServiceUnavailable): no service port 81 found for service "echo"' in missing.stderr
    refused = kubectl("get", "--raw", f"/api/v1/namespaces/{echo}/pods/{pod}:9999/proxy/", check=False)
    dialled = re.search(r"error trying to reach service: dial tcp ([\d.]+):9999: connect", refused.stderr)
    assert dialled and is_pod_ip(dialled[1]), refused.stderr


def test_cluster_info_urls_are_served(kubectl: Kubectl) -> None:
    info = kubectl("cluster-info").stdout
    assert "Kubernetes control plane is running at https://127.0.0.1:" in info
    for url in [line.rsplit(" at ", 1)[1] for line in info.splitlines() if "/proxy" in line]:
        path = url.split("://", 1)[1].split("/", 1)[1]
        done = kubectl("get", "--raw", "/" + path, check=False)  # a live route: an answer or a Status, never a 404
        assert "NotFound" not in done.stderr and "could not find the requested resource" not in done.stderr


def test_rbac_needs_create_on_the_subresources(kubectl: Kubectl, echo: str) -> None:
    kubectl("create", "serviceaccount", "viewer", "-n", echo)
    kubectl("create", "role", "viewer", "--verb=get,list,watch", "--resource=pods,services", "-n", echo)
    kubectl("create", "rolebinding", "viewer", "--role=viewer", f"--serviceaccount={echo}:viewer", "-n", echo)
    token = kubectl("create", "token", "viewer", "-n", echo).stdout.strip()
    user = f"system:serviceaccount:{echo}:viewer"
    pod = pod_name(kubectl, echo)
    denied = kubectl("--token", token, "port-forward", "-n", echo, f"pod/{pod}", f"{free_port()}:8080", check=False)
    assert denied.returncode == 1
    assert f'pods "{pod}" is forbidden: User "{user}" cannot create resource "pods/portforward"' in denied.stderr
    denied = kubectl("--token", token, "exec", "-n", echo, pod, "--", "ls", check=False)
    assert f'cannot create resource "pods/exec" in API group "" in the namespace "{echo}"' in denied.stderr
    denied = kubectl(
        "--token", token, "get", "--raw", f"/api/v1/namespaces/{echo}/services/echo:80/proxy/", check=False
    )
    assert f'cannot get resource "services/proxy" in API group "" in the namespace "{echo}"' in denied.stderr
    kubectl("create", "role", "forwarder", "--verb=create", "--resource=pods/portforward", "-n", echo)
    kubectl("create", "rolebinding", "forwarder", "--role=forwarder", f"--serviceaccount={echo}:viewer", "-n", echo)
    local = free_port()
    forward = PortForward(
        kubectl, "--token", token, "-n", echo, "--address", "127.0.0.1", f"pod/{pod}", f"{local}:8080"
    )
    try:
        assert http_get(f"http://127.0.0.1:{local}/granted").endswith(": /granted\n")
    finally:
        forward.stop()


def test_labkit_port_forward_context_manager(sandbox, echo: str) -> None:
    import kubernetes

    import labkit
    from labkit.cluster import Cluster

    api = kubernetes.config.new_client_from_config(config_file=str(sandbox.kubeconfig), context="labkit-sandbox")
    cluster = Cluster(api, backend="sandbox", context="labkit-sandbox", kubeconfig=sandbox.kubeconfig)
    with labkit.port_forward("svc/echo", 80, namespace=echo, cluster=cluster) as forward:
        assert forward.remote_port == 8080 and forward.url == f"http://127.0.0.1:{forward.local_port}"
        assert http_get(forward.url + "/nb") == "hello from echo-server (wasm): /nb\n"
    with pytest.raises(ConnectionRefusedError):  # kubectl is gone, and its port with it
        socket.create_connection(("127.0.0.1", forward.local_port), timeout=2)
    with (
        pytest.raises(labkit.LabkitError, match='Error from server \\(NotFound\\): pods "nosuch" not found'),
        labkit.port_forward("pod/nosuch", 80, namespace=echo, cluster=cluster),
    ):
        pass
    with pytest.raises(labkit.LabkitError, match="is not TYPE/NAME"), labkit.port_forward("nosuch", 80):
        pass
