"""The CronJob controller: a Job ``<cronjob>-<scheduled time in minutes since the epoch>`` per activation, as
upstream's cronjob_controllerv2.go.

Each sync follows ``syncCronJob``: it drops finished and vanished Jobs from ``status.active``
(SawCompletedJob, MissingJob), notes a Job it did not start (UnexpectedJob: ``kubectl create job
--from=cronjob/x`` makes one, owned by the CronJob and annotated ``cronjob.kubernetes.io/instantiate:
manual``), finds the most recent missed activation since ``lastScheduleTime`` (or creation), honours
``startingDeadlineSeconds``, ``suspend`` and ``concurrencyPolicy`` (Allow, Forbid: JobAlreadyActive,
Replace: the running Jobs are deleted), creates the Job, and keeps the history limits.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import parse_time, write_status
from labkit.sandbox.controllers.cronschedule import Schedule
from labkit.sandbox.controllers.job import JOBS, job_finished
from labkit.sandbox.controllers.podutil import MANAGER, controlled_by, controller_of, owner_reference
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

CRONJOBS = RESOURCES.served("batch", "cronjobs")
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
#: More missed activations than this get a TooManyMissedTimes warning (upstream's 100).
MAX_MISSED = 100
#: Upstream requeues 100 ms after the next activation (nextScheduleTimeDuration).
REQUEUE_SLACK = 0.1


def _finished_type(job: dict[str, Any]) -> str:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


def job_name(cronjob: str, scheduled: datetime) -> str:
    """upstream getJobName: ``<cronjob>-<unix minutes>``.

    >>> job_name("hello", datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    'hello-29453761'
    """
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


class _CronSync:
    def __init__(self, controller: CronJobController, cj: dict[str, Any]) -> None:
        self.core, self.recorder, self.cj = controller.core, controller.recorder, cj
        self.ns, self.name = cj["metadata"]["namespace"], cj["metadata"]["name"]
        self.status = copy.deepcopy(cj.get("status") or {})
        self.active: list[dict[str, Any]] = self.status.get("active") or []
        self.now = controller.clock()

    def event(self, type_: str, reason: str, message: str) -> None:
        self.recorder.event(self.cj, type_, reason, message)

    def jobs(self) -> list[dict[str, Any]]:
        uid = self.cj["metadata"]["uid"]
        return [j for j in self.core.list(JOBS, self.ns)["items"] if (controller_of(j) or {}).get("uid") == uid]

    def reconcile_active(self, jobs: list[dict[str, Any]]) -> None:
        active_uids = {ref.get("uid") for ref in self.active}
        for job in jobs:
            meta = job["metadata"]
            finished = job_finished(job)
            if meta["uid"] not in active_uids and not finished:
                self.event(
                    "Warning",
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {meta['name']}",
                )
            elif meta["uid"] in active_uids and finished:
                self.active = [ref for ref in self.active if ref.get("uid") != meta["uid"]]
                self.event(
                    "Normal", "SawCompletedJob", f"Saw completed job: {meta['name']}, condition: {_finished_type(job)}"
                )
            if finished and _finished_type(job) == "Complete":
                done = (job.get("status") or {}).get("completionTime")
                last = self.status.get("lastSuccessfulTime")
                if done and (not last or (parse_time(done) or 0) > (parse_time(last) or 0)):
                    self.status["lastSuccessfulTime"] = done
        present = {j["metadata"]["uid"] for j in jobs}
        for ref in list(self.active):
            if ref.get("uid") not in present:
                self.event("Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
                self.active = [r for r in self.active if r is not ref]

    def zone(self) -> ZoneInfo | bool | None:
        """The CronJob's time zone (None: UTC, the controller's own), or False when it names none."""
        name = self.cj["spec"].get("timeZone")
        if not name:
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as e:  # also what validation lets through
            self.event("Warning", "UnknownTimeZone", f"invalid timeZone: {name!r}: {e}")
            return False

    def missed(self, schedule: Schedule, zone: Any) -> tuple[datetime | None, datetime | None]:
        """The most recent activation not yet started (upstream's mostRecentScheduleTime) and the next one."""
        since = parse_time(self.status.get("lastScheduleTime")) or parse_time(
            self.cj["metadata"].get("creationTimestamp")
        )
        earliest = datetime.fromtimestamp(since or self.now.timestamp(), zone or UTC)
        deadline = self.cj["spec"].get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, self.now.astimezone(zone or UTC) - timedelta(seconds=int(deadline)))
        recent, count, t = None, 0, schedule.next_after(earliest)
        while t is not None and t <= self.now:
            recent, count = t, count + 1
            if count > MAX_MISSED:  # no need to walk every one of them; the latest is what counts
                t = schedule.next_after(self.now.astimezone(zone or UTC) - timedelta(minutes=1))
                recent = t if t is not None and t <= self.now else recent
                break
            t = schedule.next_after(t)
        if count > MAX_MISSED:
            self.event(
                "Warning",
                "TooManyMissedTimes",
                f"too many missed start times: {count}. "
                "Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            )
        return recent, schedule.next_after(self.now.astimezone(zone or UTC))

    def delete_job(self, ref: dict[str, Any]) -> None:
        try:
            self.core.delete(JOBS, self.ns, ref["name"], propagation="Background")
        except StatusError as e:
            if e.code != 404:
                self.event("Warning", "FailedDelete", f"Deleted job: {e.message}")
                return
        self.active = [r for r in self.active if r.get("uid") != ref.get("uid")]
        self.event("Normal", "SuccessfulDelete", f"Deleted job {ref['name']}")

    def create_job(self, scheduled: datetime) -> None:
        template = copy.deepcopy(self.cj["spec"]["jobTemplate"])
        meta = template.get("metadata") or {}
        name = job_name(self.name, scheduled)
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": self.ns,
                "labels": meta.get("labels") or {},
                "annotations": {**(meta.get("annotations") or {}), SCHEDULED_TIMESTAMP: format_rfc3339(scheduled)},
                "ownerReferences": [owner_reference(self.cj)],
            },
            "spec": template.get("spec") or {},
        }
        try:
            created = self.core.create(JOBS, self.ns, job, manager=MANAGER)[0]
        except StatusError as e:
            if e.code == 409:  # made before a crash or by an earlier sync: it is ours when we own it
                existing = self.core.store.peek(JOBS, self.ns, name)
                if (
                    existing is not None
                    and (controller_of(dict(existing)) or {}).get("uid") == self.cj["metadata"]["uid"]
                ):
                    return
            self.event("Warning", "FailedCreate", f"Error creating job: {e.message}")
            raise
        self.event("Normal", "SuccessfulCreate", f"Created job {name}")
        m = created["metadata"]
        self.active.append(
            {
                "kind": "Job",
                "namespace": self.ns,
                "name": name,
                "uid": m["uid"],
                "apiVersion": "batch/v1",
                "resourceVersion": m["resourceVersion"],
            }
        )
        self.status["lastScheduleTime"] = format_rfc3339(scheduled)

    def schedule(self) -> float | None:
        """Start the Job of the latest missed activation if the policy allows; seconds until the next one."""
        spec = self.cj["spec"]
        zone = self.zone()
        if zone is False:
            return None  # as upstream: no retry until the CronJob changes
        try:
            schedule = Schedule.parse(spec["schedule"])
        except ValueError as e:
            self.event("Warning", "UnparseableSchedule", f"unparseable schedule: {spec['schedule']!r} : {e}")
            return None
        if spec.get("suspend"):
            return None
        scheduled, upcoming = self.missed(schedule, zone)
        after = (upcoming.timestamp() - self.now.timestamp() + REQUEUE_SLACK) if upcoming else None
        if scheduled is None:
            return after
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled.timestamp() + int(deadline) < self.now.timestamp():
            self.event("Warning", "MissSchedule", f"Missed scheduled time to start a job: {format_datetime(scheduled)}")
            return after
        if any(ref.get("name") == job_name(self.name, scheduled) for ref in self.active):
            return after
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and self.active:
            self.event(
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return after
        if policy == "Replace":
            for ref in list(self.active):
                self.delete_job(ref)
        self.create_job(scheduled)
        return after

    def cleanup(self) -> None:
        """Delete the oldest finished Jobs beyond the history limits (cleanupFinishedJobs)."""
        finished = [j for j in self.jobs() if job_finished(j)]
        for kind, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = self.cj["spec"].get(field)
            if limit is None:
                continue
            done = sorted(
                (j for j in finished if _finished_type(j) == kind),
                key=lambda j: (
                    parse_time((j.get("status") or {}).get("startTime")) or float("inf"),
                    j["metadata"]["name"],
                ),
            )
            for job in done[: max(len(done) - int(limit), 0)]:
                self.delete_job({"name": job["metadata"]["name"], "uid": job["metadata"]["uid"]})

    def run(self) -> float | None:
        self.reconcile_active(self.jobs())
        try:
            after = self.schedule()
        finally:
            self.cleanup()
            self.status["active"] = self.active
            if not self.active:
                del self.status["active"]
            write_status(self.core, CRONJOBS, self.cj, self.status)
        return after


class CronJobController(Controller):
    """Starts each CronJob's Jobs on its schedule; keeps its status and history."""

    name = "cronjob-controller"
    primary = CRONJOBS

    def sources(self) -> Sequence[Source]:
        return [Source(JOBS, controlled_by("CronJob"))]

    @staticmethod
    def clock() -> datetime:
        return datetime.now(UTC)

    def sync(self, key: Key) -> float | None:
        cj = self.get(CRONJOBS, *key)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return None
        return _CronSync(self, cj).run()


async def run_cronjob_controller(core: ApiCore) -> None:
    """The CronJob controller's loop, as the daemon starts it."""
    await CronJobController(core).run()
