"""The Job controller: pods ``<job>-<5 chars>`` run to ``completions`` successes, or the Job fails with
BackoffLimitExceeded or DeadlineExceeded, as kube-controller-manager 1.32 runs it.

Like 1.32 it first sets the FailureTarget or SuccessCriteriaMet condition, removes the pods still
running, and only then writes the terminal Complete or Failed condition.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import condition, now, parse_time, set_condition, write_status
from labkit.sandbox.controllers.podutil import (
    PODS,
    controlled_by,
    create_pod,
    delete_pod,
    deletion_order,
    owned,
    pod_active,
    pod_ready,
    restarts,
)
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.controllers.recorder import EventRecorder

JOBS = RESOURCES.served("batch", "jobs")
#: The pod re-creation back-off after failures (job_controller.go: DefaultJobPodFailureBackOff 10 s,
#: doubling up to MaxJobPodFailureBackOff 10 min).
JOB_BACKOFF_BASE = 10.0
JOB_BACKOFF_MAX = 600.0
#: Seconds before a Job whose pods could not all be created tries again.
FAILED_CREATE_RETRY = 5.0
#: Seconds between looks while a finishing Job waits for its last pods to go.
FINISHING_POLL = 0.5
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")

#: (reason, message) of a Job's failure
Failure = tuple[str, str]


def _job_condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    stamp = format_rfc3339()
    return {
        "type": type_,
        "status": status,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _phase(pod: dict[str, Any]) -> str | None:
    phase: str | None = (pod.get("status") or {}).get("phase")
    return phase


def _finished_at(pod: dict[str, Any]) -> float:
    """When a failed pod's last container ended (its creation time when unknown)."""
    ends = [
        parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for c in (pod.get("status") or {}).get("containerStatuses") or ()
    ]
    known = [e for e in ends if e]
    return max(known) if known else (parse_time(pod["metadata"].get("creationTimestamp")) or now())


def job_finished(job: dict[str, Any]) -> bool:
    """The Job has its terminal Complete or Failed condition."""
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or ()
    )


def _sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class _JobSync:
    """One sync of one Job (upstream's syncJob): conditions, pods, status."""

    def __init__(self, core: ApiCore, recorder: EventRecorder, job: dict[str, Any], backoff_base: float) -> None:
        self.core, self.recorder, self.job, self.backoff_base = core, recorder, job, backoff_base
        self.spec = job["spec"]
        self.status = copy.deepcopy(job.get("status") or {})
        self.conditions: list[dict[str, Any]] = self.status.get("conditions") or []
        self.pods = owned(core, PODS, job)
        self.active = [p for p in self.pods if pod_active(p)]
        phases = [_phase(p) for p in self.pods]
        # Pods may be deleted after they finished; the recorded counts never go down.
        self.succeeded = max(phases.count("Succeeded"), int(self.status.get("succeeded", 0)))
        self.failed = max(phases.count("Failed"), int(self.status.get("failed", 0)))
        self.now = now()

    def set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.conditions = set_condition(self.conditions, _job_condition(type_, status, reason, message))

    def failure_target(self) -> tuple[Failure | None, float | None]:
        """Why the Job fails (a FailureTarget set before, the backoff limit or the active deadline), and
        when the deadline passes if it still runs."""
        for c in self.conditions:
            if c["type"] == "FailureTarget" and c["status"] == "True":
                return (c["reason"], c["message"]), None
        backoff_limit = int(self.spec.get("backoffLimit", 6))
        on_failure = self.spec["template"]["spec"].get("restartPolicy") == "OnFailure"
        restarted = sum(restarts(p) for p in self.active) if on_failure else 0
        deadline = self.spec.get("activeDeadlineSeconds")
        failure: Failure | None = None
        after = None
        if self.failed > backoff_limit or (restarted and (restarted >= backoff_limit or backoff_limit == 0)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None:
            ends = (parse_time(self.status.get("startTime")) or self.now) + int(deadline)
            if self.now >= ends:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                after = ends - self.now + 0.05
        if failure is not None:
            self.set_condition("FailureTarget", "True", *failure)
        return failure, after

    def succeeded_enough(self) -> bool:
        completions = self.spec.get("completions")
        if completions is not None:
            return self.succeeded >= int(completions)
        return self.succeeded > 0 and not self.active

    def manage_pods(self) -> float | None:
        """Create or delete pods toward ``parallelism`` (after the failure back-off); when to look again."""
        completions = self.spec.get("completions")
        parallelism = int(self.spec.get("parallelism", 1))
        if completions is not None:
            want = min(int(completions) - self.succeeded, parallelism)
        else:
            want = parallelism if not self.succeeded else len(self.active)
        if len(self.active) > want:
            for pod in deletion_order(self.active)[: len(self.active) - want]:
                delete_pod(self.core, self.recorder, self.job, pod)
            return None
        if len(self.active) == want:
            return None
        failed_pods = [p for p in self.pods if _phase(p) == "Failed"]
        if failed_pods:
            delay = min(self.backoff_base * 2.0 ** (len(failed_pods) - 1), JOB_BACKOFF_MAX)
            wait = max(_finished_at(p) for p in failed_pods) + delay - self.now
            if wait > 0:
                return wait
        for _ in range(want - len(self.active)):
            if create_pod(self.core, self.recorder, self.job) is None:
                return FAILED_CREATE_RETRY
        return None

    def sync_suspended(self) -> None:
        if self.spec.get("suspend"):
            self.set_condition("Suspended", "True", "JobSuspended", "Job suspended")
        elif condition({"status": {"conditions": self.conditions}}, "Suspended"):
            self.set_condition("Suspended", "False", "JobResumed", "Job resumed")

    def finish(self, failure: Failure | None) -> None:
        """The terminal condition, once no pod of the Job is still running (as in 1.32)."""
        if failure is not None:
            self.set_condition("Failed", "True", *failure)
            self.recorder.event(self.job, "Warning", failure[0], failure[1])
        else:
            self.set_condition("Complete", "True", *COMPLETIONS_REACHED)
            self.status["completionTime"] = format_rfc3339()
            self.recorder.event(self.job, "Normal", "Completed", "Job completed")

    def run(self) -> float | None:
        if not self.status.get("startTime") and not self.spec.get("suspend"):
            self.status["startTime"] = format_rfc3339()
        failure, after = self.failure_target()
        success = self.succeeded_enough()
        if success and failure is None:
            self.set_condition("SuccessCriteriaMet", "True", *COMPLETIONS_REACHED)
        if failure is not None or success or self.spec.get("suspend"):
            for pod in self.active:
                delete_pod(self.core, self.recorder, self.job, pod)
        else:
            after = _sooner(after, self.manage_pods())
        self.sync_suspended()

        pods = owned(self.core, PODS, self.job)
        active = [p for p in pods if pod_active(p)]
        terminating = [
            p for p in pods if p["metadata"].get("deletionTimestamp") and _phase(p) not in ("Succeeded", "Failed")
        ]
        if not active and not terminating and (failure is not None or success):
            self.finish(failure)
        elif (failure is not None or success) and after is None:
            after = FINISHING_POLL
        self.status.update(
            {
                "active": len(active),
                "succeeded": self.succeeded,
                "failed": self.failed,
                "ready": sum(1 for p in active if pod_ready(p)),
                "terminating": len(terminating),
                "uncountedTerminatedPods": {},
            }
        )
        if self.conditions:
            self.status["conditions"] = self.conditions
        for field in ("active", "succeeded", "failed"):
            if not self.status[field]:
                del self.status[field]
        write_status(self.core, JOBS, self.job, self.status)
        return after


class JobController(Controller):
    """Runs each Job's pods to ``completions`` successes or to its backoff limit; keeps its status."""

    name = "job-controller"
    primary = JOBS

    def __init__(self, core: ApiCore, backoff_base: float = JOB_BACKOFF_BASE) -> None:
        super().__init__(core)
        self.backoff_base = backoff_base

    def sources(self) -> Sequence[Source]:
        return [Source(PODS, controlled_by("Job"))]

    def sync(self, key: Key) -> float | None:
        job = self.get(JOBS, *key)
        if job is None or job["metadata"].get("deletionTimestamp") or job_finished(job):
            return None
        return _JobSync(self.core, self.recorder, job, self.backoff_base).run()


async def run_job_controller(core: ApiCore, backoff_base: float = JOB_BACKOFF_BASE) -> None:
    """The Job controller's loop, as the daemon starts it (*backoff_base* shortened in tests)."""
    await JobController(core, backoff_base).run()
