"""Address slots: two sandboxes on one machine each get their own pod and Service ranges (sandbox/netslots.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dnslib import DNSRecord

from labkit.sandbox.netmap import host_port, plan
from labkit.sandbox.netslots import acquire_slot, slot_taken

NS = "default"
HOLDER = (
    "import sys, time; from pathlib import Path; from labkit.sandbox.netslots import acquire_slot;"
    "lease = acquire_slot(directory=Path(sys.argv[1])); print(lease.slot, flush=True); time.sleep(60)"
)


def test_a_slot_held_by_a_dead_process_is_free_again(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        assert slot_taken(held, tmp_path)
        assert acquire_slot(preferred=held, directory=tmp_path).slot != held  # the live holder's
    finally:
        holder.kill()
        holder.wait()
    assert not slot_taken(held, tmp_path)  # its lock went with it; the file stays and is reused
    lease = acquire_slot(preferred=held, directory=tmp_path)
    assert lease.slot == held
    lease.release()


def test_a_remembered_slot_is_taken_first_when_free(tmp_path: Path) -> None:
    lease = acquire_slot(preferred=13, directory=tmp_path)
    other = acquire_slot(preferred=13, directory=tmp_path)
    assert lease.slot == 13 and other.slot not in (13, None)
    lease.release()
    other.release()


def _kubectl(info, home: Path):
    from tests.sandbox.conftest import Kubectl

    return Kubectl({**os.environ, "KUBECONFIG": str(info.kubeconfig), "HOME": str(home)})


def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _http_get(ip: str, port: int) -> bytes:
    """The first bytes of the answer to ``GET /hello``; empty while nothing listens there yet."""
    try:
        with socket.create_connection((ip, port), timeout=5) as conn:
            conn.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
            return conn.recv(4096)
    except ConnectionRefusedError:
        return b""


def _echo(kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {
            "runtimeClassName": "wasmedge",
            "containers": [{"name": "echo", "image": "labkit/echo-server:latest", "args": ["8080"]}],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    for manifest in (pod, service):
        kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _pod_ip(kubectl) -> str:
    pod = json.loads(kubectl("get", "pod", "echo", "-o", "json", check=False).stdout or "{}")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or ()
    )
    return str(pod["status"].get("podIP") or "") if ready else ""


@pytest.mark.slow
def test_two_sandboxes_on_one_machine_each_have_their_own_addresses(tmp_path: Path) -> None:
    from tests.sandbox.conftest import KUBECTL
    from tests.sandboxes import sandbox_daemon

    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    with sandbox_daemon(tmp_path / "a", nodes=1) as a, sandbox_daemon(tmp_path / "b", nodes=1) as b:
        assert a.slot != b.slot
        seen = []
        for info, home in ((a, tmp_path / "a"), (b, tmp_path / "b")):
            addresses = plan(info.slot)
            kubectl = _kubectl(info, home)
            kube_dns = json.loads(kubectl("get", "service", "kube-dns", "-n", "kube-system", "-o", "json").stdout)
            assert kube_dns["spec"]["clusterIP"] == addresses.cluster_dns_ip
            assert info.cluster_dns == f"{addresses.cluster_dns_ip}:53"
            _echo(kubectl)
            seen.append((info, kubectl, addresses))
        for _info, kubectl, addresses in seen:
            ip = _wait(lambda k=kubectl: _pod_ip(k), "the echo pod to be ready")
            assert addresses.contains(ip) and ip.startswith(addresses.pod_ip_prefix + ".")
            cluster_ip = json.loads(kubectl("get", "service", "echo", "-o", "json").stdout)["spec"]["clusterIP"]
            assert cluster_ip in addresses.service_cidr.__str__() or addresses.contains(cluster_ip)
            # each sandbox's DNS answers for its own Services, on its own address
            dns = (addresses.cluster_dns_ip, host_port(53))

            def answer(name: str = f"echo.{NS}.svc.cluster.local", dns=dns) -> list[str]:
                try:
                    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(*dns, timeout=2))
                except OSError:
                    return []
                return [str(r.rdata) for r in reply.rr]

            assert _wait(answer, "the cluster DNS") == [cluster_ip]
            # the pod listens on 8080 at its own address, whatever the other sandbox's pod does; with no readiness
            # probe it is Ready once its container started, which can be a moment before the module listens
            assert _wait(lambda ip=ip: _http_get(ip, 8080), f"the echo pod to answer on {ip}:8080")
        slot_a, slot_b = a.slot, b.slot
    # stopped: both slots are free again
    assert not slot_taken(slot_a) and not slot_taken(slot_b)
