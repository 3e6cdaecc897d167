"""The notebooks layer: papermill executes every notebook, then nbval checks that its marked outputs are stable.

Each notebook runs once with papermill (the same way ``labkit run`` does) into a temporary directory; nbval
then re-executes that executed copy and compares the cells marked ``# NBVAL_CHECK_OUTPUT`` after the
substitutions in ``sanitize.cfg`` (pod names, timestamps, IPs, ports, durations, temp paths).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from labkit import config
from labkit.runner import NotebookResult, available_notebooks, lab_namespace, run_notebook

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]  # each runs notebooks in kernels: 10-30 s

SANITIZE = Path(__file__).with_name("sanitize.cfg")
NOTEBOOKS = available_notebooks()
_executed: dict[Path, NotebookResult] = {}


@pytest.fixture(scope="module")
def executed_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where executed copies go; on the sandbox, also a private LABKIT_HOME whose daemon is stopped at the end."""
    home = tmp_path_factory.mktemp("labkit-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_HOME", str(home))  # the kernels inherit it: the learner's ~/.labkit is left alone
        yield tmp_path_factory.mktemp("executed-notebooks")
        if config.resolve_backend() == "sandbox":
            try:
                from labkit.sandbox import client as daemon
            except ImportError:
                return  # no sandbox in this checkout: nothing was started
            daemon.stop()


def execute(notebook: Path, out_dir: Path) -> NotebookResult:
    """Run *notebook* with papermill once (both phases below need the executed copy)."""
    if notebook not in _executed:
        params = {"backend": config.resolve_backend(), "namespace": lab_namespace(notebook)}
        _executed[notebook] = run_notebook(notebook, out_dir / notebook.name, params)
    return _executed[notebook]


def check_stable(result: NotebookResult, cwd: Path) -> None:
    """nbval re-executes the executed copy and compares the marked outputs, sanitized."""
    # A separate pytest process: nbval is a collection plugin and needs its own session.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--nbval-lax",
            "--nbval-current-env",
            f"--nbval-sanitize-with={SANITIZE}",
            "--nbval-cell-timeout=600",
            result.output,
        ],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"nbval found unstable outputs in {result.notebook}:\n{done.stdout[-6000:]}"


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00-welcome-and-preflight.ipynb"]


# One parameter list, so each notebook's nbval check runs right after its own execution (before the
# next notebook changes the cluster).
@pytest.mark.parametrize(
    ("notebook", "phase"),
    [(nb, phase) for nb in NOTEBOOKS for phase in ("executes", "outputs-stable")],
    ids=lambda v: v.stem if isinstance(v, Path) else v,
)
def test_notebook(notebook: Path, phase: str, executed_dir: Path):
    result = execute(notebook, executed_dir)
    if phase == "executes":
        assert result.status == "passed", str(result.failure())
    elif result.status != "passed":
        pytest.fail(f"{notebook.stem} did not execute, so its outputs cannot be compared (see its 'executes' test)")
    else:
        check_stable(result, executed_dir)


#: What a notebook may import from labkit: the package's face and its public subpackages.
PUBLIC_MODULES = {"labkit", "labkit.apps", "labkit.host", "labkit.manifests", "labkit.measure", "labkit.wasm"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_only_the_public_face(notebook: Path):
    imported = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    labkit_modules = {m for m in imported if m.split(".")[0] == "labkit"}
    assert labkit_modules and labkit_modules <= PUBLIC_MODULES, labkit_modules - PUBLIC_MODULES
