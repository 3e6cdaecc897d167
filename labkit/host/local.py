"""LocalHost: the host door of a real k3s machine, driven through ``k3s ctr``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import ImageError, PrerequisiteMissing
from ..sandbox.images import ImageRecord
from .base import Host

#: containerd namespace the kubelet (CRI) uses; images elsewhere are invisible to pods.
K8S_NAMESPACE = "k8s.io"
_UNPACKED = re.compile(r"^unpacking (\S+) \((sha256:[0-9a-f]{64})\)")
_LS_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(sha256:[0-9a-f]{64})\s+([\d.]+)\s+([KMGT]?i?B)\s+(\S+)")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
#: Known ``ctr import`` failures → the fix to print.
_IMPORT_FIXES = {
    "image might be filtered out": "wasm images are platform wasip1/wasm: import with --all-platforms (labkit does; check your command)",
    "mismatched image rootfs and manifest layers": (
        "this containerd is older than 1.6.25 / 1.7.7 and cannot unpack runwasi wasm layers: "
        "upgrade k3s/containerd, or build the image with --layout compat"
    ),
}


class LocalHost(Host):
    """This machine, a k3s node: uses ``k3s ctr -n k8s.io`` (as root, or through ``sudo -n``)."""

    def __init__(self, k3s: str = "k3s") -> None:
        self.k3s = k3s

    def _command(self, *ctr_args: str) -> list[str]:
        """``k3s ctr -n k8s.io <args>``, prefixed with ``sudo -n`` when not root."""
        exe = shutil.which(self.k3s)
        if exe is None:
            raise PrerequisiteMissing(
                f"{self.k3s} is not on PATH, so this machine is not a k3s node labkit can act on",
                "install k3s (curl -sfL https://get.k3s.io | sh -), or use the sandbox backend (LABKIT_BACKEND=sandbox)",
            )
        cmd = [exe, "ctr", "-n", K8S_NAMESPACE, *ctr_args]
        if os.geteuid() == 0:
            return cmd
        sudo = shutil.which("sudo")
        # -n: never prompt for a password inside a notebook; fail instead.
        if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0:
            return [sudo, "-n", *cmd]
        raise PrerequisiteMissing(
            "k3s ctr needs root, and sudo cannot run without a password here",
            "run labkit as root, or allow passwordless sudo for k3s (e.g. a sudoers rule for /usr/local/bin/k3s)",
        )

    def _run(self, cmd: list[str], what: str) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip()
            fix = next((f for sig, f in _IMPORT_FIXES.items() if sig in err), "read the ctr error above; check that k3s is running")
            raise ImageError(f"{what} failed: {err or f'exit status {proc.returncode}'}", fix)
        return proc.stdout

    def import_image(self, archive: Path) -> list[str]:
        archive = Path(archive)
        if not archive.is_file():
            raise ImageError(f"image archive {archive} does not exist", "build one first: labkit image build ... -o <archive>")
        out = self._run(self._command("images", "import", "--all-platforms", str(archive.resolve())), f"importing {archive}")
        return [m.group(1) for line in out.splitlines() if (m := _UNPACKED.match(line.strip()))]

    def list_images(self) -> list[ImageRecord]:
        out = self._run(self._command("images", "ls"), "listing images")
        return parse_ctr_images_ls(out)


def parse_ctr_images_ls(text: str) -> list[ImageRecord]:
    """Rows of ``ctr images ls`` (REF TYPE DIGEST SIZE PLATFORMS LABELS) as records.

    >>> parse_ctr_images_ls("REF TYPE DIGEST SIZE PLATFORMS LABELS\\n"
    ...     "docker.io/library/x:latest application/vnd.oci.image.manifest.v1+json "
    ...     "sha256:" + "0" * 64 + " 27.1 KiB wasip1/wasm -")[0].size
    27750
    """
    records = []
    for line in text.splitlines()[1:]:
        m = _LS_ROW.match(line.strip())
        if m:
            ref, _type, digest, amount, unit, platforms = m.groups()
            size = int(float(amount) * _UNITS.get(unit, 1))
            records.append(ImageRecord(ref=ref, digest=digest, platform=platforms, size=size, layout=""))
    return records
