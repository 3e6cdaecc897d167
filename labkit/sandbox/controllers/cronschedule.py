"""Cron schedules as the CronJob controller reads them (robfig/cron v3's ``ParseStandard``).

Five fields (minute hour day-of-month month day-of-week) with ``*``, ``?``, lists, ranges, steps and
month/day names, or a descriptor (``@hourly`` … ``@yearly``, ``@every <Go duration>``). As in
robfig/cron, day-of-month and day-of-week are ORed unless one of them is ``*`` or ``?``, and the
day of week runs 0-6 (Sunday is 0; 7 is refused).

>>> s = Schedule.parse("*/15 9-17 * * mon-fri")
>>> from datetime import datetime, UTC
>>> s.next_after(datetime(2026, 1, 2, 17, 50, tzinfo=UTC)).isoformat()  # Friday 17:50 -> Monday 09:00
'2026-01-05T09:00:00+00:00'
>>> Schedule.parse("@every 1h30m").next_after(datetime(2026, 1, 2, 17, 50, 7, 500, tzinfo=UTC)).isoformat()
'2026-01-02T19:20:07+00:00'
>>> Schedule.parse("61 * * * *")
Traceback (most recent call last):
...
ValueError: end of range (61) above maximum (59): 61
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: (minimum, maximum, names) of each field
_BOUNDS: list[tuple[int, int, dict[str, int]]] = [
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
]
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|m|s|ms|us|µs|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _every(text: str) -> timedelta:
    """robfig/cron's ``@every``: a Go duration, truncated to whole seconds, at least one second."""
    spec = text.strip()
    parts = _GO_DURATION.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f'failed to parse duration @every {spec}: time: invalid duration "{spec}"')
    seconds = int(sum(float(n) * _UNITS[u] for n, u in parts))
    return timedelta(seconds=max(seconds, 1))


#: How far ahead :meth:`Schedule.next_after` looks before giving up (robfig/cron: five years).
SEARCH_YEARS = 5


def _number(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f"failed to parse int from {text}: strconv.Atoi: parsing {text!r}: invalid syntax")
    return int(text)


def _field(expr: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """The values a field allows and whether it is a bare ``*``/``?`` (robfig's starBit)."""
    values: set[int] = set()
    star = False
    for part in expr.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, {})
            if step == 0:
                raise ValueError(f"step of range should be a positive number: {part}")
        if rng in ("*", "?"):
            start, end = low, high
            star = star or not step_text or step == 1
        else:
            first, dash, last = rng.partition("-")
            start = _number(first, names)
            end = _number(last, names) if dash else (high if step_text else start)
        if start < low:
            raise ValueError(f"beginning of range ({start}) below minimum ({low}): {part}")
        if end > high:
            raise ValueError(f"end of range ({end}) above maximum ({high}): {part}")
        if start > end:
            raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool
    every: timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Parse a standard cron expression; ValueError in robfig/cron's words when it is not one."""
        spec = text.strip()
        if spec.startswith(("TZ=", "CRON_TZ=")):
            raise ValueError("CRON_TZ or TZ used in schedule is not supported, please use timeZone instead")
        if spec.lower().startswith("@every "):
            none: frozenset[int] = frozenset()
            return cls(none, none, none, none, none, False, False, _every(spec[len("@every ") :]))
        spec = _DESCRIPTORS.get(spec.lower(), spec) if spec.startswith("@") else spec
        if spec.startswith("@"):
            raise ValueError(f"unrecognized descriptor: {spec}")
        fields = spec.split()
        if len(fields) != 5:
            raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {fields}")
        parsed = [_field(f, *bounds) for f, bounds in zip(fields, _BOUNDS, strict=True)]
        return cls(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], parsed[4][0], parsed[2][1], parsed[4][1])

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime) -> datetime | None:
        """The first activation strictly after *after* (in *after*'s time zone), or None within five years."""
        if self.every is not None:
            return after.replace(microsecond=0) + self.every
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = after.year + SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        return None
