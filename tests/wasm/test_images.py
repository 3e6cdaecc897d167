"""The sandbox image store: import like ctr, resolve like containerd's CRI, blobs by digest in SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from labkit.errors import ImageError
from labkit.imagestore import ImageRecord, ImageStore, default_platform
from labkit.wasm.apps import module_path
from labkit.wasm.oci import build_image, read_image

DEMO = module_path("wasi-demo")


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, Path]:
    return {
        "runwasi": build_image(DEMO, "wasi-demo", "latest", "runwasi", tmp_path / "runwasi.tar").path,
        "compat": build_image(
            DEMO, "ghcr.io/labkit/wasi-demo", "v1", "compat", tmp_path / "compat.tar", env={"X": "1"}
        ).path,
    }


def test_import_list_resolve(tmp_path: Path, archives: dict[str, Path]) -> None:
    store = ImageStore(tmp_path / "store")
    assert store.import_archive(archives["runwasi"]) == ["docker.io/library/wasi-demo:latest"]
    assert store.import_archive(archives["compat"]) == ["ghcr.io/labkit/wasi-demo:v1"]
    listed = store.list()
    assert [(r.ref, r.platform, r.layout) for r in listed] == [
        ("docker.io/library/wasi-demo:latest", "wasip1/wasm", "runwasi"),
        ("ghcr.io/labkit/wasi-demo:v1", "wasip1/wasm", "compat"),
    ]
    runwasi = read_image(archives["runwasi"])
    assert listed[0] == ImageRecord(
        "docker.io/library/wasi-demo:latest", runwasi.digest, "wasip1/wasm", runwasi.size, "runwasi"
    )
    for ref in ("wasi-demo", "wasi-demo:latest", "docker.io/library/wasi-demo", "library/wasi-demo:latest"):
        assert store.resolve(ref) == listed[0]
    assert store.resolve("wasi-demo:v2") is None
    assert store.resolve("Not A Ref") is None


def test_module_entrypoint_env_annotations(tmp_path: Path, archives: dict[str, Path]) -> None:
    store = ImageStore(tmp_path / "store")
    store.import_archive(archives["runwasi"])
    store.import_archive(archives["compat"])
    assert store.module_bytes("wasi-demo") == DEMO.read_bytes()
    assert store.module_bytes("ghcr.io/labkit/wasi-demo:v1") == DEMO.read_bytes()
    assert store.entrypoint("wasi-demo") == ["wasi-demo.wasm"]
    assert store.entrypoint("ghcr.io/labkit/wasi-demo:v1") == ["/wasi-demo.wasm"]
    assert store.env("ghcr.io/labkit/wasi-demo:v1") == ["X=1"]
    assert store.annotations("ghcr.io/labkit/wasi-demo:v1")["module.wasm.image/variant"] == "compat-smart"


def test_without_all_platforms_wasm_images_are_filtered_out(tmp_path: Path, archives: dict[str, Path]) -> None:
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImageError) as err:
        store.import_archive(archives["compat"], all_platforms=False)
    assert str(err.value).startswith("ctr: image might be filtered out")
    assert "--all-platforms" in str(err.value) and default_platform() in str(err.value)
    assert store.list() == []


def test_state_persists_in_sqlite_and_blobs_by_digest(tmp_path: Path, archives: dict[str, Path]) -> None:
    ImageStore(tmp_path / "store").import_archive(archives["runwasi"])
    reopened = ImageStore(tmp_path / "store")
    assert [r.ref for r in reopened.list()] == ["docker.io/library/wasi-demo:latest"]
    with sqlite3.connect(tmp_path / "store" / "images.db") as db:
        (digest,) = db.execute("SELECT digest FROM images").fetchone()
    assert (tmp_path / "store" / "blobs" / "sha256" / digest.split(":")[1]).is_file()


def test_reimport_replaces_the_tag(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    store.import_archive(build_image(DEMO, "app", "latest", "runwasi", tmp_path / "a.tar").path)
    newer = build_image(DEMO, "app", "latest", "compat", tmp_path / "b.tar")
    store.import_archive(newer.path)
    assert [(r.ref, r.digest, r.layout) for r in store.list()] == [
        ("docker.io/library/app:latest", newer.digest, "compat")
    ]


def test_remove_drops_unshared_blobs_only(tmp_path: Path, archives: dict[str, Path]) -> None:
    store = ImageStore(tmp_path / "store")
    store.import_archive(archives["runwasi"])
    store.import_archive(archives["compat"])
    blobs = store.blob_dir
    store.remove("wasi-demo")
    assert [r.ref for r in store.list()] == ["ghcr.io/labkit/wasi-demo:v1"]
    # The module blob is shared (same wasm bytes) and must survive; the runwasi manifest must not.
    assert store.module_bytes("ghcr.io/labkit/wasi-demo:v1") == DEMO.read_bytes()
    assert not (blobs / read_image(archives["runwasi"]).digest.split(":")[1]).exists()
    store.remove("ghcr.io/labkit/wasi-demo:v1")
    assert list(blobs.iterdir()) == []


def test_unknown_image_errors_name_the_fix(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    for call in (store.module_bytes, store.entrypoint, store.remove):
        with pytest.raises(ImageError, match="not in the sandbox image store") as err:
            call("nope")
        assert "labkit image import" in str(err.value)
