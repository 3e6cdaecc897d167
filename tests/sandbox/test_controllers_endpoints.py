"""The endpoints controller in process: Endpoints and EndpointSlices follow the selected pods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import controllers_harness as harness
from controllers_harness import NS, SERVICES, deployment, exactly, kubelet, pods, run, settle, until

from labkit.sandbox.controllers.deployment import DEPLOYMENTS
from labkit.sandbox.controllers.endpoints import ENDPOINTS, SLICES, slice_endpoint
from labkit.sandbox.controllers.podutil import PODS

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

core = harness.core  # the fixture every test here takes


# ------------------------------------------------------------------------------------------------------ endpoints
def test_endpoints_and_slices_follow_ready_pods(core: ApiCore) -> None:
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


def test_slice_endpoint_conditions_with_and_without_publish_not_ready_addresses() -> None:
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


def test_pods_naming_a_port_differently_get_their_own_subset_and_slice(core: ApiCore) -> None:
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


def test_a_pod_relabelled_away_leaves_its_old_service_and_joins_the_new_one(core: ApiCore) -> None:
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


def test_selectorless_service_endpoints_are_left_alone(core: ApiCore) -> None:
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
