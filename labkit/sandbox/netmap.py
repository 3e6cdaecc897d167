"""The sandbox's address plan: cluster addresses on loopback, and ports below 1024 moved up.

k3s gives pods ``10.42.0.0/16`` (``--cluster-cidr``, a /24 per node) and Services ``10.43.0.0/16``
(``--service-cidr``), with the API server at ``10.43.0.1`` and CoreDNS at ``10.43.0.10``
(``--cluster-dns``). The sandbox keeps the same shape on loopback, which every user may listen on
without root: pods ``127.42.<node>.<n>``, Services ``127.43.<x>.<y>``.

A port below 1024 needs privilege to bind (``net.ipv4.ip_unprivileged_port_start``, 1024 by default),
and a learner on Binder has none. So every listener and every connection inside the sandbox moves such a
port to :func:`host_port` on the wire; the wasm socket layer, native pods, the Service proxy, the
cluster DNS, probes and port-forward all translate through this one function, so a pod and its clients
still see the port the manifest names. The range it picks, 61000-62023, lies above Linux's default
ephemeral ports (32768-60999, ``net.ipv4.ip_local_port_range``), so no outgoing connection takes it.

>>> host_port(80), host_port(53), host_port(8080)
(61080, 61053, 8080)
>>> spec_port(61080), spec_port(8080)
(80, 8080)
>>> is_cluster_address("127.43.0.10"), is_cluster_address("127.0.0.1")
(True, False)
"""

from __future__ import annotations

import ipaddress

POD_CIDR = ipaddress.ip_network("127.42.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("127.43.0.0/16")
KUBERNETES_SERVICE_IP = "127.43.0.1"
CLUSTER_DNS_IP = "127.43.0.10"
CLUSTER_DOMAIN = "cluster.local"

PRIVILEGED_BELOW = 1024
PORT_OFFSET = 61000


def host_port(port: int) -> int:
    """The port a sandbox socket really uses for the cluster port *port*."""
    return PORT_OFFSET + port if 0 < port < PRIVILEGED_BELOW else port


def spec_port(port: int) -> int:
    """The cluster port a real port stands for: :func:`host_port` undone."""
    return port - PORT_OFFSET if PORT_OFFSET < port < PORT_OFFSET + PRIVILEGED_BELOW else port


def is_cluster_address(ip: str) -> bool:
    """Whether *ip* is a pod's or a Service's address (the ones whose ports are translated)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return address in POD_CIDR or address in SERVICE_CIDR
