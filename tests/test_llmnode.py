"""The LLM labs' node rows (labkit.llmnode): the profile's model file and image on a k3s node.

The node is a temporary root laid out like the CI runner's (``/home/runner/models``); ``k3s`` is a stand-in
executable on PATH that prints what ``k3s ctr -n k8s.io images ls`` prints (columns and size format of
containerd's ``ctr images ls``), so the real Host door runs it through ``sh`` and parses its real text.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from labkit import preflight
from labkit.errors import PrerequisiteMissing
from labkit.host import LocalHost
from labkit.llmnode import (
    GGUF_MAGIC,
    SEED_REF,
    check_llm_image,
    check_llm_model,
    image_row,
    llm_checks,
    model_path,
)
from labkit.profiles import profile_for

K3S = profile_for("kubeconfig")
DIGEST = "sha256:" + "5f" * 32
HEADER = (
    "REF                                                TYPE                                    DIGEST"
    + " " * 66
    + "SIZE      PLATFORMS                   LABELS\n"
)
COREDNS = (
    "docker.io/rancher/mirrored-coredns-coredns:1.12.0  application/vnd.oci.image.index.v1+json "
    f"sha256:{'82' * 32} 19.9 MiB  linux/amd64,linux/arm64      io.cri-containerd.image=managed\n"
    f"sha256:{'1c' * 32} application/vnd.oci.image.manifest.v1+json sha256:{'1c' * 32} 19.9 MiB  linux/amd64 "
    "io.cri-containerd.image=managed\n"
)
LLAMA = (
    "ghcr.io/second-state/llama-api-server:latest       application/vnd.oci.image.index.v1+json "
    f"{DIGEST} 9.6 MiB   wasip1/wasm                 io.cri-containerd.image=managed\n"
)


def stand_in_k3s(bin_dir: Path, stdout: str, exit_code: int = 0) -> Path:
    """A ``k3s`` that answers only ``ctr -n k8s.io images ls`` (the node's CRI namespace), like k3s's ctr."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "out.txt").write_text(stdout)
    path = bin_dir / "k3s"
    path.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "if sys.argv[1:] != ['ctr', '-n', 'k8s.io', 'images', 'ls']:\n"
        "    sys.exit(f'stand-in k3s: unexpected {sys.argv[1:]}')\n"
        f"sys.stdout.write(open({str(bin_dir / 'out.txt')!r}).read())\n"
        f"sys.exit({exit_code})\n"
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # LocalHost runs k3s ctr as root (or through sudo -n)
    root = tmp_path / "node"
    (root / "home/runner").mkdir(parents=True)
    return root


def put_model(root: Path, data: bytes) -> Path:
    path = root / model_path(K3S).lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_missing_model_fails_with_the_seed_download(node: Path) -> None:
    check = check_llm_model(LocalHost(root=node), K3S)
    assert check.failed and "/home/runner/models/Llama-3.2-1B-Instruct-Q5_K_M.gguf is not a file" in check.detail
    assert K3S.llm.model_url and K3S.llm.model_url in check.fix and "curl -fL" in check.fix
    assert "second-state/Llama-3.2-1B-Instruct-GGUF" in check.fix


def test_a_gguf_file_passes(node: Path) -> None:
    put_model(node, GGUF_MAGIC + b"\x03\x00\x00\x00" + bytes(64))
    check = check_llm_model(LocalHost(root=node), K3S)
    assert (check.status, check.detail) == ("ok", model_path(K3S))


def test_a_model_reached_through_a_symlink_names_both(node: Path) -> None:
    target = node / "data/llama.gguf"
    target.parent.mkdir()
    target.write_bytes(GGUF_MAGIC + bytes(8))
    link = node / model_path(K3S).lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    check = check_llm_model(LocalHost(root=node), K3S)
    assert check.status == "ok" and check.detail.endswith("-> /data/llama.gguf")


@pytest.mark.parametrize(
    "data",
    [
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 911503072\n",
        b"<!DOCTYPE html><html>Entry not found</html>",
        b"",
    ],
    ids=["lfs-pointer", "error-page", "empty"],
)
def test_a_file_that_is_not_gguf_fails(node: Path, data: bytes) -> None:
    put_model(node, data)
    check = check_llm_model(LocalHost(root=node), K3S)
    assert check.failed and "is not a GGUF file" in check.detail and "curl -fL" in check.fix


def test_the_imported_seed_image_is_found(node: Path, tmp_path: Path) -> None:
    k3s = stand_in_k3s(tmp_path / "bin", HEADER + COREDNS + LLAMA)
    check = check_llm_image(LocalHost(str(k3s), root=node), K3S)
    assert check.status == "ok"
    assert check.detail == f"ghcr.io/second-state/llama-api-server:latest (wasip1/wasm, {DIGEST[:19]})"


def test_an_image_missing_from_the_k8s_namespace_fails_with_the_seed_build(node: Path, tmp_path: Path) -> None:
    k3s = stand_in_k3s(tmp_path / "bin", HEADER + COREDNS)
    check = check_llm_image(LocalHost(str(k3s), root=node), K3S)
    assert check.failed and "ErrImageNeverPull" in check.detail and "(namespace k8s.io, 2 images)" in check.detail
    for step in (
        "second-state/runwasi-wasmedge-demo",
        f"git checkout {SEED_REF[:8]}",
        "git -C apps/llamaedge apply ../../disable_wasi_logging.patch",
        'OPT_PROFILE=release RUSTFLAGS="--cfg wasmedge --cfg tokio_unstable" make apps/llamaedge/llama-api-server/',
        "sudo k3s ctr -n k8s.io images import --all-platforms",
    ):
        assert step in check.fix


def test_an_image_store_that_cannot_be_listed_is_a_warning(node: Path, tmp_path: Path) -> None:
    k3s = stand_in_k3s(tmp_path / "bin", "", exit_code=1)
    check = check_llm_image(LocalHost(str(k3s), root=node), K3S)
    assert (check.status, check.required) == ("warn", False) and "cannot list the node's images" in check.detail


def test_image_rows_normalise_the_wanted_name() -> None:
    assert image_row("ghcr.io/second-state/llama-api-server", PrerequisiteMissing("no k3s", "install it")).fix == (
        "install it"
    )
    assert image_row("ghcr.io/second-state/llama-api-server", []).failed


def test_the_sandbox_profile_builds_its_own_image(node: Path) -> None:
    sandbox = profile_for("sandbox")
    assert sandbox.llm.image is None and sandbox.llm.model_url is None
    assert check_llm_image(LocalHost(root=node), sandbox).status == "skip"


def test_lab_checks_rows_skip_on_the_sandbox_and_off_a_k3s_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert [(c.name, c.status) for c in preflight.check_llm_server("sandbox")] == [
        ("llm model", "skip"),
        ("llm image", "skip"),
    ]
    monkeypatch.setattr(preflight, "K3S_CONTAINERD_CONFIG", tmp_path / "absent/config.toml")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert {c.status for c in preflight.check_llm_server("kubeconfig")} == {"skip"}


def test_both_rows_on_a_node(node: Path, tmp_path: Path) -> None:
    put_model(node, GGUF_MAGIC + bytes(8))
    k3s = stand_in_k3s(tmp_path / "bin", HEADER + LLAMA)
    report = preflight.DoctorReport("kubeconfig", llm_checks(LocalHost(str(k3s), root=node), K3S))
    assert report.require().ok and [c.name for c in report.checks] == ["llm model", "llm image"]
