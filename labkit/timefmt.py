"""RFC 3339 times as Kubernetes writes them: ``Time`` (seconds) and ``MicroTime``.

>>> parse_rfc3339("2025-07-06T05:03:41Z").isoformat()
'2025-07-06T05:03:41+00:00'
>>> parse_rfc3339("2025-07-06T05:03:41.640123456Z").microsecond   # nanoseconds are cut, as Go's time.Parse rounds down
640123
>>> format_rfc3339(parse_rfc3339("2025-07-06T05:03:41.5Z"))
'2025-07-06T05:03:41Z'
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d+)")


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime from an RFC 3339 timestamp; fractions past microseconds are dropped.

    Raises ``ValueError`` on text that is not RFC 3339 (callers turn it into their own 400).
    """
    text = text.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value.astimezone(UTC)


def parse_optional(text: str | None) -> datetime | None:
    """:func:`parse_rfc3339`, with None for an unset field."""
    return parse_rfc3339(text) if text else None


def format_rfc3339(value: datetime | None = None) -> str:
    """``Time`` as the API server writes it: whole seconds, ``Z`` (now when *value* is None)."""
    if value is None:
        return _second_text(int(time.time()))
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=2)
def _second_text(second: int) -> str:
    """A second since the epoch as ``Time`` text, formatted once: the API server stamps thousands of objects a
    second under load, and formatting was a visible share of a create (bench_apiserver.py)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def format_micro(value: datetime | None = None) -> str:
    """``MicroTime`` as the API server writes it: six fraction digits, ``Z``."""
    return (value or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
