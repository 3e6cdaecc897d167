"""The nbval substitutions (sanitize.cfg) as nbval itself reads and applies them."""

from __future__ import annotations

import re
from pathlib import Path

from nbval.plugin import get_sanitize_patterns

PATTERNS = get_sanitize_patterns(Path(__file__).with_name("sanitize.cfg").read_text())


def sanitized(text: str) -> str:
    for regex, replace in PATTERNS:  # in file order, as nbval's IPyNbCell.sanitize
        text = re.sub(regex, replace, text)
    return text


def test_every_section_is_read() -> None:
    sections = re.findall(r"^\[", Path(__file__).with_name("sanitize.cfg").read_text(), flags=re.MULTILINE)
    assert len(PATTERNS) == len(sections)  # nbval drops a section silently when its replace line is malformed


def test_a_wait_that_saw_an_intermediate_state_compares_equal_to_one_that_did_not() -> None:
    result = "the module called proc_exit(3); the container's exit code under crun: 0\n"
    done = "job/crun-exit-3 Complete (active 0, succeeded 1, failed 0)\n"
    fast = f"[   55ms] waiting for job/crun-exit-3 to be Complete: {done}{result}"
    slow = (
        "[   12ms] waiting for job/crun-exit-3 to be Complete: job/crun-exit-3 active 1, succeeded 0, failed 0\n"
        f"[   1.9s] waiting for job/crun-exit-3 to be Complete: {done}{result}"
    )
    assert sanitized(fast) == sanitized(slow) == result


def test_pod_names_addresses_and_durations_are_masked() -> None:
    line = "pod/echo-6d7494fc9b-5rk64 on 127.44.1.2:8080 after 1.9 s"
    assert sanitized(line) == "pod/echo-POD on IP:PORT after DURATION"
