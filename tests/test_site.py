"""The site (``labkit site build``): a Jupyter Book whose build fails on any warning, with `labkit run`'s outputs.

The build tests run the real Jupyter Book (Sphinx) on the real README, docs and notebooks; nothing is executed
(the "executed copy" here is a source notebook with an output written into it, as papermill would leave it).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from labkit import config
from labkit.errors import LabkitError
from labkit.site import DEFAULT_SITE_DIR, binder_url, build_site, executed_copy, landing_page, resolve_repository

ROOT = config.project_root()
NOTEBOOKS = ROOT / "notebooks"
OUTPUT_MARK = "site-test: an output of the executed copy"


def needs_jupyter_book() -> None:
    if importlib.util.find_spec("jupyter_book") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must build the site, but jupyter-book is not installed (the site extra)")
        pytest.skip("jupyter-book is not installed (pip install -e '.[site]')")


def executed_like_papermill(notebook: Path, target: Path, text: str = OUTPUT_MARK) -> Path:
    """*notebook* as papermill writes it: an injected-parameters cell and outputs (one stream, here)."""
    nb = nbformat.read(notebook, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell('backend = "sandbox"\nnamespace = "lab-00"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(params + 1, injected)
    first_code = next(c for c in nb.cells[params + 2 :] if c.cell_type == "code")
    first_code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    first_code.execution_count = 3
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def test_landing_page_is_the_readme_with_a_binder_badge_under_its_title():
    page = landing_page("# labkit\n\n## The journey\n", "me/labkit")
    title, rest = page.split("\n", 1)
    assert title == "# labkit"
    launch = "https://mybinder.org/v2/gh/me/labkit/main?urlpath=lab/tree/notebooks/00-welcome-and-preflight.ipynb"
    assert f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({launch})" in rest
    assert rest.index("Launch the notebooks on Binder") < rest.index("## The journey")
    assert binder_url("a/b", "dev", "x.ipynb") == "https://mybinder.org/v2/gh/a/b/dev?urlpath=lab/tree/x.ipynb"


def test_repository_comes_from_the_argument_or_github_actions(monkeypatch):
    monkeypatch.setenv("GITHUB_REPOSITORY", "org/kit")
    assert resolve_repository() == "org/kit"
    assert resolve_repository("me/labkit") == "me/labkit"
    with pytest.raises(LabkitError, match="not a GitHub repository"):
        resolve_repository("https://github.com/me/labkit")


def test_an_executed_copy_counts_only_while_its_cells_match_the_notebook_and_it_passed(tmp_path):
    source = NOTEBOOKS / "00-welcome-and-preflight.ipynb"
    assert executed_copy(source, tmp_path) == (None, "missing")  # never run
    copy = executed_like_papermill(source, tmp_path / source.name)
    assert executed_copy(source, tmp_path) == (copy, "current")  # the injected cell and outputs do not count

    nb = nbformat.read(copy, as_version=4)
    failing = next(c for c in nb.cells if c.cell_type == "code" and c.outputs)
    failing.outputs.append(nbformat.v4.new_output("error", ename="WaitFailed", evalue="job/x", traceback=[]))
    banner = nbformat.v4.new_markdown_cell('<span style="color:red">An Exception was encountered at In [3]</span>')
    banner.metadata["tags"] = ["papermill-error-cell-tag"]  # what papermill adds before the failed cell
    nb.cells.insert(nb.cells.index(failing), banner)
    nbformat.write(nb, copy)
    assert executed_copy(source, tmp_path) == (None, "failed")  # a failed run is not published

    nb.cells[-1].source += "\nedited since the run"
    nbformat.write(nb, copy)
    assert executed_copy(source, tmp_path) == (None, "stale")  # the page shows the source instead


@pytest.mark.site
@pytest.mark.slow
def test_the_site_builds_without_warnings_from_the_executed_copies(tmp_path):
    needs_jupyter_book()
    executed = tmp_path / "executed"
    executed_like_papermill(NOTEBOOKS / "00-welcome-and-preflight.ipynb", executed / "00-welcome-and-preflight.ipynb")
    stale = executed_like_papermill(NOTEBOOKS / "01-wasi-demo-app.ipynb", executed / "01-wasi-demo-app.ipynb")
    nb = nbformat.read(stale, as_version=4)
    nb.cells[0].source += "\nan older version of the notebook"
    nbformat.write(nb, stale)

    built = build_site(tmp_path / "site", executed_dir=executed, repository="me/labkit")  # raises on any warning

    assert built.executed == ["00-welcome-and-preflight"]
    assert built.stale == ["01-wasi-demo-app"] and built.failed == []
    assert set(built.sources) == {p.stem for p in NOTEBOOKS.glob("*.ipynb")} - {"00-welcome-and-preflight"}
    index = built.index.read_text()
    assert "mybinder.org/badge_logo.svg" in index and "mybinder.org/v2/gh/me/labkit/main" in index
    assert "The journey" in index and 'class="mermaid"' in index  # the README's diagram, drawn
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        page = (built.html / "notebooks" / f"{notebook.stem}.html").read_text()
        assert f"mybinder.org/v2/gh/me/labkit/main?urlpath=lab/tree/notebooks/{notebook.stem}.ipynb" in page
        assert (OUTPUT_MARK in page) == (notebook.stem == "00-welcome-and-preflight"), notebook.stem
    for doc in (ROOT / "docs").glob("*.md"):
        assert (built.html / "docs" / f"{doc.stem}.html").exists()


@pytest.mark.site
@pytest.mark.slow
def test_a_link_to_a_missing_page_fails_the_build(tmp_path):
    needs_jupyter_book()
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "docs").mkdir()
    shutil.copytree(ROOT / "book", root / "book")
    shutil.copy2(NOTEBOOKS / "00-welcome-and-preflight.ipynb", root / "notebooks")
    (root / "docs" / "guide.md").write_text("# Guide\n\nSee [the reports](reports.md).\n")  # not in docs/
    (root / "README.md").write_text("# kit\n\n## The journey\n\nRead [the guide](docs/guide.md).\n")

    with pytest.raises(LabkitError, match="the site build failed") as failed:
        build_site(tmp_path / "site", executed_dir=tmp_path / "none", repository="me/labkit", root=root)
    assert "reports.md" in str(failed.value)


def test_the_pages_workflow_publishes_what_lab_site_builds():
    workflow = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text())
    steps = workflow["jobs"]["build"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert any(run.startswith("./lab run") for run in runs), "the notebooks run before the site is built"
    assert any(run.startswith("./lab site") for run in runs)
    upload = next(step for step in steps if str(step.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == str(DEFAULT_SITE_DIR / "html")
    assert workflow["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
