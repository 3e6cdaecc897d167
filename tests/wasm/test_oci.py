"""OCI image archives for wasm: both layouts read by skopeo, reproducible, bad input refused cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ImageError, WasmError
from labkit.wasm.apps import module_path
from labkit.wasm.oci import (
    OCI_LAYER_GZIP,
    WASM_LAYER_MEDIA_TYPE,
    build_image,
    normalize_ref,
    read_image,
    validate_name,
)

needs_skopeo = pytest.mark.skipif(
    shutil.which("skopeo") is None, reason="skopeo not installed (apt-get install skopeo)"
)
DEMO = module_path("wasi-demo")


def skopeo(*args: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout
    parsed: dict[str, Any] = json.loads(out)
    return parsed


@pytest.fixture(params=["runwasi", "compat"])
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_skopeo
def test_skopeo_reads_both_layouts(tmp_path: Path, layout: str) -> None:
    img = build_image(DEMO, "wasi-demo", "v1", layout, tmp_path / "img.tar", env={"GREETING": "hi"})
    info = skopeo("inspect", f"oci-archive:{img.path}")
    assert (info["Os"], info["Architecture"]) == ("wasip1", "wasm")
    assert info["Digest"] == img.digest
    assert info["Env"] == ["GREETING=hi"]
    raw = skopeo("inspect", "--raw", f"oci-archive:{img.path}")
    config = skopeo("inspect", "--config", f"oci-archive:{img.path}")
    assert config["created"] == "1970-01-01T00:00:00Z"
    if layout == "runwasi":
        assert [layer["mediaType"] for layer in raw["layers"]] == [WASM_LAYER_MEDIA_TYPE]
        assert raw["layers"][0]["digest"] == "sha256:" + sha256_file(DEMO)
        assert config["config"]["Entrypoint"] == ["wasi-demo.wasm"]
        assert config["rootfs"]["diff_ids"] == []
        assert len(config["config"]["Labels"]["containerd.runwasi.layers"]) == 64
        assert raw["annotations"]["io.containerd.image.name"] == "docker.io/library/wasi-demo:v1"
        assert raw["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    else:
        assert [layer["mediaType"] for layer in raw["layers"]] == [OCI_LAYER_GZIP]
        assert config["config"]["Entrypoint"] == ["/wasi-demo.wasm"]
        assert raw["annotations"]["module.wasm.image/variant"] == "compat-smart"


@needs_skopeo
def test_skopeo_copy_validates_digests(tmp_path: Path, layout: str) -> None:
    img = build_image(DEMO, "wasi-demo", "latest", layout, tmp_path / "img.tar")
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{img.path}", f"oci:{tmp_path / 'copy'}:latest"], check=True)
    assert json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"][0]["digest"] == img.digest


@needs_skopeo
def test_skopeo_copy_catches_a_tampered_blob(tmp_path: Path) -> None:
    # The validator must be able to fail: corrupt the module blob and skopeo refuses.
    img = build_image(DEMO, "wasi-demo", "latest", "runwasi", tmp_path / "img.tar")
    layout_dir = tmp_path / "layout"
    with tarfile.open(img.path) as tar:
        tar.extractall(layout_dir, filter="data")
    blob = layout_dir / "blobs" / "sha256" / sha256_file(DEMO)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    proc = subprocess.run(
        ["skopeo", "copy", f"oci:{layout_dir}:latest", f"oci:{tmp_path / 'copy'}:latest"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "Digest did not match" in proc.stderr


def test_two_builds_are_byte_identical(tmp_path: Path, layout: str) -> None:
    first = build_image(DEMO, "wasi-demo", "latest", layout, tmp_path / "a.tar")
    second = build_image(DEMO.read_bytes(), "wasi-demo", "latest", layout, tmp_path / "b.tar")
    assert sha256_file(first.path) == sha256_file(second.path)
    assert first.digest == second.digest and first.size == second.path.stat().st_size


def test_source_date_epoch_sets_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = build_image(DEMO, "wasi-demo", "latest", "compat", tmp_path / "a.tar")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    later = build_image(DEMO, "wasi-demo", "latest", "compat", tmp_path / "b.tar")
    assert later.digest != base.digest
    assert read_image(later.path).config["created"] == "2023-11-14T22:13:20Z"


def test_archive_entries_are_sorted_root_owned_mtime_zero(tmp_path: Path) -> None:
    img = build_image(DEMO, "wasi-demo", "latest", "compat", tmp_path / "img.tar")
    with tarfile.open(img.path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
        assert all((m.uid, m.gid, m.uname, m.mtime) == (0, 0, "root", 0) for m in members)
        docker = json.loads(_member(tar, "manifest.json"))
    assert docker[0]["RepoTags"] == ["docker.io/library/wasi-demo:latest"]
    layer = tmp_path / "layer.tgz"
    layer.write_bytes(_blob(img.path, docker[0]["Layers"][0]))
    assert layer.read_bytes()[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
    with tarfile.open(layer) as tar:
        (entry,) = tar.getmembers()
        assert (entry.name, entry.mode, entry.mtime, entry.uid, entry.gid) == ("wasi-demo.wasm", 0o755, 0, 0, 0)
        assert _member(tar, entry) == DEMO.read_bytes()


def _member(tar: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    """A regular file's bytes from an open archive."""
    extracted = tar.extractfile(member)
    assert extracted is not None, f"{member} is not a regular file"
    return extracted.read()


def _blob(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        return _member(tar, name)


def test_read_image_round_trip(tmp_path: Path, layout: str) -> None:
    img = build_image(
        DEMO,
        "ghcr.io/labkit/wasi-demo",
        "1.0",
        layout,
        tmp_path / "img.tar",
        entrypoint=["app.wasm", "echo", "hi"] if layout == "runwasi" else None,
        env={"A": "1"},
        annotations={"labkit.io/lab": "01"},
    )
    info = read_image(img.path)
    assert info.refs == ["ghcr.io/labkit/wasi-demo:1.0"] and info.digest == img.digest
    assert (info.platform, info.layout, info.env) == ("wasip1/wasm", layout, ["A=1"])
    assert info.entrypoint == (["app.wasm", "echo", "hi"] if layout == "runwasi" else ["/wasi-demo.wasm"])
    assert info.annotations["labkit.io/lab"] == "01"
    assert info.module == DEMO.read_bytes()


def test_umoci_stat_works_because_created_is_set(tmp_path: Path) -> None:
    if shutil.which("umoci") is None or shutil.which("skopeo") is None:
        pytest.skip("umoci/skopeo not installed")
    img = build_image(DEMO, "wasi-demo", "latest", "compat", tmp_path / "img.tar")
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{img.path}", f"oci:{tmp_path / 'l'}:latest"], check=True)
    out = subprocess.run(
        ["umoci", "stat", "--image", f"{tmp_path / 'l'}:latest"], check=True, capture_output=True, text=True
    ).stdout
    assert "labkit image build: COPY wasi-demo.wasm /wasi-demo.wasm" in out


# ------------------------------------------------------------------ bad input


def test_not_wasm_is_refused_without_output(tmp_path: Path) -> None:
    with pytest.raises(WasmError, match="ELF"):
        build_image(Path("/bin/sh").resolve(), "x", "latest", "runwasi", tmp_path / "img.tar")
    with pytest.raises(WasmError, match="does not exist"):
        build_image(tmp_path / "missing.wasm", "x", "latest", "runwasi", tmp_path / "img.tar")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name", ["Wasi-Demo", "wasi-demo:latest", "-demo", "demo/", "a//b", "", "wasi demo", "x" * 256]
)
def test_invalid_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageError, match="not a valid image name"):
        build_image(DEMO, name, "latest", "runwasi", tmp_path / "img.tar")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a" * 129, "v1:2", "v/1"])
def test_invalid_tags(tmp_path: Path, tag: str) -> None:
    with pytest.raises(ImageError, match="not a valid image tag"):
        build_image(DEMO, "wasi-demo", tag, "runwasi", tmp_path / "img.tar")


@pytest.mark.parametrize(
    "name", ["wasi-demo", "localhost:5000/a/b", "ghcr.io/second-state/llama-api-server", "a__b.c-d", "[::1]:5000/x"]
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("ref", "normal"),
    [
        ("wasi-demo", "docker.io/library/wasi-demo:latest"),
        ("wasi-demo:v1", "docker.io/library/wasi-demo:v1"),
        ("me/app", "docker.io/me/app:latest"),
        ("docker.io/app:1", "docker.io/library/app:1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:2", "localhost:5000/app:2"),
        ("ghcr.io/a/b@sha256:" + "0" * 64, "ghcr.io/a/b@sha256:" + "0" * 64),
    ],
)
def test_normalize_ref(ref: str, normal: str) -> None:
    assert normalize_ref(ref) == normal


def test_unknown_layout_and_bad_output_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unknown image layout"):
        build_image(DEMO, "x", "latest", "docker", tmp_path / "img.tar")
    with pytest.raises(ImageError, match="does not exist"):
        build_image(DEMO, "x", "latest", "compat", tmp_path / "no" / "dir" / "img.tar")
    with pytest.raises(ImageError, match="is a directory"):
        build_image(DEMO, "x", "latest", "compat", tmp_path)


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(read-only dir, 16 KiB dir): real filesystems that refuse or run out mid-write (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting tmpfs needs root")
    ro, small = tmp_path / "ro", tmp_path / "small"
    ro.mkdir()
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], check=True)
    try:
        yield ro, small
    finally:
        subprocess.run(["umount", str(ro)], check=False)
        subprocess.run(["umount", str(small)], check=False)


def test_unwritable_and_full_outputs_leave_nothing(tiny_mount: tuple[Path, Path]) -> None:
    ro, small = tiny_mount
    with pytest.raises(ImageError, match="cannot write") as err:
        build_image(DEMO, "wasi-demo", "latest", "runwasi", ro / "img.tar")
    assert "writable directory" in str(err.value)
    with pytest.raises(OSError, match="No space left on device"):  # ENOSPC: the 40 KB archive does not fit in 16 KiB
        build_image(DEMO, "wasi-demo", "latest", "runwasi", small / "img.tar")
    assert list(small.iterdir()) == [], "no partial archive may be left behind"


def test_read_image_rejects_corrupt_and_foreign_archives(tmp_path: Path) -> None:
    img = build_image(DEMO, "wasi-demo", "latest", "runwasi", tmp_path / "img.tar")
    data = bytearray(img.path.read_bytes())
    module_at = bytes(data).find(DEMO.read_bytes()[:64])
    data[module_at + 100] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt"):
        read_image(bad)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageError, match="not an OCI image archive: it is not even a tar file"):
        read_image(text)
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "missing.tar")
