"""Services and cluster DNS on a real sandbox: the network process, real kubelets, wasm pods, real sockets.

One daemon for the module (2 nodes, its own LABKIT_HOME): pods of the kit's echo-server behind a Service,
reached by ClusterIP from Python (through the proxy's listener) and from a wasm pod (DNAT in its kubelet),
spread evenly, following readiness and deletion; the DNS server asked with dnslib over UDP and TCP.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from labkit.sandbox.netmap import CLUSTER_DNS_IP, host_port, plan

if TYPE_CHECKING:
    from tests.sandbox.conftest import Kubectl

pytestmark = pytest.mark.slow
NS = "net"
DNS = (CLUSTER_DNS_IP, host_port(53))


@pytest.fixture(scope="module")
def cluster(sandbox, sandbox_home, kubectl):
    """The session's 2-node sandbox, in whichever address slot it got (docs/architecture.md §4)."""
    global CLUSTER_DNS_IP, DNS  # noqa: PLW0603 (the module's tests ask the session sandbox's own DNS)
    CLUSTER_DNS_IP = plan(sandbox.slot).cluster_dns_ip  # another sandbox on this machine may hold slot 0
    DNS = (CLUSTER_DNS_IP, host_port(53))
    kubectl("create", "namespace", NS, check=False)
    return kubectl, sandbox_home / "sandbox"


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def get(kubectl: Kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", "-n", NS, *args, "-o", "json").stdout)


def apply(kubectl: Kubectl, manifest: dict) -> None:
    kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(manifest))


def echo_deployment(replicas: int) -> dict:
    container = {
        "name": "echo",
        "image": "labkit/echo-server:latest",
        "args": ["80"],  # below 1024: 61080 on the wire, port 80 for the guest and its clients
        "ports": [{"name": "http", "containerPort": 80}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {"runtimeClassName": "wasmedge", "containers": [container]},
            },
        },
    }


def echo_service(name: str = "echo", **spec) -> dict:
    ports = [{"name": "http", "port": 80, "targetPort": "http"}]  # a named targetPort, resolved per pod
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "echo"}, "ports": ports, **spec},
    }


def ready_ips(kubectl: Kubectl) -> list[str]:
    pods = get(kubectl, "pods", "-l", "app=echo")["items"]
    return sorted(
        p["status"]["podIP"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or ())
    )


def slice_ips(kubectl: Kubectl, service: str = "echo") -> list[str]:
    slices = get(kubectl, "endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return sorted(
        a for s in slices for e in s.get("endpoints") or () if e["conditions"].get("ready") for a in e["addresses"]
    )


def listeners(home: Path) -> list[str]:
    try:
        return list(json.loads((home / "network" / "status.json").read_text())["listeners"])
    except (OSError, ValueError):
        return []


def served_by(ip: str, port: int, n: int) -> None:
    """n connections to ip:port, each answered; the echo servers' logs say which pod took each."""
    answered = 0
    for k in range(n):
        with socket.create_connection((ip, host_port(port)), timeout=5) as conn:
            conn.sendall(f"GET /{k} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        answered += reply.startswith(b"HTTP/1.1 200 OK")
    assert answered == n


def accepted_per_pod(kubectl: Kubectl) -> dict[str, int]:
    pods = get(kubectl, "pods", "-l", "app=echo")["items"]
    return {
        p["metadata"]["name"]: kubectl("logs", "-n", NS, p["metadata"]["name"]).stdout.count("connection accepted")
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }


def run_wasm_pod(kubectl: Kubectl, name: str, image: str, args: list[str], env: dict[str, str] | None = None) -> str:
    """Run a wasm pod to completion; its log."""
    container = {
        "name": name,
        "image": image,
        "args": args,
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"runtimeClassName": "wasmedge", "restartPolicy": "Never", "containers": [container]},
    }
    apply(kubectl, pod)
    wait_for(lambda: get(kubectl, "pod", name)["status"].get("phase") in ("Succeeded", "Failed"), f"pod {name}", 60)
    log = kubectl("logs", "-n", NS, name).stdout
    kubectl("delete", "pod", "-n", NS, name, "--wait=false")
    return log


def test_a_service_spreads_connections_over_its_ready_endpoints_and_follows_them(cluster) -> None:
    kubectl, home = cluster
    apply(kubectl, echo_deployment(2))
    apply(kubectl, echo_service())
    wait_for(lambda: len(ready_ips(kubectl)) == 2 and slice_ips(kubectl) == ready_ips(kubectl), "2 ready endpoints")
    cluster_ip = get(kubectl, "service", "echo")["spec"]["clusterIP"]
    wait_for(lambda: f"{cluster_ip}:80/TCP" in listeners(home), "the proxy's listener")

    # a pod directly, at podIP:containerPort (80, on the wire 61080)
    for ip in ready_ips(kubectl):
        with socket.create_connection((ip, host_port(80)), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"ping"
    before = accepted_per_pod(kubectl)

    # from the host (a notebook): through the proxy, uniformly at random
    served_by(cluster_ip, 80, 200)
    after = wait_for(
        lambda: (a := accepted_per_pod(kubectl)) and sum(a.values()) - sum(before.values()) == 200 and a,
        "the pods' logs",
    )
    counts = [after[name] - before.get(name, 0) for name in after]
    assert len(counts) == 2 and min(counts) >= 60, counts  # binomial(200, 1/2): 60 is 5.6 sigma below 100

    # from a wasm pod: DNAT in its kubelet, getpeername shows the ClusterIP and the Service's port
    log = run_wasm_pod(kubectl, "client", "labkit/echo-client:latest", [f"{cluster_ip}:80", "20"])
    assert f"connected to {cluster_ip}:80" in log and "rounds 20 p50" in log, log

    # one pod deleted: its endpoint goes, every connection lands on the ready ones
    victim = sorted(before)[0]
    kubectl("delete", "pod", "-n", NS, victim, "--wait=false")
    wait_for(
        lambda: victim not in [p["metadata"]["name"] for p in get(kubectl, "pods", "-l", "app=echo")["items"]],
        "the pod to go",
        60,
    )
    wait_for(lambda: len(slice_ips(kubectl)) == 2, "the replacement to be ready", 60)
    served_by(cluster_ip, 80, 20)

    # no ready endpoint: nothing listens, so the Service refuses, as kube-proxy's REJECT rule makes it
    kubectl("scale", "deployment", "-n", NS, "echo", "--replicas=0")
    wait_for(lambda: slice_ips(kubectl) == [] and f"{cluster_ip}:80/TCP" not in listeners(home), "no endpoints")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((cluster_ip, host_port(80)), timeout=5)
    log = run_wasm_pod(kubectl, "client2", "labkit/echo-client:latest", [f"{cluster_ip}:80"])
    assert "Connection refused" in log, log

    # the Service deleted: its listener goes with it
    kubectl("scale", "deployment", "-n", NS, "echo", "--replicas=1")
    wait_for(lambda: f"{cluster_ip}:80/TCP" in listeners(home), "the listener back")
    kubectl("delete", "service", "-n", NS, "echo")
    wait_for(lambda: f"{cluster_ip}:80/TCP" not in listeners(home), "the listener to go")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((cluster_ip, host_port(80)), timeout=5)


def ask(name: str, qtype: str, tcp: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    return DNSRecord.parse(query.send(*DNS, tcp=tcp, timeout=5))


def test_cluster_dns_answers_as_coredns_over_udp_and_tcp(cluster) -> None:
    kubectl, _ = cluster
    apply(kubectl, echo_deployment(2))
    apply(kubectl, echo_service("web"))
    apply(kubectl, echo_service("web-headless", clusterIP="None"))
    wait_for(lambda: len(ready_ips(kubectl)) == 2 and slice_ips(kubectl, "web-headless") == ready_ips(kubectl), "pods")
    cluster_ip = get(kubectl, "service", "web")["spec"]["clusterIP"]
    pods = ready_ips(kubectl)
    for tcp in (False, True):
        a = ask(f"web.{NS}.svc.cluster.local", "A", tcp)
        assert [str(r.rdata) for r in a.rr] == [cluster_ip] and a.rr[0].ttl == 5 and a.header.aa
        headless = ask(f"web-headless.{NS}.svc.cluster.local", "A", tcp)
        assert sorted(str(r.rdata) for r in headless.rr) == pods
        pod = ask(f"{pods[0].replace('.', '-')}.{NS}.pod.cluster.local", "A", tcp)
        assert [str(r.rdata) for r in pod.rr] == [pods[0]]
        srv = ask(f"_http._tcp.web.{NS}.svc.cluster.local", "SRV", tcp)
        assert [(r.rdata.priority, r.rdata.weight, r.rdata.port, str(r.rdata.target)) for r in srv.rr] == [
            (0, 100, 80, f"web.{NS}.svc.cluster.local.")
        ]
        assert [str(r.rdata) for r in srv.ar] == [cluster_ip]
        hsrv = ask(f"_http._tcp.web-headless.{NS}.svc.cluster.local", "SRV", tcp)
        assert sorted((r.rdata.weight, r.rdata.port) for r in hsrv.rr) == [(50, 80), (50, 80)]  # floor(100 / 2)
        for missing in (f"nope.{NS}.svc.cluster.local", "web.nonexistent.svc.cluster.local", "example.com"):
            assert ask(missing, "A", tcp).header.rcode == RCODE.NXDOMAIN
        nodata = ask(f"web.{NS}.svc.cluster.local", "AAAA", tcp)
        assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
        assert nodata.auth[0].rtype == QTYPE.SOA and str(nodata.auth[0].rdata.mname) == "ns.dns.cluster.local."
        assert ask(f"_nope._tcp.web.{NS}.svc.cluster.local", "SRV", tcp).header.rcode == RCODE.NXDOMAIN

    # the kit's wasm nslookup, with DNS_SERVER at the Service's address and port 53: one TCP A query
    log = run_wasm_pod(
        kubectl,
        "lookup",
        "labkit/nslookup:latest",
        [f"web.{NS}.svc.cluster.local"],
        {"DNS_SERVER": f"{CLUSTER_DNS_IP}:53"},
    )
    assert log.split() == [f"{cluster_ip}:0"], log
    for name in ("web", "web-headless", "echo"):
        kubectl("delete", "service", "-n", NS, name, "--ignore-not-found")
    wait_for(lambda: ask(f"web.{NS}.svc.cluster.local", "A").header.rcode == RCODE.NXDOMAIN, "the name to go")


def test_a_hostile_service_cannot_exhaust_the_proxy(cluster) -> None:
    """Thousands of ports: at most MAX_PORTS_PER_SERVICE listeners; the DNS refuses huge or broken queries."""
    from labkit.sandbox.network.proxy import MAX_PORTS_PER_SERVICE

    kubectl, home = cluster
    apply(kubectl, echo_deployment(1))
    ports = [{"name": f"p{k}", "port": 20000 + k, "targetPort": 80} for k in range(2000)]
    apply(
        kubectl,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wide"},
            "spec": {"selector": {"app": "echo"}, "ports": ports},
        },
    )
    wait_for(lambda: len(slice_ips(kubectl, "wide")) == 1, "the endpoint", 60)
    cluster_ip = get(kubectl, "service", "wide")["spec"]["clusterIP"]
    wait_for(
        lambda: sum(1 for lst in listeners(home) if lst.startswith(cluster_ip + ":")) == MAX_PORTS_PER_SERVICE,
        "the bounded listeners",
    )
    assert "more than 64 ports" in (home / "network" / "network.log").read_text()
    bad = kubectl(
        "apply",
        "-n",
        NS,
        "-f",
        "-",
        check=False,
        input=json.dumps(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "zero"}, "spec": {"ports": [{"port": 0}]}}
        ),
    )
    assert bad.returncode != 0 and "port" in bad.stderr  # port 0 never reaches the proxy: validation refuses it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # garbage, then a name of 255 bytes
        udp.settimeout(5)
        udp.sendto(b"\x12\x34" + b"\xff" * 30, DNS)
        assert DNSRecord.parse(udp.recv(512)).header.rcode == RCODE.FORMERR
    long_name = ".".join(["a" * 63] * 3) + f".{NS}.svc.cluster.local"
    assert ask(long_name, "A").header.rcode == RCODE.NXDOMAIN
    kubectl("delete", "service", "-n", NS, "wide")
    wait_for(lambda: not any(lst.startswith(cluster_ip + ":") for lst in listeners(home)), "the listeners to go")


def test_doctors_cluster_dns_row_asks_the_real_server_and_says_what_is_mapped(sandbox, cluster) -> None:
    """`labkit doctor`'s cluster DNS row (issue 12: say in doctor what is real and what is mapped), on this
    session's sandbox in whichever address slot it holds: a real UDP query answered with kube-dns's ClusterIP."""
    import kubernetes

    from labkit.cluster import Cluster
    from labkit.preflight import check_cluster_dns

    api = kubernetes.config.new_client_from_config(config_file=str(sandbox.kubeconfig), context="labkit-sandbox")
    row = check_cluster_dns(Cluster(api, backend="sandbox", context="labkit-sandbox", kubeconfig=sandbox.kubeconfig))
    addresses = plan(sandbox.slot)
    assert row.status == "ok", row
    assert row.detail.startswith(
        f"kube-dns.kube-system.svc.cluster.local -> {addresses.cluster_dns_ip} from {addresses.cluster_dns_ip}:53 "
        f"(on the wire {addresses.cluster_dns_ip}:{host_port(53)})"
    )
    assert "real TCP/UDP on loopback and a real DNS server" in row.detail
    assert f"mapped: pod IPs {addresses.pod_cidr} and ClusterIPs {addresses.service_cidr}" in row.detail
    assert "ports below 1024 use 61000+port on the wire" in row.detail
