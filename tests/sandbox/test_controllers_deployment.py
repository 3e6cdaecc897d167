"""The Deployment controller in process (rolling update, Recreate, proportional scaling, history, pause,
minReadySeconds, progress deadline) and its pure helpers; the test plays the kubelet."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import controllers_harness as harness
import pytest
from controllers_harness import (
    NS,
    deployment,
    events,
    exactly,
    kubelet,
    must,
    pods,
    pods_per_replica_set,
    ready_all,
    replica_sets,
    rolled_out,
    run,
    settle,
    spec_replicas,
    until,
    update_template,
    with_condition,
)

from labkit.sandbox.api.store import NAME_ALPHABET
from labkit.sandbox.controllers.conditions import condition, parse_time
from labkit.sandbox.controllers.deployment import DEPLOYMENTS
from labkit.sandbox.controllers.deploymentutil import pod_template_hash, scaled_value, surge_and_unavailable
from labkit.sandbox.controllers.podutil import deletion_order
from labkit.sandbox.controllers.replicaset import REPLICASETS

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes


# ------------------------------------------------------------------------------------------------------ pure logic
def test_pod_template_hash_is_stable_short_safe_and_ignores_its_own_label() -> None:
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


def test_surge_rounds_up_and_unavailable_rounds_down() -> None:
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


def test_deletion_order_prefers_unscheduled_then_not_ready_then_newest() -> None:
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
def test_deployment_creates_replicaset_and_pods_and_becomes_available(core: ApiCore) -> None:
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
        avail = must(condition(d, "Available"))
        assert (avail["status"], avail["reason"], avail["message"]) == (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
        assert must(condition(d, "Progressing"))["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
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
        assert must(condition(d, "Progressing"))["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
        avail = must(condition(d, "Available"))
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


async def four_available(core: ApiCore) -> str:
    """Play the kubelet until the 4-replica "web" Deployment is Available; returns its only ReplicaSet."""
    await until("4 pods", lambda: len(pods(core, app="web")) == 4)
    ready_all(core, app="web")
    await until("available", lambda: core.get(DEPLOYMENTS, NS, "web")["status"].get("availableReplicas") == 4)
    (only,) = replica_sets(core)
    return only


def test_rolling_update_with_surge_one_keeps_every_pod_available(core: ApiCore) -> None:
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

            def at_step(wanted: dict[str, int] = wanted) -> bool:
                return spec_replicas(core) == wanted and pods_per_replica_set(core) == wanted

            await until(f"new RS at {expected_new}", at_step)
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


def test_scaling_in_the_middle_of_a_rollout_is_proportional(core: ApiCore) -> None:
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


def test_rolling_update_with_unavailable_half_and_no_surge(core: ApiCore) -> None:
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


def test_scaling_and_recreate_strategy(core: ApiCore) -> None:
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


def test_scale_down_deletes_not_ready_pods_first(core: ApiCore) -> None:
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


def test_revision_history_limit_and_rollback_reuses_the_old_replicaset(core: ApiCore) -> None:
    core.create(DEPLOYMENTS, NS, deployment(replicas=1, revisionHistoryLimit=1))

    async def body() -> None:
        names = []
        for image in ("demo:1", "demo:2", "demo:3"):
            if image != "demo:1":
                update_template(core, "web", image)

            def running(image: str = image) -> list[dict[str, Any]]:
                return [p for p in pods(core, app="web") if p["spec"]["containers"][0]["image"] == image]

            await until(f"{image} pod", running)
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


def test_paused_deployment_scales_but_does_not_roll_out(core: ApiCore) -> None:
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
        c = must(condition(paused, "Progressing"))
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


def test_min_ready_seconds_delays_availability(core: ApiCore) -> None:
    core.create(DEPLOYMENTS, NS, deployment(replicas=1, minReadySeconds=2))

    async def body() -> None:
        (pod,) = await until("pod", lambda: pods(core, app="web"))
        ready_since = must(parse_time(must(condition(kubelet(core, pod), "Ready"))["lastTransitionTime"]))
        await until("ready", lambda: core.get(DEPLOYMENTS, NS, "web").get("status", {}).get("readyReplicas") == 1)
        await until("available", lambda: core.get(DEPLOYMENTS, NS, "web")["status"].get("availableReplicas") == 1, 4)
        # timestamps have whole seconds, as in Kubernetes: available once 2 s passed since the stamped time
        assert time.time() >= ready_since + 2

    run(core, body)


def test_progress_deadline_exceeded(core: ApiCore) -> None:
    core.create(DEPLOYMENTS, NS, deployment(replicas=1, progressDeadlineSeconds=1))

    async def body() -> None:
        d = await until(
            "timed out", lambda: with_condition(core, DEPLOYMENTS, "web", "Progressing", "ProgressDeadlineExceeded"), 4
        )
        rs = next(iter(replica_sets(core)))
        c = must(condition(d, "Progressing"))
        assert (c["status"], c["message"]) == ("False", f'ReplicaSet "{rs}" has timed out progressing.')

    run(core, body)
