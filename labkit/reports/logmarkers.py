"""Log collection with time markers, as the seed's load-balancer CI does it: one appendable Markdown log per pod.

Each call appends, to ``<directory>/<pod>.md`` (``<pod>.<container>.md`` for a pod of several containers)::

    === Pod logs (<phase>) N - <time> (after Xs) ===
    ```text
    2025-07-06T05:03:41.640123456Z [wasi-demo] heartbeat 7
    ```
    @@ LAST_TS=2025-07-06T05:03:41.640123456Z

``N`` counts the file's entries, ``(after Xs)`` is the time since the previous entry, and only the lines new
since the previous call are written: the log is read as ``kubectl logs --timestamps --since-time=$LAST_TS``
would read it, and the boundary line (the server answers lines at or after ``sinceTime``, and a real API
server rounds it to whole seconds) is dropped by comparing timestamps to the nanosecond and the text of the
lines already written at ``LAST_TS``. ``LAST_TS`` is the newest line's own timestamp, not the time of the
call, so no line written meanwhile falls between two calls. The file is the only state: another process (a
later CI step) continues it. A container that restarted since has its previous run's new lines written first
(``previous=true``).

Log text is untrusted: lines sit inside a code fence no line can close (each starts with its timestamp, and
the fence is longer than any run of backticks), ANSI escapes are stripped and control characters shown as
``\\xNN``, each line is cut at *max_line_chars* and each call writes at most *max_bytes* per container,
saying what it cut.

>>> logs = collect_logs(cluster, "app=lb", namespace="lab-05", phase="before", directory="build/logs")  # doctest: +SKIP
>>> logs.entries[0].header                                                    # doctest: +SKIP
'=== Pod logs (before) 1 - 2025-07-06T05:03:41Z ==='
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import ApiError, LabkitError
from labkit.reports import render, sources
from labkit.timefmt import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from labkit.cluster import Cluster

HEADER = re.compile(r"^=== Pod logs \((?P<phase>[^)]*)\) (?P<index>\d+) - (?P<time>\S+)(?: \(after -?\d+s\))? ===$")
MARKER = re.compile(r"^@@ LAST_TS=(?P<ts>\S+)$")
_STAMPED = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?P<frac>\d{1,9}))?(?P<zone>Z|[+-]\d\d:\d\d)) ")
_PHASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")

#: Longest log line written, in characters; the rest is cut and counted.
DEFAULT_LINE_CHARS = 2000
#: Most bytes of log lines one call writes per container; further lines are counted, not written.
DEFAULT_MAX_BYTES = 256 * 1024
#: Most bytes one call reads from the API per container (``limitBytes``); the rest follows on the next call.
READ_LIMIT_BYTES = 64 * 1024 * 1024
#: Log lines per container a report shows (the file holds every line the call wrote).
SHOWN_LINES = 200


def timestamp_ns(ts: str) -> int | None:
    """An RFC 3339 timestamp as nanoseconds since the epoch (``None`` if it is not one), exact to the digit.

    >>> timestamp_ns("1970-01-01T00:00:01.5Z"), timestamp_ns("1970-01-01T00:00:01.500000001Z"), timestamp_ns("x")
    (1500000000, 1500000001, None)
    """
    m = _STAMPED.match(ts + " ")
    if m is None:
        return None
    whole = m.group("ts")[:19] + ("+00:00" if m.group("zone") == "Z" else m.group("zone"))
    return int(datetime.fromisoformat(whole).timestamp()) * 10**9 + int((m.group("frac") or "").ljust(9, "0"))


@dataclass
class FileState:
    """What a log file says about past calls: entries so far, the last entry's time, ``LAST_TS`` and the text of
    the lines written with that timestamp (the boundary the next call drops)."""

    entries: int = 0
    last_entry_time: str | None = None
    last_ts: str | None = None
    boundary: Counter[str] = field(default_factory=Counter)


def read_state(path: Path) -> FileState:
    """Scan a log file once (line by line, so a long file costs no memory)."""
    state = FileState()
    if not path.exists():
        return state
    run_ts: str | None = None
    run: Counter[str] = Counter()
    with path.open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if header := HEADER.match(line):
                state.entries += 1
                state.last_entry_time = header.group("time")
            elif marker := MARKER.match(line):
                state.last_ts = marker.group("ts")
                state.boundary = Counter(run) if run_ts == state.last_ts else Counter()
            elif stamped := _STAMPED.match(line):
                if stamped.group("ts") != run_ts:
                    run_ts, run = stamped.group("ts"), Counter()
                run[line[stamped.end() :]] += 1
    return state


class _Cursor:
    """Which lines are new: later than ``LAST_TS``, or at it and not among the lines known at it."""

    def __init__(self, state: FileState) -> None:
        self.last_ts = state.last_ts
        self.last_ns = timestamp_ns(state.last_ts) if state.last_ts else None
        self.known: Counter[str] = Counter(state.boundary)
        self.pending: Counter[str] = Counter()

    def begin_source(self) -> None:
        """A new answer (previous or current container) may repeat every line known at ``LAST_TS``."""
        self.pending = Counter(self.known)

    def admit(self, ts: str, ns: int, text: str) -> bool:
        """Whether the line at *ts* (*ns* since the epoch) saying *text* is new; remembers it if so."""
        if self.last_ns is not None:
            if ns < self.last_ns:
                return False
            if ns == self.last_ns and self.pending[text] > 0:
                self.pending[text] -= 1
                return False
        if self.last_ns is None or ns > self.last_ns:
            self.last_ts, self.last_ns = ts, ns
            self.known, self.pending = Counter(), Counter()
        self.known[text] += 1
        return True


def _split_lines(chunks: Iterable[bytes], keep: int) -> Iterator[tuple[bytes, int]]:
    """(first *keep* bytes of each line, bytes of it left out): a line of any length costs *keep* bytes."""
    head, extra = bytearray(), 0
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start : end if end >= 0 else len(chunk)]
            room = max(0, keep - len(head))
            head += piece[:room]
            extra += max(0, len(piece) - room)
            if end < 0:
                break
            yield bytes(head), extra
            head, extra = bytearray(), 0
            start = end + 1
    if head or extra:
        yield bytes(head), extra


def render_line(raw: bytes, extra: int, limit: int) -> tuple[str | None, str, bool]:
    """(timestamp or None, the line as written, whether it was cut) for one raw log line."""
    text = raw.decode("utf-8", "replace").removesuffix("\r")
    stamped = _STAMPED.match(text)
    ts = stamped.group("ts") if stamped else None
    body = render.clean_text(text[stamped.end() :] if stamped else text, len(text) * 4 + 16)
    cut = extra > 0 or len(body) > limit
    if cut:
        more = len(body[limit:].encode()) + extra
        body = f"{body[:limit]}… [{more} more bytes cut]"
    return ts, f"{ts} {body}" if ts else f"(no timestamp) {body}", cut


@dataclass
class PodLogEntry:
    """What one call appended for one container: ``lines`` as written (cleaned, cut), ``since`` the LAST_TS it
    started from, ``last_ts`` the marker it wrote (``None``: the container has logged nothing yet)."""

    pod: str
    container: str
    file: Path
    index: int
    header: str
    since: str | None
    last_ts: str | None
    lines: list[str]
    from_previous: int = 0  # lines of the container's run before its last restart
    cut_lines: int = 0  # lines cut at max_line_chars
    dropped_lines: int = 0  # new lines not written: over max_bytes
    dropped_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def new_lines(self) -> int:
        """Lines new since the previous call, written or not."""
        return len(self.lines) + self.dropped_lines


@dataclass
class LogCollection(render.Rendered):
    """One call of :func:`collect_logs`: an entry per container it appended to."""

    phase: str
    namespace: str
    target: str | None
    directory: Path
    taken_at: str
    entries: list[PodLogEntry]

    def entry(self, pod: str, container: str | None = None) -> PodLogEntry:
        """The entry of *pod* (and *container*); ``KeyError`` naming those there are."""
        for e in self.entries:
            if e.pod == pod and container in (None, e.container):
                return e
        raise KeyError(f"no log entry for pod {pod!r} (there are: {', '.join(e.pod for e in self.entries)})")

    @property
    def new_lines(self) -> int:
        return sum(e.new_lines for e in self.entries)

    def document(self) -> render.Document:
        where = self.namespace + (f", {self.target}" if self.target else "")
        truncated = sum(1 for e in self.entries if e.cut_lines or e.dropped_lines)
        facts = (
            ("phase", self.phase),
            ("namespace", self.namespace),
            ("pods", self.target or "all"),
            ("directory", str(self.directory)),
            ("taken at", self.taken_at),
            ("summary", f"{len(self.entries)} logs, {self.new_lines} new lines, {truncated} truncated"),
        )
        table = render.Table(
            "Log files",
            (
                "pod",
                "container",
                "file",
                "entry",
                "new lines",
                "from previous run",
                "cut / not written",
                "LAST_TS",
                "notes",
            ),
            tuple(
                (
                    e.pod,
                    e.container,
                    e.file.name,
                    str(e.index),
                    str(e.new_lines),
                    str(e.from_previous),
                    f"{e.cut_lines} / {e.dropped_lines}",
                    e.last_ts or "-",
                    "; ".join(e.notes) or "-",
                )
                for e in self.entries
            ),
            empty=f"no pods in {where}",
        )
        blocks = []
        for e in self.entries:
            shown = e.lines[-SHOWN_LINES:]
            more = f", the last {len(shown)} shown" if len(shown) < len(e.lines) else ""
            blocks.append(render.Block(f"{e.pod}/{e.container}: {len(e.lines)} lines written{more}", tuple(shown)))
        return render.Document(f"Pod logs ({self.phase}): {where}", facts, (table,), tuple(blocks))


@dataclass
class _Limits:
    line_chars: int
    max_bytes: int


@dataclass
class _Written:
    """The lines one call writes for a container, section by section, within the byte budget."""

    limits: _Limits
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    size: int = 0
    cut: int = 0
    dropped_lines: int = 0
    dropped_bytes: int = 0

    def add(self, line: str, was_cut: bool) -> None:
        """Write *line* unless the budget is spent; after the first line left out, all later ones are too, so
        what the file holds has no gap."""
        size = len(line.encode()) + 1
        if self.dropped_lines or self.size + size > self.limits.max_bytes:
            self.dropped_lines += 1
            self.dropped_bytes += size
            return
        self.size += size
        self.cut += was_cut
        self.sections[-1][1].append(line)


def _read_source(
    cluster: Cluster, pod: str, namespace: str, container: str, previous: bool, cursor: _Cursor, out: _Written
) -> int:
    """Admit one log answer's new lines into *out*; returns how many were new."""
    cursor.begin_source()
    chunks = sources.log_chunks(
        cluster,
        pod,
        namespace,
        container=container,
        previous=previous,
        since_time=cursor.last_ts,
        limit_bytes=READ_LIMIT_BYTES,
    )
    keep = out.limits.line_chars * 4 + 64
    new = 0
    for raw, extra in _split_lines(chunks, keep):
        ts, line, was_cut = render_line(raw, extra, out.limits.line_chars)
        ns = timestamp_ns(ts) if ts else None
        if ns is not None and not cursor.admit(str(ts), ns, line.partition(" ")[2]):
            continue
        new += 1
        out.add(line, was_cut)
    return new


def _collect_container(
    cluster: Cluster, pod: dict[str, Any], container: str, path: Path, phase: str, limits: _Limits
) -> PodLogEntry:
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
    status = statuses.get(container) or {}
    restarts = int(status.get("restartCount") or 0)
    state = read_state(path)
    cursor = _Cursor(state)
    out = _Written(limits)
    notes: list[str] = []
    from_previous = 0
    if restarts:
        last = next(iter((status.get("lastState") or {}).values()), None) or {}
        reason = f"{last.get('reason') or 'ended'}, exit code {last.get('exitCode')}" if last else "ended"
        out.sections.append((f"previous run (before restart {restarts}; {reason}):", []))
        try:
            from_previous = _read_source(cluster, name, namespace, container, True, cursor, out)
        except ApiError as e:
            notes.append(f"the previous run's log is not available: {render.one_line(str(e.status.get('message')))}")
    out.sections.append(("current run:" if restarts else "", []))
    try:
        _read_source(cluster, name, namespace, container, False, cursor, out)
    except ApiError as e:
        notes.append(f"no log: {render.one_line(str(e.status.get('message') or e.reason), 300)}")
    if out.cut:
        notes.append(f"{out.cut} lines cut at {limits.line_chars} characters")
    if out.dropped_lines:
        notes.append(
            f"{out.dropped_lines} new lines ({out.dropped_bytes} bytes) not written: over the "
            f"{limits.max_bytes}-byte limit of one call; `kubectl logs {name} -c {container} --timestamps "
            f"--since-time={state.last_ts or '...'}` shows them"
        )
    now = datetime.now(UTC)
    header = f"=== Pod logs ({phase}) {state.entries + 1} - {format_rfc3339(now)}"
    if state.last_entry_time:
        with contextlib.suppress(ValueError):  # a hand-edited header time: leave the "after" out
            header += f" (after {round((now - parse_rfc3339(state.last_entry_time)).total_seconds())}s)"
    header += " ==="
    lines = [line for _, section in out.sections for line in section]
    _append(path, header, out.sections, notes, cursor.last_ts)
    return PodLogEntry(
        name,
        container,
        path,
        state.entries + 1,
        header,
        state.last_ts,
        cursor.last_ts,
        lines,
        from_previous,
        out.cut,
        out.dropped_lines,
        out.dropped_bytes,
        notes,
    )


def _append(
    path: Path, header: str, sections: list[tuple[str, list[str]]], notes: list[str], last_ts: str | None
) -> None:
    """One entry appended in one write: header, notes, fenced sections, the marker."""
    text = ["", header]
    text += [f"> {render.markdown_cell(render.one_line(n, 1000))}" for n in notes]
    if not any(lines for _, lines in sections):
        text.append("(no new lines)")
    for label, lines in sections:
        if not lines:
            continue
        fence = render.fence_for(lines)
        text += ([label] if label else []) + [f"{fence}text", *lines, fence]
    if last_ts:
        text.append(f"@@ LAST_TS={last_ts}")
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n")


def _positive(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LabkitError(f"{name} must be a whole number >= 1, got {value!r}", f"e.g. {name}=2000")
    return value


def collect_logs(
    cluster: Cluster,
    target: str | None = None,
    *,
    namespace: str,
    phase: str,
    directory: str | Path,
    container: str | None = None,
    max_line_chars: int = DEFAULT_LINE_CHARS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LogCollection:
    """Append the lines each pod of *target* logged since the previous call to its Markdown log in *directory*.

    *target* is ``None`` (every pod of *namespace*), a label selector, a pod name or ``deployment/<name>``;
    *phase* (``"before"``, ``"after-burst"``) names the entry, so phases stay apart in the file; *container*
    limits it to one container. Returns what was appended; in Jupyter it shows as tables and the new lines.

    >>> logs = dict(namespace="lab-06", directory="build/logs")
    >>> collect_logs(cluster, "app=demo", phase="before", **logs)              # doctest: +SKIP
    >>> # ... traffic ...
    >>> after = collect_logs(cluster, "app=demo", phase="after-burst", **logs)  # doctest: +SKIP
    >>> after.new_lines                                                       # doctest: +SKIP
    12
    """
    if not isinstance(phase, str) or not _PHASE.match(phase):
        raise LabkitError(
            f"phase must be a short name of letters, digits, spaces, '.', '_' or '-', got {phase!r}",
            "e.g. phase='before' or phase='after-burst'",
        )
    limits = _Limits(_positive(max_line_chars, "max_line_chars"), _positive(max_bytes, "max_bytes"))
    sources.require_namespace(cluster, namespace)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    taken_at = format_rfc3339()
    entries = []
    pods = sources.pods(cluster, target, namespace)
    for pod in pods:
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        for name in names:
            if container is not None and name != container:
                continue
            file = root / (
                f"{pod['metadata']['name']}.md" if len(names) == 1 else f"{pod['metadata']['name']}.{name}.md"
            )
            entries.append(_collect_container(cluster, pod, name, file, phase, limits))
    if container is not None and pods and not entries:
        raise LabkitError(
            f"no pod of {target or namespace!r} has a container {container!r}",
            "pass container=None (every container) or one of the names in the pods' spec",
        )
    return LogCollection(phase, namespace, target, root, taken_at, entries)
