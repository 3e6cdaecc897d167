"""Host doors: :class:`LocalHost` (a k3s machine) and :class:`SandboxHost` (a sandbox node)."""

from __future__ import annotations

from ..config import resolve_backend, sandbox_dir
from ..sandbox.images import ImageStore
from .base import Host
from .local import LocalHost
from .sandbox import SandboxHost


def host_for_backend(backend: str | None = None) -> Host:
    """The host door for *backend* (default: ``LABKIT_BACKEND`` or sandbox).

    The sandbox's image store lives at ``<sandbox_dir>/images``, its node root at ``<sandbox_dir>/node``.
    """
    if resolve_backend(backend) == "sandbox":
        root = sandbox_dir()
        return SandboxHost(root / "node", ImageStore(root / "images"))
    return LocalHost()


__all__ = ["Host", "LocalHost", "SandboxHost", "host_for_backend"]
