"""The ``labkit`` command as a user runs it: a real subprocess (labkit.cli)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def labkit(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LABKIT_BACKEND", "LABKIT_ALLOWED_CONTEXTS")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "labkit.cli", *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )


def test_help_lists_the_commands():
    done = labkit("--help")
    assert done.returncode == 0
    for command in ("doctor", "run", "clean"):
        assert command in done.stdout


def test_no_command_prints_help_and_exits_2():
    done = labkit()
    assert done.returncode == 2 and "usage: labkit" in done.stdout


def test_run_unknown_notebook_lists_the_available_ones():
    done = labkit("run", "nonexistent")
    assert done.returncode == 1
    assert done.stderr.startswith("error: no notebook matches 'nonexistent'; available: 00-welcome-and-preflight")
    assert "fix:" in done.stderr and "Traceback" not in done.stderr


def test_debug_shows_the_traceback():
    done = labkit("--debug", "run", "nonexistent")
    assert done.returncode == 1 and "Traceback" in done.stderr and "LabkitError" in done.stderr


def test_doctor_json_refuses_a_production_context_and_exits_1():
    done = labkit("doctor", "--backend", "kubeconfig", "--context", "prod", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    cluster = next(c for c in report["checks"] if c["name"] == "cluster")
    assert report["ok"] is False and cluster["status"] == "fail" and "allow-list" in cluster["detail"]


def test_clean_refuses_without_confirmation_when_not_a_terminal(tmp_path, write_kubeconfig, closed_port):
    # the allow-list check passes, then the closed port fails: clean must report it, not crash
    path = write_kubeconfig(f"https://127.0.0.1:{closed_port}")
    done = labkit(
        "clean", "--backend", "kubeconfig", env_extra={"KUBECONFIG": str(path), "LABKIT_ALLOWED_CONTEXTS": "lab"}
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: the Kubernetes API server at") and "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["run", "--help"], ["doctor", "--help"], ["clean", "--help"]])
def test_subcommand_help(args):
    done = labkit(*args)
    assert done.returncode == 0 and "--backend" in done.stdout


def test_image_import_of_a_non_archive_names_the_file_and_what_an_oci_archive_is(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    done = labkit("image", "import", str(notes), env_extra={"LABKIT_HOME": str(tmp_path / "home")})
    assert done.returncode == 1
    problem, fix = done.stderr.splitlines()
    assert problem.startswith(f"error: {notes} is not an OCI image archive: it is not even a tar file.")
    assert "index.json" in problem and fix.startswith("  fix: pass one written by `labkit image build`")
    assert "ReadError" not in done.stderr  # tarfile's list of failed decompressors stays out of sight
