"""A live board of small tables (pods per node, registered backends, answers per backend) for a lab step.

In a Jupyter frontend it is an ipywidgets view redrawn in place on every :meth:`update`; executed notebooks
(papermill, ``labkit run``) and terminals get plain text instead: one line when the board opens and the final
tables when it closes, so the saved output stays short and the same from run to run. The choice is
:func:`labkit.widgets.has_frontend`'s (``LABKIT_PROGRESS=plain|widget`` overrides it).

>>> board = live_board("node loss")                         # doctest: +SKIP
>>> board.update({"pods per node": {"labkit-agent-0": 2}})  # doctest: +SKIP
>>> board.close()                                           # doctest: +SKIP
"""

from __future__ import annotations

import html
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from labkit.widgets import elapsed_label, has_frontend

log = logging.getLogger(__name__)

#: one table per title: row name -> value
Tables = Mapping[str, Mapping[str, Any]]


def render_text(tables: Tables) -> str:
    """The tables as aligned text, one block per title.

    >>> print(render_text({"pods per node": {"agent-0": 2, "server-0": 1}}))
    pods per node
      agent-0    2
      server-0   1
    """
    blocks = []
    for title, rows in tables.items():
        width = max((len(str(name)) for name in rows), default=0)
        lines = [title] + [f"  {name!s:<{width}}  {value:>2}" for name, value in rows.items()]
        blocks.append("\n".join(lines) if rows else f"{title}\n  (none)")
    return "\n".join(blocks)


def render_html(tables: Tables) -> str:
    """The tables side by side as HTML, every name and value escaped."""
    cells = []
    for title, rows in tables.items():
        body = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td style='text-align:right'>{html.escape(str(value))}</td></tr>"
            for name, value in rows.items()
        )
        cells.append(
            f"<td style='vertical-align:top;padding-right:2em'><b>{html.escape(title)}</b>"
            f"<table>{body or '<tr><td>(none)</td></tr>'}</table></td>"
        )
    return f"<table><tr>{''.join(cells)}</tr></table>"


class LiveBoard:
    """The board; :meth:`watch` redraws it from a function every *interval* seconds until :meth:`close`."""

    def __init__(self, title: str, *, widget: bool | None = None, stream: TextIO | None = None) -> None:
        self.title, self.stream = title, stream
        self.start = time.monotonic()
        self.tables: Tables = {}
        self.widget = has_frontend() if widget is None else widget
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.widget:
            import ipywidgets
            from IPython.display import display

            self._view = ipywidgets.HTML()
            self._view.add_class("labkit-board")
            display(self._view)  # type: ignore[no-untyped-call]
        else:
            self._print(f"{title}: live board (plain text here; the final tables print when it closes)")

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stdout  # looked up late: pytest/papermill swap sys.stdout
        print(text, file=stream, flush=True)

    def update(self, tables: Tables) -> None:
        self.tables = tables
        if self.widget:
            elapsed = elapsed_label(time.monotonic() - self.start).strip()
            self._view.value = f"<b>{html.escape(self.title)}</b> · {elapsed}" + render_html(tables)

    def watch(self, read: Callable[[], Tables], interval: float = 1.0) -> None:
        """Call *read* every *interval* seconds in a background thread and show what it returns.

        A failing *read* (the API server busy, a port-forward closing) skips that redraw, not the board.
        """

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.update(read())
                except Exception as e:  # noqa: BLE001 - a board must not kill the step it watches
                    log.warning("%s: board not redrawn: %s", self.title, e)
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name=f"board {self.title}", daemon=True)
        self._thread.start()

    def close(self, tables: Tables | None = None) -> None:
        """Stop watching, draw *tables* (else the last ones) a final time; plain text prints them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.update(tables if tables is not None else self.tables)
        if not self.widget:
            self._print(render_text(self.tables))


def live_board(title: str) -> LiveBoard:
    """A :class:`LiveBoard` titled *title*: widgets in a frontend, plain text under papermill."""
    return LiveBoard(title)
