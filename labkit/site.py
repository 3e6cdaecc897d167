"""The kit's website: a Jupyter Book of the README's journey and the notebooks with their executed outputs.

``labkit site build`` (``./lab site``) stages the pages in ``<output>/src``: the README as the landing page (with a
Binder badge and launch link), ``docs/*.md``, and each notebook, taken from ``labkit run``'s output directory when
an executed copy of the same cells is there and ran without an error, and from ``notebooks/`` otherwise. It then
runs Jupyter Book 1 (Sphinx), which executes nothing, with every warning an error: a missing page or reference fails
the build.

>>> built = build_site(Path("build/site"))    # doctest: +SKIP
>>> built.index                               # doctest: +SKIP
PosixPath('build/site/html/index.html')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labkit import config
from labkit.errors import LabkitError, PrerequisiteMissing
from labkit.runner import DEFAULT_OUTPUT_DIR, available_notebooks

DEFAULT_SITE_DIR = Path("build/site")
#: Used when neither --repository nor GITHUB_REPOSITORY (set by GitHub Actions) names the repository.
DEFAULT_REPOSITORY = "labkit/labkit"
_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")


@dataclass
class SiteBuild:
    """What a build produced: the HTML directory and where each notebook's page came from."""

    html: Path
    repository: str
    executed: list[str] = field(default_factory=list)  # pages with the outputs of `labkit run`
    sources: list[str] = field(default_factory=list)  # pages without outputs (no current executed copy)
    stale: list[str] = field(default_factory=list)  # executed copies ignored: their cells differ from notebooks/
    failed: list[str] = field(default_factory=list)  # executed copies ignored: a cell failed in that run
    seconds: float = 0.0

    @property
    def index(self) -> Path:
        return self.html / "index.html"


def resolve_repository(repository: str | None = None) -> str:
    """``OWNER/NAME`` for the Binder and repository links: the argument, ``GITHUB_REPOSITORY``, or the default."""
    name = (repository or os.environ.get("GITHUB_REPOSITORY") or DEFAULT_REPOSITORY).strip()
    if not _REPOSITORY.fullmatch(name):
        raise LabkitError(f"{name!r} is not a GitHub repository name", "pass --repository OWNER/NAME")
    return name


def binder_url(repository: str, branch: str = "main", path: str = "notebooks/00-welcome-and-preflight.ipynb") -> str:
    """mybinder.org's launch URL opening *path* in JupyterLab.

    >>> binder_url("me/labkit")
    'https://mybinder.org/v2/gh/me/labkit/main?urlpath=lab/tree/notebooks/00-welcome-and-preflight.ipynb'
    """
    return f"https://mybinder.org/v2/gh/{repository}/{branch}?urlpath=lab/tree/{path}"


def landing_page(readme: str, repository: str, branch: str = "main") -> str:
    """The README with a Binder badge and launch link under its title."""
    launch = binder_url(repository, branch)
    banner = (
        f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({launch})\n\n"
        f"**[Launch the notebooks on Binder]({launch})**: JupyterLab in your browser with the sandbox "
        "cluster already up, nothing to install. Or read them here, run once with their outputs: "
        "start with the first page of *The journey* in the menu.\n"
    )
    title, _, rest = readme.partition("\n")
    return f"{title}\n\n{banner}{rest}"


#: Cells papermill adds to an executed copy: the injected parameters, and the banners around a failed cell.
PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _cells(notebook: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, source) of each cell, without the cells papermill adds: what a run does not change."""
    cells = []
    for cell in notebook.get("cells", []):
        if PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags") or []):
            continue
        source = cell.get("source", "")
        cells.append((cell.get("cell_type", ""), "".join(source) if isinstance(source, list) else source))
    return cells


def executed_copy(notebook: Path, executed_dir: Path) -> tuple[Path | None, str]:
    """The executed copy of *notebook* in *executed_dir* and its state.

    ``(copy, "current")`` when it has the notebook's cells and no error output; otherwise ``(None, why)`` with
    why ``"missing"``, ``"stale"`` (the notebook was edited since the run, or the copy is unreadable) or
    ``"failed"`` (a cell raised in that run: the site shows a green run or none).
    """
    copy = executed_dir / notebook.name
    if not copy.is_file():
        return None, "missing"
    try:
        executed = json.loads(copy.read_text())
        same = _cells(executed) == _cells(json.loads(notebook.read_text()))
    except (ValueError, OSError):
        return None, "stale"
    if not same:
        return None, "stale"
    errors = [o for c in executed.get("cells", []) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return (None, "failed") if errors else (copy, "current")


def stage(src: Path, repository: str, executed_dir: Path, branch: str = "main", root: Path | None = None) -> SiteBuild:
    """Lay out the book's sources in *src* (emptied first), from the checkout *root* (default: this one)."""
    root = root or config.project_root()
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    built = SiteBuild(html=src.parent / "html", repository=repository)

    book = yaml.safe_load((root / "book" / "_config.yml").read_text())
    book["repository"]["url"] = f"https://github.com/{repository}"
    book["repository"]["branch"] = branch
    (src / "_config.yml").write_text(yaml.safe_dump(book, sort_keys=False))

    (src / "index.md").write_text(landing_page((root / "README.md").read_text(), repository, branch))
    docs = sorted((root / "docs").glob("*.md"))
    if docs:
        (src / "docs").mkdir()
        for doc in docs:
            shutil.copy2(doc, src / "docs" / doc.name)

    notebooks = available_notebooks(root / "notebooks")
    for notebook in notebooks:
        copy, state = executed_copy(notebook, executed_dir)
        shutil.copy2(copy or notebook, src / "notebooks" / notebook.name)
        (built.executed if copy else built.sources).append(notebook.stem)
        if state == "stale":
            built.stale.append(notebook.stem)
        elif state == "failed":
            built.failed.append(notebook.stem)

    chapters = [{"file": f"notebooks/{nb.stem}"} for nb in notebooks]
    parts = [{"caption": "The journey", "chapters": chapters}]
    toc: dict[str, Any] = {"format": "jb-book", "root": "index", "parts": parts}
    if docs:
        parts.append({"caption": "Reference", "chapters": [{"file": f"docs/{d.stem}"} for d in docs]})
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return built


def jupyter_book() -> str:
    """The ``jupyter-book`` command of this environment (the ``site`` extra)."""
    beside = Path(sys.executable).parent / "jupyter-book"
    found = str(beside) if beside.exists() else shutil.which("jupyter-book")
    if not found:
        raise PrerequisiteMissing("jupyter-book is not installed", "pip install -e '.[site]' (./lab site does it)")
    return found


def build_site(
    output_dir: Path = DEFAULT_SITE_DIR,
    *,
    executed_dir: Path = DEFAULT_OUTPUT_DIR,
    repository: str | None = None,
    branch: str = "main",
    root: Path | None = None,
) -> SiteBuild:
    """Stage and build the site into ``<output_dir>/html``; raise :class:`LabkitError` on any Sphinx warning."""
    start = time.monotonic()
    output_dir = Path(output_dir).resolve()
    built = stage(output_dir / "src", resolve_repository(repository), Path(executed_dir), branch, root)
    if built.html.exists():
        shutil.rmtree(built.html)
    log = output_dir / "build.log"
    # -W with --keep-going: every warning (a missing page, toc entry or reference; an unknown lexer) is an error,
    # and all of them are reported at once. -n also reports references to targets that do not exist.
    done = subprocess.run(
        [
            jupyter_book(),
            "build",
            str(output_dir / "src"),
            "--builder",
            "html",
            "--path-output",
            str(output_dir),
            "-W",
            "-n",
            "--keep-going",
            "--all",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    log.write_text(done.stdout + done.stderr)
    # Jupyter Book writes <path-output>/_build/html; the site is that directory, moved to <output_dir>/html.
    produced = output_dir / "_build" / "html"
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if re.search(r"\b(WARNING|ERROR)\b", line)]
    if done.returncode != 0 or warnings or not (produced / "index.html").exists():
        shown = "\n".join(warnings[:20]) or (done.stdout + done.stderr).strip()[-2000:]
        raise LabkitError(
            f"the site build failed (jupyter-book exit {done.returncode}, {len(warnings)} warning(s)):\n{shown}",
            f"fix each warning above; the whole log is {log}",
        )
    produced.rename(built.html)
    shutil.rmtree(output_dir / "_build", ignore_errors=True)
    built.seconds = time.monotonic() - start
    return built
