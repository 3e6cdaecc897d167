"""The ``./lab`` front door as a newcomer uses it: pass-through to labkit, installs, JupyterLab as root.

Each test gets its own venv directory (``LABKIT_VENV``) whose ``bin/`` links to this interpreter's
``labkit`` and ``jupyter``; its ``bin/python`` records pip and ipykernel installs instead of running them
(a real install takes minutes and the network), and runs everything else with this interpreter.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labkit import config

LAB = config.project_root() / "lab"
PYPROJECT_HASH = hashlib.sha256((config.project_root() / "pyproject.toml").read_bytes()).hexdigest()
#: What a setuptools build backend prints during ``pip install -e`` (dozens of lines, on stderr).
NOISY_BUILD = "SetuptoolsDeprecationWarning: License classifiers are deprecated."


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    real_bin = Path(sys.executable).parent
    for tool in ("labkit", "jupyter"):
        (venv / "bin" / tool).symlink_to(real_bin / tool)
    python = venv / "bin" / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'if [[ "$1 $2" == "-m pip" || "$1 $2" == "-m ipykernel" ]]; then\n'
        f'    echo "$*" >>{venv}/installs\n'
        f'    [[ "$2" == pip ]] && for i in $(seq 50); do echo "{NOISY_BUILD}" >&2; done\n'
        "    exit 0\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    return venv


def stamp(venv: Path, extras: str) -> None:
    (venv / ".labkit-installed").write_text(f"{PYPROJECT_HASH} {extras}\n")


def lab(venv: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABKIT_VENV": str(venv)}
    return subprocess.run([str(LAB), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def installs(venv: Path) -> list[str]:
    log = venv / "installs"
    return log.read_text().splitlines() if log.exists() else []


def test_other_commands_pass_through_to_the_venv_labkit(venv):
    stamp(venv, "test")
    doctor = lab(venv, "doctor", "--help")
    assert doctor.returncode == 0 and doctor.stdout.startswith("usage: labkit doctor")
    sandbox = lab(venv, "sandbox", "--help")
    assert sandbox.returncode == 0 and sandbox.stdout.startswith("usage: labkit sandbox")
    run_help = lab(venv, "run", "--help")  # no "executed notebooks" claim after a run that ran nothing
    assert run_help.returncode == 0 and "executed notebooks and summary" not in run_help.stderr
    assert installs(venv) == []


def test_a_superset_install_satisfies_a_subset_and_switching_never_reinstalls(venv):
    stamp(venv, "test")
    setup = lab(venv, "setup")  # wants everything (test,lab,site,browser): installs the union once
    assert setup.returncode == 0, setup.stderr
    everything = "browser,lab,site,test"
    assert f"-m pip install --disable-pip-version-check -e {config.project_root()}[{everything}]" in installs(venv)
    assert (venv / ".labkit-installed").read_text() == f"{PYPROJECT_HASH} {everything}\n"
    before = len(installs(venv))
    for args in (("run", "--help"), ("jupyter", "--version"), ("site", "--help"), ("doctor", "--help")):
        assert lab(venv, *args).returncode == 0
    assert len(installs(venv)) == before  # run (test) after jupyter (lab,test) and back: nothing installed


def test_site_builds_the_site_with_the_site_extra(venv):
    stamp(venv, "test")
    done = lab(venv, "site", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: labkit site build")
    assert any(line.endswith(f"-e {config.project_root()}[site,test]") for line in installs(venv))


def test_a_stamp_in_the_old_order_still_counts(venv):
    stamp(venv, "test,lab")  # what ./lab wrote before it sorted the extras
    assert lab(venv, "jupyter", "--version").returncode == 0
    assert installs(venv) == []


def test_a_changed_pyproject_reinstalls_with_the_extras_asked_for(venv):
    (venv / ".labkit-installed").write_text("0000 lab,test\n")
    assert lab(venv, "run", "--help").returncode == 0
    assert any(line.endswith(f"-e {config.project_root()}[test]") for line in installs(venv))


def test_pip_chatter_goes_to_a_log_not_the_terminal(venv):
    done = lab(venv, "setup")
    assert done.returncode == 0
    assert "SetuptoolsDeprecationWarning" not in done.stderr + done.stdout
    assert "SetuptoolsDeprecationWarning" in (venv / ".labkit-pip.log").read_text()
    assert done.stderr.splitlines()[-1].startswith("lab: ready: ./lab doctor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="Jupyter's root refusal only happens as root (containers, Binder)")
@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="JupyterLab comes with the lab extra")
def test_jupyter_opens_as_root(venv, tmp_path):
    stamp(venv, "lab,test")
    port = free_port()
    env = {**os.environ, "LABKIT_VENV": str(venv), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    args = [f"--port={port}", "--no-browser", "--IdentityProvider.token=t", "--ServerApp.ip=127.0.0.1"]
    server = subprocess.Popen(
        [str(LAB), "jupyter", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline, answer = time.monotonic() + 90, None
        while answer is None and server.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as r:
                    answer = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        exited = server.poll()
        assert exited is None, (
            f"jupyter lab exited {exited}: {server.stderr.read().decode(errors='replace') if server.stderr else ''}"
        )
        assert answer is not None and "version" in answer
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
