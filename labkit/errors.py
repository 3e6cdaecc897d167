"""One exception hierarchy for everything labkit raises at a learner.

Every message names the problem *and* the fix, so a notebook cell that fails
shows one readable paragraph instead of a traceback soup. A :class:`WaitFailed` carries the
:class:`Diagnosis` of what it waited for: the explanation is part of the error, as a Status is of an ApiError.

>>> raise ContextNotAllowed("prod")          # doctest: +SKIP
labkit.errors.ContextNotAllowed: kubeconfig context 'prod' is not on labkit's allow-list ...
"""

from __future__ import annotations

import html
import os
import traceback
from dataclasses import dataclass, field
from typing import Any


class LabkitError(Exception):
    """Base class: ``str(error)`` is the problem followed by the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for this error in a notebook cell: the problem and the fix, not a traceback.

        IPython calls ``_render_traceback_`` on an exception that has one instead of formatting the stack
        (``InteractiveShell.showtraceback``); the stack of labkit and kubernetes-client frames says nothing
        a learner can act on, while ``problem``/``fix`` do. ``LABKIT_DEBUG=1`` in the kernel's environment
        shows the stack again, as the CLI's ``--debug`` does.
        """
        if os.environ.get("LABKIT_DEBUG"):
            return "".join(traceback.format_exception(self)).splitlines()
        lines = [f"{type(self).__name__}: {self.problem}"]
        return lines + ([f"  fix: {self.fix}"] if self.fix else [])


class ClusterUnreachable(LabkitError):
    """No Kubernetes API server answered."""


class ContextNotAllowed(LabkitError):
    """A kubeconfig context that is not on the lab allow-list."""

    def __init__(self, context: str, allowed: list[str] | tuple[str, ...] = ()) -> None:
        listed = ", ".join(sorted(allowed)) or "none"
        super().__init__(
            f"kubeconfig context {context!r} is not on labkit's allow-list (allowed: {listed}); "
            "labkit refuses it so a notebook can never touch a production cluster by accident",
            f"if {context!r} really is a lab cluster, allow it: "
            f"export LABKIT_ALLOWED_CONTEXTS={context} (or connect(..., allowed_contexts=[{context!r}]))",
        )
        self.context = context


class UnknownBackend(LabkitError):
    """A backend name labkit does not know."""


class PrerequisiteMissing(LabkitError):
    """A tool, package, file or cluster feature a lab needs is absent."""


def cell_label(execution_count: int | None, starts: str | None = None) -> str:
    """A cell as JupyterLab labels it in an executed notebook (``[7]:``) and papermill's banner names it.

    >>> cell_label(7, "try:")
    "cell In [7] (it starts with 'try:')"
    """
    where = f"cell In [{execution_count}]" if execution_count is not None else "an unknown cell"
    return f"{where} (it starts with {starts!r})" if starts else where


class NotebookFailed(LabkitError):
    """A notebook run by ``labkit run`` raised in one of its cells."""

    def __init__(
        self, notebook: str, cell: int | None, error: str, output: str | None = None, cell_starts: str | None = None
    ) -> None:
        super().__init__(
            f"notebook {notebook} failed in {cell_label(cell, cell_starts)}: {error}",
            f"open the executed copy ({output}) to see the full output" if output else None,
        )
        self.notebook, self.cell, self.error, self.output = notebook, cell, error, output


class RunInterrupted(LabkitError):
    """Ctrl-C stopped ``labkit run``: the message says what was cleaned up and what is left."""


class CheckFailed(LabkitError):
    """A notebook's Checks cell found that the lab did not reach what it should."""


def require(ok: bool, problem: str, fix: str) -> None:
    """Raise :class:`CheckFailed` with *problem* and *fix* unless *ok*: one line per check in a Checks cell.

    >>> require(2 + 2 == 4, "arithmetic broke", "file a bug")
    >>> require(False, "the demo Deployment was not Available", "read the diagnosis the wait printed")
    Traceback (most recent call last):
      ...
    labkit.errors.CheckFailed: the demo Deployment was not Available
      fix: read the diagnosis the wait printed
    """
    if not ok:
        raise CheckFailed(problem, fix)


class SandboxError(LabkitError):
    """The embedded sandbox cluster could not start, stop or answer."""


class WasmError(LabkitError):
    """A file that should be a wasm module is not one, or cannot be used."""


class ImageError(LabkitError):
    """An OCI image could not be built, read or imported."""


class InvalidManifest(LabkitError):
    """A manifest (built, loaded from YAML or about to be applied) that cannot be right."""


@dataclass
class Diagnosis:
    """What is wrong (``summary``), why (``cause``), what to change (``fix``), and the lines that show it."""

    summary: str
    cause: str = ""
    fix: str = ""
    evidence: list[str] = field(default_factory=list)
    #: The known failure matched (e.g. ``"runtime-handler-missing"``), ``None`` when no known failure was found.
    signature: str | None = None

    def __str__(self) -> str:
        lines = [self.summary]
        if self.cause:
            lines.append(f"  cause: {self.cause}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        if self.evidence:
            lines.append("  evidence:")
            lines += [f"    {e}" for e in self.evidence]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        ok = self.signature is None
        colour = "#2e7d32" if ok else "#c62828"
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{html.escape(v)}</td></tr>"
            for k, v in (("cause", self.cause), ("fix", self.fix))
            if v
        )
        evidence = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in self.evidence)
        tag = f" <small>[{html.escape(self.signature)}]</small>" if self.signature else ""
        return (
            f"<div style='border-left:4px solid {colour};padding:4px 8px'>"
            f"<b style='color:{colour}'>{html.escape(self.summary)}</b>{tag}<table>{rows}</table>"
            + (f"<details><summary>evidence</summary><ul>{evidence}</ul></details>" if evidence else "")
            + "</div>"
        )


class WaitFailed(LabkitError):
    """A wait for a cluster state timed out or met a failure it cannot recover from.

    ``diagnosis`` is the :class:`Diagnosis` of what was waited for (or ``None``).
    """

    def __init__(self, problem: str, fix: str | None = None, diagnosis: Diagnosis | None = None) -> None:
        super().__init__(problem, fix)
        self.diagnosis = diagnosis


class ApiError(LabkitError):
    """The Kubernetes API answered with a failure ``Status``.

    ``status`` is the Status object the server returned (``code``, ``reason``,
    ``message``, ``details``), kept whole as lightkube and kr8s do.
    """

    def __init__(self, status: dict[str, Any], fix: str | None = None) -> None:
        self.status = status
        self.code: int = int(status.get("code") or 0)
        self.reason: str = status.get("reason") or ""
        super().__init__(f"{status.get('message') or self.reason} (HTTP {self.code} {self.reason})", fix)
