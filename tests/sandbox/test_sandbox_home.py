"""The sandbox's state directory: private files, a refusal on a shared directory, and a port that stays put.

A private daemon per test (real processes, real TCP, real kubectl).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from labkit import cli
from labkit.errors import LabkitError
from labkit.sandbox import client as daemon

pytestmark = pytest.mark.slow
KubectlFor = Callable[[Path], Callable[..., subprocess.CompletedProcess[str]]]

TALKER = """
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  runtimeClassName: wasmedge
  containers: [{name: demo, image: labkit/wasi-demo:latest}]
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "sandbox"
    yield home
    daemon.stop(home=home)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def kubeconfig_port(home: Path) -> int:
    server = yaml.safe_load((home / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1])


def test_the_state_directory_its_database_secrets_and_pod_logs_are_the_owners_alone(
    home: Path, kubectl_for: KubectlFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(home.parent))
    home.parent.chmod(0o755)  # a LABKIT_HOME others can read is made the owner's alone too
    old_umask = os.umask(0)  # the most careless umask: every mode below is labkit's own doing
    try:
        daemon.ensure_running(nodes=1, home=home)
        kubectl = kubectl_for(home)
        kubectl("apply", "-f", "-", input=TALKER)
        deadline = time.monotonic() + 30
        while not (logs := list((home / "pod-logs").rglob("*.log"))) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.umask(old_umask)
    assert logs, "the pod wrote no log"
    for directory in (
        home.parent,
        home,
        *(home / d for d in ("pod-logs", "nodes", "kubelets", "images", "module-cache")),
    ):
        assert mode(directory) == 0o700, directory
    assert {p.name: mode(p) for p in logs} == {p.name: 0o600 for p in logs}
    for name in ("state.db", "state.db-wal", "state.db-shm", "secret", "admin-token", "kubeconfig", "server.key"):
        assert mode(home / name) == 0o600, name
    assert mode(home / "daemon.log") == 0o600


def test_a_state_directory_other_users_can_write_is_refused_by_up_and_by_the_daemon(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(LabkitError) as refused:
        daemon.ensure_running(nodes=1, home=shared)
    assert f"{shared} can be written by other users" in refused.value.problem
    assert refused.value.fix == f"make it yours alone: chmod 700 {shared}"
    # the daemon itself refuses too, whoever starts it
    started = subprocess.run(
        [sys.executable, "-m", "labkit.sandbox.daemon", "--home", str(shared), "--no-kubelets"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    assert f"chmod 700 {shared}" in started.stderr
    assert not (shared / "state.db").exists() and not (shared / "server.json").exists()


def test_down_and_up_and_a_killed_daemon_keep_the_port_and_a_taken_port_is_replaced_and_said(
    home: Path, kubectl_for: KubectlFor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = daemon.ensure_running(nodes=1, home=home)
    copied = home.parent / "copied-kubeconfig"
    copied.write_text((home / "kubeconfig").read_text())
    port = kubeconfig_port(home)
    assert first.server.endswith(f":{port}") and first.notice == ""

    assert daemon.stop(home=home)
    again = daemon.ensure_running(home=home)  # labkit sandbox down; labkit sandbox up
    assert again.server == first.server and again.notice == ""
    os.kill(again.pid, 9)  # a killed daemon: server.json is left behind, the port is still the one
    while daemon._alive(again.pid):
        time.sleep(0.05)
    restarted = daemon.ensure_running(home=home)
    assert restarted.server == first.server and restarted.pid != again.pid
    kubectl = kubectl_for(home)
    kubectl("--kubeconfig", str(copied), "get", "namespaces")  # the copy still reaches the sandbox

    assert daemon.stop(home=home)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the daemon's closed socket may linger
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        moved = daemon.ensure_running(home=home)
    assert moved.server != first.server
    assert moved.notice.startswith(f"port {port} is taken (Address already in use)")
    assert str(home / "kubeconfig") in moved.notice and moved.server in moved.notice
    assert kubeconfig_port(home) == int(moved.server.rsplit(":", 1)[1]) != port
    assert moved.notice in (home / "daemon.log").read_text()
    kubectl("get", "namespaces")  # the rewritten kubeconfig works
    monkeypatch.setenv("LABKIT_HOME", str(home.parent))
    assert cli.main(["sandbox", "up"]) == 0  # what the learner sees
    assert f"note: {moved.notice}" in capsys.readouterr().out
    assert cli.main(["sandbox", "status"]) == 0
    assert f"  note: {moved.notice}" in capsys.readouterr().out
