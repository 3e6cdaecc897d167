"""A run of pod tests, as the seed's CI runs them: reports before and after, log collection, checks, and a
summary of what was collected, the checks' pass/fail and the total time.

>>> run = ReportRun(cluster, namespace="lab-06", target="app=demo", directory="build/pod-tests")  # doctest: +SKIP
>>> before = run.pod_health("before")                                    # doctest: +SKIP
>>> run.services("before")                                               # doctest: +SKIP
>>> run.collect_logs("before")                                           # doctest: +SKIP
>>> run.check("every demo pod is ready", before.all_ready, "; ".join(before.problems()))  # doctest: +SKIP
>>> summary = run.finish()        # writes build/pod-tests/summary.md      # doctest: +SKIP
>>> summary.passed                                                       # doctest: +SKIP
True
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import CheckFailed, LabkitError
from labkit.fsutil import write_atomic
from labkit.reports import render
from labkit.reports.health import PodHealthReport, pod_health_report
from labkit.reports.logmarkers import DEFAULT_LINE_CHARS, DEFAULT_MAX_BYTES, LogCollection, collect_logs
from labkit.reports.services import ServiceReport, service_report
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.cluster import Cluster


@dataclass
class Collected:
    """One thing a run collected: what, under which label, its counts, and the file it went to (or ``-``)."""

    what: str
    label: str
    counts: str
    file: str = "-"


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class RunSummary(render.Rendered):
    """What a run collected, its checks, and how long it took; ``passed`` when every check passed."""

    title: str
    namespace: str
    started_at: str
    seconds: float
    collected: list[Collected]
    checks: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def raise_for_failures(self) -> None:
        """Raise :class:`~labkit.errors.CheckFailed` naming the failed checks (for a notebook's checks cell)."""
        if self.failed:
            raise CheckFailed(
                f"{len(self.failed)} of {len(self.checks)} checks failed: "
                + "; ".join(f"{c.name}" + (f" ({c.detail})" if c.detail else "") for c in self.failed),
                "read the pod health report and the logs the run collected",
            )

    def document(self) -> render.Document:
        passed = sum(c.passed for c in self.checks)
        facts = (
            ("namespace", self.namespace),
            ("started at", self.started_at),
            ("total time", f"{self.seconds:.1f}s"),
            ("result", ("passed" if self.passed else "FAILED") + f": {passed}/{len(self.checks)} checks passed"),
        )
        collected = render.Table(
            "Collected",
            ("what", "label", "counts", "file"),
            tuple((c.what, c.label, c.counts, c.file) for c in self.collected),
            empty="nothing collected",
        )
        checks = render.Table(
            "Checks",
            ("check", "result", "detail"),
            tuple((c.name, "pass" if c.passed else "FAIL", c.detail or "-") for c in self.checks),
            empty="no checks",
        )
        return render.Document(f"Summary: {self.title}", facts, (collected, checks))


def _file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "report"


@dataclass
class ReportRun:
    """Collects reports for one namespace (and *target*: a selector, pod or workload), records checks, and
    sums them up; with a *directory*, each report is also written there as Markdown (``pod-health-<label>.md``,
    ``services-<label>.md``, logs under ``logs/``, ``summary.md`` at :meth:`finish`), ready to upload from CI.
    """

    cluster: Cluster
    namespace: str
    target: str | None = None
    directory: str | Path | None = None
    title: str = "pod tests"
    collected: list[Collected] = field(default_factory=list, init=False)
    checks: list[CheckResult] = field(default_factory=list, init=False)
    _start: float = field(default_factory=time.monotonic, init=False, repr=False)
    _started_at: str = field(default_factory=format_rfc3339, init=False, repr=False)

    def _write(self, name: str, text: str) -> str:
        if self.directory is None:
            return "-"
        path = Path(self.directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())
        return name

    def pod_health(self, label: str = "now") -> PodHealthReport:
        """:func:`~labkit.reports.pod_health_report` of the run's pods, recorded under *label*."""
        report = pod_health_report(self.cluster, self.target, namespace=self.namespace)
        counts = (
            f"{len(report.pods)} pods, {sum(p.healthy for p in report.pods)} healthy, {report.restarts} restarts, "
            f"{len(report.warnings)} warning events" + (", metrics unavailable" if report.metrics else "")
        )
        file = self._write(f"pod-health-{_file_label(label)}.md", report.to_markdown())
        self.collected.append(Collected("pod health report", label, counts, file))
        return report

    def services(self, label: str = "now", selector: str | None = None) -> ServiceReport:
        """:func:`~labkit.reports.service_report` of the namespace (or *selector*), recorded under *label*."""
        report = service_report(self.cluster, selector, namespace=self.namespace)
        counts = f"{len(report.services)} services, {sum(len(s.ready) for s in report.services)} ready endpoints"
        file = self._write(f"services-{_file_label(label)}.md", report.to_markdown())
        self.collected.append(Collected("service report", label, counts, file))
        return report

    def collect_logs(
        self,
        phase: str,
        *,
        directory: str | Path | None = None,
        container: str | None = None,
        max_line_chars: int = DEFAULT_LINE_CHARS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> LogCollection:
        """:func:`~labkit.reports.collect_logs` of the run's pods into ``<directory>/logs`` (or *directory*)."""
        where = directory or (Path(self.directory) / "logs" if self.directory else None)
        if where is None:
            raise LabkitError(
                "log collection needs a directory for its files",
                "give the run one (ReportRun(..., directory='build/pod-tests')) or pass directory=...",
            )
        logs = collect_logs(
            self.cluster,
            self.target,
            namespace=self.namespace,
            phase=phase,
            directory=where,
            container=container,
            max_line_chars=max_line_chars,
            max_bytes=max_bytes,
        )
        truncated = sum(1 for e in logs.entries if e.cut_lines or e.dropped_lines)
        counts = f"{len(logs.entries)} logs, {logs.new_lines} new lines" + (
            f", {truncated} truncated" if truncated else ""
        )
        shown = Path(where)
        if self.directory is not None and shown.is_relative_to(self.directory):
            shown = shown.relative_to(self.directory)
        self.collected.append(Collected("pod logs", phase, counts, f"{shown}/"))
        return logs

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        """Record a check (it does not raise; :meth:`RunSummary.raise_for_failures` does); returns *passed*."""
        self.checks.append(CheckResult(name, bool(passed), detail))
        return bool(passed)

    def summary(self) -> RunSummary:
        """What was collected so far, the checks, and the time since the run began."""
        return RunSummary(
            self.title,
            self.namespace,
            self._started_at,
            time.monotonic() - self._start,
            list(self.collected),
            list(self.checks),
        )

    def finish(self) -> RunSummary:
        """:meth:`summary`, also written to ``<directory>/summary.md`` when the run has a directory."""
        summary = self.summary()
        self._write("summary.md", summary.to_markdown())
        return summary
