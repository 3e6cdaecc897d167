"""The notebook runner: selection by prefix, parameters, failing cells, summaries (labkit.runner)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labkit.errors import LabkitError
from labkit.runner import lab_namespace, parse_value, run_notebooks, select_notebooks


def write_notebook(path: Path, *sources: str) -> Path:
    cells = [nbformat.v4.new_code_cell('backend = "x"\nnamespace = "x"\ntimeout_s = 1')]
    cells[0].metadata["tags"] = ["parameters"]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def labs(tmp_path: Path) -> Path:
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / "00-hello.ipynb", "print(backend, namespace, timeout_s)")
    write_notebook(
        root / "01-broken.ipynb", "x = 1", "\n# a comment line is skipped\nraise ValueError('boom')", "y = 2"
    )
    write_notebook(root / "02-after.ipynb", "print('after')")
    return root


def test_select_by_number_name_or_file(labs):
    assert [p.name for p in select_notebooks(["01"], labs)] == ["01-broken.ipynb"]
    assert [p.name for p in select_notebooks(["00-hello", "02-after.ipynb"], labs)] == [
        "00-hello.ipynb",
        "02-after.ipynb",
    ]
    assert [p.stem for p in select_notebooks([], labs)] == ["00-hello", "01-broken", "02-after"]


def test_unknown_name_lists_the_available_notebooks(labs):
    with pytest.raises(LabkitError) as e:
        select_notebooks(["07"], labs)
    assert "no notebook matches '07'" in e.value.problem and "00-hello, 01-broken, 02-after" in e.value.problem


def test_ambiguous_prefix_is_refused(labs):
    with pytest.raises(LabkitError, match="matches several"):
        select_notebooks(["0"], labs)


def test_namespace_and_parameter_values():
    assert lab_namespace(Path("05-load-balanced.ipynb")) == "lab-05"
    assert (parse_value("300"), parse_value("true"), parse_value("lab-9"), parse_value('["a"]')) == (
        300,
        True,
        "lab-9",
        ["a"],
    )


def test_passing_notebook_gets_parameters_and_summary(labs, tmp_path, clean_env):
    out = tmp_path / "out"
    lines: list[str] = []
    summary = run_notebooks(
        ["00"], backend="kubeconfig", parameters={"timeout_s": 7}, output_dir=out, root=labs, echo=lines.append
    )
    assert summary.ok and [r.status for r in summary.results] == ["passed"]
    executed = nbformat.read(out / "00-hello.ipynb", 4)
    printed = [o["text"] for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if "text" in o]
    assert printed == ["kubeconfig lab-00 7\n"]
    assert json.loads((out / "summary.json").read_text())["results"][0]["notebook"] == "00-hello"
    assert "| 00-hello | passed |" in (out / "summary.md").read_text()
    assert lines[0] == "[1/1] 00-hello ..." and lines[1].startswith("[1/1] 00-hello passed in")
    assert "1/1 passed (backend kubeconfig) in " in summary.table()
    # the whole run's wall time: at least the notebook's own, in the table, the markdown and the JSON
    assert summary.wall_seconds >= summary.results[0].seconds > 0
    assert summary.table().endswith(f" in {summary.wall_seconds:.1f} s")
    assert f"Total: {summary.wall_seconds:.1f} s of wall time for 1 notebook(s)." in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["wall_seconds"] == summary.wall_seconds


def test_failing_cell_is_named_and_run_stops(labs, tmp_path, clean_env):
    summary = run_notebooks(["01", "02"], output_dir=tmp_path / "out", root=labs, echo=lambda _: None)
    assert not summary.ok and len(summary.results) == 1  # 02 never ran: no --keep-going
    result = summary.results[0]
    # Executed in order: [1] parameters, [2] papermill's injected parameters, [3] x = 1, [4] the raise.
    executed = nbformat.read(tmp_path / "out/01-broken.ipynb", 4)
    raising = next(c for c in executed.cells if "raise ValueError" in c.source)
    assert result.cell == raising.execution_count == 4  # the [4] JupyterLab shows beside the cell
    assert (result.error, result.cell_starts) == ("ValueError: boom", "# a comment line is skipped")
    failure = result.failure()
    assert failure.problem == (
        "notebook 01-broken failed in cell In [4] (it starts with '# a comment line is skipped'): ValueError: boom"
    )
    assert any("In [4]" in "".join(c.source) for c in executed.cells if c.cell_type == "markdown")  # papermill's
    assert json.loads((tmp_path / "out/summary.json").read_text())["ok"] is False


def test_keep_going_runs_the_rest(labs, tmp_path, clean_env):
    summary = run_notebooks(["01", "02"], output_dir=tmp_path / "out", root=labs, keep_going=True, echo=lambda _: None)
    assert [(r.notebook, r.status) for r in summary.results] == [("01-broken", "failed"), ("02-after", "passed")]


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(importlib.import_module("labkit.runner"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_a_dying_kernel_is_a_failed_notebook_not_a_traceback(labs, tmp_path, clean_env):
    write_notebook(labs / "03-dies.ipynb", "import os\nos._exit(9)  # the kernel process ends, as after an OOM kill")
    summary = run_notebooks(["03"], output_dir=tmp_path / "out", root=labs, echo=lambda _: None)
    result = summary.results[0]
    assert (result.notebook, result.status) == ("03-dies", "failed")
    assert (result.error or "").startswith("DeadKernelError")


def test_unknown_parameter_is_refused_naming_it_and_the_known_ones(labs, tmp_path, clean_env):
    with pytest.raises(LabkitError) as e:
        run_notebooks(["00"], parameters={"timeout": 300}, output_dir=tmp_path / "out", root=labs)
    assert e.value.problem == (
        "notebook 00-hello has no parameter 'timeout'; its parameters cell sets: backend, namespace, timeout_s"
    )
    assert not (tmp_path / "out").exists()  # refused before any kernel started


def test_the_kernel_does_not_warn_about_tcp(labs, tmp_path, clean_env, capfd):
    """The kernel inherits our stderr: ipykernel's plain-TCP warning would land in every run's output."""
    summary = run_notebooks(["00"], output_dir=tmp_path / "out", root=labs, echo=lambda _: None)
    assert summary.ok
    assert "without encryption" not in capfd.readouterr().err


def test_ctrl_c_says_what_was_cleaned_up_and_what_is_left(labs, tmp_path, clean_env):
    pid_file = tmp_path / "kernel.pid"
    slow_cell = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)"
    write_notebook(labs / "03-slow.ipynb", slow_cell)
    out = tmp_path / "out"
    child = (
        # A shell's background job starts with SIGINT ignored; a terminal's foreground `labkit run` does not.
        "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys\nfrom pathlib import Path\nimport labkit.runner\nfrom labkit.cli import main\n"
        f"labkit.runner.notebooks_dir = lambda: Path({str(labs)!r})\n"
        f"sys.exit(main(['run', '03', '--backend', 'sandbox', '--output-dir', {str(out)!r}]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "LABKIT_COMMAND": "./lab"},  # as ./lab runs it: labkit itself is not on PATH
    )
    deadline = time.monotonic() + 90
    while not pid_file.exists() and time.monotonic() < deadline:  # the kernel is running the slow cell
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the terminal's foreground process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.startswith("error: interrupted during notebook 03-slow; cleaned up: its kernel was shut down")
    assert "(./lab clean --lab 03-slow --yes)" in err and "(./lab sandbox down stops it)" in err
    assert "Traceback" not in err and "zmq" not in err.lower()
    assert json.loads((out / "summary.json").read_text())["results"][0]["status"] == "interrupted"
    with pytest.raises(ProcessLookupError):  # the kernel really is gone, as the message says
        os.kill(int(pid_file.read_text()), 0)


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """The runs' locks live under LABKIT_HOME: a private one per test, never the user's."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))


def start_run(labs: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    """``labkit run`` as its own process, with *labs* as the notebooks folder."""
    child = (
        "import sys\nfrom pathlib import Path\nimport labkit.runner\nfrom labkit.cli import main\n"
        f"labkit.runner.notebooks_dir = lambda: Path({str(labs)!r})\n"
        f"sys.exit(main(['run', *{list(args)!r}, '--backend', 'kubeconfig', '--output-dir', {str(out)!r}]))"
    )
    return subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_in_one_lab_namespace_are_refused_with_the_holder_and_another_namespace_runs_alongside(
    labs, tmp_path, clean_env
):
    started, release = tmp_path / "started", tmp_path / "release"
    write_notebook(
        labs / "04-waits.ipynb",
        "import pathlib, time\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        f"while not pathlib.Path({str(release)!r}).exists():\n    time.sleep(0.05)",
    )
    out = tmp_path / "out"
    first = start_run(labs, out, "04")
    deadline = time.monotonic() + 90
    while not started.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    assert started.exists(), first.communicate()
    second = start_run(labs, out, "04")
    _, err = second.communicate(timeout=90)
    assert second.returncode == 1
    assert f"notebook 04 is running in another process (pid {first.pid}) in namespace lab-04" in err
    assert "wait for it to finish, or pass -p namespace lab-04-2 to run notebook 04 in a namespace of its own" in err
    alongside = start_run(labs, out, "04", "-p", "namespace", "lab-04-2")  # as the message suggests
    time.sleep(1.0)
    release.touch()
    first_out, _ = first.communicate(timeout=90)
    alongside_out, _ = alongside.communicate(timeout=90)
    assert (first.returncode, alongside.returncode) == (0, 0)
    runs = sorted(out.glob("summary-*.json"))
    assert len(runs) == 2 and len(list(out.glob("summary-*.md"))) == 2
    summaries = [json.loads(p.read_text()) for p in runs]
    assert {s["results"][0]["output"] for s in summaries} == {
        str(out / "04-waits.ipynb"),
        str(out / "04-waits.lab-04-2.ipynb"),
    }
    assert all(s["ok"] and f"summary-{s['run']}.md" in first_out + alongside_out for s in summaries)
    assert json.loads((out / "summary.json").read_text()) in summaries  # the latest, whole
    assert (tmp_path / "home" / "locks").stat().st_mode & 0o777 == 0o700
    assert not list(out.glob(".*labkit-tmp"))  # no half-written summary left behind


def test_a_namespace_that_is_no_namespace_name_is_refused_before_anything_runs(labs, tmp_path, clean_env):
    with pytest.raises(LabkitError, match=r"'\.\./\.\./x' is not a valid namespace name"):
        run_notebooks(["00"], parameters={"namespace": "../../x"}, output_dir=tmp_path / "out", root=labs)
    assert not (tmp_path / "out" / "summary.json").exists()
