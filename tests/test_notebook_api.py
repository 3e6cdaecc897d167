"""The plumbing the notebooks used to paste into cells, now labkit API: require, a report's require,
waiting for a node's containerd config and its runtime table (on a real SandboxHost over a temp node root)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import labkit
from labkit.containerd import K3S_KNOWN_RUNTIMES, RuntimeSpec, render_base_config
from labkit.host import SandboxHost
from labkit.imagestore import ImageStore
from labkit.preflight import Check, DoctorReport


def test_require_passes_silently_and_fails_with_problem_and_fix():
    labkit.require(True, "never shown", "never shown")
    with pytest.raises(labkit.CheckFailed) as failed:
        labkit.require(False, "the Deployment did not scale to 3", "look at the pods of step 5")
    assert failed.value.problem == "the Deployment did not scale to 3"
    assert failed.value.fix == "look at the pods of step 5"
    assert isinstance(failed.value, labkit.LabkitError)


def test_a_report_requires_its_required_checks():
    ok = DoctorReport("sandbox", [Check("cluster", "ok", "up"), Check("kubectl", "fail", "absent", required=False)])
    assert ok.require() is ok
    broken = DoctorReport("sandbox", [Check("cluster", "ok", "up"), Check("nodes", "fail", "none Ready", "start one")])
    with pytest.raises(labkit.PrerequisiteMissing) as missing:
        broken.require()
    assert missing.value.problem == "nodes: none Ready" and missing.value.fix == "start one"


@pytest.fixture
def host(tmp_path: Path) -> SandboxHost:
    """A sandbox node's Host door over an empty node root: no config rendered yet."""
    root = tmp_path / "nodes" / "node-0"
    root.mkdir(parents=True)
    return SandboxHost(root, ImageStore(tmp_path / "images"), "node-0", tmp_path)


def test_wait_for_containerd_config_waits_until_the_node_renders_it(host: SandboxHost):
    config = host.containerd_paths().config
    text = render_base_config(3, {})

    def render_later() -> None:
        time.sleep(0.8)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(text)

    renderer = threading.Thread(target=render_later)
    renderer.start()
    try:
        assert labkit.wait_for_containerd_config(host, timeout=10) == text
    finally:
        renderer.join()


def test_wait_for_containerd_config_gives_up_with_the_fix(host: SandboxHost):
    started = time.monotonic()
    with pytest.raises(labkit.LabkitError) as missing:
        labkit.wait_for_containerd_config(host, timeout=0.6)
    assert 0.6 <= time.monotonic() - started < 5
    assert "config.toml does not exist" in missing.value.problem and "restart" in (missing.value.fix or "")


def test_runtime_table_lists_every_runtime_with_its_binary(host: SandboxHost):
    runtime_type, binary = K3S_KNOWN_RUNTIMES["crun"]
    config = host.containerd_paths().config
    config.parent.mkdir(parents=True)
    config.write_text(render_base_config(3, {"crun": RuntimeSpec(runtime_type, binary_name=binary)}, "crun"))
    lines = labkit.runtime_table(host.runtime_info()).splitlines()
    assert lines[0] == "config version 3; default runtime: crun (read from config.toml)"
    assert [line.split()[0] for line in lines[1:]] == ["crun", "runc", "runhcs-wcow-process"]
    assert "(runc on PATH)" in lines[2] and binary in lines[1]
