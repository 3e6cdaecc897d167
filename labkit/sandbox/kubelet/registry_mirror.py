"""The sandbox's simulated registry: the only "pull" a sandbox node can do.

Honesty first: the sandbox has no registry access. This stand-in serves ONLY
labkit's own images, built on demand from the wasm modules shipped in the
package with :func:`labkit.wasm.oci.build_image`:

- ``docker.io/labkit/<app>:latest`` in runwasi's wasm-layer layout,
- ``docker.io/labkit/<app>:compat`` in crun's compat layout,

for every shipped app (``wasi-demo``, ...). A pull builds the archive and
imports it into the node's image store, as containerd would store a pulled
image. Every other reference fails like containerd's resolver for a missing
image (:class:`PullFailed`).

>>> mirror_source("labkit/wasi-demo:compat")
('wasi-demo', 'compat')
>>> mirror_source("nginx") is None
True
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import ImageError
from labkit.wasm.apps import module_path, shipped_modules
from labkit.wasm.oci import build_image, normalize_ref, split_ref

if TYPE_CHECKING:
    from labkit.imagestore import ImageStore

MIRROR_REPOSITORY = "docker.io/labkit/"
#: tag -> image layout served under it
MIRROR_TAGS = {"latest": "runwasi", "compat": "compat"}
#: What a learner reads in the Pulled event and in pull errors.
SIMULATED_NOTE = "labkit sandbox simulated registry: only labkit's own images"


@dataclass(frozen=True)
class Pulled:
    """A completed pull: the stored reference, its image size in bytes and the time it took."""

    ref: str
    size: int
    seconds: float


class PullFailed(ImageError):
    """The reference cannot be pulled; ``message`` has containerd's wording."""

    def __init__(self, ref: str) -> None:
        name = normalize_ref(ref) if valid_ref(ref) else ref
        self.containerd_message = (
            f'failed to pull and unpack image "{name}": failed to resolve reference "{name}": {name}: not found'
        )
        super().__init__(
            self.containerd_message,
            "the sandbox has no registry access: build the image and import it "
            "(labkit image build ... -o img.tar && labkit image import img.tar), "
            "or use one of labkit's own images " + ", ".join(available_refs()),
        )


def valid_ref(ref: str) -> bool:
    """Whether *ref* parses as an image reference (containerd's grammar)."""
    try:
        normalize_ref(ref)
    except ImageError:
        return False
    return True


def available_refs() -> list[str]:
    """Every reference the simulated registry serves."""
    return [f"{MIRROR_REPOSITORY}{app}:{tag}" for app in shipped_modules() for tag in MIRROR_TAGS]


def mirror_source(ref: str) -> tuple[str, str] | None:
    """``(app, layout)`` the simulated registry builds for *ref*, or ``None`` when it does not serve it."""
    if not valid_ref(ref):
        return None
    full = normalize_ref(ref)
    if not full.startswith(MIRROR_REPOSITORY):
        return None
    repository, tag, digest = split_ref(full)
    app = repository.removeprefix(MIRROR_REPOSITORY)
    if digest or tag not in MIRROR_TAGS or app not in shipped_modules():
        return None
    return app, MIRROR_TAGS[tag]


#: ref -> manifest digest this process last built: builds are reproducible, so an image still stored with
#: that digest is exactly what a new pull would fetch (a registry answers "up to date" the same way).
_served: dict[str, str] = {}


def pull(ref: str, store: ImageStore) -> Pulled:
    """Build labkit's image *ref* from its shipped module and import it into *store*; :class:`PullFailed` otherwise."""
    started = time.monotonic()
    source = mirror_source(ref)
    if source is None:
        raise PullFailed(ref)
    app, layout = source
    full = normalize_ref(ref)
    record = store.resolve(full)
    if record is None or _served.get(full) != record.digest:
        repository, tag, _ = split_ref(full)
        with tempfile.TemporaryDirectory(prefix="labkit-pull-") as tmp:
            built = build_image(module_path(app), repository, tag or "latest", layout, Path(tmp) / "image.tar")
            store.import_archive(built.path)
        _served[full] = built.digest
        record = store.resolve(full)
    assert record is not None  # just imported
    return Pulled(full, record.size, time.monotonic() - started)
