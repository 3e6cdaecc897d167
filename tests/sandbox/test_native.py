"""Native containers without a cluster: what runs (and what a hostile manifest cannot run), real processes of the
echo server with the pod's view (addresses, DNS, files), signals, exit codes and the memory limit."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.apps import build_app_image, program_file, shipped
from labkit.imagestore import ImageStore
from labkit.sandbox import netmap
from labkit.sandbox.kubelet.failures import ContainerFailure
from labkit.sandbox.kubelet.images import NodeImages
from labkit.sandbox.kubelet.limits import Limits
from labkit.sandbox.kubelet.native import (
    ExecRefused,
    NativeContainer,
    NativeLaunch,
    NotInImage,
    exec_sync,
    group_cpu_seconds,
    plan_native,
    run_in_container,
    start_native,
)
from labkit.sandbox.kubelet.podfiles import PodFiles, resolv_conf
from labkit.sandbox.kubelet.runtime import plan_launch
from labkit.sandbox.kubelet.service_env import service_env
from labkit.sandbox.kubelet.wasmrun import Mount

dnslib = pytest.importorskip("dnslib")
dnslib_server = pytest.importorskip("dnslib.server")
PROGRAM = program_file("echo-server").read_bytes()
ENTRY = ["/usr/local/bin/python3", "/app/echo_server.py"]


# ---------------------------------------------------------------- images and argv


def test_the_image_is_read_as_a_python_program_and_planned_natively(tmp_path: Path) -> None:
    built = build_app_image("echo-server", "0.1.0", tmp_path / "echo.tar")
    store = ImageStore(tmp_path / "store")
    assert store.import_archive(built.path) == ["labkit.local/echo-server:0.1.0"]
    image = NodeImages(store).present("labkit.local/echo-server:0.1.0")
    assert image is not None and image.layout == "python" and image.entrypoint == ENTRY
    assert shipped(image.module or b"") == "echo-server"
    from labkit.containerd import RuntimeSpec

    for runtime in (RuntimeSpec("runc", "io.containerd.runc.v2"), RuntimeSpec("wasmedge", "io.containerd.wasmedge.v1")):
        launch = plan_launch(runtime, {"metadata": {}}, image, [*ENTRY, "--port", "9"], {}, "/")
        assert isinstance(launch, NativeLaunch) and launch.args == ["--port", "9"]


def test_command_and_args_only_run_the_images_program() -> None:
    def plan(argv: list[str], wd: str = "/") -> NativeLaunch | None:
        return plan_native(ENTRY, PROGRAM, argv, {}, wd)

    assert plan(["/app/echo_server.py", "--port", "1"]).args == ["--port", "1"]
    assert plan(["python3", "echo_server.py", "-x"], "/app").args == ["-x"]
    for argv in (["/bin/sh", "-c", "id"], ["sh"], ["/usr/bin/python3", "/app/echo_server.py"], ["../../bin/sh"]):
        with pytest.raises(NotInImage):
            plan(argv)
    for argv in (["python3", "-c", "import os"], ["python3", "-m", "http.server"], ["python3", "/tmp/evil.py"]):
        with pytest.raises(ContainerFailure, match="runs only the image's program"):
            plan(argv)
    with pytest.raises(ContainerFailure):
        plan(["python3"])  # an interactive interpreter is not the program either


def test_an_image_with_a_program_labkit_does_not_ship_fails_like_any_linux_image() -> None:
    from labkit.containerd import RuntimeSpec
    from labkit.sandbox.kubelet.images import ImageContent

    runc = RuntimeSpec("runc", "io.containerd.runc.v2")
    forged = ImageContent("labkit.local/echo-server:evil", "sha256:" + "1" * 64, "python", ENTRY, [], b"import os")
    assert plan_native(ENTRY, b"import os", ENTRY, {}, "/") is None
    elf = ImageContent(
        "docker.io/library/nginx:latest", "sha256:" + "0" * 64, "native", ["/docker-entrypoint.sh"], [], None
    )
    messages = []
    for image in (forged, elf):
        with pytest.raises(ContainerFailure) as failed:
            plan_launch(runc, {"metadata": {}}, image, list(image.entrypoint), {}, "/")
        messages.append(failed.value.problem.replace(image.ref, "IMAGE"))
    assert messages[0] == messages[1]
    assert "the labkit sandbox cannot start Linux (non-wasm) image IMAGE" in messages[0]


def test_service_variables_and_resolv_conf_are_upstreams() -> None:
    kubernetes = {
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "127.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
    }
    mine = {
        "metadata": {"name": "echo-svc", "namespace": "lab"},
        "spec": {"clusterIP": "127.43.0.9", "ports": [{"port": 80}]},
    }
    headless = {"metadata": {"name": "h", "namespace": "lab"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}
    env = service_env([kubernetes, mine, headless], "lab", True)
    assert env["KUBERNETES_SERVICE_HOST"] == "127.43.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443" and env["KUBERNETES_PORT_443_TCP_PROTO"] == "tcp"
    assert env["ECHO_SVC_PORT"] == "tcp://127.43.0.9:80" and env["ECHO_SVC_PORT_80_TCP_ADDR"] == "127.43.0.9"
    assert not any(k.startswith("H_") for k in env)
    assert set(service_env([kubernetes, mine], "lab", False)) == set(service_env([kubernetes], "x", True))
    pod = {"metadata": {"namespace": "lab"}, "spec": {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"]}}}
    assert resolv_conf(pod) == "nameserver 1.2.3.4\n"


# ---------------------------------------------------------------- real processes


@pytest.fixture
def dns_server() -> Iterator[int]:
    """A dnslib server on the cluster DNS address, on a free port of its own (the shim is told that port)."""

    class Zone:  # a dnslib resolver: anything with resolve(request, handler)
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            name = str(request.q.qname)
            if name == "echo.lab.svc.cluster.local." and request.q.qtype == dnslib.QTYPE.A:
                reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A("127.43.0.77"), ttl=5))
            elif not name.startswith("echo.lab.svc"):
                reply.header.rcode = dnslib.RCODE.NXDOMAIN
            return reply

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((netmap.CLUSTER_DNS_IP, 0))
        port = probe.getsockname()[1]
    server = dnslib_server.DNSServer(Zone(), address=netmap.CLUSTER_DNS_IP, port=port)
    server.start_thread()
    yield port
    server.stop()


def _container(tmp_path: Path, args: list[str], dns_port: int = 1, **extra: object) -> NativeContainer:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir(exist_ok=True)
    (sandbox / "resolv.conf").write_text(
        "search lab.svc.cluster.local svc.cluster.local cluster.local\n"
        f"nameserver {netmap.CLUSTER_DNS_IP}\noptions ndots:5 timeout:1\n"
    )
    (sandbox / "hosts").write_text("127.0.0.1 localhost\n")
    (sandbox / "hostname").write_text("echo\n")
    access = tmp_path / "access"
    access.mkdir(exist_ok=True)
    (access / "namespace").write_text("lab")
    files = PodFiles(access, sandbox / "resolv.conf", sandbox / "hosts", sandbox / "hostname")
    lines: list[str] = []
    launch = plan_native(ENTRY, PROGRAM, [*ENTRY, *args], {}, "/")
    assert launch is not None
    container = start_native(
        tmp_path / "node", f"containerd://{os.urandom(8).hex()}", "echo", launch,
        {"HOSTNAME": "echo", **extra.get("env", {})},  # type: ignore[dict-item]
        str(extra.get("working_dir", "/")), [Mount(tmp_path, "/data")], files, str(extra.get("pod_ip", "127.42.250.2")),
        "https://127.0.0.1:6443", extra.get("limits", Limits()), (lines.append, lines.append),
    )  # fmt: skip
    container.lines = lines  # type: ignore[attr-defined]
    # the dns port the shim uses is netmap's; a test server has its own
    config = container.spec.rootfs.parent / "native.json"
    assert json.loads(config.read_text())["dns_port"] == netmap.host_port(53)
    return container


def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - a loopback test URL
        return json.loads(answer.read())


@pytest.mark.slow
def test_echo_server_listens_on_its_pod_ip_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = random.randint(20000, 29999)
    ip = f"127.42.250.{random.randint(2, 250)}"
    c = _container(tmp_path, ["--port", str(port)], pod_ip=ip)
    _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
    assert f"echo-server listening on {ip}:{port}" in c.lines  # type: ignore[attr-defined]
    echoed = _get(f"http://{ip}:{port}/hello")
    assert echoed["pod"] == "echo" and echoed["path"] == "/hello"
    c.terminate()
    assert c.wait(10) == 0 and c.outcome == "exited"
    assert "echo-server stopped" in c.lines  # type: ignore[attr-defined]
    assert not c.spec.rootfs.exists()  # the task's bundle goes with it


@pytest.mark.slow
def test_exit_codes_sigkill_after_ignored_sigterm_and_the_memory_limit(tmp_path: Path) -> None:
    c = _container(tmp_path, ["--port", "0", "--exit-after", "0.2", "--exit-code", "3"])
    assert c.wait(20) == 3
    c = _container(tmp_path, ["--port", "0", "--ignore-sigterm"])
    _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
    c.terminate()
    assert c.wait(1.0) is None  # it ignores SIGTERM: the kubelet sends SIGKILL when the grace period ends
    c.kill()
    assert c.wait(10) == 137 and c.outcome == "killed"
    c = _container(tmp_path, ["--port", "0", "--allocate-mib", "160"], limits=Limits(memory_bytes=96 << 20))
    assert c.wait(20) == 137 and c.outcome == "oom-killed"


@pytest.mark.slow
def test_names_resolve_through_the_pods_resolv_conf(tmp_path: Path, dns_server: int, monkeypatch) -> None:
    monkeypatch.setattr(netmap, "PORT_OFFSET", dns_server - 53)  # the shim asks host_port(53): the test's server
    port = random.randint(20000, 29999)
    ip = f"127.42.250.{random.randint(2, 250)}"
    c = _container(tmp_path, ["--port", str(port)], pod_ip=ip)
    try:
        _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
        assert _get(f"http://{ip}:{port}/resolve?name=echo")["addresses"] == ["127.43.0.77"]  # via the search list
        assert _get(f"http://{ip}:{port}/resolve?name=localhost")["addresses"] == ["127.0.0.1"]  # the hosts file
        assert "Name or service not known" in _get(f"http://{ip}:{port}/resolve?name=nothing.example")["error"]
    finally:
        c.kill()
        c.wait(10)


@pytest.mark.slow
def test_hostile_env_working_dir_and_exec_get_nowhere(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "pwned"
    (evil / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (evil / "usercustomize.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    env = {"PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "sitecustomize.py"), "LD_PRELOAD": "/nonexistent.so",
           "PYTHONHOME": "/nonexistent", "PYTHONUSERBASE": str(evil)}  # fmt: skip
    c = _container(tmp_path, ["--port", "0"], env=env)
    _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
    environ = Path(f"/proc/{c.pid}/environ").read_bytes().split(b"\0")
    assert b"LD_PRELOAD=/nonexistent.so" not in environ and b"PYTHONPATH=" + str(evil).encode() in environ
    assert not marker.exists()  # -I: PYTHON* variables reach os.environ but not the interpreter
    assert Path(f"/proc/{c.pid}/cwd").resolve() == c.spec.rootfs.resolve()
    with pytest.raises(ExecRefused, match=r'exec: "/bin/sh": executable file not found in \$PATH'):
        run_in_container(c, ["/bin/sh", "-c", f"touch {marker}"])
    with pytest.raises(ExecRefused, match="runs only the image's program"):
        run_in_container(c, ["python3", "-c", f"open({str(marker)!r}, 'w')"])
    code, output = exec_sync(c, ["python3", "/app/echo_server.py", "--port", "-1"], 20)
    assert code == 1 and b"OverflowError" in output  # the program's own error, through ExecSync
    process = run_in_container(c, ["/app/echo_server.py", "--help"])
    out, _ = process.communicate(timeout=20)
    assert b"labkit's HTTP echo server" in out and process.returncode == 0
    c.kill()
    c.wait(10)
    c = _container(tmp_path, ["--port", "0"], working_dir="/../../../tmp")  # as in a container: /tmp of its root
    try:
        _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
        assert Path(f"/proc/{c.pid}/cwd").resolve() == (c.spec.rootfs / "tmp").resolve()
    finally:
        c.kill()
        c.wait(10)
    assert not marker.exists()


def test_an_exec_ends_with_its_container(tmp_path: Path) -> None:
    """kubectl exec's command is killed when the container's main process ends (runc: the PID namespace's init)."""
    c = _container(tmp_path, ["--port", "0"])
    try:
        _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
        process = run_in_container(c, ["/app/echo_server.py", "--port", "0"])
        assert process.stdout is not None and b"listening" in process.stdout.readline()
    finally:
        c.kill()
        c.wait(10)
    assert process.wait(10) == -9  # SIGKILL, with its container
    with pytest.raises(ExecRefused, match="is not running"):
        run_in_container(c, ["/app/echo_server.py", "--help"])


@pytest.mark.slow
def test_a_container_dies_with_its_node_process(tmp_path: Path) -> None:
    """A node process killed with SIGKILL takes its native containers with it (PR_SET_PDEATHSIG)."""
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from tests.sandbox import test_native
c = test_native._container(__import__("pathlib").Path({str(tmp_path)!r}), ["--port", "0"])
print(c.pid, flush=True)
time.sleep(60)
"""
    node = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(node.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
        node.kill()
        node.wait(10)
        _wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])
    finally:
        node.kill()


def test_a_spinning_process_groups_cpu_seconds_are_counted(tmp_path: Path) -> None:
    spin = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"],
        start_new_session=True,  # its own group, as a native container's
    )
    try:
        time.sleep(0.5)
        used = group_cpu_seconds(spin.pid)
    finally:
        spin.wait(10)
    assert 0.2 < used < 5.0
    assert group_cpu_seconds(spin.pid) == 0.0  # gone: no process left in the group


@pytest.mark.slow
def test_the_usage_sampler_reports_a_native_containers_group(tmp_path: Path) -> None:
    from labkit.sandbox.kubelet.usage import UsageSampler

    c = _container(tmp_path, ["--port", "0", "--allocate-mib", "24"])
    try:
        _wait_for(lambda: any("listening" in line for line in c.lines))  # type: ignore[attr-defined]
        run = type("Run", (), {"process": c, "name": "echo", "restart_count": 0})()
        worker = type("Worker", (), {"containers": [run], "ns": "lab", "name": "echo"})()
        sampler = UsageSampler("node-a")
        sampler.sample({"uid-1": worker})
        time.sleep(0.5)
        (pod,) = sampler.sample({"uid-1": worker})["pods"]
    finally:
        c.kill()
        c.wait(10)
    (usage,) = pod["containers"]
    assert usage["memoryBytes"] >= 24 << 20 and usage["cpuNanoCores"] >= 0
