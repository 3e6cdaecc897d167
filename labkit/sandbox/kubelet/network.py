"""The node's pod network: each pod's IP from the node's own range, as k3s's flannel gives each node a /24
of the cluster CIDR (k3s default ``--cluster-cidr 10.42.0.0/16``; here ``127.42.<node index>.0/24``, or
``127.(42+2k).<node index>.0/24`` in address slot k, :func:`labkit.sandbox.netmap.plan`).

>>> PodIPs(0).allocate("a"), PodIPs(3, slot=1).allocate("b")
('127.42.0.2', '127.44.3.2')

The sandbox uses loopback addresses, so a pod can really listen on its IP.
"""

from __future__ import annotations

from labkit.sandbox.kubelet.failures import SandboxFailure
from labkit.sandbox.netmap import plan


class PodIPs:
    """Per-pod loopback addresses ``127.42.<node index>.<n>`` (slot 0): unique on the node, released on delete.

    Loopback, so a pod can really listen there later; .1 is left out like k3s's cni0 gateway.
    """

    def __init__(self, index: int, slot: int = 0) -> None:
        self.prefix = f"{plan(slot).pod_ip_prefix}.{index}."
        self.by_uid: dict[str, str] = {}

    def allocate(self, uid: str, previous: str | None = None) -> str:
        if uid in self.by_uid:
            return self.by_uid[uid]
        used = set(self.by_uid.values())
        if previous and previous.startswith(self.prefix) and previous not in used:
            self.by_uid[uid] = previous
            return previous
        for n in range(2, 255):
            ip = f"{self.prefix}{n}"
            if ip not in used:
                self.by_uid[uid] = ip
                return ip
        raise SandboxFailure(
            f"failed to allocate for range 0: no IP addresses available in range set: {self.prefix}2-{self.prefix}254"
        )

    def release(self, uid: str) -> None:
        self.by_uid.pop(uid, None)
