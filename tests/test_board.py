"""labkit.board: the live board's plain text under papermill, its HTML in a frontend, and a watch that survives."""

from __future__ import annotations

import doctest
import threading

import labkit.board
from labkit.board import LiveBoard, render_html


def test_plain_board_prints_one_line_then_the_final_tables(capsys) -> None:
    board = LiveBoard("node loss", widget=False)
    board.update({"pods per node": {"labkit-agent-0": 2}})
    board.close({"pods per node": {"labkit-agent-0": 1, "labkit-server-0": 3}, "registered": {}})
    assert capsys.readouterr().out == (
        "node loss: live board (plain text here; the final tables print when it closes)\n"
        "pods per node\n  labkit-agent-0    1\n  labkit-server-0   3\nregistered\n  (none)\n"
    )


def test_the_html_escapes_names_a_cluster_could_choose() -> None:
    page = render_html({"answers": {"<script>x</script>": "<b>"}})
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page


def test_watch_redraws_the_widget_and_a_failing_read_skips_one_redraw(caplog) -> None:
    board = LiveBoard("scaling", widget=True)
    calls, redrawn = [], threading.Event()

    def read() -> dict[str, dict[str, int]]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("port-forward closing")
        redrawn.set()
        return {"pods per node": {"labkit-agent-1": len(calls)}}

    board.watch(read, interval=0.01)
    assert redrawn.wait(5)
    board.close()
    assert "scaling: board not redrawn: port-forward closing" in caplog.text
    assert "labkit-agent-1" in board._view.value and board._view.value.startswith("<b>scaling</b>")


def test_docstring_examples_run() -> None:
    result = doctest.testmod(labkit.board)
    assert result.failed == 0 and result.attempted > 0
