"""The workload and endpoints controllers, in process: a real ApiCore over SQLite, the controllers on an
asyncio loop, and the test playing the kubelet by writing pod status through the status subresource."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.events import EVENTS
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.store import NAME_ALPHABET, Store
from labkit.sandbox.controllers.conditions import condition, parse_time
from labkit.sandbox.controllers.deployment import DEPLOYMENTS, run_deployment_controller
from labkit.sandbox.controllers.deploymentutil import pod_template_hash, scaled_value, surge_and_unavailable
from labkit.sandbox.controllers.endpoints import ENDPOINTS, SLICES, run_endpoints_controller, slice_endpoint
from labkit.sandbox.controllers.job import JOBS, run_job_controller
from labkit.sandbox.controllers.podutil import PODS, controller_of, deletion_order
from labkit.sandbox.controllers.replicaset import REPLICASETS, run_replicaset_controller

NS = "lab"
SERVICES = RESOURCES.by_plural("", "services")


@pytest.fixture
def core(tmp_path):
    core = ApiCore(Store(tmp_path / "state.db"))
    core.create(RESOURCES.by_plural("", "namespaces"), None, {"metadata": {"name": NS}})
    yield core
    core.store.close()


def run(core: ApiCore, body: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    """Run *body* with all four controllers on one loop (job back-off shortened to 50 ms)."""

    async def main() -> None:
        tasks = [
            asyncio.ensure_future(c)
            for c in (
                run_deployment_controller(core),
                run_replicaset_controller(core),
                run_job_controller(core, backoff_base=0.05),
                run_endpoints_controller(core),
            )
        ]
        try:
            await asyncio.wait_for(body(), timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


async def until(what: str, probe: Callable[[], Any], timeout: float = 4.0) -> Any:
    """Wait for *probe()* to be truthy; fail naming *what* and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.01)


async def settle() -> None:
    """Give the controllers a moment to react to the last write (used before asserting nothing changes)."""
    await asyncio.sleep(0.15)


# ------------------------------------------------------------------------------------------------------ helpers
def deployment(name: str = "web", replicas: int = 3, image: str = "demo:1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "main", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}]
                },
            },
            **spec,
        },
    }


def job(name: str = "calc", restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": "demo:1"}]}},
            **spec,
        },
    }


def pods(core: ApiCore, **labels: str) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return list(core.list(PODS, NS, label_selector=selector)["items"])


def exactly(n: int, items: list[Any]) -> list[Any] | None:
    """*items* when there are *n* of them (for ``until``)."""
    return items if len(items) == n else None


def replica_sets(core: ApiCore) -> dict[str, dict[str, Any]]:
    return {rs["metadata"]["name"]: rs for rs in core.list(REPLICASETS, NS)["items"]}


def spec_replicas(core: ApiCore) -> dict[str, int]:
    """ReplicaSet name → spec.replicas, by revision annotation order."""
    return {name: rs["spec"]["replicas"] for name, rs in replica_sets(core).items()}


def pods_per_replica_set(core: ApiCore) -> dict[str, int]:
    """ReplicaSet name → its pods not being deleted (what the RS controller has caught up with)."""
    counts = dict.fromkeys(replica_sets(core), 0)
    for pod in pods(core):
        owner = controller_of(pod)
        if owner and owner["kind"] == "ReplicaSet" and not pod["metadata"].get("deletionTimestamp"):
            counts[owner["name"]] = counts.get(owner["name"], 0) + 1
    return counts


def events(core: ApiCore, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in core.list(EVENTS, NS)["items"] if e["involvedObject"]["name"] == name]


_next_ip = iter(range(10, 250))


def kubelet(
    core: ApiCore,
    pod: dict[str, Any],
    *,
    phase: str = "Running",
    ready: bool = True,
    restarts: int = 0,
    exit_code: int | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """Write the status a kubelet would: phase, podIP, Ready condition and one container status."""
    live = core.get(PODS, NS, pod["metadata"]["name"])
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        }
    status = {
        "phase": phase,
        "podIP": ip or live["status"].get("podIP") or f"10.42.0.{next(_next_ip)}",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ],
        "containerStatuses": [
            {
                "name": "main",
                "ready": ready,
                "restartCount": restarts,
                "state": state,
                "image": "demo:1",
                "imageID": "",
                "started": ready,
            }
        ],
    }
    return core.replace(PODS, NS, live["metadata"]["name"], {**live, "status": status}, subresource="status")[0]


def ready_all(core: ApiCore, **labels: str) -> None:
    for pod in pods(core, **labels):
        if not pod["metadata"].get("deletionTimestamp") and condition(pod, "Ready") is None:
            kubelet(core, pod)


def rolled_out(core: ApiCore, name: str = "web") -> dict[str, Any] | None:
    """The Deployment when ``kubectl rollout status`` would call it done (its own checks), else None."""
    d = core.get(DEPLOYMENTS, NS, name)
    status = d.get("status") or {}
    replicas = d["spec"]["replicas"]
    done = (
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
    )
    return d if done else None


def with_condition(core: ApiCore, res: Any, name: str, type_: str, reason: str | None = None) -> dict[str, Any] | None:
    """The object when its condition *type_* is True (or has *reason*), else None."""
    obj = core.get(res, NS, name)
    c = condition(obj, type_) or {}
    return obj if (c.get("reason") == reason if reason else c.get("status") == "True") else None


def update_template(core: ApiCore, name: str, image: str) -> None:
    d = core.get(DEPLOYMENTS, NS, name)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = image
    core.replace(DEPLOYMENTS, NS, name, d)


# ------------------------------------------------------------------------------------------------------ pure logic
def test_pod_template_hash_is_stable_short_safe_and_ignores_its_own_label():
    template = deployment()["spec"]["template"]
    h = pod_template_hash(template)
    assert h == pod_template_hash(copy.deepcopy(template))
    assert 1 <= len(h) <= 10 and set(h) <= set(NAME_ALPHABET)
    labelled = copy.deepcopy(template)
    labelled["metadata"]["labels"]["pod-template-hash"] = h
    assert pod_template_hash(labelled) == h
    changed = copy.deepcopy(template)
    changed["spec"]["containers"][0]["image"] = "demo:2"
    assert pod_template_hash(changed) != h
    assert pod_template_hash(template, collision_count=1) != h


def test_surge_rounds_up_and_unavailable_rounds_down():
    assert scaled_value("25%", 3, round_up=True) == 1
    assert scaled_value("25%", 3, round_up=False) == 0
    assert scaled_value("50%", 5, round_up=False) == 2
    assert scaled_value("3", 5, round_up=False) == 3
    with pytest.raises(ValueError, match="not a percentage"):
        scaled_value("lots", 5, round_up=True)
    d = deployment(
        replicas=4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}
    )
    assert surge_and_unavailable(d) == (0, 1)  # both zero: one may be unavailable, or nothing could move
    assert surge_and_unavailable(deployment(strategy={"type": "Recreate"})) == (0, 0)


def test_deletion_order_prefers_unscheduled_then_not_ready_then_newest():
    def pod(name: str, node: str | None, ready: bool, created: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node} if node else {},
            "status": {
                "phase": "Running" if node else "Pending",
                "conditions": [
                    {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": created}
                ],
            },
        }

    ranked = deletion_order(
        [
            pod("old-ready", "n", True, "2026-01-01T00:00:00Z"),
            pod("new-ready", "n", True, "2026-01-02T00:00:00Z"),
            pod("not-ready", "n", False, "2026-01-01T00:00:00Z"),
            pod("unscheduled", None, False, "2026-01-01T00:00:00Z"),
        ]
    )
    assert [p["metadata"]["name"] for p in ranked] == ["unscheduled", "not-ready", "new-ready", "old-ready"]


# ---------------------------------------------------------------------------------------------------- deployments
def test_deployment_creates_replicaset_and_pods_and_becomes_available(core):
    core.create(DEPLOYMENTS, NS, deployment())

    async def body() -> None:
        await until("3 pods", lambda: len(pods(core, app="web")) == 3)
        (rs,) = replica_sets(core).values()
        h = rs["metadata"]["labels"]["pod-template-hash"]
        d = core.get(DEPLOYMENTS, NS, "web")
        assert rs["metadata"]["name"] == f"web-{h}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
        assert rs["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "web",
                "uid": d["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        annotations = rs["metadata"]["annotations"]
        assert annotations["deployment.kubernetes.io/revision"] == "1"
        assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
        assert annotations["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + ceil(25% of 3)
        for pod in pods(core, app="web"):
            assert (
                pod["metadata"]["name"].startswith(f"web-{h}-") and len(pod["metadata"]["name"]) == len(f"web-{h}-") + 5
            )
            assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
            assert pod["metadata"]["labels"]["pod-template-hash"] == h
        assert ("ScalingReplicaSet", f"Scaled up replica set web-{h} from 0 to 3") in events(core, "web")
        created = [m for r, m in events(core, f"web-{h}") if r == "SuccessfulCreate"]
        assert sorted(created) == sorted(f"Created pod: {p['metadata']['name']}" for p in pods(core, app="web"))

        status = await until(
            "status observed", lambda: core.get(DEPLOYMENTS, NS, "web").get("status", {}).get("replicas")
        )
        d = core.get(DEPLOYMENTS, NS, "web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        avail = condition(d, "Available")
        assert (avail["status"], avail["reason"], avail["message"]) == (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
        assert condition(d, "Progressing")["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
        assert status == 3 and d["status"]["unavailableReplicas"] == 3

        ready_all(core, app="web")
        d = await until(
            "complete", lambda: with_condition(core, DEPLOYMENTS, "web", "Progressing", "NewReplicaSetAvailable")
        )
        assert {
            k: d["status"].get(k)
            for k in (
                "observedGeneration",
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
            )
        } == {
            "observedGeneration": 1,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "unavailableReplicas": None,
        }
        assert condition(d, "Progressing")["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
        avail = condition(d, "Available")
        assert (avail["status"], avail["reason"], avail["message"]) == (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
        rs = core.get(REPLICASETS, NS, f"web-{h}")
        assert {
            k: rs["status"].get(k)
            for k in ("replicas", "readyReplicas", "availableReplicas", "fullyLabeledReplicas", "observedGeneration")
        } == {
            "replicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "fullyLabeledReplicas": 3,
            "observedGeneration": 1,
        }
        # steady state: nothing more is written
        rv = core.store.rv
        await settle()
        assert core.store.rv == rv

    run(core, body)


async def four_available(core) -> str:
    """Play the kubelet until the 4-replica "web" Deployment is Available; returns its only ReplicaSet."""
    await until("4 pods", lambda: len(pods(core, app="web")) == 4)
    ready_all(core, app="web")
    await until("available", lambda: core.get(DEPLOYMENTS, NS, "web")["status"].get("availableReplicas") == 4)
    (only,) = replica_sets(core)
    return only


def test_rolling_update_with_surge_one_keeps_every_pod_available(core):
    core.create(
        DEPLOYMENTS,
        NS,
        deployment(
            replicas=4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        ),
    )

    async def body() -> None:
        old = await four_available(core)
        update_template(core, "web", "demo:2")
        (new,) = await until("new RS", lambda: [n for n in replica_sets(core) if n != old])
        steps = []
        for expected_new in (1, 2, 3, 4):
            wanted = {new: expected_new, old: 5 - expected_new}
            await until(
                f"new RS at {expected_new}",
                lambda wanted=wanted: spec_replicas(core) == wanted and pods_per_replica_set(core) == wanted,
            )
            steps.append((spec_replicas(core)[new], spec_replicas(core)[old]))
            # never more than replicas + maxSurge pods, never fewer than replicas available
            assert sum(spec_replicas(core).values()) <= 5
            ready_all(core, app="web")
        await until("old RS at 0", lambda: spec_replicas(core)[old] == 0)
        assert steps == [(1, 4), (2, 3), (3, 2), (4, 1)]
        d = await until(
            "complete", lambda: with_condition(core, DEPLOYMENTS, "web", "Progressing", "NewReplicaSetAvailable")
        )
        assert d["status"]["updatedReplicas"] == 4 and d["status"]["replicas"] == 4
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        assert d["status"]["observedGeneration"] == d["metadata"]["generation"] == 2
        assert replica_sets(core)[new]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        messages = [m for r, m in events(core, "web") if r == "ScalingReplicaSet"]
        assert f"Scaled up replica set {new} from 0 to 1" in messages
        assert f"Scaled down replica set {old} from 4 to 3" in messages
        assert f"Scaled down replica set {old} from 1 to 0" in messages

    run(core, body)


def test_scaling_in_the_middle_of_a_rollout_is_proportional(core):
    core.create(
        DEPLOYMENTS,
        NS,
        deployment(
            replicas=4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        ),
    )

    async def body() -> None:
        old = await four_available(core)
        update_template(core, "web", "demo:broken")  # its pods never get ready: the rollout is stuck at 4 + 1
        new = (await until("new RS", lambda: [n for n in replica_sets(core) if n != old]))[0]
        await until("4 + 1", lambda: spec_replicas(core) == {old: 4, new: 1})
        core.set_scale(DEPLOYMENTS, NS, "web", 8, None)
        # 9 allowed (8 + surge 1) instead of 5: +4 split by size, 4·9/5 → 7 and 1·9/5 → 2
        await until("7 + 2", lambda: spec_replicas(core) == {old: 7, new: 2})
        await settle()
        assert spec_replicas(core) == {old: 7, new: 2}
        for name in (old, new):
            annotations = replica_sets(core)[name]["metadata"]["annotations"]
            assert (
                annotations["deployment.kubernetes.io/desired-replicas"],
                annotations["deployment.kubernetes.io/max-replicas"],
            ) == ("8", "9")

    run(core, body)


def test_rolling_update_with_unavailable_half_and_no_surge(core):
    core.create(
        DEPLOYMENTS,
        NS,
        deployment(
            replicas=4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}
        ),
    )

    async def body() -> None:
        old = await four_available(core)
        update_template(core, "web", "demo:2")
        new = (await until("new RS", lambda: [n for n in replica_sets(core) if n != old]))[0]
        # 50% of 4 may be unavailable: the old RS drops to 2 first, then the new one takes the room
        await until("2 + 2", lambda: spec_replicas(core) == pods_per_replica_set(core) == {old: 2, new: 2})
        ready_all(core, app="web")
        await until("0 + 4", lambda: spec_replicas(core) == {old: 0, new: 4})

    run(core, body)


def test_scaling_and_recreate_strategy(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=2, strategy={"type": "Recreate"}))

    async def body() -> None:
        await until("2 pods", lambda: len(pods(core, app="web")) == 2)
        ready_all(core, app="web")
        (old,) = replica_sets(core)
        core.set_scale(DEPLOYMENTS, NS, "web", 3, None)
        await until("3 pods", lambda: len(pods(core, app="web")) == 3)
        assert ("ScalingReplicaSet", f"Scaled up replica set {old} from 2 to 3") in events(core, "web")
        ready_all(core, app="web")
        update_template(core, "web", "demo:2")
        # Recreate: the old pods all go before any new one exists
        await until("old at 0", lambda: spec_replicas(core)[old] == 0)
        await until("new RS", lambda: len(replica_sets(core)) == 2)
        new = next(n for n in replica_sets(core) if n != old)
        assert not [
            p for p in pods(core, app="web") if p["metadata"]["labels"]["pod-template-hash"] == old.split("-")[-1]
        ]
        await until("3 new pods", lambda: len(pods(core, app="web")) == 3)
        assert all(p["metadata"]["name"].startswith(new) for p in pods(core, app="web"))

    run(core, body)


def test_scale_down_deletes_not_ready_pods_first(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=3))

    async def body() -> None:
        three = await until("3 pods", lambda: exactly(3, pods(core, app="web")))
        for pod in three[:2]:
            kubelet(core, pod)
        kubelet(core, three[2], ready=False)
        core.set_scale(DEPLOYMENTS, NS, "web", 2, None)
        await until("2 pods", lambda: len(pods(core, app="web")) == 2)
        assert sorted(p["metadata"]["name"] for p in pods(core, app="web")) == sorted(
            p["metadata"]["name"] for p in three[:2]
        )
        rs = next(iter(replica_sets(core)))
        assert ("SuccessfulDelete", f"Deleted pod: {three[2]['metadata']['name']}") in events(core, rs)

    run(core, body)


def test_revision_history_limit_and_rollback_reuses_the_old_replicaset(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=1, revisionHistoryLimit=1))

    async def body() -> None:
        names = []
        for image in ("demo:1", "demo:2", "demo:3"):
            if image != "demo:1":
                update_template(core, "web", image)
            await until(
                f"{image} pod",
                lambda image=image: [p for p in pods(core, app="web") if p["spec"]["containers"][0]["image"] == image],
            )
            ready_all(core, app="web")
            await until(f"{image} rolled out", lambda: rolled_out(core))
            names.append(next(n for n, rs in replica_sets(core).items() if rs["spec"]["replicas"] == 1))
        await until("one old RS kept", lambda: set(replica_sets(core)) == {names[1], names[2]})
        # undo: the template of revision 2 again → that RS becomes revision 4, no new RS
        update_template(core, "web", "demo:2")
        await until(
            "revision 4",
            lambda: replica_sets(core)[names[1]]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4",
        )
        await until(
            "deployment at revision 4",
            lambda: (
                core.get(DEPLOYMENTS, NS, "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
            ),
        )
        assert set(replica_sets(core)) <= {names[1], names[2]}

    run(core, body)


def test_paused_deployment_scales_but_does_not_roll_out(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=1))

    async def body() -> None:
        await until("pod", lambda: pods(core, app="web"))
        ready_all(core, app="web")
        await until("rolled out", lambda: rolled_out(core))
        d = core.get(DEPLOYMENTS, NS, "web")
        d["spec"]["paused"] = True
        d["spec"]["replicas"] = 2
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "demo:2"
        core.replace(DEPLOYMENTS, NS, "web", d)
        paused = await until(
            "paused", lambda: with_condition(core, DEPLOYMENTS, "web", "Progressing", "DeploymentPaused")
        )
        c = condition(paused, "Progressing")
        assert (c["status"], c["message"]) == ("Unknown", "Deployment is paused")
        await until("scaled", lambda: len(pods(core, app="web")) == 2)
        assert len(replica_sets(core)) == 1  # the new template waits for resume
        d = core.get(DEPLOYMENTS, NS, "web")
        d["spec"]["paused"] = False
        core.replace(DEPLOYMENTS, NS, "web", d)
        await until("new RS", lambda: len(replica_sets(core)) == 2)
        reasons = {r for r, _ in events(core, "web")}
        assert "ScalingReplicaSet" in reasons

    run(core, body)


def test_min_ready_seconds_delays_availability(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=1, minReadySeconds=2))

    async def body() -> None:
        (pod,) = await until("pod", lambda: pods(core, app="web"))
        ready_since = parse_time(condition(kubelet(core, pod), "Ready")["lastTransitionTime"])
        await until("ready", lambda: core.get(DEPLOYMENTS, NS, "web").get("status", {}).get("readyReplicas") == 1)
        await until("available", lambda: core.get(DEPLOYMENTS, NS, "web")["status"].get("availableReplicas") == 1, 4)
        # timestamps have whole seconds, as in Kubernetes: available once 2 s passed since the stamped time
        assert time.time() >= ready_since + 2

    run(core, body)


def test_progress_deadline_exceeded(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=1, progressDeadlineSeconds=1))

    async def body() -> None:
        d = await until(
            "timed out", lambda: with_condition(core, DEPLOYMENTS, "web", "Progressing", "ProgressDeadlineExceeded"), 4
        )
        rs = next(iter(replica_sets(core)))
        c = condition(d, "Progressing")
        assert (c["status"], c["message"]) == ("False", f'ReplicaSet "{rs}" has timed out progressing.')

    run(core, body)


def test_replicaset_pods_being_deleted_do_not_count(core):
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "solo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "solo"}},
            "template": {
                "metadata": {"labels": {"app": "solo"}},
                "spec": {"containers": [{"name": "main", "image": "demo:1"}]},
            },
        },
    }
    core.create(REPLICASETS, NS, rs)

    async def body() -> None:
        two = await until("2 pods", lambda: exactly(2, pods(core, app="solo")))
        # bound pods terminate gracefully: the pod stays with a deletionTimestamp, a replacement comes at once
        core.bind(NS, two[0]["metadata"]["name"], {"target": {"name": "node-a"}})
        core.delete(PODS, NS, two[0]["metadata"]["name"])
        await until("replacement", lambda: len(pods(core, app="solo")) == 3)
        await until("status", lambda: core.get(REPLICASETS, NS, "solo").get("status", {}).get("replicas") == 2)
        assert core.get(REPLICASETS, NS, "solo")["status"]["observedGeneration"] == 1

    run(core, body)


def test_replicaset_adopts_matching_orphans_and_releases_relabelled_pods(core):
    core.create(
        PODS,
        NS,
        {
            "metadata": {"name": "stray", "labels": {"app": "solo"}},
            "spec": {"containers": [{"name": "main", "image": "demo:1"}]},
        },
    )
    rs = core.create(
        REPLICASETS,
        NS,
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "solo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "solo"}},
                "template": {
                    "metadata": {"labels": {"app": "solo"}},
                    "spec": {"containers": [{"name": "main", "image": "demo:1"}]},
                },
            },
        },
    )[0]

    async def body() -> None:
        two = await until("2 pods", lambda: exactly(2, pods(core, app="solo")))
        await settle()
        assert len(pods(core, app="solo")) == 2  # the orphan counts: only one pod was created
        stray = core.get(PODS, NS, "stray")
        assert stray["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        # taking a pod out of the set for debugging: it is released and replaced
        other = next(p for p in two if p["metadata"]["name"] != "stray")
        other["metadata"]["labels"]["app"] = "debug"
        core.replace(PODS, NS, other["metadata"]["name"], other)
        await until(
            "replacement",
            lambda: (
                len(pods(core, app="solo")) == 2
                and other["metadata"]["name"] not in {p["metadata"]["name"] for p in pods(core, app="solo")}
            ),
        )
        await until(
            "released", lambda: "ownerReferences" not in core.get(PODS, NS, other["metadata"]["name"])["metadata"]
        )

    run(core, body)


# ----------------------------------------------------------------------------------------------------------- jobs
def test_job_runs_to_complete(core):
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
            c = condition(j, type_)
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


def test_job_backoff_limit_exceeded_with_restart_never(core):
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
            c = condition(j, type_)
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


def test_job_on_failure_counts_container_restarts(core):
    core.create(JOBS, NS, job(restart="OnFailure", backoffLimit=2))

    async def body() -> None:
        (pod,) = await until("pod", lambda: pods(core, **{"job-name": "calc"}))
        kubelet(core, pod, restarts=1, ready=False)
        await settle()
        assert condition(core.get(JOBS, NS, "calc"), "Failed") is None
        kubelet(core, pod, restarts=2, ready=False)
        j = await until("failed", lambda: with_condition(core, JOBS, "calc", "Failed"))
        assert condition(j, "Failed")["reason"] == "BackoffLimitExceeded"
        assert not pods(core, **{"job-name": "calc"})  # the running pod was deleted
        assert ("SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}") in events(core, "calc")

    run(core, body)


# ------------------------------------------------------------------------------------------------------ endpoints
def test_endpoints_and_slices_follow_ready_pods(core):
    core.create(DEPLOYMENTS, NS, deployment(replicas=3))
    core.create(
        SERVICES,
        NS,
        {
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    )

    async def body() -> None:
        three = await until("3 pods", lambda: exactly(3, pods(core, app="web")))
        empty = await until("empty slice", lambda: core.list(SLICES, NS)["items"])
        assert empty[0]["endpoints"] == [] and "ports" not in empty[0]
        assert "subsets" not in core.get(ENDPOINTS, NS, "web")
        core.bind(NS, three[0]["metadata"]["name"], {"target": {"name": "node-a"}})
        a = kubelet(core, three[0], ip="10.42.0.2")
        b = kubelet(core, three[1], ip="10.42.0.3")
        c = kubelet(core, three[2], ip="10.42.0.4", ready=False)
        await until(
            "endpoints",
            lambda: len((core.store.get(ENDPOINTS, NS, "web") or {}).get("subsets", [{}])[0].get("addresses", [])) == 2,
        )
        ep = core.get(ENDPOINTS, NS, "web")
        (subset,) = ep["subsets"]
        assert subset["addresses"][0] == {
            "ip": "10.42.0.2",
            "nodeName": "node-a",
            "targetRef": {"kind": "Pod", "namespace": NS, "name": a["metadata"]["name"], "uid": a["metadata"]["uid"]},
        }
        assert [x["ip"] for x in subset["addresses"]] == ["10.42.0.2", "10.42.0.3"]
        assert [x["ip"] for x in subset["notReadyAddresses"]] == ["10.42.0.4"]
        assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]  # named targetPort resolved
        assert ep["metadata"]["labels"] == {"tier": "front"}

        (slice_,) = await until(
            "slice", lambda: [s for s in core.list(SLICES, NS)["items"] if len(s["endpoints"]) == 3]
        )
        svc = core.get(SERVICES, NS, "web")
        assert slice_["metadata"]["name"].startswith("web-") and len(slice_["metadata"]["name"]) == len("web-") + 5
        assert slice_["metadata"]["labels"] == {
            "tier": "front",
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }
        assert slice_["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
        assert slice_["addressType"] == "IPv4" and slice_["ports"] == [
            {"name": "http", "port": 8080, "protocol": "TCP"}
        ]
        conditions = {e["addresses"][0]: e["conditions"] for e in slice_["endpoints"]}
        assert conditions["10.42.0.2"] == {"ready": True, "serving": True, "terminating": False}
        assert conditions["10.42.0.4"] == {"ready": False, "serving": False, "terminating": False}
        assert {e["targetRef"]["name"] for e in slice_["endpoints"]} == {p["metadata"]["name"] for p in (a, b, c)}

        # a terminating pod leaves the Endpoints but stays in the slice as terminating
        core.delete(PODS, NS, a["metadata"]["name"])
        await until("a gone from endpoints", lambda: "10.42.0.2" not in str(core.get(ENDPOINTS, NS, "web")))
        terminating = await until(
            "terminating",
            lambda: [
                e for s in core.list(SLICES, NS)["items"] for e in s["endpoints"] if e["conditions"]["terminating"]
            ],
        )
        assert terminating[0]["conditions"] == {"ready": False, "serving": True, "terminating": True}

        core.delete(SERVICES, NS, "web")
        await until("endpoints removed", lambda: core.store.get(ENDPOINTS, NS, "web") is None)
        assert not core.list(SLICES, NS)["items"]  # garbage-collected with the Service

    run(core, body)


def test_slice_endpoint_conditions_with_and_without_publish_not_ready_addresses():
    def pod(ready: bool, terminating: bool) -> dict[str, Any]:
        meta = {
            "name": "p",
            "namespace": NS,
            "uid": "u",
            **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if terminating else {}),
        }
        return {
            "metadata": meta,
            "spec": {},
            "status": {"podIP": "10.42.0.9", "conditions": [{"type": "Ready", "status": str(ready)}]},
        }

    def conditions(ready: bool, terminating: bool, publish: bool) -> tuple[bool, bool, bool]:
        c = slice_endpoint(pod(ready, terminating), publish)["conditions"]
        return c["ready"], c["serving"], c["terminating"]

    # serving is the pod's readiness alone; publishNotReadyAddresses makes every endpoint ready, terminating too
    assert conditions(False, False, publish=False) == (False, False, False)
    assert conditions(True, True, publish=False) == (False, True, True)
    assert conditions(False, False, publish=True) == (True, False, False)
    assert conditions(True, True, publish=True) == (True, True, True)


def test_pods_naming_a_port_differently_get_their_own_subset_and_slice(core):
    for name, port in (("a", 8080), ("b", 9090)):
        core.create(
            PODS,
            NS,
            {
                "metadata": {"name": name, "labels": {"app": "mixed"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "demo:1", "ports": [{"name": "http", "containerPort": port}]}
                    ]
                },
            },
        )
    core.create(
        PODS,
        NS,
        {
            "metadata": {"name": "c", "labels": {"app": "mixed"}},  # no port named http
            "spec": {"containers": [{"name": "main", "image": "demo:1"}]},
        },
    )
    core.create(
        SERVICES,
        NS,
        {
            "metadata": {"name": "mixed"},
            "spec": {"selector": {"app": "mixed"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    async def body() -> None:
        for name, ip in (("a", "10.42.1.1"), ("b", "10.42.1.2"), ("c", "10.42.1.3")):
            kubelet(core, core.get(PODS, NS, name), ip=ip)
        await until("two subsets", lambda: len((core.store.get(ENDPOINTS, NS, "mixed") or {}).get("subsets", [])) == 2)
        subsets = sorted(core.get(ENDPOINTS, NS, "mixed")["subsets"], key=lambda s: s["ports"][0]["port"])
        assert [([a["ip"] for a in s["addresses"]], s["ports"][0]["port"]) for s in subsets] == [
            (["10.42.1.1"], 8080),
            (["10.42.1.2"], 9090),
        ]
        slices = await until("two slices", lambda: exactly(2, core.list(SLICES, NS)["items"]))
        assert sorted((s["ports"][0]["port"], s["endpoints"][0]["addresses"][0]) for s in slices) == [
            (8080, "10.42.1.1"),
            (9090, "10.42.1.2"),
        ]

    run(core, body)


def test_a_pod_relabelled_away_leaves_its_old_service_and_joins_the_new_one(core):
    for name in ("a", "b"):
        core.create(
            PODS,
            NS,
            {
                "metadata": {"name": name, "labels": {"app": "blue"}},
                "spec": {"containers": [{"name": "main", "image": "demo:1"}]},
            },
        )
    for colour in ("blue", "green"):
        core.create(
            SERVICES, NS, {"metadata": {"name": colour}, "spec": {"selector": {"app": colour}, "ports": [{"port": 80}]}}
        )

    def addresses(service: str) -> tuple[list[str], list[str]]:
        subsets = (core.store.get(ENDPOINTS, NS, service) or {}).get("subsets") or [{}]
        slices = core.list(SLICES, NS, label_selector=f"kubernetes.io/service-name={service}")["items"]
        in_slices = [e["addresses"][0] for s in slices for e in s["endpoints"]]
        return sorted(a["ip"] for a in subsets[0].get("addresses", [])), sorted(in_slices)

    async def body() -> None:
        kubelet(core, core.get(PODS, NS, "a"), ip="10.42.2.1")
        kubelet(core, core.get(PODS, NS, "b"), ip="10.42.2.2")
        both = (["10.42.2.1", "10.42.2.2"], ["10.42.2.1", "10.42.2.2"])
        await until("blue has both", lambda: addresses("blue") == both)
        live = core.get(PODS, NS, "b")
        core.replace(PODS, NS, "b", {**live, "metadata": {**live["metadata"], "labels": {"app": "green"}}})
        await until(
            "b moved",
            lambda: (
                addresses("blue") == (["10.42.2.1"], ["10.42.2.1"])
                and addresses("green") == (["10.42.2.2"], ["10.42.2.2"])
            ),
        )

    run(core, body)


def test_selectorless_service_endpoints_are_left_alone(core):
    core.create(
        ENDPOINTS,
        NS,
        {"metadata": {"name": "external"}, "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 443}]}]},
    )
    core.create(SERVICES, NS, {"metadata": {"name": "external"}, "spec": {"ports": [{"port": 443}]}})

    async def body() -> None:
        await settle()
        assert core.get(ENDPOINTS, NS, "external")["subsets"][0]["addresses"] == [{"ip": "192.0.2.1"}]
        assert not core.list(SLICES, NS)["items"]

    run(core, body)
