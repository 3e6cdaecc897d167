"""The sandbox cluster's image store: what ``k3s ctr images import`` is to a k3s node.

Blobs live by digest under ``root/blobs/sha256/``; the image table is SQLite
(``root/images.db``). Archives are read with :func:`labkit.wasm.oci.read_images`,
so images built by labkit or by runwasi's ``oci-tar-builder`` import alike.

>>> store = ImageStore(tmp_path)                          # doctest: +SKIP
>>> store.import_archive("wasi-demo.tar")                 # doctest: +SKIP
['docker.io/library/wasi-demo:latest']
>>> store.entrypoint("wasi-demo")                         # doctest: +SKIP
['/wasi-demo.wasm']
"""

from __future__ import annotations

import builtins
import json
import platform as host_platform
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import ImageError
from labkit.fsutil import write_atomic
from labkit.wasm.oci import ImageInfo, normalize_ref, read_images, sha256_digest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    ref TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    platform TEXT NOT NULL,
    size INTEGER NOT NULL,
    layout TEXT NOT NULL,
    entrypoint TEXT NOT NULL,      -- JSON list
    env TEXT NOT NULL,             -- JSON list
    annotations TEXT NOT NULL,     -- JSON object
    module_digest TEXT,            -- the wasm module's own blob, if the image has one
    blobs TEXT NOT NULL            -- JSON list of every blob digest the image uses
)
"""


@dataclass(frozen=True)
class ImageRecord:
    """One image as ``ctr images ls`` would list it, plus its wasm layout."""

    ref: str
    digest: str
    platform: str
    size: int
    layout: str


def default_platform() -> str:
    """The platform ``ctr import`` keeps without ``--all-platforms``: this host's ``linux/<arch>``."""
    machine = host_platform.machine().lower()
    return "linux/" + {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class ImageStore:
    """A per-cluster image store rooted at *root* (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: the store is shared by the API
        # server's threads and the CLI process.
        return sqlite3.connect(self.root / "images.db", timeout=30)

    # ---------------------------------------------------------------- blobs

    def _blob_path(self, digest: str) -> Path:
        return self.blob_dir / digest.split(":", 1)[1]

    def _put_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        path = self._blob_path(digest)
        if not path.exists():
            write_atomic(path, data)
        return digest

    # ---------------------------------------------------------------- import

    def import_archive(self, path: str | Path, *, all_platforms: bool = True) -> list[str]:
        """Import every image of an OCI archive; return the refs now in the store.

        Like ``ctr images import``: without *all_platforms*, images for other
        platforms than this host's (e.g. ``wasip1/wasm``) are filtered out, and
        if nothing is left that is the error ``ctr: image might be filtered out``.
        """
        images = read_images(path)
        wanted = images if all_platforms else [i for i in images if i.platform == default_platform()]
        if not wanted:
            raise ImageError(
                f"ctr: image might be filtered out (the archive's platform is "
                f"{', '.join(sorted({i.platform for i in images}))}, this node keeps only {default_platform()})",
                f"import with all platforms: labkit image import {path} (it passes --all-platforms), "
                "or k3s ctr -n k8s.io images import --all-platforms <archive>",
            )
        refs: list[str] = []
        for image in wanted:
            if not image.refs:
                raise ImageError(
                    f"image {image.digest} in {path} has no name (no io.containerd.image.name annotation)",
                    "rebuild it with `labkit image build --name N --tag T`, or oci-tar-builder --name/--repo/--tag",
                )
            self._store(image)
            refs.extend(image.refs)
        return refs

    def _store(self, image: ImageInfo) -> None:
        blob_digests = [self._put_blob(data) for data in image.blobs.values()]
        module_digest = self._put_blob(image.module) if image.module is not None else None
        if module_digest:
            blob_digests.append(module_digest)
        rows = [
            (
                ref,
                image.digest,
                image.platform,
                image.size,
                image.layout,
                json.dumps(image.entrypoint),
                json.dumps(image.env),
                json.dumps(image.annotations),
                module_digest,
                json.dumps(sorted(set(blob_digests))),
            )
            for ref in image.refs
        ]
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO images VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    # ---------------------------------------------------------------- queries

    def list(self) -> builtins.list[ImageRecord]:
        """All images, sorted by ref."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT ref, digest, platform, size, layout FROM images ORDER BY ref").fetchall()
        return [ImageRecord(*row) for row in rows]

    def _row(self, ref: str, columns: str) -> tuple[Any, ...] | None:
        try:
            key = normalize_ref(ref)
        except ImageError:
            return None  # not a valid reference, so not in the store
        with closing(self._connect()) as db:
            # *columns* is one of this class's own literals, never user input; the ref is a bound parameter.
            query = f"SELECT {columns} FROM images WHERE ref = ?"  # noqa: S608
            row: tuple[Any, ...] | None = db.execute(query, (key,)).fetchone()
            return row

    def _require(self, ref: str, columns: str) -> tuple[Any, ...]:
        row = self._row(ref, columns)
        if row is None:
            known = ", ".join(r.ref for r in self.list()) or "none"
            raise ImageError(
                f"image {ref!r} is not in the sandbox image store (images: {known})",
                "build and import it: labkit image build ... -o img.tar && labkit image import img.tar",
            )
        return row

    def resolve(self, ref: str) -> ImageRecord | None:
        """The record for *ref*, normalised like containerd (``wasi-demo`` → ``docker.io/library/wasi-demo:latest``)."""
        row = self._row(ref, "ref, digest, platform, size, layout")
        return ImageRecord(*row) if row else None

    def module_bytes(self, ref: str) -> bytes:
        """The wasm module of image *ref*; :class:`ImageError` if absent or not a wasm image."""
        (digest,) = self._require(ref, "module_digest")
        if digest is None:
            raise ImageError(
                f"image {ref!r} holds no wasm module (its entrypoint is not a .wasm file in the image)",
                "use a wasm image: labkit image build --module X.wasm ...",
            )
        return self._blob_path(digest).read_bytes()

    def entrypoint(self, ref: str) -> builtins.list[str]:
        """The image's configured entrypoint."""
        (entry,) = self._require(ref, "entrypoint")
        return [str(part) for part in json.loads(entry)]

    def env(self, ref: str) -> builtins.list[str]:
        """The image's configured environment (``K=V`` strings)."""
        (env,) = self._require(ref, "env")
        return [str(item) for item in json.loads(env)]

    def annotations(self, ref: str) -> dict[str, str]:
        """The image manifest's annotations (e.g. ``module.wasm.image/variant``)."""
        (annotations,) = self._require(ref, "annotations")
        return {str(k): str(v) for k, v in json.loads(annotations).items()}

    def remove(self, ref: str) -> None:
        """Delete image *ref* and the blobs no other image uses."""
        (key,) = self._require(ref, "ref")
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM images WHERE ref = ?", (key,))
            still_used = {d for (blobs,) in db.execute("SELECT blobs FROM images") for d in json.loads(blobs)}
        for path in self.blob_dir.iterdir():
            if path.is_file() and not path.name.startswith(".") and f"sha256:{path.name}" not in still_used:
                path.unlink(missing_ok=True)
