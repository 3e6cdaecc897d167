"""Host doors: LocalHost's k3s ctr commands (fake k3s recording argv, and a real containerd), SandboxHost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit.errors import ImageError, PrerequisiteMissing
from labkit.host import LocalHost, SandboxHost, host_for_backend
from labkit.imagestore import ImageStore
from labkit.wasm.apps import module_path
from labkit.wasm.oci import build_image, read_image

DEMO = module_path("wasi-demo")


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    """An executable *name* in *bin_dir* that appends its argv (JSON) to argv.log, then runs *body*."""
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(
        "#!/bin/sh\n"
        f"{shutil.which('python3')} -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "
        f'"$0" "$@" >> {bin_dir}/argv.log\n'
        f"{body}\n"
    )
    tool.chmod(0o755)
    return tool


def logged(bin_dir: Path) -> list[list[str]]:
    return [json.loads(line) for line in (bin_dir / "argv.log").read_text().splitlines()]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return build_image(DEMO, "wasi-demo", "latest", "compat", tmp_path / "img.tar").path


def test_import_runs_k3s_ctr_with_all_platforms(tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "k3s", "echo 'unpacking docker.io/library/wasi-demo:latest (sha256:" + "a" * 64 + ")...done'")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert LocalHost().import_image(archive) == ["docker.io/library/wasi-demo:latest"]
    assert logged(bin_dir) == [
        [str(bin_dir / "k3s"), "ctr", "-n", "k8s.io", "images", "import", "--all-platforms", str(archive)]
    ]


def test_not_root_uses_passwordless_sudo(tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    k3s = fake_tool(bin_dir, "k3s", "true")
    fake_tool(bin_dir, "sudo", 'shift; exec "$@"')  # a passwordless sudo: drop -n, run the rest
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # we are root here; pretend we are not
    LocalHost().import_image(archive)
    sudo = str(bin_dir / "sudo")
    assert logged(bin_dir)[0] == [sudo, "-n", "true"]
    assert logged(bin_dir)[1] == [
        sudo,
        "-n",
        str(k3s),
        "ctr",
        "-n",
        "k8s.io",
        "images",
        "import",
        "--all-platforms",
        str(archive),
    ]


def test_not_root_without_sudo_is_a_prerequisite_error(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "k3s", "true")
    fake_tool(bin_dir, "sudo", "echo 'sudo: a password is required' >&2; exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteMissing, match="needs root") as err:
        LocalHost().import_image(archive)
    assert "run labkit as root" in str(err.value)
    assert [argv[0] for argv in logged(bin_dir)] == [str(bin_dir / "sudo")], "k3s must not run without privileges"


def test_no_k3s_is_a_prerequisite_error(tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteMissing, match="not a k3s node") as err:
        LocalHost().import_image(archive)
    assert "sandbox" in str(err.value)


def test_ctr_failure_carries_its_message_and_fix(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "k3s", "echo 'ctr: mismatched image rootfs and manifest layers' >&2; exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ImageError, match="mismatched image rootfs") as err:
        LocalHost().import_image(archive)
    assert "--layout compat" in str(err.value)


def test_sandbox_host_imports_into_its_store(tmp_path: Path, archive: Path) -> None:
    host = SandboxHost(tmp_path / "node", ImageStore(tmp_path / "images"))
    assert host.import_image(archive) == ["docker.io/library/wasi-demo:latest"]
    assert [r.ref for r in host.list_images()] == ["docker.io/library/wasi-demo:latest"]


def test_host_for_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    host = host_for_backend("sandbox")
    assert isinstance(host, SandboxHost) and host.image_store.root == tmp_path / "sandbox" / "images"
    assert isinstance(host_for_backend("kubeconfig"), LocalHost)


# ------------------------------------------------------------------ real containerd (root only)


def ctr(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(sock), "-n", "k8s.io", *args], capture_output=True, text=True, check=False
    )


def containerd_version(sock: Path) -> tuple[int, ...]:
    out = subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True, text=True, check=True).stdout
    server = out.split("Server:", 1)[1]
    text = server.split("Version:", 1)[1].split()[0].lstrip("v")
    return tuple(int(p) for p in text.split("~")[0].split("-")[0].split(".")[:3])


def test_real_containerd_imports_the_compat_image(containerd: Path, archive: Path) -> None:
    refused = ctr(containerd, "images", "import", str(archive))
    assert refused.returncode != 0 and "image might be filtered out" in refused.stderr
    done = ctr(containerd, "images", "import", "--all-platforms", str(archive))
    assert done.returncode == 0, done.stderr
    listing = ctr(containerd, "images", "ls").stdout
    row = next(line for line in listing.splitlines() if line.startswith("docker.io/library/wasi-demo:latest"))
    assert "wasip1/wasm" in row


def test_runwasi_layout_on_this_containerd(containerd: Path, tmp_path: Path) -> None:
    # runwasi wasm layers unpack only on containerd >= 1.6.25 / 1.7.7; Debian bookworm has 1.6.20.
    img = build_image(DEMO, "wasi-demo-oci", "latest", "runwasi", tmp_path / "oci.tar")
    result = ctr(containerd, "images", "import", "--all-platforms", str(img.path))
    version = containerd_version(containerd)
    if version < (1, 6, 25) or (1, 7, 0) <= version < (1, 7, 7):
        assert result.returncode != 0 and "mismatched image rootfs and manifest layers" in result.stderr
        kept = ctr(containerd, "images", "import", "--all-platforms", "--no-unpack", str(img.path))
        assert kept.returncode == 0, "without unpacking, the content itself is accepted"
    else:
        assert result.returncode == 0, result.stderr


def test_local_host_against_real_containerd(containerd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A k3s stand-in that forwards `k3s ctr ...` to the real ctr of our private containerd.
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "k3s", f'shift; exec ctr --address {containerd} "$@"')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    img = build_image(DEMO, "ghcr.io/labkit/host-test", "v2", "compat", tmp_path / "img.tar")
    host = LocalHost()
    assert host.import_image(img.path) == ["ghcr.io/labkit/host-test:v2"]
    record = next(r for r in host.list_images() if r.ref == "ghcr.io/labkit/host-test:v2")
    assert (record.digest, record.platform) == (img.digest, "wasip1/wasm")
    # ctr prints the content size rounded to 0.1 KiB ("12.1 KiB"): the blobs' total, within rounding.
    assert abs(record.size - read_image(img.path).size) <= 52
