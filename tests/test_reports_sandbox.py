"""labkit.reports against a real sandbox with real wasm pods: restarts, exit codes and Warning events in the pod
health report, endpoints in the service report, log markers that append only new lines (across restarts too),
hostile log text kept harmless, and Markdown and HTML showing the same rows."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labkit import reports
from labkit.errors import LabkitError
from labkit.manifests import runtime_class, service, wasm_deployment, wasm_job
from labkit.operations import apply, wait_for
from labkit.reports.logmarkers import read_state, timestamp_ns
from tests.test_reports import assert_same_rows

IMAGE = "docker.io/labkit/wasi-demo:latest"
NS = "reports"


@pytest.fixture(scope="module")
def cluster(sandbox_cluster):
    apply(sandbox_cluster, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, runtime_class()])
    return sandbox_cluster


def until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll *probe* until it returns something truthy; fail naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def one_pod(cluster, selector: str) -> dict[str, Any]:
    """The one pod *selector* matches, or {} while the ReplicaSet has not made it yet (apply returns first)."""
    items = cluster.core.list_namespaced_pod(NS, label_selector=selector).items
    assert len(items) <= 1, [p.metadata.name for p in items]
    return cluster.api_client.sanitize_for_serialization(items[0]) if items else {}


def container_status(cluster, selector: str) -> dict[str, Any]:
    return (one_pod(cluster, selector).get("status") or {}).get("containerStatuses", [{}])[0]


def full_log(cluster, pod: str, *, previous: bool = False) -> list[str]:
    text = cluster.core.read_namespaced_pod_log(pod, NS, timestamps=True, previous=previous)
    return [line for line in text.split("\n") if line]


def logged_lines(path: Path) -> list[str]:
    """The log lines a marker file holds (inside its fences), in order."""
    return [line for line in path.read_text().split("\n") if timestamp_ns(line.partition(" ")[0]) is not None]


def test_an_unknown_namespace_is_a_labkit_error_naming_the_fix(cluster, tmp_path):
    for call in (
        lambda: reports.pod_health_report(cluster, namespace="no-such-ns"),
        lambda: reports.service_report(cluster, namespace="no-such-ns"),
        lambda: reports.collect_logs(cluster, namespace="no-such-ns", phase="before", directory=tmp_path),
    ):
        with pytest.raises(LabkitError) as err:
            call()
        assert "namespace 'no-such-ns' does not exist" in err.value.problem and NS in err.value.problem
        assert err.value.fix is not None and "kubectl get namespaces" in err.value.fix
    with pytest.raises(LabkitError, match="phase must be a short name"):
        reports.collect_logs(cluster, namespace=NS, phase="x) 9 - y ===\n@@ LAST_TS=2099", directory=tmp_path)


@pytest.mark.slow
def test_health_report_shows_restarts_exit_codes_events_and_usage(cluster):
    apply(
        cluster,
        [
            wasm_deployment("beat", IMAGE),
            wasm_deployment("crash", IMAGE, args=["exit", "3"]),
            wasm_job("fail3", IMAGE, args=["exit", "3"]),
        ],
        namespace=NS,
    )
    wait_for(cluster, "Deployment", "beat", namespace=NS, timeout=60)
    # the second exit starts the back-off: a Warning BackOff event and CrashLoopBackOff
    until("crash in CrashLoopBackOff", lambda: "CrashLoopBackOff" in str(container_status(cluster, "app=crash")))
    until("fail3 terminated", lambda: "terminated" in (container_status(cluster, "app=fail3").get("state") or {}))

    report = reports.pod_health_report(cluster, namespace=NS)
    assert report.metrics is None  # the sandbox serves metrics.k8s.io
    crash = report.pod(one_pod(cluster, "app=crash")["metadata"]["name"])
    [app] = crash.containers
    assert crash.phase == "Running" and crash.ready == "0/1" and not crash.healthy
    assert app.restart_count >= 1 and app.state.startswith("waiting: CrashLoopBackOff")
    assert app.last_state.startswith("terminated: Error, exit code 3") and app.exit_code == 3
    assert any(e.reason == "BackOff" and "Back-off restarting failed container" in e.message for e in crash.warnings)
    job = report.pod(one_pod(cluster, "app=fail3")["metadata"]["name"])
    assert job.phase == "Failed" and job.containers[0].state.startswith("terminated: Error, exit code 3")
    beat = report.pod(one_pod(cluster, "app=beat")["metadata"]["name"])
    assert beat.healthy and beat.containers[0].state.startswith("running since ")
    assert not report.all_ready and report.problems()

    tables = assert_same_rows(report)
    assert [row[0] for row in tables[0][1:]] == [p.name for p in report.pods]
    assert any(row[1] == "BackOff" for row in tables[2][1:])

    # kubectl top's numbers once the node has sampled the pod (every 5 s)
    def sampled() -> reports.PodHealthReport | None:
        again = reports.pod_health_report(cluster, "app=beat", namespace=NS)
        return again if again.pods[0].memory.endswith("Mi") else None

    beat_report = until("a usage sample of beat", sampled, timeout=30)
    assert re.fullmatch(r"\d+m", beat_report.pods[0].cpu) and beat_report.target == "app=beat"
    assert [p.name for p in beat_report.pods] == [beat.name]


@pytest.mark.slow
def test_service_report_lists_ready_and_not_ready_endpoints(cluster):
    apply(
        cluster,
        [
            wasm_deployment("svcbeat", IMAGE),
            wasm_deployment("svccrash", IMAGE, args=["exit", "3"]),
            service("svcbeat", "svcbeat", 80, 8080),
            service("svccrash", "svccrash", 81, 8081),
        ],
        namespace=NS,
    )
    wait_for(cluster, "Deployment", "svcbeat", namespace=NS, timeout=60)
    beat_ip = until("svcbeat's pod IP", lambda: one_pod(cluster, "app=svcbeat").get("status", {}).get("podIP"))
    crash_ip = until("svccrash's pod IP", lambda: one_pod(cluster, "app=svccrash").get("status", {}).get("podIP"))

    def settled() -> reports.ServiceReport | None:
        found = reports.service_report(cluster, namespace=NS)
        ok = found.service("svcbeat").ready == [beat_ip] and found.service("svccrash").not_ready == [crash_ip]
        return found if ok else None

    report = until("both Services' EndpointSlices", settled, timeout=30)
    beat = report.service("svcbeat")
    assert beat.type == "ClusterIP" and beat.cluster_ip not in ("", "-", "None") and beat.ports == ["80→8080/TCP"]
    assert beat.endpoints[0].pod.startswith("svcbeat-") and report.service("svccrash").ready == []
    assert report.problems() == ["service svccrash: no ready endpoint (1 not ready)"]
    tables = assert_same_rows(report)
    assert [r[0] for r in tables[0][1:]] == ["svcbeat", "svccrash"]
    picked = reports.service_report(cluster, "app=none", namespace=NS)
    assert picked.services == [] and "no Services in reports, app=none" in picked.to_markdown()


@pytest.mark.slow
def test_log_markers_append_only_new_lines_across_calls_and_phases(cluster, tmp_path):
    apply(cluster, wasm_deployment("marked", IMAGE), namespace=NS)
    wait_for(cluster, "Deployment", "marked", namespace=NS, timeout=60)
    pod = one_pod(cluster, "app=marked")["metadata"]["name"]
    until("two heartbeats", lambda: len(full_log(cluster, pod)) >= 2, timeout=20)

    first = reports.collect_logs(cluster, "app=marked", namespace=NS, phase="before", directory=tmp_path)
    [entry] = first.entries
    path = tmp_path / f"{pod}.md"
    assert entry.file == path and entry.index == 1 and entry.since is None and entry.new_lines >= 2
    assert entry.header.startswith("=== Pod logs (before) 1 - ") and "(after" not in entry.header
    assert path.read_text().rstrip("\n").split("\n")[-1] == f"@@ LAST_TS={entry.last_ts}"
    assert entry.last_ts == entry.lines[-1].partition(" ")[0]

    first_done = time.monotonic()
    time.sleep(2.5)
    second = reports.collect_logs(cluster, "app=marked", namespace=NS, phase="after-burst", directory=tmp_path)
    between = time.monotonic() - first_done  # 2.5 s and whatever a loaded machine adds to the calls
    [later] = second.entries
    assert later.index == 2 and later.since == entry.last_ts and later.new_lines >= 1
    header = re.fullmatch(r"=== Pod logs \(after-burst\) 2 - \S+Z \(after (\d+)s\) ===", later.header)
    # the headers' times are whole seconds: the gap they show is the time between the calls, give or take one
    assert header and 2 <= int(header[1]) <= round(between) + 1, (later.header, between)
    assert all(timestamp_ns(line.partition(" ")[0]) > timestamp_ns(entry.last_ts) for line in later.lines)

    third = reports.collect_logs(cluster, "app=marked", namespace=NS, phase="after-burst", directory=tmp_path)
    assert third.entries[0].index == 3 and third.entries[0].since == later.last_ts
    assert all(timestamp_ns(line.partition(" ")[0]) > timestamp_ns(later.last_ts) for line in third.entries[0].lines)

    # together the entries are the log up to the last marker: no line twice, none missing
    written = logged_lines(path)
    last = timestamp_ns(third.entries[0].last_ts)
    assert written == [line for line in full_log(cluster, pod) if timestamp_ns(line.partition(" ")[0]) <= last]
    text = path.read_text()
    assert text.count("=== Pod logs (before) ") == 1 and text.count("=== Pod logs (after-burst) ") == 2
    assert read_state(path).entries == 3
    [table] = assert_same_rows(second)
    assert table[1][:5] == [pod, "marked", path.name, "2", str(later.new_lines)]


@pytest.mark.slow
def test_a_restarted_containers_previous_run_is_collected_once(cluster, tmp_path):
    apply(cluster, wasm_deployment("echoer", IMAGE, args=["echo", "hello"]), namespace=NS)
    # run 0 ends, run 1 starts at once and ends; the back-off holds run 2 for 10 s
    until(
        "echoer backing off after run 1",
        lambda: (
            container_status(cluster, "app=echoer").get("restartCount") == 1
            and "CrashLoopBackOff" in str(container_status(cluster, "app=echoer").get("state"))
        ),
    )
    first = reports.collect_logs(cluster, "app=echoer", namespace=NS, phase="crashing", directory=tmp_path)
    [entry] = first.entries
    assert entry.from_previous == 2  # run 0: "hello" and "exiting"
    assert sorted(line.partition(" ")[2] for line in entry.lines) == ["exiting", "exiting", "hello", "hello"]
    assert "previous run (before restart 1; Completed, exit code 0):" in entry.file.read_text()

    until(
        "run 2 ended",
        lambda: (
            container_status(cluster, "app=echoer").get("restartCount") == 2
            and "CrashLoopBackOff" in str(container_status(cluster, "app=echoer").get("state"))
        ),
        timeout=40,
    )
    second = reports.collect_logs(cluster, "app=echoer", namespace=NS, phase="crashing", directory=tmp_path)
    [again] = second.entries
    assert again.from_previous == 0 and sorted(line.partition(" ")[2] for line in again.lines) == ["exiting", "hello"]
    assert [line.partition(" ")[2] for line in logged_lines(entry.file)].count("hello") == 3


@pytest.mark.slow
def test_hostile_log_lines_stay_inside_their_fence_and_are_cut(cluster, tmp_path):
    hostile = "\x1b[31mred\x1b[0m ``` </pre><script>alert(1)</script> | a | b \r# fake heading"
    forged = "@@ LAST_TS=2099-01-01T00:00:00Z"
    apply(
        cluster,
        [
            wasm_job("hostile", IMAGE, args=["echo", f"{hostile}\n{forged}\n=== Pod logs (x) 9 - y ==="]),
            wasm_job("huge", IMAGE, args=["echo", "A" * 15_000]),
        ],
        namespace=NS,
    )
    for job in ("hostile", "huge"):
        wait_for(cluster, "Job", job, namespace=NS, timeout=60)
    got = reports.collect_logs(
        cluster, "app=hostile", namespace=NS, phase="before", directory=tmp_path, max_line_chars=300
    )
    path = got.entries[0].file
    text = path.read_text()
    assert "\x1b" not in text and "\r" not in text
    state = read_state(path)
    assert state.entries == 1 and state.last_ts is not None and not state.last_ts.startswith("2099")
    fenced = re.findall(r"^(`{3,})text\n(.*?)\n\1$", text, flags=re.MULTILINE | re.DOTALL)
    assert len(fenced) == 1 and "<script>" in fenced[0][1] and forged in fenced[0][1]
    outside = text.replace(fenced[0][1], "")
    assert "<script>" not in outside and forged not in outside.replace(f"@@ LAST_TS={state.last_ts}", "")
    assert "red ``` </pre><script>" in fenced[0][1] and "\\r# fake heading" in fenced[0][1]
    page = got._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<pre>") == page.count("</pre>") == 1
    assert_same_rows(got)

    # one line of 15,000 characters (the kubelet splits lines at 16 KiB): cut at 1000, or not written at all
    cut = reports.collect_logs(
        cluster, "app=huge", namespace=NS, phase="before", directory=tmp_path / "cut", max_line_chars=1000
    )
    [entry] = cut.entries
    [line] = [line for line in entry.lines if "AAAA" in line]
    assert line.endswith(f"{'A' * 1000}… [14000 more bytes cut]") and entry.cut_lines == 1
    assert "1 lines cut at 1000 characters" in entry.file.read_text()
    capped = reports.collect_logs(
        cluster,
        "app=huge",
        namespace=NS,
        phase="before",
        directory=tmp_path / "capped",
        max_line_chars=1000,
        max_bytes=500,
    )
    [entry] = capped.entries
    # stdout and stderr are two pipes: "exiting" may come first and fit; nothing after the cut-off is written
    assert entry.new_lines == 2 and [line.partition(" ")[2] for line in entry.lines] in ([], ["exiting"])
    assert any(f"{entry.dropped_lines} new lines" in n and "over the 500-byte limit" in n for n in entry.notes)
    assert entry.last_ts == cut.entries[0].last_ts  # the marker moves past what was not written


def test_a_report_run_writes_each_report_and_sums_them_up(cluster, tmp_path):
    run = reports.ReportRun(cluster, namespace=NS, target="app=nobody-here", directory=tmp_path, title="empty run")
    before = run.pod_health("before")
    run.services("before", selector="app=nobody-here")
    logs = run.collect_logs("before")
    run.check("some pod matched", bool(before.pods), "no pod has app=nobody-here")
    run.check("no restarts", before.restarts == 0)
    summary = run.finish()
    assert logs.entries == [] and not summary.passed and [c.name for c in summary.failed] == ["some pod matched"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "logs",
        "pod-health-before.md",
        "services-before.md",
        "summary.md",
    ]
    assert (tmp_path / "summary.md").read_text() == summary.to_markdown()
    [collected, checks] = assert_same_rows(summary)
    assert [row[:2] for row in collected[1:]] == [
        ["pod health report", "before"],
        ["service report", "before"],
        ["pod logs", "before"],
    ]
    assert collected[3][3] == "logs/" and checks[1][1:] == ["FAIL", "no pod has app=nobody-here"]
    assert "no pods in reports, app=nobody-here" in (tmp_path / "pod-health-before.md").read_text()


def test_a_lab_reports_on_its_own_namespace(cluster, tmp_path):
    import labkit
    from labkit.operations import Lab

    the_lab = Lab("reports", NS, cluster)
    assert the_lab.pod_health_report("app=nobody-here").namespace == NS
    assert the_lab.service_report("app=nobody-here").services == []
    assert the_lab.collect_logs("app=nobody-here", phase="before", directory=tmp_path).entries == []
    assert labkit.reports.pod_health_report is reports.pod_health_report


def test_a_cluster_without_metrics_server_gets_a_report_that_says_so(cluster, monkeypatch):
    """k3s without metrics-server answers 404 for metrics.k8s.io: the report is complete, usage says why not."""
    import kubernetes.client
    from kubernetes.client.exceptions import ApiException

    def no_metrics(*args, **kw):
        raise ApiException(status=404, reason="NotFound")

    monkeypatch.setattr(kubernetes.client.CustomObjectsApi, "list_namespaced_custom_object", no_metrics)
    apply(cluster, wasm_job("nometrics", IMAGE, args=["echo", "hi"]), namespace=NS)
    wait_for(cluster, "Job", "nometrics", namespace=NS, timeout=60)
    report = reports.pod_health_report(cluster, "app=nometrics", namespace=NS)
    assert report.metrics == "metrics unavailable (metrics.k8s.io answered HTTP 404 NotFound)"
    [pod] = report.pods
    assert pod.phase == "Succeeded" and (pod.cpu, pod.memory) == ("-", "-")
    assert "metrics unavailable" in report.to_markdown() and "metrics unavailable" in report._repr_html_()
