"""Host doors: :class:`LocalHost` (a k3s machine) and :class:`SandboxHost` (a sandbox node)."""

from __future__ import annotations

from labkit.config import SANDBOX_DEFAULT_NODE, resolve_backend, sandbox_dir, sandbox_node_root
from labkit.host.base import Host
from labkit.host.local import LocalHost
from labkit.host.sandbox import SandboxHost
from labkit.imagestore import ImageStore


def host_for_backend(backend: str | None = None) -> Host:
    """The host door for *backend* (default: ``LABKIT_BACKEND`` or sandbox).

    The sandbox's image store lives at ``<sandbox_dir>/images``; the door acts on the first node,
    whose root is ``<sandbox_dir>/nodes/labkit-server-0``.
    """
    if resolve_backend(backend) == "sandbox":
        root = sandbox_dir()
        return SandboxHost(sandbox_node_root(), ImageStore(root / "images"), SANDBOX_DEFAULT_NODE, root)
    return LocalHost()


__all__ = ["Host", "LocalHost", "SandboxHost", "host_for_backend"]
