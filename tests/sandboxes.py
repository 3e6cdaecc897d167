"""The one way a test starts a sandbox daemon (the fixtures in the conftest files all go through it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.sandbox import client as daemon


@contextmanager
def sandbox_daemon(labkit_home: Path, nodes: int) -> Iterator[daemon.SandboxInfo]:
    """A real sandbox daemon with *nodes* node processes in ``labkit_home/sandbox``, stopped afterwards.

    It is stopped even when the test fails, so no daemon or kubelet outlives the session.
    """
    home = labkit_home / "sandbox"
    info = daemon.ensure_running(nodes=nodes, home=home)
    try:
        yield info
    finally:
        daemon.stop(home=home)
