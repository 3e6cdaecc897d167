"""``labkit doctor``'s cluster-network row: the cluster DNS asked for a Service name, and what is real or mapped.

On k3s the row asks CoreDNS at kube-dns's ClusterIP (10.43.0.10:53), which answers only where ClusterIPs
route (on a node); elsewhere it warns. On the sandbox it asks the sandbox's DNS server, reached as every
sandbox socket reaches a cluster address (:mod:`labkit.sandbox.netmap`): ``127.43.0.10`` on port
``host_port(53)`` = 61053.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from labkit.sandbox.netmap import host_port, is_cluster_address

if TYPE_CHECKING:
    from labkit.cluster import Cluster
    from labkit.preflight import Check

NAME = "kube-dns.kube-system.svc.cluster.local"
#: What a learner should know about the sandbox's network, shown in the row.
SANDBOX_NETWORK = (
    "real TCP/UDP on loopback and a real DNS server (cluster.local, UDP+TCP); mapped: pod IPs 127.42/16 and "
    "ClusterIPs 127.43/16 stand for k3s's 10.42/16 and 10.43/16, and ports below 1024 use 61000+port on the wire"
)


def check_cluster_dns(cluster: Cluster) -> Check:
    """Ask the cluster DNS for kube-dns's own name over UDP: it should answer with kube-dns's ClusterIP."""
    from dnslib import DNSRecord

    from labkit.cluster import api_call
    from labkit.errors import LabkitError
    from labkit.preflight import Check

    try:
        service = api_call(cluster.core.read_namespaced_service, "kube-dns", "kube-system", _request_timeout=10)
    except LabkitError as e:
        return Check("cluster DNS", "warn", f"no kube-system/kube-dns Service: {e.problem}", e.fix or "", False)
    ip = str(service.spec.cluster_ip if service.spec else "")
    sandbox = is_cluster_address(ip)
    address = (ip, host_port(53) if sandbox else 53)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2.0)
            udp.sendto(DNSRecord.question(NAME, "A").pack(), address)
            answers = [str(rr.rdata) for rr in DNSRecord.parse(udp.recv(4096)).rr]
    except (OSError, ValueError) as err:
        fix = (
            "`labkit sandbox up` starts the network process again; its log is <sandbox>/network/network.log"
            if sandbox
            else "ClusterIPs route only on the cluster's nodes: run doctor on a node, or check CoreDNS there"
        )
        return Check("cluster DNS", "warn" if not sandbox else "fail", f"{ip}:53 did not answer ({err})", fix, False)
    detail = f"{NAME} -> {', '.join(answers) or 'no answer'} from {ip}:53"
    if sandbox:
        detail += f" (on the wire {address[0]}:{address[1]}); {SANDBOX_NETWORK}"
    if ip in answers:
        return Check("cluster DNS", "ok", detail, required=False)
    return Check("cluster DNS", "warn", detail, "the DNS answers, but not with kube-dns's ClusterIP", False)
