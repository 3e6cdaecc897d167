"""The node's view of the image store: image contents cached by digest, pulls through the simulated registry."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from labkit.sandbox.kubelet import registry_mirror

if TYPE_CHECKING:
    from labkit.imagestore import ImageStore


@dataclass(frozen=True)
class ImageContent:
    """What a node knows of an image once it is in the store."""

    ref: str
    digest: str
    layout: str  # runwasi | compat | artifact | native
    entrypoint: list[str]
    env: list[str]
    module: bytes | None

    def files(self) -> dict[str, bytes]:
        """The image rootfs files a runtime can see (a compat image's module sits at its entrypoint)."""
        if self.layout == "compat" and self.module is not None and self.entrypoint:
            return {str(PurePosixPath("/") / self.entrypoint[0].split("#", 1)[0]): self.module}
        return {}

    def wasm_layers(self) -> dict[str, bytes]:
        """runwasi's OCI wasm layers, by module name."""
        if self.layout in ("runwasi", "artifact") and self.module is not None:
            name = PurePosixPath(self.entrypoint[0]).name if self.entrypoint else "module.wasm"
            return {name: self.module}
        return {}


class NodeImages:
    """The node's view of the image store: lookups cached by digest, pulls through the simulated registry."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._by_digest: dict[str, ImageContent] = {}
        self._lock = threading.Lock()

    def present(self, ref: str) -> ImageContent | None:
        record = self.store.resolve(ref)
        if record is None:
            return None
        with self._lock:
            cached = self._by_digest.get(record.digest)
        if cached is not None and cached.ref == record.ref:
            return cached
        module = self.store.module_bytes(ref) if record.layout != "native" else None
        content = ImageContent(
            record.ref, record.digest, record.layout, self.store.entrypoint(ref), self.store.env(ref), module
        )
        with self._lock:
            self._by_digest[record.digest] = content
        return content

    def pull(self, ref: str) -> tuple[ImageContent, registry_mirror.Pulled]:
        pulled = registry_mirror.pull(ref, self.store)
        content = self.present(pulled.ref)
        assert content is not None  # just imported
        return content, pulled
