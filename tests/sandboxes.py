"""The one way a test starts a sandbox daemon (the fixtures in the conftest files all go through it), and what
sandbox addresses look like in any address slot."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.sandbox import client as daemon
from labkit.sandbox import netmap


@contextmanager
def sandbox_daemon(labkit_home: Path, nodes: int) -> Iterator[daemon.SandboxInfo]:
    """A real sandbox daemon with *nodes* node processes in ``labkit_home/sandbox``, stopped afterwards.

    It is stopped even when the test fails, so no daemon or kubelet outlives the session.
    """
    home = labkit_home / "sandbox"
    try:
        yield daemon.ensure_running(nodes=nodes, home=home)
    finally:
        daemon.stop(home=home)


def is_pod_ip(address: str) -> bool:
    """*address* is a sandbox pod address in some address slot (another sandbox on the machine moves this one
    off slot 0, so a test cannot count on ``127.42.``)."""
    ip = ipaddress.ip_address(address)
    return any(ip in netmap.plan(k).pod_cidr for k in range(netmap.SLOTS))


def is_service_ip(address: str) -> bool:
    """*address* is a sandbox Service address in some address slot."""
    ip = ipaddress.ip_address(address)
    return any(ip in netmap.plan(k).service_cidr for k in range(netmap.SLOTS))
