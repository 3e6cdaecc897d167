"""On a real k3s node (the live CI runner): runtime info and the crun swap round trip through LocalHost.

Run with ``LABKIT_LIVE_KUBECONFIG=<kubeconfig of the lab k3s> pytest -m live tests/live``, on the k3s
machine itself, as root or with passwordless sudo. ``LABKIT_K3S_SERVICE`` names the systemd unit
(default ``k3s``). The context must be on ``LABKIT_ALLOWED_CONTEXTS``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.cluster import Cluster, connect
from labkit.host import LocalHost

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not os.environ.get("LABKIT_LIVE_KUBECONFIG"),
        reason="needs a real lab k3s: set LABKIT_LIVE_KUBECONFIG (and run on the k3s node)",
    ),
]


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return connect("kubeconfig", kubeconfig=os.environ["LABKIT_LIVE_KUBECONFIG"])


@pytest.fixture(scope="module")
def host() -> LocalHost:
    return LocalHost(service=os.environ.get("LABKIT_K3S_SERVICE", "k3s"))


def test_runtime_info_shows_the_wasmedge_shim(host: LocalHost) -> None:
    info = host.runtime_info()
    assert info.source == "k3s crictl info", info.note
    assert info.runtimes["wasmedge"].runtime_type == "io.containerd.wasmedge.v1"
    assert "wasmedge" in info.rendered.runtimes and info.default_runtime == info.rendered.default_runtime
    assert info.version == host.containerd_version()


def test_crun_has_the_wasmedge_handler(host: LocalHost) -> None:
    crun = host.check_crun(wasm=True, wasi_nn=True)
    assert crun.wasm_handlers == ["wasmedge"]


def test_k3s_renders_what_labkits_model_renders(host: LocalHost) -> None:
    """The facts labkit/containerd.py models, on the real node (the workflow sets no default-runtime)."""
    text = host.read_containerd_config()
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd]\n" not in text, "only with default-runtime"
    assert "runtimes.runhcs-wcow-process]" in text and "config_path = " in text
    rendered = host.runtime_info().rendered
    assert rendered.runtimes["crun"].systemd_cgroup is True and rendered.runtimes["wasmedge"].systemd_cgroup is True


@pytest.mark.parametrize("route", ["config", "template"])
def test_crun_swap_apply_verify_restore(host: LocalHost, cluster: Cluster, route: str) -> None:
    paths = host.containerd_paths()
    watched: list[Path] = [paths.config, paths.template_v2, paths.template_v3, paths.k3s_config]
    before = host.read_node_files(watched)
    default_before = host.runtime_info().default_runtime
    change = host.plan_crun_swap(route=route)
    print(host.preview(change))
    backup = host.apply(change, cluster=cluster)
    try:
        info = host.verify_default_runtime(change.default_runtime or "")
        assert info.source == "k3s crictl info"
        assert info.runtimes[change.default_runtime or ""].binary_name == "/usr/local/bin/crun"
    finally:
        host.restore(backup, cluster=cluster)
    assert host.read_node_files(watched) == before, "templates, k3s config and the re-rendered config.toml as before"
    host.verify_default_runtime(default_before)
