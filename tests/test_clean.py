"""``labkit clean`` against a real sandbox: only labelled objects go, namespaces first."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

daemon = pytest.importorskip("labkit.sandbox.client")

from kubernetes import client  # noqa: E402

from labkit.cluster import connect  # noqa: E402

LABELS = {"app.kubernetes.io/part-of": "labkit", "labkit.io/lab": "01-wasi-demo-app"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("labkit-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_HOME", str(home))
        mp.delenv("LABKIT_BACKEND", raising=False)
        yield home
        daemon.stop()


def labkit(home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LABKIT_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_clean_removes_exactly_the_labelled_objects(home):
    cluster = connect("sandbox")

    def meta(name, labels=None, ns=None):
        return client.V1ObjectMeta(name=name, labels=labels, namespace=ns)

    cluster.core.create_namespace(client.V1Namespace(metadata=meta("lab-01", LABELS)))
    cluster.core.create_namespaced_config_map("lab-01", client.V1ConfigMap(metadata=meta("inside", None, "lab-01")))
    cluster.core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("labelled", LABELS)))
    cluster.core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("mine")))
    other_lab = {**LABELS, "labkit.io/lab": "05-load-balanced"}
    cluster.core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("other-lab", other_lab)))

    asked = labkit(home, "clean", "--lab", "01-wasi-demo-app")
    assert asked.returncode == 1 and "re-run with --yes" in asked.stdout  # no terminal, no --yes: nothing deleted
    assert "namespace/lab-01" in asked.stdout and "configmap/inside" not in asked.stdout

    done = labkit(home, "clean", "--lab", "01-wasi-demo-app", "--yes")
    assert done.returncode == 0, done.stderr
    removed = [line for line in done.stdout.splitlines() if line.startswith("removed ")]
    assert removed == ["removed namespace/lab-01", "removed configmap/labelled (namespace default)"]
    left = {cm.metadata.name for cm in cluster.core.list_namespaced_config_map("default").items if cm.metadata}
    assert {"mine", "other-lab"} <= left and "labelled" not in left

    # Namespace deletion finishes in the background (contents first), as on a real cluster: wait for it.
    deadline = time.monotonic() + 30
    while any(ns.metadata and ns.metadata.name == "lab-01" for ns in cluster.core.list_namespace().items):
        assert time.monotonic() < deadline, "namespace lab-01 was never deleted"
        time.sleep(0.2)
    again = labkit(home, "clean", "--lab", "01-wasi-demo-app", "--yes")
    assert again.stdout == "nothing to clean: no labkit objects of lab 01-wasi-demo-app\n"
