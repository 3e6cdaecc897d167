"""A real sandbox daemon for the integration tests, and the real kubectl pointed at it."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.sandboxes import sandbox_daemon

#: A plain kubectl 1.32 binary when the machine has the Google Cloud SDK dispatcher; else whatever is on PATH.
_VERSIONED = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.32")
KUBECTL = str(_VERSIONED) if _VERSIONED.exists() else shutil.which("kubectl")


@dataclass(frozen=True)
class Kubectl:
    """``kubectl(*args, check=True, input=None) -> CompletedProcess`` run with *env* (its KUBECONFIG and HOME).

    ``binary`` and ``env`` are there for tests that start kubectl themselves (watches).
    """

    env: dict[str, str]
    binary: str = field(default_factory=lambda: KUBECTL or "kubectl")

    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,  # noqa: A002 (subprocess.run's name for it)
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        result = subprocess.run(
            argv, check=False, env=self.env, capture_output=True, text=True, input=input, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result


@pytest.fixture(scope="session")
def sandbox_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("labkit-home")


@pytest.fixture(scope="session")
def sandbox(sandbox_home):
    """A running 2-node sandbox daemon (a separate process), stopped at the end of the session."""
    with sandbox_daemon(sandbox_home, nodes=2) as info:
        yield info


@pytest.fixture(scope="session")
def kubectl(sandbox, sandbox_home):
    """``kubectl(*args, check=True, input=None) -> CompletedProcess`` against the sandbox."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl)")
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig), "HOME": str(sandbox_home)}
    return Kubectl(env)


@pytest.fixture(scope="session")
def api_client(sandbox):
    """The official kubernetes Python client configured from the sandbox kubeconfig."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(sandbox.kubeconfig), context="labkit-sandbox")


@pytest.fixture
def namespace(kubectl, request):
    """A fresh namespace per test, deleted afterwards."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def raw(sandbox):
    """``raw(method, path, body=None, auth=<admin token>, content_type=json, headers=None) -> (status, dict)``.

    One request over real HTTPS, for the status codes and headers kubectl does not show.
    """
    token = (sandbox.kubeconfig.parent / "admin-token").read_text().strip()
    context = ssl.create_default_context(cafile=str(sandbox.kubeconfig.parent / "ca.crt"))

    def call(
        method: str,
        path: str,
        body=None,
        *,
        auth: str | None = token,
        content_type="application/json",
        headers: dict[str, str] | None = None,
    ):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(sandbox.server + path, data=data, method=method)  # noqa: S310 (https)
        if auth:
            request.add_header("Authorization", f"Bearer {auth}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, context=context, timeout=15) as r:  # noqa: S310 (https)
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    return call


@pytest.fixture(scope="session")
def kubectl_for() -> Callable[[Path], Kubectl]:
    """``kubectl_for(home)``: kubectl against the sandbox in *home* (tests that run a sandbox of their own)."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl)")

    def for_home(home: Path) -> Kubectl:
        return Kubectl({**os.environ, "KUBECONFIG": str(home / "kubeconfig"), "HOME": str(home.parent)})

    return for_home
