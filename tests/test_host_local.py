"""LocalHost's k3s changes on a temporary node root laid out like k3s.

The real ``k3s``, ``systemctl`` and ``sudo`` cannot run here, so stand-ins
(real executables first on PATH, recording their argv) play them: ``systemctl
restart`` does what k3s does at start (render config.toml from the template
with labkit's model of k3s), ``k3s crictl info`` reports the config the
"running" containerd loaded, ``sudo`` runs its command as this user.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.containerd import (
    ContainerdConfigError,
    ContainerdPaths,
    NodeSettings,
    default_runtime_table,
    detect_runtimes,
    read_runtime_info,
    render_base_config,
    render_node_config,
    render_template,
)
from labkit.errors import PrerequisiteMissing
from labkit.host import LocalHost
from labkit.host.base import RuntimeVerificationError
from labkit.host.changes import HostChange, HostChangeError

K3S = r"""
args = sys.argv[1:]
if args == ["--version"]:
    print("k3s version v1.32.2+k3s1 (381620ef)\ngo version go1.23.6")
elif args[:2] == ["ctr", "version"]:
    if not CTR:
        sys.exit("ctr: failed to dial \"/run/k3s/containerd/containerd.sock\": connection refused")
    print(f"Client:\n  Version:  {CTR}\n  Revision: x\n\nServer:\n  Version:  {CTR}\n  Revision: x\n  UUID: u")
elif args[:2] == ["crictl", "info"]:
    if (BIN / "k3s-down").exists():
        sys.exit('validate service connection: connect: connection refused')
    from labkit.containerd import ContainerdPaths, node_runtime_info
    info = node_runtime_info(ContainerdPaths(ROOT))
    runtimes = {n: {"runtimeType": s.runtime_type, "options": dict(s.options),
                    "PodAnnotations": list(s.pod_annotations)} for n, s in info.runtimes.items()}
    print(json.dumps({"status": {}, "config": {"containerd": {"defaultRuntimeName": info.default_runtime,
                                                              "runtimes": runtimes}}}, indent=2))
else:
    sys.exit(f"fake k3s: unexpected {args}")
"""

SYSTEMCTL = r"""
args = sys.argv[1:]
state = BIN / "k3s-state"
if args[0] == "restart":
    from labkit.containerd import (ContainerdConfigError, ContainerdPaths, detect_runtimes,
                                           read_runtime_info, render_node_config)
    if (BIN / "fail-next-restart").exists():
        (BIN / "fail-next-restart").unlink()
        state.write_text("failed")
        sys.exit("Job for k3s.service failed because the control process exited with error code.")
    try:  # what k3s does at start: detect runtimes, render config.toml, containerd loads it
        read_runtime_info(render_node_config(ContainerdPaths(ROOT), VERSION, detect_runtimes(ROOT)))
    except ContainerdConfigError as err:
        state.write_text("failed")
        sys.exit(str(err))
    state.write_text("active")
elif args[0] == "is-active":
    print(state.read_text() if state.exists() else "active")
else:
    sys.exit(f"fake systemctl: unexpected {args}")
"""


class Node:
    """A temporary k3s node root plus the stand-in tools; ``log`` is every argv they saw."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, version: int = 3, ctr: str = "v2.0.2-k3s2") -> None:
        self.root, self.bin = tmp / "node", tmp / "bin"
        self.paths = ContainerdPaths(self.root)
        self.version = version
        self.bin.mkdir()
        (self.root / "var/lib").mkdir(parents=True)
        consts = f"ROOT = Path({str(self.root)!r}); BIN = Path({str(self.bin)!r}); CTR = {ctr!r}; VERSION = {version}\n"
        self.tool("k3s", consts + K3S)
        self.tool("systemctl", consts + SYSTEMCTL)
        self.tool("sudo", "os.execvp(sys.argv[2], sys.argv[2:])  # passwordless: drop -n, run the rest")
        monkeypatch.setenv("PATH", f"{self.bin}:{os.environ['PATH']}")
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        # the node: the WasmEdge shim where k3s finds it, crun outside k3s's search path, k3s's own config
        self.node_binary("usr/local/bin/containerd-shim-wasmedge-v1")
        self.node_binary("opt/crun/bin/crun")
        self.paths.k3s_config.parent.mkdir(parents=True)
        self.paths.k3s_config.write_text("write-kubeconfig-mode: '644'\n")
        self.paths.k3s_config.chmod(0o640)
        self.paths.dir.mkdir(parents=True)
        render_node_config(self.paths, version, detect_runtimes(self.root))  # k3s's first start

    def tool(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(
            f"#!{sys.executable}\nimport json, os, sys\nfrom pathlib import Path\n"
            f"with open({str(self.bin / 'argv.log')!r}, 'a') as log:\n"
            "    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n" + body
        )
        path.chmod(0o755)

    def node_binary(self, rel: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)

    @property
    def log(self) -> list[list[str]]:
        log = self.bin / "argv.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def snapshot(self) -> dict[str, tuple[bytes | None, int]]:
        """Every path under the node root except labkit's backups: content and mode."""
        return {
            p.relative_to(self.root).as_posix(): (
                None if p.is_dir() else p.read_bytes(),
                stat.S_IMODE(p.stat().st_mode),
            )
            for p in sorted(self.root.rglob("*"))
            if "var/lib/labkit" not in p.as_posix()
        }


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    return Node(tmp_path, monkeypatch)


def host(node: Node) -> LocalHost:
    return LocalHost(root=node.root, restart_timeout=10)


CRUN = "/opt/crun/bin/crun"


@pytest.mark.parametrize(("ctr", "expected"), [("v2.0.2-k3s2", 3), ("v1.7.23-k3s2", 2), ("", 3)])
def test_containerd_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ctr: str, expected: int) -> None:
    node = Node(tmp_path, monkeypatch, ctr=ctr)
    assert host(node).containerd_version() == expected
    if not ctr:  # containerd not answering: the k3s release decides (v1.32.2 ships containerd 2)
        assert node.log[-1] == ["k3s", "--version"]


@pytest.mark.parametrize(
    ("version", "ctr", "template", "prefix"),
    [
        (3, "v2.0.2-k3s2", "config-v3.toml.tmpl", "io.containerd.cri.v1.runtime"),
        (2, "v1.7.23-k3s2", "config.toml.tmpl", "io.containerd.grpc.v1.cri"),
    ],
)
def test_plan_picks_the_template_for_the_containerd_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int, ctr: str, template: str, prefix: str
) -> None:
    node = Node(tmp_path, monkeypatch, version=version, ctr=ctr)
    change = host(node).plan_crun_swap(binary=CRUN)
    assert sorted(change.node_path(p) for p in change.files) == sorted(
        ["/etc/rancher/k3s/config.yaml", f"/var/lib/rancher/k3s/agent/etc/containerd/{template}"]
    )
    assert change.version == version and change.default_runtime == "crun"
    text = change.files[node.paths.template_path(version)]
    assert text.startswith('{{ template "base" . }}')
    doc = tomllib.loads(render_template(text, render_base_config(version, detect_runtimes(node.root), "crun")))
    assert doc["version"] == version
    assert doc["plugins"][prefix]["containerd"]["runtimes"]["crun"]["options"]["BinaryName"] == CRUN
    predicted = host(node).validate(change)  # what containerd would load after the restart
    assert predicted.version == version and predicted.default_runtime == "crun"
    crun = predicted.runtimes["crun"]
    assert (crun.runtime_type, crun.binary_name, crun.pod_annotations) == (
        "io.containerd.runc.v2",
        CRUN,
        ("module.wasm.image/*",),
    )
    assert "wasmedge" in predicted.runtimes, "k3s's auto-detected shim stays (base include)"


def test_preview_is_a_diff_with_new_files_whole(node: Node) -> None:
    change = host(node).plan_crun_swap(binary=CRUN)
    diff = host(node).preview(change)
    assert "--- a/etc/rancher/k3s/config.yaml\n+++ b/etc/rancher/k3s/config.yaml\n" in diff
    assert " write-kubeconfig-mode: '644'\n+default-runtime: crun\n" in diff
    new = diff.split("--- /dev/null\n+++ b/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl\n", 1)[1]
    template = change.files[node.paths.template_v3].splitlines()
    assert new.splitlines()[0] == f"@@ -0,0 +1,{len(template)} @@"
    assert new.splitlines()[1 : len(template) + 1] == ["+" + line for line in template], "a new file is shown whole"


def test_apply_verify_restore(node: Node) -> None:
    before = node.snapshot()
    h = host(node)
    assert h.runtime_info().default_runtime == "runc"
    change = h.plan_crun_swap(binary=CRUN)
    backup = h.apply(change)
    assert ["systemctl", "restart", "k3s"] in node.log and node.log[-1] == ["systemctl", "is-active", "k3s"]
    template = node.paths.template_v3
    assert stat.S_IMODE(template.stat().st_mode) == 0o600, "a new file is owner-only"
    assert stat.S_IMODE(node.paths.k3s_config.stat().st_mode) == 0o640, "an existing file keeps its mode"
    info = h.verify_default_runtime("crun")
    assert info.source == "k3s crictl info" and info.rendered.default_runtime == "crun"
    assert sorted(info.runtimes) == ["crun", "runc", "runhcs-wcow-process", "wasmedge"]
    assert h.backups() == [backup] and {f.path: f.existed for f in backup.files} == {
        "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl": False,
        "/etc/rancher/k3s/config.yaml": True,
    }
    h.restore(backup)
    assert node.snapshot() == before, "template removed, k3s config and the re-rendered config.toml byte-identical"
    assert [a for a in node.log if a[:2] == ["systemctl", "restart"]] == [["systemctl", "restart", "k3s"]] * 2
    with pytest.raises(RuntimeVerificationError, match=r"not 'crun'.*reports default runtime 'runc'"):
        h.verify_default_runtime("crun")


def test_a_toml_error_aborts_with_nothing_written(node: Node) -> None:
    before = node.snapshot()
    h = host(node)
    # the default runtime named twice, in the template and in k3s's config: the base then emits the
    # …containerd table too, and the template's second one is a TOML redefinition
    bad = '{{ template "base" . }}\n' + default_runtime_table(3, "runc")
    files = {node.paths.template_v3: bad, node.paths.k3s_config: "default-runtime: runc\n"}
    change = HostChange(node.root, files, "bad", 3)
    with pytest.raises(ContainerdConfigError, match="declared twice"):
        h.apply(change)
    assert node.snapshot() == before and h.backups() == []
    assert not any(a[0] == "systemctl" for a in node.log), "k3s was not restarted"


def test_v2_keys_in_a_v3_config_are_refused(node: Node) -> None:
    v2 = (
        '{{ template "base" . }}\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
    )
    with pytest.raises(ContainerdConfigError, match="Ignoring unknown key in TOML for plugin"):
        host(node).apply(HostChange(node.root, {node.paths.template_v3: v2}, "v2 keys", 3))
    assert not node.paths.template_v3.exists()


def test_template_route_names_the_default_in_the_template_only(node: Node) -> None:
    """The journey's route: k3s's v3 base has no …containerd table until default-runtime is set."""
    h = host(node)
    change = h.plan_crun_swap(binary=CRUN, route="template")
    assert set(change.files) == {node.paths.template_v3} and change.default_runtime == "crun"
    assert h.validate(change).default_runtime == "crun"
    both = h.plan_crun_swap(binary=CRUN)  # default-runtime in config.yaml, plus the template's table
    both.files[node.paths.template_v3] = change.files[node.paths.template_v3]
    with pytest.raises(ContainerdConfigError, match="declared twice"):
        h.validate(both)


def test_default_runtime_without_a_table_is_refused(node: Node) -> None:
    change = host(node).plan_crun_swap(binary=CRUN)
    change.files.pop(node.paths.template_v3)  # only default-runtime: crun, no crun table
    with pytest.raises(ContainerdConfigError, match="'crun' has no runtime table"):
        host(node).apply(change)


def test_crun_on_k3s_path_gets_its_own_runtime_name(node: Node) -> None:
    node.node_binary("usr/local/bin/crun")  # k3s auto-detects it and declares runtimes.'crun' itself
    h = host(node)
    change = h.plan_crun_swap()
    assert change.default_runtime == "crun-wasm"
    assert h.validate(change).runtimes["crun-wasm"].pod_annotations == ("module.wasm.image/*",)
    with pytest.raises(ContainerdConfigError, match="already declares a runtime named 'crun'"):
        h.plan_crun_swap(name="crun")


def test_missing_crun_binary(node: Node) -> None:
    with pytest.raises(PrerequisiteMissing, match="/usr/local/bin/crun does not exist") as err:
        host(node).plan_crun_swap()
    assert "--with-wasmedge" in str(err.value)


def test_refuses_without_root_before_changing_anything(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    change = host(node).plan_crun_swap(binary=CRUN)
    before = node.snapshot()
    node.tool("sudo", 'sys.exit("sudo: a password is required")')
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteMissing, match="needs root") as err:
        host(node).apply(change)
    assert "passwordless sudo" in str(err.value)
    assert node.snapshot() == before
    assert [a for a in node.log if a[0] != "k3s"] == [["sudo", "-n", "true"]]


def test_not_root_works_through_passwordless_sudo(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    h = host(node)
    change = h.plan_crun_swap(binary=CRUN)
    before = node.snapshot()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    backup = h.apply(change)
    helper = ["sudo", "-n", sys.executable, "-m", "labkit.host.changes", "apply"]
    assert helper in node.log, "the files are written by labkit's helper running as root"
    assert ["sudo", "-n", shutil.which("systemctl"), "restart", "k3s"] in node.log
    assert h.verify_default_runtime("crun").source == "k3s crictl info"
    h.restore(backup)
    assert node.snapshot() == before


def test_no_k3s_is_refused_before_changing_anything(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    change = host(node).plan_crun_swap(binary=CRUN)
    monkeypatch.setattr("labkit.host.local.K3S_INSTALL_PATH", str(node.root / "nowhere"))
    with pytest.raises(PrerequisiteMissing, match="not a k3s node"):
        LocalHost(k3s="k3s-not-installed", root=node.root).apply(change)
    assert not node.paths.template_v3.exists()


def test_k3s_failing_to_start_rolls_the_change_back(node: Node) -> None:
    before = node.snapshot()
    (node.bin / "fail-next-restart").touch()
    with pytest.raises(HostChangeError, match="rolled back") as err:
        host(node).apply(host(node).plan_crun_swap(binary=CRUN))
    assert "Job for k3s.service failed" in str(err.value)
    assert node.snapshot() == before


def test_runtime_info_without_a_running_k3s_reads_the_rendered_config(node: Node) -> None:
    (node.bin / "k3s-down").touch()
    info = host(node).runtime_info()
    assert (info.source, info.default_runtime) == ("config.toml", "runc")
    assert "connection refused" in info.note
    assert info.rendered == read_runtime_info(node.paths.config.read_text())


def test_service_name_is_configurable(node: Node) -> None:
    h = LocalHost(root=node.root, service="k3s-runwasi", restart_timeout=10)
    h.restart_k3s()
    assert node.log[0] == ["systemctl", "restart", "k3s-runwasi"]


@pytest.mark.parametrize(
    ("output", "wasi_nn", "problem"),
    [
        ("crun version 1.15\ncommit: abc\n+SYSTEMD +SECCOMP +WASM:wasmedge +YAJL\n", True, None),
        ("crun version 1.8.1\ncommit: abc\n+SYSTEMD +SECCOMP +YAJL\n", False, "has no WasmEdge handler"),
        ("crun version 1.14.4\ncommit: abc\n+SYSTEMD +WASM:wasmedge\n", True, "needs crun >= 1.15"),
    ],
)
def test_check_crun(node: Node, output: str, wasi_nn: bool, problem: str | None) -> None:
    node.tool("crun", f"print({output!r}, end='')")
    h = host(node)
    if problem is None:
        info = h.check_crun(wasi_nn=wasi_nn)
        assert (info.version, info.wasm_handlers, info.path) == ((1, 15), ["wasmedge"], str(node.bin / "crun"))
    else:
        with pytest.raises(PrerequisiteMissing, match=problem):
            h.check_crun(wasi_nn=wasi_nn)


# ------------------------------------------------------------------ a real containerd judges the rendered config


def start_containerd(config: Path, log: Path, until: str, timeout: float = 20.0) -> tuple[int | None, str]:
    """Run the real containerd on *config* until its log shows *until* or it exits; (exit code or None, log)."""
    with log.open("w") as out:
        proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and until not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
                code = None
            else:
                code = proc.returncode
    return code, log.read_text()


@pytest.fixture
def private_containerd_settings() -> Iterator[NodeSettings]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and containerd (apt-get install containerd)")
    base = Path(tempfile.mkdtemp(prefix="lkc", dir="/tmp"))  # unix socket paths are limited to 108 bytes
    yield NodeSettings(
        root=str(base / "root"),
        state=str(base / "state"),
        address=str(base / "c.sock"),
        cni_bin_dir=str(base / "cni"),
        cni_conf_dir=str(base / "net.d"),
    )
    shutil.rmtree(base, ignore_errors=True)


def test_real_containerd_loads_the_crun_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_containerd_settings: NodeSettings
) -> None:
    """Debian's containerd 1.6 (config version 2) reads the swapped config: default crun, its annotations."""
    node = Node(tmp_path, monkeypatch, version=2, ctr="v1.6.20")
    h = host(node)
    change = h.plan_crun_swap(binary=CRUN)
    assert h.validate(change).default_runtime == "crun"
    h.apply(change)
    # k3s's render again, with this test's private directories and socket instead of k3s's
    render_node_config(node.paths, 2, detect_runtimes(node.root), settings=private_containerd_settings)
    code, log = start_containerd(node.paths.config, tmp_path / "containerd.log", "Start cri plugin with config")
    assert code is None, log[-2000:]
    cri = next(line for line in log.splitlines() if "Start cri plugin with config" in line)
    assert "DefaultRuntimeName:crun " in cri
    crun = cri.split("crun:{", 1)[1]
    assert "Type:io.containerd.runc.v2" in crun and "PodAnnotations:[module.wasm.image/*]" in crun
    assert f"BinaryName:{CRUN}" in crun


def test_real_containerd_refuses_what_validation_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_containerd_settings: NodeSettings
) -> None:
    node = Node(tmp_path, monkeypatch, version=2, ctr="v1.6.20")
    redeclared = (
        '{{ template "base" . }}\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "crun"\n'
    )
    with pytest.raises(ContainerdConfigError, match="declared twice"):
        host(node).validate(HostChange(node.root, {node.paths.template_v2: redeclared}, "bad", 2))
    config = tmp_path / "bad.toml"
    config.write_text(render_template(redeclared, render_base_config(2, {}, settings=private_containerd_settings)))
    code, log = start_containerd(config, tmp_path / "containerd.log", "Start cri plugin with config")
    assert code not in (None, 0), "containerd must refuse to start"
    assert "failed to load TOML" in log, log[-2000:]
