"""The sandbox's address plan: cluster addresses on loopback, and ports below 1024 moved up.

k3s gives pods ``10.42.0.0/16`` (``--cluster-cidr``, a /24 per node) and Services ``10.43.0.0/16``
(``--service-cidr``), with the API server at ``10.43.0.1`` and CoreDNS at ``10.43.0.10``
(``--cluster-dns``). The sandbox keeps the same shape on loopback, which every user may listen on
without root: pods ``127.42.<node>.<n>``, Services ``127.43.<x>.<y>``.

**Slots.** Loopback is machine-wide, so two sandboxes on one machine (two users, or a test suite's sandbox
next to a module's own) must not share these ranges. Each daemon takes an address *slot* k at start
(:mod:`labkit.sandbox.netslots`) and every part of it uses :func:`plan` (k): pods ``127.(42+2k).<node>.<n>``,
Services ``127.(43+2k).0.0/16``, ``kubernetes`` at ``.0.1`` and ``kube-dns`` at ``.0.10`` of that range, for k in
``0..SLOTS-1``. Slot 0 is the plan above, the common case of one sandbox.

>>> plan(1).pod_cidr, plan(1).service_cidr, plan(1).cluster_dns_ip
(IPv4Network('127.44.0.0/16'), IPv4Network('127.45.0.0/16'), '127.45.0.10')
>>> plan(0).kubernetes_service_ip == KUBERNETES_SERVICE_IP, plan(2).contains("127.46.0.2")
(True, True)
>>> plan(2).contains("127.42.0.2"), slot_of("127.45.0.10"), slot_of("127.0.0.1")
(False, 1, None)

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
>>> is_cluster_address("127.43.0.10"), is_cluster_address("127.45.0.10"), is_cluster_address("127.0.0.1")
(True, True, False)
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

#: How many sandboxes one machine holds at once: slots 0..SLOTS-1 use 127.42.0.0 - 127.73.255.255.
SLOTS = 16
#: nodes one sandbox runs at most: each is an OS process (~60 MB); k3s labs use up to 3 (the /24 per node allows 256)
MAX_NODES = 8
FIRST_OCTET = 42  # slot 0's pod range is 127.42/16, its Service range 127.43/16
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class AddressPlan:
    """One sandbox's cluster addresses, from its slot."""

    slot: int

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"127.{FIRST_OCTET + 2 * self.slot}.0.0/16")

    @property
    def service_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"127.{FIRST_OCTET + 2 * self.slot + 1}.0.0/16")

    @property
    def pod_ip_prefix(self) -> str:
        """``127.42`` for slot 0: a node's pods are ``<prefix>.<node index>.<n>``."""
        return f"127.{FIRST_OCTET + 2 * self.slot}"

    @property
    def kubernetes_service_ip(self) -> str:
        return str(self.service_cidr.network_address + 1)

    @property
    def cluster_dns_ip(self) -> str:
        return str(self.service_cidr.network_address + 10)

    def contains(self, ip: str) -> bool:
        """Whether *ip* is one of this sandbox's pod or Service addresses."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return address in self.pod_cidr or address in self.service_cidr


@functools.cache
def plan(slot: int = 0) -> AddressPlan:
    """The address plan of *slot* (0 <= slot < :data:`SLOTS`)."""
    if not 0 <= int(slot) < SLOTS:
        raise ValueError(f"address slot {slot} is outside 0..{SLOTS - 1}")
    return AddressPlan(int(slot))


def slot_of(ip: str) -> int | None:
    """The slot whose ranges hold *ip*, or None when it is no sandbox's cluster address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    packed = address.packed
    if len(packed) != 4 or packed[0] != 127 or not 0 <= packed[1] - FIRST_OCTET < 2 * SLOTS:
        return None
    return (packed[1] - FIRST_OCTET) // 2


# slot 0, the plan of the docs (and of a sandbox alone on its machine)
POD_CIDR = plan(0).pod_cidr
SERVICE_CIDR = plan(0).service_cidr
KUBERNETES_SERVICE_IP = plan(0).kubernetes_service_ip
CLUSTER_DNS_IP = plan(0).cluster_dns_ip

PRIVILEGED_BELOW = 1024
PORT_OFFSET = 61000


def host_port(port: int) -> int:
    """The port a sandbox socket really uses for the cluster port *port*."""
    return PORT_OFFSET + port if 0 < port < PRIVILEGED_BELOW else port


def spec_port(port: int) -> int:
    """The cluster port a real port stands for: :func:`host_port` undone."""
    return port - PORT_OFFSET if PORT_OFFSET < port < PORT_OFFSET + PRIVILEGED_BELOW else port


def is_cluster_address(ip: str) -> bool:
    """Whether *ip* is a pod's or a Service's address in any slot (the ones whose ports are translated)."""
    return slot_of(ip) is not None
