"""The preflight checks and report behind `labkit doctor` (labkit.preflight)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from labkit import preflight
from labkit.errors import SandboxError
from labkit.preflight import (
    SANDBOX_SKIP,
    Check,
    DoctorReport,
    check_containerd_runtimes,
    check_host,
    check_packages,
    check_tools,
    check_wasi_clang,
    containerd_runtimes,
    find_wasi_nn_plugin,
)

K3S_V3 = """version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'wasmedge']
  runtime_type = "io.containerd.wasmedge.v1"
"""


def test_runtimes_are_read_from_v2_and_v3_configs():
    v2 = (
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."crun"]\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]'
    )
    assert containerd_runtimes(K3S_V3) == {"runc", "wasmedge"}
    assert containerd_runtimes(v2) == {"crun"}


@pytest.fixture
def k3s_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "agent/etc/containerd/config.toml"
    path.parent.mkdir(parents=True)
    monkeypatch.setattr(preflight, "K3S_CONTAINERD_CONFIG", path)
    return path


def test_handler_missing_from_containerd_config_fails(k3s_config):
    k3s_config.write_text(K3S_V3.replace("wasmedge", "wasmtime"))
    check = check_containerd_runtimes("kubeconfig", {"wasmedge"})
    assert check.status == "fail" and 'no runtime for "wasmedge" is configured' in check.detail


def test_runtime_classes_k3s_ships_without_a_runtime_are_not_a_failure(k3s_config):
    """k3s creates RuntimeClasses for every runtime it knows (manifests/runtimes.yaml), installed or not."""
    k3s_config.write_text(K3S_V3)
    check = check_containerd_runtimes("kubeconfig", {"wasmedge", "crun", "nvidia", "wasmtime"})
    assert check.status == "ok" and "crun, nvidia, wasmtime" in check.detail


def test_containerd_config_absent_means_not_a_k3s_host(k3s_config):
    assert check_containerd_runtimes("kubeconfig", {"wasmedge"}).status == "skip"
    assert check_containerd_runtimes("sandbox", {"wasmedge"}).detail == SANDBOX_SKIP


def test_host_rows_skip_on_the_sandbox():
    assert [(c.name, c.status, c.detail) for c in check_host("sandbox")] == [
        ("wasmedge shim", "skip", SANDBOX_SKIP),
        ("crun", "skip", SANDBOX_SKIP),
        ("wasi-nn plugin", "skip", SANDBOX_SKIP),
    ]


def test_k3s_host_without_shim_fails_with_the_containerd_wording(k3s_config, tmp_path, clean_env):
    clean_env.setenv("PATH", str(tmp_path / "empty-bin"))
    clean_env.setenv("HOME", str(tmp_path))
    shim, crun, plugin = check_host("kubeconfig")
    assert shim.failed and 'binary not installed "containerd-shim-wasmedge-v1"' in shim.detail
    assert (crun.status, plugin.status) == ("warn", "warn") and not crun.required


def test_k3s_host_with_shim_crun_and_plugin(k3s_config, tmp_path, clean_env):
    # The shim and a wasm-enabled crun cannot be installed on this machine: stand-in executables on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (
        ("containerd-shim-wasmedge-v1", "exit 0"),
        ("crun", "echo 'crun version 1.16'; echo '+SYSTEMD +WASM:wasmedge +YAJL'"),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "libwasmedgePluginWasiNN.so").write_bytes(b"\x7fELF")
    clean_env.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    clean_env.setenv("WASMEDGE_PLUGIN_PATH", str(plugins))
    assert [c.status for c in check_host("kubeconfig")] == ["ok", "ok", "ok"]
    assert find_wasi_nn_plugin() == plugins / "libwasmedgePluginWasiNN.so"


def test_packages_are_listed_with_versions():
    check = check_packages()
    assert check.status == "ok" and "kubernetes 37" in check.detail and "cryptography" in check.detail


def test_a_missing_requirement_fails(monkeypatch):
    monkeypatch.setattr(preflight, "required_distributions", lambda: ["pyyaml", "no-such-distribution-x"])
    check = check_packages()
    assert (
        check.failed
        and "no-such-distribution-x (PackageNotFoundError" in check.detail
        and "pip install -e ." in check.fix
    )


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_clang_really_builds_wasm32_wasi():
    check = check_wasi_clang()
    assert check.status == "ok" and check.detail.startswith("built a ")


def test_missing_tools_warn_with_the_apt_package(tmp_path, clean_env):
    clean_env.setenv("PATH", str(tmp_path))
    rows = {c.name: c for c in check_tools()}
    assert rows["wasm2wat"].status == "warn" and rows["wasm2wat"].fix == "apt-get install wabt"
    assert rows["clang wasm32-wasi"].status == "warn" and "wasi-libc" in rows["clang wasm32-wasi"].fix


def test_report_ok_table_json_and_html():
    report = DoctorReport(
        "kubeconfig",
        [
            Check("a", "ok", "fine"),
            Check("b", "fail", "broken", "do X"),
            Check("c", "fail", "optional", "do Y", required=False),
        ],
    )
    assert not report.ok and [c.name for c in report.failures()] == ["b"]
    table = report.table()
    assert "fix: do X" in table and table.endswith("NOT ready: b failed")
    assert json.loads(json.dumps(report.to_dict()))["checks"][1]["fix"] == "do X"
    assert "<table>" in report._repr_html_() and "NOT ready: b" in report._repr_html_()
    assert report["c"].status == "fail"
    with pytest.raises(KeyError, match="no check named 'd'; the report has: a, b, c"):
        report["d"]


def test_doctor_on_an_unreachable_cluster(clean_env, write_kubeconfig, closed_port):
    report = preflight.doctor(
        "kubeconfig", "lab", allowed_contexts=["lab"], kubeconfig=write_kubeconfig(f"https://127.0.0.1:{closed_port}")
    )
    assert [c.name for c in report.failures()] == ["cluster"]
    assert f"127.0.0.1:{closed_port}" in report["cluster"].detail
    assert report["nodes ready"].status == "skip" and report.banner == ""


def test_doctor_on_a_missing_sandbox_says_what_it_simulates(clean_env, monkeypatch):
    def ensure_running(nodes=None, timeout=60.0):
        raise SandboxError("the sandbox daemon exited at start (code 1)", "labkit sandbox logs")

    monkeypatch.setattr("labkit.sandbox.client.ensure_running", ensure_running)
    report = preflight.doctor("sandbox")
    assert report.failures()[0].name == "cluster" and "simulated nodes" in report.banner
    assert report["wasmedge shim"].detail == SANDBOX_SKIP


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(preflight, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
