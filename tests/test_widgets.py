"""Plain progress lines (labkit.widgets): the elapsed time a learner reads beside each state change."""

from __future__ import annotations

import doctest
import io
import re
import time

import labkit.widgets
from labkit.widgets import PlainProgress


def test_elapsed_time_moves_within_a_fast_wait():
    """The sandbox settles most waits within 100 ms: the lines must not all read 0.0s."""
    out = io.StringIO()
    view = PlainProgress("waiting for job/x to be Complete", stream=out)
    view.update("job/x active 1")
    time.sleep(0.05)
    view.close("job/x Complete")
    first, last = (re.match(r"\[\s*(\d+)ms\] waiting for job/x", line) for line in out.getvalue().splitlines())
    assert first is not None and last is not None
    assert int(last.group(1)) - int(first.group(1)) >= 50


def test_elapsed_time_past_a_second_is_in_tenths():
    out = io.StringIO()
    view = PlainProgress("waiting", stream=out)
    view.start -= 3.2  # as if the wait had begun 3.2 s ago
    view.update("still waiting")
    assert out.getvalue() == "[   3.2s] waiting: still waiting\n"


def test_docstring_examples_run():
    result = doctest.testmod(labkit.widgets)
    assert result.failed == 0 and result.attempted > 0
