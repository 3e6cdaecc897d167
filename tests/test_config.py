"""Backend resolution and the context allow-list (labkit.config)."""

from __future__ import annotations

import pytest

from labkit import config
from labkit.errors import LabkitError, UnknownBackend


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


def test_private_dir_creates_its_parents_0700_and_tightens_a_readable_one(tmp_path):
    made = config.private_dir(tmp_path / "home" / "sandbox")
    assert [oct(p.stat().st_mode & 0o777) for p in (made, made.parent)] == ["0o700", "0o700"]
    made.chmod(0o755)
    config.private_dir(made)
    assert made.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("shared", [0o777, 0o775, 0o722])
def test_private_dir_refuses_a_directory_other_users_can_write(tmp_path, shared):
    target = tmp_path / "sandbox"
    target.mkdir()
    target.chmod(shared)
    with pytest.raises(LabkitError) as refused:
        config.private_dir(target)
    assert refused.value.problem.startswith(f"{target} can be written by other users (mode {shared:o})")
    assert refused.value.fix == f"make it yours alone: chmod 700 {target}"
    assert target.stat().st_mode & 0o777 == shared  # left for its owner to look at


def test_private_dir_refuses_a_parent_others_can_write_unless_it_is_sticky_like_tmp(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(LabkitError, match=f"{parent} can be written by other users .* could replace"):
        config.private_dir(parent / "sandbox")
    parent.chmod(0o1777)
    assert config.private_dir(parent / "sandbox").stat().st_mode & 0o777 == 0o700
