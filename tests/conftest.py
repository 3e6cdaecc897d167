"""Fixtures shared by every test layer. Keep this small: layer-specific fixtures live in their folders."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.sandboxes import sandbox_daemon

#: Variables that steer labkit; tests that read them start from a clean slate.
LABKIT_ENV = ("LABKIT_BACKEND", "LABKIT_ALLOWED_CONTEXTS", "KUBECONFIG", "WASMEDGE_PLUGIN_PATH")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Unset labkit's environment variables; returns the monkeypatch to set some again."""
    for name in LABKIT_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def write_kubeconfig(tmp_path: Path) -> Callable[..., Path]:
    """``write_kubeconfig(server, contexts=("lab",), current="lab") -> Path``: a kubeconfig file in tmp."""

    def write(server: str, contexts: tuple[str, ...] = ("lab",), current: str | None = "lab") -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "u", "user": {"token": "test-token"}}],
            "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts],
        }
        if current:
            doc["current-context"] = current
        path = tmp_path / "kubeconfig.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    return write


@pytest.fixture(scope="module")
def sandbox_cluster(tmp_path_factory):
    """A ``labkit.connect("sandbox")`` Cluster on a private 1-node sandbox daemon, for one test module."""
    from labkit.cluster import connect

    home = tmp_path_factory.mktemp("labkit-home")
    with pytest.MonkeyPatch.context() as mp, sandbox_daemon(home, nodes=1):
        mp.setenv("LABKIT_HOME", str(home))
        mp.setenv("LABKIT_PROGRESS", "plain")
        mp.delenv("LABKIT_BACKEND", raising=False)
        yield connect("sandbox")


@pytest.fixture
def private_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 1-node sandbox daemon under ``tmp_path/home`` (LABKIT_HOME, which notebook kernels inherit), stopped after."""
    home = tmp_path / "home"
    monkeypatch.setenv("LABKIT_HOME", str(home))
    monkeypatch.delenv("LABKIT_BACKEND", raising=False)
    with sandbox_daemon(home, nodes=1):
        yield home
