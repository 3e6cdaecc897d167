"""Cluster addresses as a wasm pod's sockets see them: ports below 1024 moved, Service connects DNATed.

**Ports.** A pod or Service port below 1024 is :func:`~labkit.sandbox.netmap.host_port` on the wire (no
root), so the socket layer translates at the border: ``bind``/``connect``/``send_to`` to a cluster address
(a pod IP, a ClusterIP) use the wire port, and the addresses reported back (``getsockname``,
``getpeername``, ``recv_from``) show the spec port. A wasm server binding ``0.0.0.0:80`` listens on
``podIP:61080`` and tells the guest it holds port 80; a client connecting to ``podIP:80`` reaches it.

**Service DNAT.** On a node, kube-proxy's rules live in the kernel, and a pod's ``connect`` to
``clusterIP:port`` is rewritten there to a random ready endpoint; ``getpeername`` still names the ClusterIP
(conntrack reverses the translation). For a wasm pod the kubelet is the kernel: the network process writes
its TCP frontends to ``<sandbox>/network/rules.json`` (``network/proxy.py``), and a guest's TCP connect to
a ClusterIP picks an endpoint here (uniformly at random, or the pod's pinned one under
``sessionAffinity: ClientIP``), with no proxy hop. A frontend without ready endpoints refuses
(``ECONNREFUSED``, kube-proxy's REJECT). An address the rules do not know is connected as is (through the
proxy's listener, if any). UDP to a ClusterIP always goes through the proxy's listener.
Rules left by a network process that died stay in force, as iptables rules outlive kube-proxy.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import random
import time
from pathlib import Path

from labkit.sandbox.netmap import host_port, is_cluster_address, plan, slot_of, spec_port

__all__ = ["RULES", "ServiceRules", "seen_port", "use", "wire_port"]


def wire_port(ip: str, port: int) -> int:
    """The port a socket really uses towards or on *ip*: moved up for a cluster address below 1024."""
    return host_port(port) if is_cluster_address(ip) else port


def seen_port(ip: str, port: int) -> int:
    """The port a guest is shown for a socket address: the spec port for a cluster address."""
    return spec_port(port) if is_cluster_address(ip) else port


class ServiceRules:
    """The network process's TCP frontends (``clusterIP:port`` → ready endpoints), re-read when the file changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._stamp: int | None = None
        self._rules: dict[str, dict[str, object]] = {}
        self._affinity: dict[tuple[str, str], tuple[tuple[str, int], float]] = {}

    def _load(self) -> dict[str, dict[str, object]]:
        if self.path is None:
            return {}
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            return {}
        if stamp != self._stamp:
            try:
                loaded = json.loads(self.path.read_text())
                self._rules = dict(loaded.get("tcp") or {})
            except (OSError, ValueError, AttributeError):
                return self._rules  # half-read or foreign: keep the last good rules
            self._stamp = stamp
        return self._rules

    def dnat(self, ip: str, port: int, client_ip: str) -> tuple[str, int] | None:
        """The endpoint (spec address) a TCP connect to *ip*:*port* goes to; None when not a known Service."""
        if ip.count(".") != 3 or not _in_services(ip):
            return None
        rule = self._load().get(f"{ip}:{port}")
        if rule is None:
            return None
        backends = [(str(b[0]), int(b[1])) for b in rule.get("backends") or ()]  # type: ignore[attr-defined]
        if not backends:
            raise OSError(errno.ECONNREFUSED, "connection refused (the Service has no ready endpoints)")
        affinity = int(rule.get("affinity") or 0)  # type: ignore[call-overload]
        key = (f"{ip}:{port}", client_ip)
        if affinity:
            pinned = self._affinity.get(key)
            if pinned and pinned[1] > time.monotonic() and pinned[0] in backends:
                self._affinity[key] = (pinned[0], time.monotonic() + affinity)
                return pinned[0]
        choice = random.choice(backends)
        if affinity:
            self._affinity[key] = (choice, time.monotonic() + affinity)
        return choice


def _in_services(ip: str) -> bool:
    try:
        slot = slot_of(ip)  # a Service range of any address slot: the rules hold the sandbox's own
        return slot is not None and ipaddress.ip_address(ip) in plan(slot).service_cidr
    except ValueError:
        return False


#: The node's rules; :func:`use` points them at the sandbox's file when the kubelet process starts.
RULES = ServiceRules()


def use(path: Path) -> None:
    RULES.path = path
