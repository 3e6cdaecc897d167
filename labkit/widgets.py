"""Live progress views: an ipywidgets pod board in a Jupyter frontend, plain lines everywhere else.

Executed notebooks (papermill, ``labkit run``) and terminals get plain lines, one per change, so the saved
output stays readable; only a kernel attached to a real frontend gets widgets.
``LABKIT_PROGRESS=plain|widget`` overrides the detection.
"""

from __future__ import annotations

import html
import os
import sys
import time
from typing import Any, Protocol, TextIO


def has_frontend() -> bool:
    """True in a kernel a person is looking at (JupyterLab/Notebook, VS Code); False under papermill/CLI."""
    forced = os.environ.get("LABKIT_PROGRESS", "").strip().lower()
    if forced in ("plain", "widget"):
        return forced == "widget"
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    if ip is None or type(ip).__name__ != "ZMQInteractiveShell":
        return False
    # jupyter_server names each kernel's session (JPY_SESSION_NAME); VS Code marks its kernels with VSCODE_PID.
    # papermill/nbclient start kernels with neither.
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def elapsed_label(seconds: float) -> str:
    """Elapsed time, seven characters wide: milliseconds under a second, else tenths of seconds.

    The sandbox answers most waits within 100 ms; tenths alone would print ``0.0s`` on every line, as if the
    clock had stopped.

    >>> elapsed_label(0.042), elapsed_label(3.21), elapsed_label(125)
    ('   42ms', '   3.2s', ' 125.0s')
    """
    return f"{seconds * 1000:5.0f}ms" if seconds < 0.9995 else f"{seconds:6.1f}s"


class Progress(Protocol):
    def update(self, line: str, pods: list[dict[str, Any]] | None = None) -> None: ...
    def close(self, line: str) -> None: ...


class PlainProgress:
    """Prints ``[   3.2s] <title>: <line>`` whenever the line changes (never the same line twice)."""

    def __init__(self, title: str, stream: TextIO | None = None) -> None:
        self.title, self.stream = title, stream
        self.start = time.monotonic()
        self.last: str | None = None

    def _print(self, line: str) -> None:
        stream = self.stream or sys.stdout  # looked up late: pytest/papermill swap sys.stdout
        print(f"[{elapsed_label(time.monotonic() - self.start)}] {self.title}: {line}", file=stream, flush=True)

    def update(self, line: str, pods: list[dict[str, Any]] | None = None) -> None:
        if line != self.last:
            self.last = line
            self._print(line)

    def close(self, line: str) -> None:
        self.update(line)


def pod_rows(pods: list[dict[str, Any]]) -> list[tuple[str, str, str, int, str]]:
    """(name, phase, ready 'n/m', restarts, reason) per pod, as ``kubectl get pods`` shows them."""
    rows = []
    for pod in pods:
        status = pod.get("status") or {}
        cs = status.get("containerStatuses") or []
        ready = sum(1 for c in cs if c.get("ready"))
        total = len((pod.get("spec") or {}).get("containers") or cs)
        restarts = sum(int(c.get("restartCount") or 0) for c in cs)
        reasons = [st.get("reason") for c in cs for st in (c.get("state") or {}).values() if (st or {}).get("reason")]
        phase = (
            "Terminating" if (pod.get("metadata") or {}).get("deletionTimestamp") else status.get("phase", "Pending")
        )
        rows.append((pod["metadata"]["name"], phase, f"{ready}/{total}", restarts, ", ".join(r for r in reasons if r)))
    return rows


class WidgetProgress:
    """A status line and a small pod board, updated in place."""

    def __init__(self, title: str) -> None:
        import ipywidgets
        from IPython.display import display

        self.title = title
        self.start = time.monotonic()
        self.line = ipywidgets.HTML()
        self.board = ipywidgets.HTML()
        self.box = ipywidgets.VBox([self.line, self.board])
        self.box.add_class("labkit-progress")  # how a page (and the browser test) finds the rendered view
        display(self.box)  # type: ignore[no-untyped-call]

    def update(self, line: str, pods: list[dict[str, Any]] | None = None) -> None:
        elapsed = time.monotonic() - self.start
        self.line.value = f"<b>{html.escape(self.title)}</b> · {elapsed_label(elapsed).strip()} · {html.escape(line)}"
        if pods is not None:
            cells = "".join(
                f"<tr><td>{html.escape(n)}</td><td>{html.escape(p)}</td><td>{r}</td><td>{c}</td>"
                f"<td>{html.escape(why)}</td></tr>"
                for n, p, r, c, why in pod_rows(pods)
            )
            self.board.value = (
                (
                    "<table><tr><th>pod</th><th>phase</th><th>ready</th><th>restarts</th><th>reason</th>"
                    f"</tr>{cells}</table>"
                )
                if cells
                else ""
            )

    def close(self, line: str) -> None:
        self.update(line)


def progress(title: str) -> Progress:
    """The right progress view for where the code runs (see :func:`has_frontend`)."""
    return WidgetProgress(title) if has_frontend() else PlainProgress(title)
