"""SandboxHost: the host door of a sandbox node (its root directory and the cluster's image store)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.config import SANDBOX_DEFAULT_NODE
from labkit.host.base import Host

if TYPE_CHECKING:
    from labkit.imagestore import ImageRecord, ImageStore


class SandboxHost(Host):
    """A sandbox node: *node_root* mirrors a k3s node's paths; images go to *image_store*.

    *sandbox_home* is the sandbox directory whose daemon runs the node (for :meth:`restart_k3s`);
    by default the one holding ``nodes/<node>`` in *node_root*.
    """

    def __init__(
        self,
        node_root: Path,
        image_store: ImageStore,
        node: str = SANDBOX_DEFAULT_NODE,
        sandbox_home: Path | None = None,
    ) -> None:
        self.node_root = Path(node_root)
        self.image_store = image_store
        self.node = node
        self.sandbox_home = sandbox_home or self.node_root.parent.parent

    def import_image(self, archive: Path) -> list[str]:
        # k3s' docs import with --all-platforms, since wasm images are wasip1/wasm.
        return self.image_store.import_archive(archive, all_platforms=True)

    def list_images(self) -> list[ImageRecord]:
        return self.image_store.list()

    def restart_k3s(self) -> dict[str, Any]:
        """``systemctl restart k3s`` on the node: the containerd config is re-rendered from its template and re-read,
        RuntimeClasses for detected runtimes are created; running pods keep running. Returns the loaded runtimes."""
        from labkit.sandbox.client import restart_node

        return restart_node(self.node, home=self.sandbox_home)
