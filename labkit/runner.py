"""Run the lab notebooks headless with papermill: ``labkit run`` and CI use this.

>>> summary = run_notebooks(["00"], backend="sandbox")    # doctest: +SKIP
>>> print(summary.table())                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from labkit import config
from labkit.errors import LabkitError, NotebookFailed, PrerequisiteMissing, RunInterrupted, cell_label
from labkit.fsutil import write_atomic
from labkit.runlock import namespace_locks

if TYPE_CHECKING:
    from jupyter_client.manager import AsyncKernelManager

DEFAULT_OUTPUT_DIR = Path("build/notebooks")
KERNEL = "python3"


def notebooks_dir() -> Path:
    return config.project_root() / "notebooks"


def available_notebooks(root: Path | None = None) -> list[Path]:
    """The lab notebooks in run order (sorted by their ``NN-`` prefix)."""
    root = root or notebooks_dir()
    return sorted(p for p in root.glob("*.ipynb") if not p.name.startswith("."))


def select_notebooks(names: list[str] | tuple[str, ...] = (), root: Path | None = None) -> list[Path]:
    """Resolve ``01``, ``01-wasi-demo-app`` or ``01-wasi-demo-app.ipynb`` to notebook paths (all when empty).

    An unknown or ambiguous name raises :class:`LabkitError` listing the available notebooks.
    """
    found = available_notebooks(root)
    if not names:
        return found
    chosen: list[Path] = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        exact = [p for p in found if p.stem == stem]
        matches = exact or [p for p in found if p.stem.startswith(stem)]
        if len(matches) != 1:
            problem = f"no notebook matches {name!r}" if not matches else f"{name!r} matches several notebooks"
            raise LabkitError(
                f"{problem}; available: {', '.join(p.stem for p in found) or 'none'}",
                "name a notebook by its number (e.g. `labkit run 00`) or full name",
            )
        chosen.extend(p for p in matches if p not in chosen)
    return chosen


def lab_namespace(notebook: Path) -> str:
    """The namespace a notebook works in: ``lab-NN`` from its number prefix.

    >>> lab_namespace(Path("notebooks/01-wasi-demo-app.ipynb"))
    'lab-01'
    """
    number = re.match(r"(\d+)", notebook.stem)
    return f"lab-{number.group(1)}" if number else f"lab-{notebook.stem}"


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: JSON when it parses (``120``, ``true``, ``[1,2]``), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def command_name() -> str:
    """How the learner runs labkit: ``./lab`` sets ``LABKIT_COMMAND`` (labkit is then not on PATH), else ``labkit``."""
    return os.environ.get("LABKIT_COMMAND") or "labkit"


def notebook_parameters(path: Path) -> list[str]:
    """The names the notebook's ``parameters`` cell assigns (what ``-p NAME VALUE`` may set)."""
    import papermill

    return list(papermill.inspect_notebook(str(path)))


def check_parameters(notebooks: list[Path], parameters: dict[str, Any]) -> None:
    """Refuse a ``-p`` name that a chosen notebook's ``parameters`` cell does not assign.

    papermill injects any name without complaint, so a typo (``timeout`` for ``timeout_s``) would run the
    notebook with its default and nobody would notice.
    """
    for path in notebooks:
        known = notebook_parameters(path)
        unknown = [name for name in parameters if name not in known]
        if unknown:
            raise LabkitError(
                f"notebook {path.stem} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters cell sets: {', '.join(known) or 'nothing'}",
                "spell the name as the notebook's parameters cell does (e.g. -p timeout_s 300)",
            )


@dataclass
class NotebookResult:
    """One executed notebook. ``cell`` is the failing cell's execution count: the ``[N]`` JupyterLab shows
    beside it in the executed copy (papermill's ``In [N]`` banner), not its position in the file."""

    notebook: str
    status: Literal["passed", "failed", "interrupted"]
    seconds: float
    output: str
    cell: int | None = None
    error: str | None = None
    cell_starts: str | None = None  # the failing cell's first non-blank line

    def failure(self) -> NotebookFailed:
        return NotebookFailed(self.notebook, self.cell, self.error or "unknown error", self.output, self.cell_starts)


def _run_id() -> str:
    """This run's name for its own summary files: UTC start time and pid (``20261203T010800Z-4242``)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"


@dataclass
class RunSummary:
    backend: str
    results: list[NotebookResult] = field(default_factory=list)
    run_id: str = field(default_factory=_run_id)
    #: wall time of the whole run, from before the first notebook to after the last (kernel starts included)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.status == "passed" for r in self.results)

    def table(self) -> str:
        """The plain-text summary: notebook, status, seconds."""
        width = max([len("notebook"), *(len(r.notebook) for r in self.results)])
        lines = [f"{'notebook'.ljust(width)}  status  seconds"]
        lines += [f"{r.notebook.ljust(width)}  {r.status.ljust(6)}  {r.seconds:7.1f}" for r in self.results]
        passed = sum(r.status == "passed" for r in self.results)
        lines.append(f"{passed}/{len(self.results)} passed (backend {self.backend}) in {self.wall_seconds:.1f} s")
        return "\n".join(lines)

    def markdown(self) -> str:
        first_lines = [r.error.splitlines()[0].replace("|", "\\|") if r.error else "" for r in self.results]
        rows = "".join(
            f"| {r.notebook} | {r.status} | {r.seconds:.1f} | {error} |\n"
            for r, error in zip(self.results, first_lines, strict=False)
        )
        return (
            f"# labkit run (backend {self.backend})\n\n"
            f"| notebook | status | seconds | error |\n|---|---|---|---|\n{rows}\n"
            f"Total: {self.wall_seconds:.1f} s of wall time for {len(self.results)} notebook(s).\n"
        )

    def write(self, output_dir: Path) -> None:
        """Write ``summary.json``/``.md`` (the latest run) and ``summary-<run>.json``/``.md`` (this run's own).

        Each file is replaced atomically, so runs finishing together never leave a mixed or half-written one.
        """
        document = {"backend": self.backend, "ok": self.ok, "run": self.run_id, "wall_seconds": self.wall_seconds}
        text = json.dumps({**document, "results": [asdict(r) for r in self.results]}, indent=2) + "\n"
        for stem in ("summary", f"summary-{self.run_id}"):
            write_atomic(output_dir / f"{stem}.json", text)
            write_atomic(output_dir / f"{stem}.md", self.markdown())


def ensure_kernel() -> None:
    """Fail early, with the fix, when no ``python3`` Jupyter kernel is installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel as e:
        raise PrerequisiteMissing(
            f"no Jupyter kernel named {KERNEL!r}",
            "python -m ipykernel install --sys-prefix (in labkit's virtual environment)",
        ) from e


@contextmanager
def ipc_kernel() -> Iterator[AsyncKernelManager]:
    """A kernel manager whose kernel talks over IPC sockets in a private temporary directory, not TCP.

    Nothing listens on a port, and ipykernel has no reason to print its "running over TCP without
    encryption" warning into every run. The sockets live in a short path (a Unix socket path is limited
    to about 107 bytes; Jupyter's runtime directory under a long home can exceed it). On leaving, the
    kernel is shut down whatever happened, Ctrl-C included.
    """
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    with tempfile.TemporaryDirectory(prefix="labkit-kernel-") as sockets:
        kernel = AsyncKernelManager(kernel_name=KERNEL, transport="ipc", ip=f"{sockets}/ipc")
        try:
            yield kernel
        finally:
            if kernel.has_kernel:
                run_sync(kernel.shutdown_kernel)(now=True)


def run_notebook(path: Path, output: Path, parameters: dict[str, Any]) -> NotebookResult:
    """Execute one notebook with papermill into *output*; a failing cell becomes a ``failed`` result."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        with ipc_kernel() as kernel:
            papermill.execute_notebook(
                str(path),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL,
                cwd=str(path.parent),
                progress_bar=False,
                km=kernel,
            )
    except PapermillExecutionError as e:
        if e.ename == "KeyboardInterrupt":  # Ctrl-C reached the kernel's process group before ours
            raise KeyboardInterrupt from None
        first_line = next((line for line in (e.source or "").splitlines() if line.strip()), "")
        return NotebookResult(
            path.stem,
            "failed",
            time.monotonic() - start,
            str(output),
            e.exec_count,
            f"{e.ename}: {e.evalue}",
            first_line.strip(),
        )
    except (DeadKernelError, CellTimeoutError) as e:
        # The kernel died (out of memory, a crash) or a cell hung: still a failed notebook, not a traceback.
        return NotebookResult(
            path.stem,
            "failed",
            time.monotonic() - start,
            str(output),
            None,
            f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'kernel lost'}",
        )
    return NotebookResult(path.stem, "passed", time.monotonic() - start, str(output))


def run_notebooks(
    names: list[str] | tuple[str, ...] = (),
    *,
    backend: str | None = None,
    parameters: dict[str, Any] | None = None,
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    keep_going: bool = False,
    root: Path | None = None,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """Execute notebooks in order; return the summary (also written to *output_dir*).

    Injected parameters: ``backend``, ``namespace`` (``lab-NN``) and *parameters* (which win).
    Stops at the first failure unless *keep_going*. Raises for bad names, an unknown parameter, a missing
    kernel, :class:`~labkit.runlock.LabBusy` when another process runs in one of the lab namespaces (before
    anything runs), and :class:`RunInterrupted` on Ctrl-C (after writing the summary); the caller decides
    what a failed summary means (``labkit run`` exits 1).
    """
    chosen = select_notebooks(names, root)
    check_parameters(chosen, parameters or {})
    ensure_kernel()
    name = config.resolve_backend(backend)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(name)
    began = time.monotonic()
    plans = [(path, {"backend": name, "namespace": lab_namespace(path), **(parameters or {})}) for path in chosen]
    # every lab namespace this run uses is locked before the first notebook starts, so a clash fails at once
    with namespace_locks([(path.stem, str(params["namespace"])) for path, params in plans], name):
        for i, (path, params) in enumerate(plans, 1):
            echo(f"[{i}/{len(chosen)}] {path.stem} ...")
            output = output_dir / executed_name(path, str(params["namespace"]))
            start = time.monotonic()
            try:
                result = run_notebook(path, output, params)
            except KeyboardInterrupt:
                summary.results.append(NotebookResult(path.stem, "interrupted", time.monotonic() - start, str(output)))
                summary.wall_seconds = time.monotonic() - began
                summary.write(output_dir)
                raise interrupted(path, name, output_dir) from None
            summary.results.append(result)
            echo(
                f"[{i}/{len(chosen)}] {path.stem} {result.status} in {result.seconds:.1f} s"
                + (f": {cell_label(result.cell, result.cell_starts)}: {result.error}" if result.error else "")
            )
            if result.status == "failed" and not keep_going:
                break
    summary.wall_seconds = time.monotonic() - began
    summary.write(output_dir)
    return summary


def executed_name(path: Path, namespace: str) -> str:
    """The executed copy's file name: the notebook's, or ``<stem>.<namespace>.ipynb`` in a namespace of its own.

    Two runs of one notebook in different namespaces (``-p namespace``) then never write the same file.

    >>> executed_name(Path("01-wasi-demo-app.ipynb"), "lab-01"), executed_name(Path("01-x.ipynb"), "mine")
    ('01-wasi-demo-app.ipynb', '01-x.mine.ipynb')
    """
    return path.name if namespace == lab_namespace(path) else f"{path.stem}.{namespace}.ipynb"


def interrupted(path: Path, backend: str, output_dir: Path) -> RunInterrupted:
    """What Ctrl-C during *path* cleaned up and what it left behind."""
    labkit = command_name()
    clean = f"{labkit} clean --lab {path.stem} --yes"
    left = [f"the lab's namespace {lab_namespace(path)} and objects may remain ({clean})"]
    if backend == "sandbox":
        left.append(f"the sandbox cluster keeps running ({labkit} sandbox down stops it)")
    return RunInterrupted(
        f"interrupted during notebook {path.stem}; cleaned up: its kernel was shut down, and the executed copy "
        f"so far and the summary are in {output_dir}; left: " + "; ".join(left),
        f"re-run it with `{labkit} run {path.stem}`",
    )
