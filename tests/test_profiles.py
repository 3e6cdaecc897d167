"""Per-backend values (labkit.profiles)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from labkit.profiles import profile_for


def test_k3s_profile_uses_runwasi_image_and_k3s_dns(clean_env):
    p = profile_for("kubeconfig")
    assert p.wasi_demo_image == "ghcr.io/containerd/runwasi/wasi-demo-app:latest"
    assert p.cluster_dns == "10.43.0.10:53"
    assert p.node_root == Path("/")
    assert p.on_node(p.containerd_dir) == Path("/var/lib/rancher/k3s/agent/etc/containerd")


def test_sandbox_profile_has_its_own_image_and_node_root(clean_env, tmp_path):
    clean_env.setenv("LABKIT_HOME", str(tmp_path))
    p = profile_for("sandbox")
    assert p.wasi_demo_image == "docker.io/labkit/wasi-demo:latest"
    assert (p.runtime_class, p.runtime_handler) == ("wasmedge", "wasmedge")
    assert p.on_node(p.plugin_dir) == tmp_path / "sandbox/nodes/labkit-server-0/home/runner/.wasmedge/plugin"


def test_the_llm_server_is_the_seeds_on_k3s_and_the_kits_on_the_sandbox(clean_env):
    from labkit.models import MODEL_FILE

    k3s, sandbox = profile_for("kubeconfig").llm, profile_for("sandbox").llm
    assert (k3s.image, k3s.command, k3s.model_name) == (
        "ghcr.io/second-state/llama-api-server:latest",
        ("llama-api-server.wasm",),
        "llama-3-1b",
    )
    assert sandbox.image is None and sandbox.model_file == MODEL_FILE  # the lab builds llama-server itself
    assert "--model-name" in sandbox.args and sandbox.args[sandbox.args.index("--model-name") + 1] == "smollm2-135m"


def test_sandbox_profile_leaves_the_cluster_dns_to_the_running_sandbox(clean_env):
    from labkit.sandbox.client import SandboxInfo  # the profile may not import the sandbox; the test may
    from labkit.sandbox.netmap import CLUSTER_DNS_IP

    assert profile_for("sandbox").cluster_dns is None  # connect() fills it in from the sandbox's address slot
    info = SandboxInfo(Path("k"), "labkit-sandbox", "https://127.0.0.1:1", 1, 1, "v")
    assert info.cluster_dns == f"{CLUSTER_DNS_IP}:53"
    assert SandboxInfo(Path("k"), "labkit-sandbox", "https://127.0.0.1:1", 1, 1, "v", slot=2).cluster_dns == (
        "127.47.0.10:53"
    )


def test_profile_follows_labkit_backend(clean_env):
    clean_env.setenv("LABKIT_BACKEND", "kubeconfig")
    assert profile_for().backend == "kubeconfig"


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(importlib.import_module("labkit.profiles"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_on_node_needs_an_absolute_node_path(clean_env):
    from labkit.errors import LabkitError

    with pytest.raises(LabkitError, match="not a node path"):
        profile_for("kubeconfig").on_node("relative/path")
