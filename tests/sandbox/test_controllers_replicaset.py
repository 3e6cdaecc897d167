"""The ReplicaSet controller in process: pods being deleted, adoption and release; the test plays the kubelet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import controllers_harness as harness
from controllers_harness import NS, exactly, pods, run, settle, until

from labkit.sandbox.controllers.podutil import PODS
from labkit.sandbox.controllers.replicaset import REPLICASETS

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes


def test_replicaset_pods_being_deleted_do_not_count(core: ApiCore) -> None:
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


def test_replicaset_adopts_matching_orphans_and_releases_relabelled_pods(core: ApiCore) -> None:
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
