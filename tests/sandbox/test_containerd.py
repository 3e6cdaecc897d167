"""k3s-style containerd config: real files in a node root laid out like k3s."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from labkit.containerd import (
    IGNORED_KEY_TEXT,
    ContainerdConfigError,
    ContainerdPaths,
    NodeSettings,
    RuntimeSpec,
    detect_runtimes,
    node_runtime_info,
    read_runtime_info,
    render_base_config,
    render_node_config,
    render_template,
)
from labkit.errors import LabkitError
from labkit.host.crun_swap import crun_runtime_template, crun_swap_plan, set_default_runtime

WASMEDGE = RuntimeSpec("io.containerd.wasmedge.v1", binary_name="/usr/local/bin/containerd-shim-wasmedge-v1")


@pytest.fixture
def node(tmp_path: Path) -> ContainerdPaths:
    """A node root with the WasmEdge shim installed where k3s looks for it."""
    shim = tmp_path / "usr/local/bin/containerd-shim-wasmedge-v1"
    shim.parent.mkdir(parents=True)
    shim.write_bytes(b"\x7fELF")
    return ContainerdPaths(tmp_path)


def apply(plan: dict[Path, str]) -> None:
    for path, text in plan.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_paths_mirror_k3s(tmp_path: Path) -> None:
    paths = ContainerdPaths(tmp_path)
    base = tmp_path / "var/lib/rancher/k3s/agent/etc/containerd"
    assert (paths.config, paths.template_v2, paths.template_v3) == (
        base / "config.toml",
        base / "config.toml.tmpl",
        base / "config-v3.toml.tmpl",
    )
    assert paths.k3s_config == tmp_path / "etc/rancher/k3s/config.yaml"
    assert paths.template_path(3) == paths.template_v3 and paths.template_path(2) == paths.template_v2


def test_detect_runtimes_finds_shims_on_k3s_path(node: ContainerdPaths) -> None:
    crun = node.root / "usr/bin/crun"
    crun.parent.mkdir(parents=True)
    crun.write_bytes(b"\x7fELF")
    found = detect_runtimes(node.root)
    assert found["wasmedge"] == WASMEDGE
    assert found["crun"] == RuntimeSpec("io.containerd.runc.v2", binary_name="/usr/bin/crun")
    assert "wasmtime" not in found


@pytest.mark.parametrize("version", [2, 3])
def test_base_config_is_valid_toml_with_runtimes(version: int) -> None:
    text = render_base_config(version, {"wasmedge": WASMEDGE})
    doc = tomllib.loads(text)
    assert doc["version"] == version
    info = read_runtime_info(text)
    assert info.version == version and info.default_runtime == "runc" and info.ignored_keys == []
    assert info.runtimes["runc"].runtime_type == "io.containerd.runc.v2"
    assert info.runtimes["runc"].systemd_cgroup is True
    assert info.runtimes["wasmedge"].binary_name == "/usr/local/bin/containerd-shim-wasmedge-v1"
    # k3s gives detected runtimes runc's SystemdCgroup (k3s issues #9192-#9194 quote a rendered crun table)
    assert info.runtimes["wasmedge"].systemd_cgroup is True
    registry = doc["plugins"]["io.containerd.cri.v1.images" if version == 3 else "io.containerd.grpc.v1.cri"]
    assert registry["registry"]["config_path"] == "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"


def test_v3_base_matches_what_k3s_renders() -> None:
    """The v3 base as the journey's author copied it from a k3s node (seed): Windows's runhcs table, no default."""
    text = render_base_config(3, {})
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runhcs-wcow-process]" in text
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]" in text
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd]" not in text  # only with --default-runtime
    info = read_runtime_info(text)
    assert info.default_runtime == "runc"  # containerd's own default
    assert info.runtimes["runhcs-wcow-process"].runtime_type == "io.containerd.runhcs.v1"
    with_default = render_base_config(3, {}, "crun")
    assert with_default.count("[plugins.'io.containerd.cri.v1.runtime'.containerd]") == 1


def test_no_template_renders_base(node: ContainerdPaths) -> None:
    text = render_node_config(node, 3, detect_runtimes(node.root))
    assert node.config.read_text() == text
    info = read_runtime_info(text)
    assert (info.version, info.default_runtime, sorted(info.runtimes)) == (
        3,
        "runc",
        ["runc", "runhcs-wcow-process", "wasmedge"],
    )


def test_node_runtime_info_reads_the_rendered_file(node: ContainerdPaths) -> None:
    with pytest.raises(ContainerdConfigError, match="does not exist"):
        node_runtime_info(node)
    render_node_config(node, 3, detect_runtimes(node.root), default_runtime="wasmedge")
    assert node_runtime_info(node).default_runtime == "wasmedge"


def test_v3_template_preferred_over_v2(node: ContainerdPaths) -> None:
    node.dir.mkdir(parents=True)
    node.template_v2.write_text('{{ template "base" . }}\n# from v2\n')
    node.template_v3.write_text('{{ template "base" . }}\n# from v3\n')
    text = render_node_config(node, 3, {})
    assert "# from v3" in text and "# from v2" not in text
    assert read_runtime_info(text).version == 3


def test_v3_falls_back_to_legacy_template_and_renders_v2(node: ContainerdPaths) -> None:
    node.dir.mkdir(parents=True)
    node.template_v2.write_text('{{ template "base" . }}\n# legacy\n')
    text = render_node_config(node, 3, detect_runtimes(node.root))
    info = read_runtime_info(text)
    assert "# legacy" in text and info.version == 2 and "wasmedge" in info.runtimes


def test_v2_node_ignores_v3_template(node: ContainerdPaths) -> None:
    node.dir.mkdir(parents=True)
    node.template_v3.write_text('{{ template "base" . }}\n# v3 only\n')
    text = render_node_config(node, 2, {})
    assert "# v3 only" not in text and read_runtime_info(text).version == 2


@pytest.mark.parametrize("version", [2, 3])
def test_crun_swap_makes_crun_the_default(node: ContainerdPaths, version: int) -> None:
    node.k3s_config.parent.mkdir(parents=True)
    node.k3s_config.write_text("write-kubeconfig-mode: '644'\n")
    plan = crun_swap_plan(node, version)
    assert set(plan) == {node.template_path(version), node.k3s_config}
    apply(plan)
    text = render_node_config(node, version, detect_runtimes(node.root))
    tomllib.loads(text)  # valid TOML
    info = read_runtime_info(text)
    assert info.default_runtime == "crun" and info.ignored_keys == []
    crun = info.runtimes["crun"]
    assert (crun.runtime_type, crun.binary_name, crun.systemd_cgroup) == (
        "io.containerd.runc.v2",
        "/usr/local/bin/crun",
        True,
    )
    assert crun.pod_annotations == ("module.wasm.image/*",)
    assert {"runc", "wasmedge"} <= set(info.runtimes)
    assert "write-kubeconfig-mode" in node.k3s_config.read_text()


def test_crun_template_text() -> None:
    text = crun_runtime_template(3, binary="/opt/crun/bin/crun", pod_annotations=["*.wasm.*", "module.wasm.image/*"])
    assert text.startswith('{{ template "base" . }}\n')
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'crun']" in text
    assert 'pod_annotations = ["*.wasm.*", "module.wasm.image/*"]' in text
    assert 'BinaryName = "/opt/crun/bin/crun"' in text and "SystemdCgroup = true" in text
    assert "default_runtime_name" not in text  # the default is k3s's config, unless asked for
    assert crun_runtime_template(3, default=True).endswith(
        "[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = \"crun\"\n"
    )


def test_restore_default_runtime(node: ContainerdPaths) -> None:
    assert set_default_runtime("default-runtime: crun\nnode-name: n1\n", None) == "node-name: n1\n"
    assert set_default_runtime("default-runtime: crun\n", None) == ""


def test_v2_key_in_v3_template_is_ignored(node: ContainerdPaths) -> None:
    node.dir.mkdir(parents=True)
    node.template_v3.write_text(
        '{{ template "base" . }}\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun-wasm]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun-wasm.options]\n'
        '  BinaryName = "/usr/local/bin/crun"\n'
    )
    info = read_runtime_info(render_node_config(node, 3, {}))
    assert "crun-wasm" not in info.runtimes
    # one line per table, the key path joined by spaces, as containerd's Config.Decode logs it; the plugin's map is
    # marshaled again first, and go-toml v2 "always prints intermediate tables", so the parents the template never
    # wrote (containerd, containerd runtimes) get a line too (a containerd 2.1 log of a v2 registry.mirrors table:
    # key=registry, key="registry mirrors", key="registry mirrors docker.io")
    error = "strict mode: fields in the document are missing in the target struct"
    prefix = f'level=warning msg="{IGNORED_KEY_TEXT}" error="{error}"'
    assert info.ignored_keys == [
        f"{prefix} key={key} plugin=io.containerd.grpc.v1.cri"
        for key in (
            "containerd",
            '"containerd runtimes"',
            '"containerd runtimes crun-wasm"',
            '"containerd runtimes crun-wasm options"',
        )
    ]


def test_v3_key_in_v2_config_is_reported_in_labkits_words(node: ContainerdPaths) -> None:
    """What containerd logs for this one was not verified upstream, so labkit does not put words in its mouth."""
    node.dir.mkdir(parents=True)
    node.template_v2.write_text(
        "{{ template \"base\" . }}\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasm]\n"
        '  runtime_type = "io.containerd.wasmedge.v1"\n'
    )
    info = read_runtime_info(render_node_config(node, 2, {}))
    assert "wasm" not in info.runtimes
    table = 'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasm'
    said = f"table {table} is under io.containerd.cri.v1.runtime, which a version 2 config does not read for runtimes"
    assert info.ignored_keys == [f"{said} (labkit's words)"]


def test_default_runtime_table_in_a_v3_template_works_alone(node: ContainerdPaths) -> None:
    """The journey's route: the base has no …containerd table until k3s's default-runtime is set."""
    apply(crun_swap_plan(node, 3, route="template"))
    assert not node.k3s_config.exists()  # this route leaves k3s's config alone
    info = read_runtime_info(render_node_config(node, 3, detect_runtimes(node.root)))
    assert info.default_runtime == "crun" and info.runtimes["crun"].pod_annotations == ("module.wasm.image/*",)


def test_default_runtime_in_template_and_k3s_config_is_a_redefinition_error(node: ContainerdPaths) -> None:
    apply(crun_swap_plan(node, 3, route="template"))
    text = render_node_config(node, 3, {}, default_runtime="crun")  # k3s writes it; containerd rejects it
    with pytest.raises(ContainerdConfigError) as err:
        read_runtime_info(text)
    lines = text.splitlines()
    bad_line = (
        max(i for i, line in enumerate(lines) if line == "[plugins.'io.containerd.cri.v1.runtime'.containerd]") + 1
    )
    assert f"line {bad_line}" in str(err.value) and "declared twice" in str(err.value)
    assert "toml: table containerd already exists" in str(err.value)  # go-toml v2's words, as containerd 2 logs them
    assert "drop default-runtime or drop this table" in err.value.fix


def test_v2_base_always_has_the_containerd_table(node: ContainerdPaths) -> None:
    apply(crun_swap_plan(node, 2, route="template"))
    with pytest.raises(ContainerdConfigError, match="declared twice") as err:
        read_runtime_info(render_node_config(node, 2, {}))
    assert "holds the snapshotter" in err.value.fix


def test_crun_table_collides_with_auto_detected_crun(node: ContainerdPaths) -> None:
    (node.root / "usr/local/bin/crun").write_bytes(b"\x7fELF")
    apply(crun_swap_plan(node, 3))
    with pytest.raises(ContainerdConfigError, match=r"runtimes\.crun is declared twice") as err:
        read_runtime_info(render_node_config(node, 3, detect_runtimes(node.root)))
    assert "auto-detected a runtime named 'crun'" in err.value.fix
    assert "toml: table crun already exists" in str(err.value)
    # a distinct name avoids the collision
    apply(crun_swap_plan(node, 3, name="crun-wasm"))
    info = read_runtime_info(render_node_config(node, 3, detect_runtimes(node.root)))
    assert info.default_runtime == "crun-wasm" and info.runtimes["crun-wasm"].pod_annotations


def test_unknown_route_is_refused(node: ContainerdPaths) -> None:
    with pytest.raises(ContainerdConfigError, match="unknown route"):
        crun_swap_plan(node, 3, route="systemd")


def test_template_comments_and_trim_markers() -> None:
    rendered = render_template('{{/* keep k3s defaults */}}\n{{- template "base" . -}}\n\n[x]\n', "[base]\n")
    assert rendered == "[base]\n[x]\n"


def test_unsupported_template_action_names_what_is_supported() -> None:
    with pytest.raises(LabkitError) as err:
        render_template('{{ template "base" . }}\n{{ if .NodeConfig.SELinux }}x{{ end }}\n', "")
    assert "line 2" in str(err.value) and 'template "base"' in str(err.value.fix)


def test_toml_syntax_error_reports_line() -> None:
    with pytest.raises(ContainerdConfigError, match="line 2"):
        read_runtime_info("version = 3\n[plugins\n")


containerd = shutil.which("containerd") or ""  # "" when absent: the tests below skip


@pytest.mark.skipif(not containerd or os.geteuid() != 0, reason="needs Debian containerd and root")
def test_real_containerd_accepts_rendered_v2_config(node: ContainerdPaths, tmp_path: Path) -> None:
    settings = NodeSettings(
        root=str(tmp_path / "ctd-root"), state=str(tmp_path / "ctd-state"), address=str(tmp_path / "c.sock")
    )
    apply(crun_swap_plan(node, 2))
    text = render_node_config(node, 2, detect_runtimes(node.root), settings=settings)
    dump = subprocess.run(
        [containerd, "--config", str(node.config), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr
    # containerd's own view of the file, read back through our reader
    real = read_runtime_info(dump.stdout)
    ours = read_runtime_info(text)
    assert real.default_runtime == ours.default_runtime == "crun"
    assert real.runtimes["crun"].pod_annotations == ours.runtimes["crun"].pod_annotations == ("module.wasm.image/*",)
    assert real.runtimes["wasmedge"].binary_name == "/usr/local/bin/containerd-shim-wasmedge-v1"


@pytest.mark.skipif(not containerd or os.geteuid() != 0, reason="needs Debian containerd and root")
def test_real_containerd_rejects_what_we_reject(node: ContainerdPaths, tmp_path: Path) -> None:
    bad = render_base_config(2, {}, settings=NodeSettings(root=str(tmp_path / "r"), state=str(tmp_path / "s")))
    bad += '\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "crun"\n'
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    dump = subprocess.run(
        [containerd, "--config", str(path), "config", "dump"], capture_output=True, text=True, timeout=30, check=False
    )
    assert dump.returncode != 0
    with pytest.raises(ContainerdConfigError):
        read_runtime_info(bad)
