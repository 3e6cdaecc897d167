"""SandboxHost: the host door of a sandbox node (its root directory and the cluster's image store)."""

from __future__ import annotations

from pathlib import Path

from ..sandbox.images import ImageRecord, ImageStore
from .base import Host


class SandboxHost(Host):
    """A sandbox node: *node_root* mirrors a k3s node's paths; images go to *image_store*."""

    def __init__(self, node_root: Path, image_store: ImageStore) -> None:
        self.node_root = Path(node_root)
        self.image_store = image_store

    def import_image(self, archive: Path) -> list[str]:
        # k3s' docs import with --all-platforms, since wasm images are wasip1/wasm.
        return self.image_store.import_archive(archive, all_platforms=True)

    def list_images(self) -> list[ImageRecord]:
        return self.image_store.list()
