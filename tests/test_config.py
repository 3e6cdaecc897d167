"""Backend resolution and the context allow-list (labkit.config)."""

from __future__ import annotations

import pytest

from labkit import config
from labkit.errors import UnknownBackend


def test_backend_defaults_to_sandbox(clean_env):
    assert config.resolve_backend() == "sandbox"


def test_backend_from_environment(clean_env):
    clean_env.setenv("LABKIT_BACKEND", "kubeconfig")
    assert config.resolve_backend() == "kubeconfig"


def test_argument_beats_environment(clean_env):
    clean_env.setenv("LABKIT_BACKEND", "kubeconfig")
    assert config.resolve_backend("sandbox") == "sandbox"


def test_backend_name_is_normalised(clean_env):
    assert config.resolve_backend(" KubeConfig ") == "kubeconfig"


def test_unknown_backend_names_the_choices(clean_env):
    with pytest.raises(UnknownBackend) as e:
        config.resolve_backend("docker")
    assert "docker" in e.value.problem and "sandbox, kubeconfig" in str(e.value.fix)


def test_allow_list_is_only_the_sandbox_by_default(clean_env):
    assert config.allowed_contexts() == ("labkit-sandbox",)


def test_allow_list_from_environment_and_argument(clean_env):
    clean_env.setenv("LABKIT_ALLOWED_CONTEXTS", " default , k3d-lab,,default")
    assert config.allowed_contexts(["kind-lab", "default"]) == ("labkit-sandbox", "default", "k3d-lab", "kind-lab")


def test_labkit_home_follows_environment(clean_env, tmp_path):
    clean_env.setenv("LABKIT_HOME", str(tmp_path))
    assert config.sandbox_kubeconfig() == tmp_path / "sandbox" / "kubeconfig"
