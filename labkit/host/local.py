"""LocalHost: the host door of a real k3s machine (``k3s ctr``/``crictl``, ``systemctl``, its files)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labkit.containerd import RuntimeInfo, RuntimeSpec
from labkit.errors import ImageError, PrerequisiteMissing
from labkit.host import commands
from labkit.host.base import CRUN_FIX, Host
from labkit.host.changes import HostChangeError
from labkit.imagestore import ImageRecord

#: Where the k3s installer puts the binary (not always on a notebook's PATH).
K3S_INSTALL_PATH = "/usr/local/bin/k3s"
CONTAINERD_LOG = "/var/lib/rancher/k3s/agent/containerd/containerd.log"
#: crun release that can load WasmEdge plugins (crun PR #1432).
WASI_NN_CRUN = (1, 15)
#: containerd namespace the kubelet (CRI) uses; images elsewhere are invisible to pods.
K8S_NAMESPACE = "k8s.io"
_UNPACKED = re.compile(r"^unpacking (\S+) \((sha256:[0-9a-f]{64})\)")
_LS_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(sha256:[0-9a-f]{64})\s+([\d.]+)\s+([KMGT]?i?B)\s+(\S+)")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
#: Known ``ctr import`` failures → the fix to print.
_IMPORT_FIXES = {
    "image might be filtered out": (
        "wasm images are platform wasip1/wasm: import with --all-platforms (labkit does; check your command)"
    ),
    "mismatched image rootfs and manifest layers": (
        "this containerd is older than 1.6.25 / 1.7.7 and cannot unpack runwasi wasm layers: "
        "upgrade k3s/containerd, or build the image with --layout compat"
    ),
}


class LocalHost(Host):
    """This machine, a k3s node: ``k3s ctr``/``crictl``, ``systemctl`` and its files, as root or with ``sudo -n``.

    *root* is where the node's filesystem starts (``/``; tests pass a temporary
    directory laid out like k3s). *service* is the k3s systemd unit (runwasi's
    CI installs it as ``k3s-runwasi``).
    """

    def __init__(
        self, k3s: str = "k3s", *, root: Path = Path("/"), service: str = "k3s", restart_timeout: float = 120.0
    ) -> None:
        self.k3s = k3s
        self.node_root = Path(root)
        self.service = service
        self.restart_timeout = restart_timeout
        self._live_error = ""

    def _k3s_path(self) -> str:
        exe = shutil.which(self.k3s) or (K3S_INSTALL_PATH if Path(K3S_INSTALL_PATH).is_file() else None)
        if exe is None:
            raise PrerequisiteMissing(
                f"{self.k3s} is not on PATH, so this machine is not a k3s node labkit can act on",
                "install k3s (curl -sfL https://get.k3s.io | sh -), "
                "or use the sandbox backend (LABKIT_BACKEND=sandbox)",
            )
        return exe

    def _as_root(self, what: str) -> list[str]:
        """The prefix that runs a command as root: nothing when root, ``sudo -n`` if it works without a password."""
        if os.geteuid() == 0:
            return []
        sudo = shutil.which("sudo")
        # -n: never prompt for a password inside a notebook; fail instead.
        if sudo and commands.run([sudo, "-n", "true"]).ok:
            return [sudo, "-n"]
        raise PrerequisiteMissing(
            f"{what} needs root, and sudo cannot run without a password here",
            "run labkit as root (the notebook's host steps need it), or give passwordless sudo "
            "(a sudoers rule for k3s, systemctl and this Python)",
        )

    def _command(self, *ctr_args: str) -> list[str]:
        """``k3s ctr -n k8s.io <args>``, prefixed with ``sudo -n`` when not root."""
        exe = self._k3s_path()
        return [*self._as_root("k3s ctr"), exe, "ctr", "-n", K8S_NAMESPACE, *ctr_args]

    def require_privileges(self) -> None:
        self._k3s_path()
        self._as_root("changing the k3s node's files and restarting k3s")

    def _execute(self, op: str, payload: dict[str, Any]) -> Any:
        prefix = self._as_root(("reading" if op in ("read", "backups") else "changing") + " the k3s node's files")
        if not prefix:
            return super()._execute(op, payload)
        # not root: the same module does the work, as root, in a child process
        proc = commands.run([*prefix, sys.executable, "-m", "labkit.host.changes", op], stdin=json.dumps(payload))
        try:
            answer = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise HostChangeError(
                f"the privileged helper for {op} failed: {proc.message}",
                "check that sudo may run this Python (sudo -n python3 -V)",
            ) from None
        if "error" in answer:
            raise HostChangeError(answer["error"]["problem"], answer["error"]["fix"])
        return answer["result"]

    def _systemctl(self, *args: str, root: bool = False) -> commands.CommandResult:
        exe = shutil.which("systemctl")
        if exe is None:
            raise PrerequisiteMissing(
                "systemctl is not on PATH: labkit restarts k3s through systemd",
                "run k3s as the systemd service its installer creates",
            )
        prefix = self._as_root("restarting k3s") if root else []
        return commands.run([*prefix, exe, *args])

    def restart_k3s(self) -> str:
        """``systemctl restart <service>``, then wait until systemd reports it active; returns that state."""
        proc = self._systemctl("restart", self.service, root=True)
        if not proc.ok:
            raise HostChangeError(
                f"systemctl restart {self.service} failed: {proc.message}",
                f"read journalctl -u {self.service}",
            )
        deadline = time.monotonic() + self.restart_timeout
        state = ""
        while time.monotonic() < deadline:
            # k3s is a Type=notify unit: "active" means it told systemd it is up
            state = self._systemctl("is-active", self.service).stdout.strip()
            if state == "active":
                return state
            if state == "failed":
                break
            time.sleep(0.5)
        raise HostChangeError(
            f"k3s ({self.service}) is {state or 'not active'} after the restart",
            f"read journalctl -u {self.service} and {CONTAINERD_LOG}",
        )

    def node_name(self) -> str | None:
        """k3s's ``node-name`` from its config file, else the host name (k3s's default)."""
        path = self.containerd_paths().k3s_config
        text = self.read_node_files([path])[path]
        configured = (yaml.safe_load(text) or {}).get("node-name") if text else None
        return str(configured) if configured else socket.gethostname().lower()

    def containerd_version(self) -> int:
        """3 for containerd 2.x, 2 for 1.7: from ``k3s ctr version`` (the server), else from ``k3s --version``."""
        exe = self._k3s_path()
        if self._can_be_root():
            proc = commands.run([*self._as_root("k3s ctr"), exe, "ctr", "version"])
            version = parse_ctr_version(proc.stdout) if proc.ok else None
            if version:
                return config_version_for_containerd(version)
        return config_version_for_k3s(commands.run([exe, "--version"]).stdout)

    def _can_be_root(self) -> bool:
        try:
            self._as_root("k3s ctr")
            return True
        except PrerequisiteMissing:
            return False

    def live_runtime_info(self) -> tuple[str, RuntimeInfo] | None:
        """What the running containerd reports through ``k3s crictl info``; ``None`` if it cannot be asked."""
        self._live_error = ""
        try:
            cmd = [*self._as_root("k3s crictl"), self._k3s_path(), "crictl", "info"]
        except PrerequisiteMissing as err:
            self._live_error = err.problem
            return None
        proc = commands.run(cmd)
        if not proc.ok:
            self._live_error = f"k3s crictl info failed: {proc.message}"
            return None
        return "k3s crictl info", parse_crictl_info(proc.stdout)

    def _no_live_note(self) -> str:
        return f"no live view ({self._live_error}); the rendered config.toml may differ from what runs"

    def wasmedge_version_text(self, binaries: tuple[str, ...] = ()) -> str | None:
        """``wasmedge -v`` of the first WasmEdge CLI found: on PATH, then *binaries* (``~/.wasmedge/bin/wasmedge``
        of the install the profile names: a root shell's PATH does not have it)."""
        candidates = [shutil.which("wasmedge"), *(str(self._local(b)) for b in binaries)]
        for exe in candidates:
            if exe and Path(exe).is_file():
                proc = commands.run([exe, "-v"], timeout=30)
                if proc.ok:
                    return proc.stdout + proc.stderr
        return None

    def check_crun(self, binary: str = "crun", wasm: bool = True, wasi_nn: bool = False) -> CrunInfo:
        """Run ``<binary> --version``; require ``+WASM:wasmedge`` (*wasm*) and crun >= 1.15 (*wasi_nn*)."""
        exe = shutil.which(binary)
        if exe is None:
            raise PrerequisiteMissing(f"{binary} is not installed (not on PATH)", CRUN_FIX)
        info = parse_crun_version(exe, commands.run([exe, "--version"]).stdout)
        if wasm and "wasmedge" not in info.wasm_handlers:
            raise PrerequisiteMissing(
                f"{exe} (crun {info.version_text}) has no WasmEdge handler: "
                f"its features are {' '.join(info.features) or 'none'}, without +WASM:wasmedge",
                CRUN_FIX,
            )
        if wasi_nn and info.version < WASI_NN_CRUN:
            raise PrerequisiteMissing(
                f"{exe} is crun {info.version_text}; loading WasmEdge plugins (WASI-NN) needs crun >= 1.15",
                f"build crun 1.15 or newer; {CRUN_FIX}",
            )
        return info

    def _run(self, cmd: list[str], what: str) -> str:
        proc = commands.run(cmd)
        if not proc.ok:
            fix = next(
                (f for sig, f in _IMPORT_FIXES.items() if sig in proc.message),
                "read the ctr error above; check that k3s is running",
            )
            raise ImageError(f"{what} failed: {proc.message}", fix)
        return proc.stdout

    def import_image(self, archive: Path) -> list[str]:
        archive = Path(archive)
        if not archive.is_file():
            raise ImageError(
                f"image archive {archive} does not exist", "build one first: labkit image build ... -o <archive>"
            )
        out = self._run(
            self._command("images", "import", "--all-platforms", str(archive.resolve())), f"importing {archive}"
        )
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


@dataclass(frozen=True)
class CrunInfo:
    """What ``crun --version`` says: version and build features (``+WASM:wasmedge`` = WasmEdge handler)."""

    path: str
    version: tuple[int, ...]
    features: tuple[str, ...]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def wasm_handlers(self) -> list[str]:
        return [f.split(":", 1)[1] for f in self.features if f.startswith("+WASM:")]


def parse_crun_version(path: str, text: str) -> CrunInfo:
    """Parse ``crun --version``.

    >>> text = "crun version 1.15\\ncommit: abc\\n+SYSTEMD +SECCOMP +WASM:wasmedge +YAJL\\n"
    >>> info = parse_crun_version("/usr/local/bin/crun", text)
    >>> info.version, info.wasm_handlers
    ((1, 15), ['wasmedge'])
    """
    found = re.search(r"crun version (\d+(?:\.\d+)*)", text)
    if not found:
        raise PrerequisiteMissing(f"{path} --version did not print a crun version: {text.strip()[:200]!r}", CRUN_FIX)
    features = tuple(word for line in text.splitlines() if line.startswith("+") for word in line.split())
    return CrunInfo(path, tuple(int(x) for x in found.group(1).split(".")), features)


def parse_ctr_version(text: str) -> str | None:
    """The containerd server version from ``ctr version`` (the client's if no server section).

    >>> parse_ctr_version("Client:\\n  Version:  v2.0.2-k3s2\\n\\nServer:\\n  Version:  v2.0.4-k3s2\\n  UUID: x\\n")
    'v2.0.4-k3s2'
    """
    server = text.split("Server:", 1)[1] if "Server:" in text else text
    found = re.search(r"Version:\s+(\S+)", server)
    return found.group(1) if found else None


def config_version_for_containerd(version: str) -> int:
    """containerd 2.x prefers config version 3; 1.x uses 2.

    >>> config_version_for_containerd("v2.0.2-k3s2"), config_version_for_containerd("v1.7.23-k3s2")
    (3, 2)
    """
    found = re.match(r"v?(\d+)\.", version)
    if not found:
        raise PrerequisiteMissing(f"cannot read a containerd version from {version!r}", "check `k3s ctr version`")
    return 3 if int(found.group(1)) >= 2 else 2


def config_version_for_k3s(version_text: str) -> int:
    """The config version of the containerd a k3s release ships (containerd 2 since v1.31.6 / v1.32.2).

    >>> config_version_for_k3s("k3s version v1.32.2+k3s1 (381620ef)")
    3
    >>> config_version_for_k3s("k3s version v1.31.5+k3s1")
    2
    """
    found = re.search(r"v1\.(\d+)\.(\d+)", version_text)
    if not found:
        raise PrerequisiteMissing(f"cannot read the k3s version from {version_text.strip()!r}", "check `k3s --version`")
    minor, patch = int(found.group(1)), int(found.group(2))
    first_patch_with_containerd2 = {31: 6, 32: 2}
    if minor >= 33 or patch >= first_patch_with_containerd2.get(minor, 10**6):
        return 3
    return 2


def parse_crictl_info(text: str) -> RuntimeInfo:
    """The CRI runtime config in ``crictl info`` JSON (``config.containerd``): default runtime and runtimes.

    ``version`` is 0: crictl reports the loaded config, not the file's version.

    >>> info = parse_crictl_info('{"config": {"containerd": {"defaultRuntimeName": "crun", "runtimes": '
    ...     '{"crun": {"runtimeType": "io.containerd.runc.v2", "options": {"BinaryName": "/usr/local/bin/crun"}}}}}}')
    >>> info.default_runtime, info.runtimes["crun"].binary_name
    ('crun', '/usr/local/bin/crun')
    """
    try:
        containerd = json.loads(text)["config"]["containerd"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise PrerequisiteMissing(
            f"k3s crictl info did not print the CRI config ({err})", "check that k3s runs: systemctl status k3s"
        ) from None
    runtimes = {}
    for name, rt in (containerd.get("runtimes") or {}).items():
        options = dict(rt.get("options") or {})
        runtimes[name] = RuntimeSpec(
            str(rt.get("runtimeType", "")),
            binary_name=options.get("BinaryName") or None,
            systemd_cgroup=options.get("SystemdCgroup"),
            pod_annotations=tuple(rt.get("PodAnnotations") or ()),
            options=options,
        )
    return RuntimeInfo(0, str(containerd.get("defaultRuntimeName", "")), runtimes, [])
