"""labkit.reports without a cluster: rendering (Markdown and HTML show the same rows, hostile text stays text),
the log files' markers and boundary, and the reports built from API dicts. The sandbox tests are in
test_reports_sandbox.py."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labkit.errors import CheckFailed
from labkit.reports import health, logmarkers, render, services, sources
from labkit.reports.summary import CheckResult, Collected, RunSummary

HOSTILE = "\x1b[31mred\x1b[0m | col ``` <script>alert(1)</script> *b* [x](javascript:y) \r# h\u2028&amp; \\|"


# ------------------------------------------------------------------------------ the two renderings, parsed back
def markdown_tables(text: str) -> list[list[list[str]]]:
    """Each GitHub table of a Markdown document: its rows (header first) as unescaped cell texts."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.split("\n"):
        if line.startswith("| "):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            row = [html.unescape(re.sub(r"\\(.)", r"\1", c.strip())) for c in cells]
            if current is None:
                current = []
                tables.append(current)
            current.append(row)
        elif line.startswith("|---"):
            continue
        else:
            current = None
    return tables


class _HtmlTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.skip = 0
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            if ("class", "facts") in attrs:
                self.skip += 1
            else:
                self.tables.append([])
        elif tag == "tr" and not self.skip:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table" and self.skip:
            self.skip -= 1
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[-1].append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def html_tables(text: str) -> list[list[list[str]]]:
    parser = _HtmlTables()
    parser.feed(text)
    return parser.tables


def assert_same_rows(report: render.Rendered) -> list[list[list[str]]]:
    """The report's Markdown and HTML hold the same tables, rows and cells; returns them."""
    md, page = markdown_tables(report.to_markdown()), html_tables(report._repr_html_())
    assert md == page
    expected = [
        [list(t.columns), *[[render.one_line(v) for v in row] for row in t.rows]]
        for t in report.document().tables
        if t.rows
    ]
    assert md == expected
    return md


# --------------------------------------------------------------------------------------------------- rendering
def test_clean_text_strips_ansi_and_shows_control_characters():
    assert render.clean_text("\x1b[1;31mred\x1b[0m\x1b]0;title\x07!", 100) == "red!"
    assert render.clean_text("a\rb\x00c\x7fd\u2028e\tf", 100) == "a\\rb\\x00c\\x7fd\\u2028e\tf"
    assert render.clean_text("é" * 10, 4) == "éééé… [6 more characters cut]"


def test_a_hostile_cell_cannot_change_a_tables_shape_or_inject_html():
    doc = render.Document(HOSTILE, ((HOSTILE, HOSTILE),), (render.Table(HOSTILE, ("a", "b"), ((HOSTILE, "x"),)),))
    md = render.to_markdown(doc)
    row = next(line for line in md.split("\n") if line.startswith("| ") and "x |" in line)
    assert len(re.split(r"(?<!\\)\|", row.strip()[1:-1])) == 2  # still two cells
    assert "\x1b" not in md and "\r" not in md and "\u2028" not in md and "<script>" not in md
    assert sum(line.startswith("#") for line in md.split("\n")) == 2  # the two titles, no heading smuggled in
    page = render.to_html(doc)
    assert "<script>" not in page and "&lt;script&gt;" in page and "\x1b" not in page
    assert markdown_tables(md) == html_tables(page) == [[["a", "b"], [render.one_line(HOSTILE), "x"]]]


def test_a_block_fence_is_longer_than_any_backtick_run_in_it():
    doc = render.Document("logs", blocks=(render.Block("pod", ("t1 ````` x", "t2 y")),))
    md = render.to_markdown(doc)
    assert "\n``````text\nt1 ````` x\nt2 y\n``````\n" in md


# ------------------------------------------------------------------------------------------------- log markers
def test_lines_of_any_length_cost_bounded_memory_and_are_cut_visibly():
    huge = [b"2025-07-06T05:03:41.000000001Z " + b"A" * 65536] + [b"A" * 65536] * 159 + [b"\nnext\n"]
    (head, extra), (second, rest) = list(logmarkers._split_lines(huge, keep=200))
    assert len(head) == 200 and extra == 160 * 65536 + 31 - 200 and (second, rest) == (b"next", 0)
    ts, line, cut = logmarkers.render_line(head, extra, 50)
    assert ts == "2025-07-06T05:03:41.000000001Z" and cut
    assert line == f"{ts} {'A' * 50}… [{160 * 65536 - 50} more bytes cut]"
    ts, line, cut = logmarkers.render_line(b"no stamp \x1b[2J\x1b[H``` <b>", 0, 100)
    assert (ts, line, cut) == (None, "(no timestamp) no stamp ``` <b>", False)


def test_read_state_finds_entries_last_ts_and_the_boundary_lines(tmp_path: Path):
    log = tmp_path / "demo.md"
    log.write_text(
        "\n=== Pod logs (before) 1 - 2025-07-06T05:03:40Z ===\n```text\n"
        "2025-07-06T05:03:39.5Z one\n2025-07-06T05:03:40.25Z two\n2025-07-06T05:03:40.25Z three\n```\n"
        "@@ LAST_TS=2025-07-06T05:03:40.25Z\n"
        "\n=== Pod logs (after-burst) 2 - 2025-07-06T05:03:45Z (after 5s) ===\n(no new lines)\n"
        "@@ LAST_TS=2025-07-06T05:03:40.25Z\n"
    )
    state = logmarkers.read_state(log)
    assert (state.entries, state.last_entry_time, state.last_ts) == (
        2,
        "2025-07-06T05:03:45Z",
        "2025-07-06T05:03:40.25Z",
    )
    assert dict(state.boundary) == {"two": 1, "three": 1}

    cursor = logmarkers._Cursor(state)
    cursor.begin_source()

    def admit(ts: str, text: str) -> bool:
        ns = logmarkers.timestamp_ns(ts)
        assert ns is not None
        return cursor.admit(ts, ns, text)

    # what a server answers for sinceTime (rounded down to the second by a real API server)
    assert not admit("2025-07-06T05:03:40.000000Z", "older, same second")
    assert not admit("2025-07-06T05:03:40.250000000Z", "two")  # the same instant written with more digits
    assert admit("2025-07-06T05:03:40.250000000Z", "four")  # same instant, a line not written yet
    assert admit("2025-07-06T05:03:40.250000001Z", "five")
    assert cursor.last_ts == "2025-07-06T05:03:40.250000001Z"


def test_read_state_of_a_missing_file_is_empty(tmp_path: Path):
    assert logmarkers.read_state(tmp_path / "none.md") == logmarkers.FileState()


# ----------------------------------------------------------------------------------------- reports from dicts
def crash_pod(uid: str = "u1") -> dict:
    return {
        "metadata": {"name": "crash-1", "namespace": "ns", "uid": uid},
        "spec": {"nodeName": "n1", "containers": [{"name": "app"}, {"name": "side"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 3}},
                },
                {
                    "name": "side",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2025-07-06T05:00:00Z"}},
                },
            ],
        },
    }


def test_pod_health_from_api_objects_renders_the_same_rows_twice():
    events = [
        {
            "involvedObject": {"name": "crash-1", "uid": "u1"},
            "reason": "BackOff",
            "count": 7,
            "message": HOSTILE,
            "lastTimestamp": "2025-07-06T05:03:00Z",
        },
        {"involvedObject": {"name": "crash-1", "uid": "old"}, "reason": "Failed", "message": "an earlier pod's"},
    ]
    usage = {"crash-1": sources.Usage({"app": ("137208911n", "12796Ki"), "side": ("5m", "1Mi")}, "10s")}
    report = health.build("ns", "app=crash", [crash_pod()], events, usage, None, "2025-07-06T05:04:00Z")
    pod = report.pod("crash-1")
    assert (pod.phase, pod.ready, pod.restarts, pod.cpu, pod.memory, pod.healthy) == (
        "Running",
        "1/2",
        4,
        "143m",
        "13Mi",
        False,
    )
    app = pod.containers[0]
    assert (
        app.state == "waiting: CrashLoopBackOff (back-off 40s)" and app.last_state == "terminated: Error, exit code 3"
    )
    assert app.exit_code == 3 and (app.cpu, app.memory) == ("138m", "12Mi")
    assert [e.reason for e in report.warnings] == ["BackOff"]  # the old pod's event is not this pod's
    assert not report.all_ready and report.restarts == 4
    assert any("restarted 4 times; last: terminated: Error, exit code 3" in p for p in report.problems())
    tables = assert_same_rows(report)
    assert tables[1][1][:6] == [
        "crash-1",
        "app",
        "no",
        "4",
        "waiting: CrashLoopBackOff (back-off 40s)",
        "terminated: Error, exit code 3",
    ]

    bare = health.build(
        "ns", None, [crash_pod()], [], {}, "metrics unavailable (metrics.k8s.io answered HTTP 404 NotFound)"
    )
    assert bare.pod("crash-1").cpu == "-" and "metrics unavailable" in bare.to_markdown()
    assert "metrics unavailable" in bare._repr_html_()
    with pytest.raises(KeyError, match="it has: crash-1"):
        bare.pod("nope")


def test_service_report_from_api_objects():
    svc = {
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.43.0.9",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": 8080, "protocol": "TCP"}],
        },
    }
    ext = {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.org"}}
    piece = {
        "metadata": {"labels": {services.SERVICE_NAME_LABEL: "web"}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["10.42.0.5"],
                "conditions": {"ready": True},
                "targetRef": {"name": "web-a"},
                "nodeName": "n1",
            },
            {"addresses": ["10.42.0.6"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": ["10.42.0.7"], "conditions": {}},
        ],
    }
    report = services.build("ns", None, [ext, svc], [piece], "2025-07-06T05:04:00Z")
    web = report.service("web")
    assert web.ports == ["http: 80:30080→8080/TCP"] and web.selector == "app=web"
    assert (web.ready, web.not_ready) == (["10.42.0.5", "10.42.0.7"], ["10.42.0.6"])
    assert report.service("ext").cluster_ip == "example.org" and report.problems() == []
    tables = assert_same_rows(report)
    assert tables[0][2][5:] == ["10.42.0.5, 10.42.0.7", "10.42.0.6"]


def test_run_summary_counts_checks_and_raises_for_failures():
    summary = RunSummary(
        "pod tests",
        "ns",
        "2025-07-06T05:04:00Z",
        12.34,
        [Collected("pod health report", "before", "2 pods", "pod-health-before.md")],
        [CheckResult("ready", True), CheckResult("no restarts", False, "crash-1 restarted 4 times")],
    )
    assert not summary.passed and [c.name for c in summary.failed] == ["no restarts"]
    md = summary.to_markdown()
    assert "- **total time**: 12.3s" in md and "FAILED: 1/2 checks passed" in md
    assert assert_same_rows(summary)[1][2] == ["no restarts", "FAIL", "crash-1 restarted 4 times"]
    with pytest.raises(CheckFailed, match=r"1 of 2 checks failed: no restarts \(crash-1 restarted 4 times\)"):
        summary.raise_for_failures()
