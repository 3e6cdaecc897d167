"""The Job controller in process: completions, backoff limit, OnFailure restarts; the test plays the kubelet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import controllers_harness as harness
from controllers_harness import NS, events, exactly, job, kubelet, must, pods, run, settle, until, with_condition

from labkit.sandbox.controllers.conditions import condition
from labkit.sandbox.controllers.job import JOBS

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes


# ----------------------------------------------------------------------------------------------------------- jobs
def test_job_runs_to_complete(core: ApiCore) -> None:
    core.create(JOBS, NS, job(completions=3, parallelism=2))

    async def body() -> None:
        first = await until("2 pods", lambda: exactly(2, pods(core, **{"job-name": "calc"})))
        j = core.get(JOBS, NS, "calc")
        for pod in first:
            assert pod["metadata"]["name"].startswith("calc-") and len(pod["metadata"]["name"]) == len("calc-") + 5
            assert pod["metadata"]["ownerReferences"][0] == {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": "calc",
                "uid": j["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        kubelet(core, first[0])
        await until("ready 1", lambda: core.get(JOBS, NS, "calc")["status"].get("ready") == 1)
        assert core.get(JOBS, NS, "calc")["status"]["active"] == 2 and core.get(JOBS, NS, "calc")["status"]["startTime"]
        kubelet(core, first[0], phase="Succeeded", ready=False, exit_code=0)
        kubelet(core, first[1], phase="Succeeded", ready=False, exit_code=0)
        # one completion left: exactly one more pod
        third = await until(
            "3rd pod",
            lambda: [
                p
                for p in pods(core, **{"job-name": "calc"})
                if p["metadata"]["name"] not in {q["metadata"]["name"] for q in first}
            ],
        )
        await settle()
        assert len(pods(core, **{"job-name": "calc"})) == 3
        kubelet(core, third[0], phase="Succeeded", ready=False, exit_code=0)
        j = await until("complete", lambda: with_condition(core, JOBS, "calc", "Complete"))
        for type_ in ("SuccessCriteriaMet", "Complete"):
            c = must(condition(j, type_))
            assert (c["status"], c["reason"], c["message"]) == (
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        assert j["status"]["succeeded"] == 3 and "active" not in j["status"] and j["status"]["completionTime"]
        assert j["status"]["ready"] == 0 and j["status"]["terminating"] == 0
        assert ("Completed", "Job completed") in events(core, "calc")
        assert len([1 for r, _ in events(core, "calc") if r == "SuccessfulCreate"]) == 3

    run(core, body)


def test_job_backoff_limit_exceeded_with_restart_never(core: ApiCore) -> None:
    core.create(JOBS, NS, job(backoffLimit=1))

    async def body() -> None:
        (first,) = await until("pod", lambda: pods(core, **{"job-name": "calc"}))
        kubelet(core, first, phase="Failed", ready=False, exit_code=3)
        # one failure is within backoffLimit 1: a replacement after the back-off
        second = await until(
            "replacement",
            lambda: [
                p for p in pods(core, **{"job-name": "calc"}) if p["metadata"]["name"] != first["metadata"]["name"]
            ],
        )
        assert core.get(JOBS, NS, "calc")["status"]["failed"] == 1
        kubelet(core, second[0], phase="Failed", ready=False, exit_code=3)
        j = await until("failed", lambda: with_condition(core, JOBS, "calc", "Failed"))
        for type_ in ("FailureTarget", "Failed"):
            c = must(condition(j, type_))
            assert (c["status"], c["reason"], c["message"]) == (
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        assert j["status"]["failed"] == 2 and "completionTime" not in j["status"]
        assert ("BackoffLimitExceeded", "Job has reached the specified backoff limit") in events(core, "calc")
        await settle()
        assert len(pods(core, **{"job-name": "calc"})) == 2  # a failed job starts nothing more

    run(core, body)


def test_job_on_failure_counts_container_restarts(core: ApiCore) -> None:
    core.create(JOBS, NS, job(restart="OnFailure", backoffLimit=2))

    async def body() -> None:
        (pod,) = await until("pod", lambda: pods(core, **{"job-name": "calc"}))
        kubelet(core, pod, restarts=1, ready=False)
        await settle()
        assert condition(core.get(JOBS, NS, "calc"), "Failed") is None
        kubelet(core, pod, restarts=2, ready=False)
        j = await until("failed", lambda: with_condition(core, JOBS, "calc", "Failed"))
        assert must(condition(j, "Failed"))["reason"] == "BackoffLimitExceeded"
        assert not pods(core, **{"job-name": "calc"})  # the running pod was deleted
        assert ("SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}") in events(core, "calc")

    run(core, body)
