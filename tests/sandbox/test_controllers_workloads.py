"""The StatefulSet, DaemonSet and CronJob controllers in process, with the scheduler where pods must land;
the test plays the kubelet. Expected wording is upstream's: stateful_pod_control.go's recordPodEvent,
daemon_controller.go's RealPodControl, cronjob_controllerv2.go."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

import tests.sandbox.controllers_harness as harness
from labkit.sandbox.api.events import EVENTS
from labkit.sandbox.controllers.conditions import condition
from labkit.sandbox.controllers.cronjob import CRONJOBS, CronJobController, job_name
from labkit.sandbox.controllers.cronschedule import Schedule
from labkit.sandbox.controllers.daemonset import DAEMONSETS, run_daemonset_controller
from labkit.sandbox.controllers.job import JOBS
from labkit.sandbox.controllers.podutil import PODS
from labkit.sandbox.controllers.revisions import CONTROLLER_REVISIONS
from labkit.sandbox.controllers.scheduler import NODES, run_scheduler
from labkit.sandbox.controllers.statefulset import STATEFULSETS, run_statefulset_controller
from labkit.sandbox.nodes import ensure_nodes
from tests.sandbox.controllers_harness import NS, events, exactly, kubelet, pods, settle, until, workload

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes
MERGE = "application/merge-patch+json"


def running(
    core: ApiCore, body: Callable[[], Awaitable[None]], *loops: Callable[[ApiCore], Coroutine[Any, Any, None]]
) -> None:
    async def main() -> None:
        tasks = [asyncio.ensure_future(loop(core)) for loop in loops]
        try:
            await asyncio.wait_for(body(), 15)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def pod_spec() -> dict[str, Any]:
    """The pods' spec: one container of demo:1, new for each object."""
    return {"containers": [{"name": "main", "image": "demo:1"}]}


def statefulset(name: str = "web", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return workload("StatefulSet", name, pod_spec(), **{"replicas": replicas, "serviceName": name, **spec})


def names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in items)


def count_is(core: ApiCore, app: str, n: int) -> list[dict[str, Any]] | None:
    return exactly(n, pods(core, app=app))


def ready_new(core: ApiCore, app: str) -> int:
    """Play the kubelet: each pod without a Ready condition becomes Running and Ready; how many did."""
    fresh = [
        p for p in pods(core, app=app) if not p["metadata"].get("deletionTimestamp") and condition(p, "Ready") is None
    ]
    for pod in fresh:
        kubelet(core, pod)
    return len(fresh)


async def all_ready(core: ApiCore, app: str, n: int) -> None:
    """Wait for *n* pods of *app*, then play the kubelet: each becomes Running and Ready."""
    await until(f"{n} pods", lambda: exactly(n, pods(core, app=app)))
    ready_new(core, app)


# ------------------------------------------------------------------------------------------------- StatefulSet
def test_statefulset_creates_pods_in_order_each_after_the_one_before_is_ready(core: ApiCore) -> None:
    core.create(STATEFULSETS, NS, statefulset())

    async def body() -> None:
        for n in range(3):
            await until(f"web-{n}", partial(count_is, core, "web", n + 1))
            await settle()
            assert names(pods(core, app="web")) == [f"web-{i}" for i in range(n + 1)]  # no pod before its turn
            ready_new(core, "web")
        sts = await until(
            "ready", lambda: (s := core.get(STATEFULSETS, NS, "web")).get("status", {}).get("readyReplicas") == 3 and s
        )
        status = sts["status"]
        assert status["currentRevision"] == status["updateRevision"]
        assert status["currentRevision"].startswith("web-") and status["updatedReplicas"] == 3
        pod0 = core.get(PODS, NS, "web-0")
        assert pod0["spec"]["hostname"] == "web-0" and pod0["spec"]["subdomain"] == "web"
        labels = pod0["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == "web-0" and labels["apps.kubernetes.io/pod-index"] == "0"
        assert labels["controller-revision-hash"] == status["currentRevision"]
        assert ("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") in events(core, "web")
        assert names(core.list(CONTROLLER_REVISIONS, NS)["items"]) == [status["currentRevision"]]

    running(core, body, run_statefulset_controller)


def test_statefulset_scales_down_from_the_highest_ordinal_one_at_a_time(core: ApiCore) -> None:
    core.create(STATEFULSETS, NS, statefulset(replicas=3, podManagementPolicy="Parallel"))

    async def body() -> None:
        await all_ready(core, "web", 3)
        sts = core.get(STATEFULSETS, NS, "web")
        core.patch(STATEFULSETS, NS, "web", MERGE, json.dumps({"spec": {"replicas": 1}}).encode())
        await until("1 pod", lambda: exactly(1, pods(core, app="web")))
        assert names(pods(core, app="web")) == ["web-0"]
        deletes = [m for r, m in events(core, "web") if r == "SuccessfulDelete"]
        assert deletes == [
            "delete Pod web-2 in StatefulSet web successful",
            "delete Pod web-1 in StatefulSet web successful",
        ]
        assert sts["spec"]["podManagementPolicy"] == "Parallel"

    running(core, body, run_statefulset_controller)


def test_statefulset_ordered_scale_down_waits_for_the_others_to_be_ready(core: ApiCore) -> None:
    core.create(STATEFULSETS, NS, statefulset(replicas=2))

    async def body() -> None:
        for n in range(2):
            await until(f"web-{n}", partial(count_is, core, "web", n + 1))
            ready_new(core, "web")
        kubelet(core, core.get(PODS, NS, "web-0"), ready=False)  # web-0 turns unready
        core.patch(STATEFULSETS, NS, "web", MERGE, json.dumps({"spec": {"replicas": 1}}).encode())
        await settle()
        assert names(pods(core, app="web")) == ["web-0", "web-1"]  # OrderedReady: no deletion while one is unready
        kubelet(core, core.get(PODS, NS, "web-0"))
        await until("web-1 gone", lambda: exactly(1, pods(core, app="web")))

    running(core, body, run_statefulset_controller)


def test_statefulset_rolling_update_replaces_pods_from_the_highest_ordinal(core: ApiCore) -> None:
    core.create(STATEFULSETS, NS, statefulset(replicas=2, podManagementPolicy="Parallel"))

    async def body() -> None:
        await all_ready(core, "web", 2)
        first = (
            await until(
                "status",
                lambda: (
                    core.get(STATEFULSETS, NS, "web").get("status", {}).get("readyReplicas") == 2
                    and core.get(STATEFULSETS, NS, "web")
                ),
            )
        )["status"]["currentRevision"]
        sts = core.get(STATEFULSETS, NS, "web")
        sts["spec"]["template"]["spec"]["containers"][0]["image"] = "demo:2"
        core.replace(STATEFULSETS, NS, "web", sts)
        for _ in range(8):  # the kubelet readies each replacement as it comes
            ready_new(core, "web")
            await asyncio.sleep(0.1)
        done = await until(
            "rolled",
            lambda: (
                (ready_new(core, "web"), s := core.get(STATEFULSETS, NS, "web"))[1]["status"].get("currentRevision")
                != first
                and s
            ),
        )
        assert done["status"]["updatedReplicas"] == 2 and done["status"]["updateRevision"] != first
        deletes = [m for r, m in events(core, "web") if r == "SuccessfulDelete"]
        assert deletes[:2] == [
            "delete Pod web-1 in StatefulSet web successful",
            "delete Pod web-0 in StatefulSet web successful",
        ]
        assert {p["spec"]["containers"][0]["image"] for p in pods(core, app="web")} == {"demo:2"}

    running(core, body, run_statefulset_controller)


# --------------------------------------------------------------------------------------------------- DaemonSet
def daemonset(name: str = "agent", **spec: Any) -> dict[str, Any]:
    return workload("DaemonSet", name, pod_spec(), **spec)


def test_daemonset_runs_one_pod_per_node_even_a_cordoned_one_and_leaves_a_noexecute_tainted_one(core: ApiCore) -> None:
    nodes = ensure_nodes(core, 2)
    core.patch(NODES, None, nodes[1], MERGE, json.dumps({"spec": {"unschedulable": True}}).encode())
    core.create(DAEMONSETS, NS, daemonset())

    async def body() -> None:
        placed = await until(
            "one pod per node",
            lambda: (ps := pods(core, app="agent")) and all(p["spec"].get("nodeName") for p in ps) and ps,
        )
        assert sorted(p["spec"]["nodeName"] for p in placed) == sorted(nodes)
        ready_new(core, "agent")
        ds = await until(
            "status", lambda: (d := core.get(DAEMONSETS, NS, "agent"))["status"].get("numberReady") == 2 and d
        )
        assert {
            k: ds["status"][k]
            for k in ("desiredNumberScheduled", "currentNumberScheduled", "updatedNumberScheduled", "numberAvailable")
        } == {
            "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2,
            "updatedNumberScheduled": 2,
            "numberAvailable": 2,
        }
        assert any(t["key"] == "node.kubernetes.io/unschedulable" for t in placed[0]["spec"]["tolerations"])
        assert next(m for r, m in events(core, "agent") if r == "SuccessfulCreate").startswith("Created pod: agent-")
        taint = {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}
        core.patch(NODES, None, nodes[0], MERGE, json.dumps(taint).encode())
        await until(  # bound pods terminate gracefully: the one on the tainted node is being deleted
            "pod leaves the tainted node",
            lambda: (
                [p["spec"]["nodeName"] for p in pods(core, app="agent") if not p["metadata"].get("deletionTimestamp")]
                == [nodes[1]]
            ),
        )
        await until("desired 1", lambda: core.get(DAEMONSETS, NS, "agent")["status"]["desiredNumberScheduled"] == 1)

    running(core, body, run_daemonset_controller, run_scheduler)


def test_an_unreachable_node_keeps_its_daemon_pod_but_gets_no_new_one(core: ApiCore) -> None:
    nodes = ensure_nodes(core, 1)
    core.create(DAEMONSETS, NS, daemonset())
    unreachable = [
        {"key": "node.kubernetes.io/unreachable", "effect": effect} for effect in ("NoSchedule", "NoExecute")
    ]

    async def body() -> None:
        (pod,) = await until("1 pod", lambda: exactly(1, pods(core, app="agent")))
        core.patch(NODES, None, nodes[0], MERGE, json.dumps({"spec": {"taints": unreachable}}).encode())
        core.create(DAEMONSETS, NS, daemonset("late"))
        await until("late status", lambda: core.get(DAEMONSETS, NS, "late").get("status"))
        await settle()
        assert names(pods(core, app="agent")) == [pod["metadata"]["name"]]  # NoExecute tolerated: it stays
        assert not pods(core, app="late")  # NoSchedule not tolerated: no new pod (NodeShouldRunDaemonPod)
        assert core.get(DAEMONSETS, NS, "late")["status"]["desiredNumberScheduled"] == 0

    running(core, body, run_daemonset_controller)


def test_daemonset_rolling_update_replaces_old_pods_within_max_unavailable(core: ApiCore) -> None:
    ensure_nodes(core, 2)
    core.create(DAEMONSETS, NS, daemonset())

    async def body() -> None:
        await all_ready(core, "agent", 2)
        old = names(pods(core, app="agent"))
        ds = core.get(DAEMONSETS, NS, "agent")
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = "demo:2"
        core.replace(DAEMONSETS, NS, "agent", ds)
        await settle()
        now = pods(core, app="agent")
        assert sum(1 for p in now if p["metadata"]["name"] in old) >= 1  # maxUnavailable 1: one old pod at a time
        done = await until(
            "rolled out",
            lambda: (
                (ready_new(core, "agent"), d := core.get(DAEMONSETS, NS, "agent"))[1]["status"].get(
                    "updatedNumberScheduled"
                )
                == 2
                and d["status"].get("numberAvailable") == 2
                and d["status"]["observedGeneration"] == d["metadata"]["generation"]
                and d
            ),
        )
        assert not set(old) & set(names(pods(core, app="agent")))
        assert len(core.list(CONTROLLER_REVISIONS, NS)["items"]) == 2 and done

    running(core, body, run_daemonset_controller)


def test_daemonset_max_surge_starts_the_new_pod_before_the_old_one_goes(core: ApiCore) -> None:
    ensure_nodes(core, 2)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    core.create(DAEMONSETS, NS, daemonset(updateStrategy=strategy))

    def live() -> list[dict[str, Any]]:
        return [p for p in pods(core, app="agent") if not p["metadata"].get("deletionTimestamp")]

    async def body() -> None:
        await all_ready(core, "agent", 2)
        old = names(live())
        ds = core.get(DAEMONSETS, NS, "agent")
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = "demo:2"
        core.replace(DAEMONSETS, NS, "agent", ds)
        surged = await until("one surge pod", lambda: exactly(3, live()))
        await settle()
        assert names(live()) == names(surged) and set(old) < set(names(surged))  # both old pods still serve
        ready_new(core, "agent")  # the new pod becomes available: its old neighbour goes, the next surges
        await until("rolled out", lambda: (ready_new(core, "agent"), not set(old) & set(names(live())))[1])
        await until("2 new pods", lambda: exactly(2, live()))

    running(core, body, run_daemonset_controller)


# ----------------------------------------------------------------------------------------------------- CronJob
@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", "2026-03-01T10:07:00", "2026-03-01T10:15:00"),
        ("0 0 1 1 *", "2026-03-01T10:07:00", "2027-01-01T00:00:00"),
        ("@hourly", "2026-03-01T10:07:00", "2026-03-01T11:00:00"),
        ("30 4 1,15 * 5", "2026-01-02T05:00:00", "2026-01-09T04:30:00"),  # dom OR dow: Friday the 9th
        ("0 12 * jan-mar sun", "2026-03-29T13:00:00", "2027-01-03T12:00:00"),
        ("@every 90s", "2026-03-01T10:07:00", "2026-03-01T10:08:30"),
    ],
)
def test_cron_schedules_are_read_as_robfig_cron_reads_them(expr: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Schedule.parse(expr).next_after(start) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("* * * *", "expected exactly 5 fields"),
        ("60 * * * *", r"end of range \(60\) above maximum \(59\)"),
        ("* * * * 8", r"end of range \(8\) above maximum \(6\)"),
        ("*/0 * * * *", "step of range should be a positive number"),
        ("TZ=UTC * * * * *", "please use timeZone instead"),
        ("@often", "unrecognized descriptor"),
        ("@every soon", "failed to parse duration @every soon"),
    ],
)
def test_a_bad_schedule_is_refused_in_robfig_crons_words(expr: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Schedule.parse(expr)


def cronjob(name: str = "tick", schedule: str = "*/5 * * * *", **spec: Any) -> dict[str, Any]:
    job_template = {
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "demo:1"}]}}}
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "jobTemplate": job_template, **spec},
    }


def run_cron_at(core: ApiCore, clock: datetime, body: Callable[[], Awaitable[None]]) -> None:
    class Shifted(CronJobController):
        @staticmethod
        def clock() -> datetime:
            return clock

    async def loop(core: ApiCore) -> None:
        await Shifted(core).run()

    running(core, body, loop)


def test_cronjob_starts_the_job_of_the_latest_missed_activation_named_in_minutes(core: ApiCore) -> None:
    created = core.create(CRONJOBS, NS, cronjob(concurrencyPolicy="Forbid"))[0]
    start = datetime.fromisoformat(created["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    clock = start + timedelta(minutes=12)
    latest = Schedule.parse("*/5 * * * *").next_after(clock - timedelta(minutes=5))
    assert latest is not None and latest <= clock
    expected = job_name("tick", latest)

    async def body() -> None:
        job = await until("job", lambda: core.list(JOBS, NS)["items"])
        assert [j["metadata"]["name"] for j in job] == [expected]  # one Job, for the latest time only
        assert job[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == latest.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        cj = await until("status", lambda: (c := core.get(CRONJOBS, NS, "tick")).get("status", {}).get("active") and c)
        assert cj["status"]["active"][0]["name"] == expected
        assert cj["status"]["lastScheduleTime"] == latest.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert ("SuccessfulCreate", f"Created job {expected}") in events(core, "tick")

    run_cron_at(core, clock, body)
    # later, with the first still running, Forbid starts nothing and says so
    run_cron_at(core, clock + timedelta(minutes=5), lambda: until_event(core, "JobAlreadyActive"))
    assert len(core.list(JOBS, NS)["items"]) == 1


async def until_event(core: ApiCore, reason: str) -> None:
    await until(reason, lambda: any(r == reason for r, _ in events(core, "tick")))


def test_a_manual_job_from_a_cronjob_is_seen_as_unexpected_and_finished_jobs_are_pruned(core: ApiCore) -> None:
    cj = core.create(CRONJOBS, NS, cronjob(suspend=True, successfulJobsHistoryLimit=0))[0]
    ref = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "tick",
        "uid": cj["metadata"]["uid"],
        "controller": True,
    }
    manual = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "tick-manual",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [ref],
        },
        "spec": cj["spec"]["jobTemplate"]["spec"],
    }
    core.create(JOBS, NS, manual)

    async def body() -> None:
        await until_event(core, "UnexpectedJob")
        assert ("Warning", "Saw a job that the controller did not create or forgot: tick-manual") in [
            (e["type"], e["message"]) for e in core.list(EVENTS, NS)["items"] if e["reason"] == "UnexpectedJob"
        ]
        job = core.get(JOBS, NS, "tick-manual")
        stamp = "2026-01-01T00:00:00Z"
        job["status"] = {
            "conditions": [{"type": "Complete", "status": "True"}],
            "startTime": stamp,
            "completionTime": stamp,
        }
        core.replace(JOBS, NS, "tick-manual", job, subresource="status")
        await until("pruned", lambda: not core.list(JOBS, NS)["items"])
        assert ("SuccessfulDelete", "Deleted job tick-manual") in events(core, "tick")
        assert core.get(CRONJOBS, NS, "tick")["status"]["lastSuccessfulTime"] == stamp

    run_cron_at(core, datetime.now(UTC), body)


@pytest.mark.parametrize("zone", ["../../../../etc/passwd", "Mars/Olympus_Mons", "/etc/localtime"])
def test_a_cronjob_naming_no_real_time_zone_is_warned_about_and_starts_nothing(core: ApiCore, zone: str) -> None:
    core.create(CRONJOBS, NS, cronjob(schedule="* * * * *", timeZone=zone))
    clock = datetime.now(UTC) + timedelta(minutes=3)

    async def body() -> None:
        await until_event(core, "UnknownTimeZone")
        await settle()
        (message,) = [m for r, m in events(core, "tick") if r == "UnknownTimeZone"]
        assert message.startswith(f"invalid timeZone: {zone!r}")
        assert not core.list(JOBS, NS)["items"]

    run_cron_at(core, clock, body)
