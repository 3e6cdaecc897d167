"""Attacks on the API server, each answered quickly with a 4xx Status that changes nothing (issue 10, items 2
and 4): request bombs, oversized bodies and objects, malformed parameters and bodies."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from labkit.sandbox.api import responses
from labkit.sandbox.api import watch as watch_module
from labkit.sandbox.api.limits import MAX_OBJECT_BYTES, MAX_REQUEST_BODY
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import Store
from labkit.sandbox.logs import PodLogs
from tests.sandbox import apifuzz
from tests.sandbox import apiserver_harness as harness
from tests.sandbox.conftest import KUBECTL, Kubectl

live_api = harness.live_api
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"


def refused(api: harness.LiveApi, code: int, method: str, path: str, body=None, **kw) -> dict:
    """Send a request that must fail with ``code`` and a Status, and leave the stored objects as they were."""
    before = api.state()
    reply = api.call(method, path, body, **kw)
    assert reply.status == code, reply.body[:500]
    status = reply.json()
    assert status["kind"] == "Status" and status["status"] == "Failure" and status["code"] == code
    assert api.state() == before
    return status


def test_a_billion_laughs_is_refused_within_a_second(live_api):
    status = refused(live_api, 400, "POST", CONFIGMAPS, apifuzz.laughs(), content_type="application/yaml")
    assert "yaml: document contains excessive aliasing" in status["message"]
    assert status["message"].startswith("the object provided is unrecognized (must be of type ConfigMap): ")
    assert live_api.call("GET", "/readyz").status == 200
    reply = live_api.call("POST", CONFIGMAPS, apifuzz.laughs(), content_type="application/yaml")
    assert reply.seconds < 1.0


def test_a_few_aliases_still_work(live_api):
    # go-yaml allows aliasing below its ratio: kubectl users write anchors for repeated env blocks
    body = apifuzz.laughs(levels=2, fanout=3).replace(b"name: lol", b"name: few-aliases")
    reply = live_api.call("POST", CONFIGMAPS, body, content_type="application/yaml")
    # the aliases expand into lists, which a ConfigMap's string data does not take: a 400 from validation,
    # not from the alias guard
    assert reply.status == 400 and "aliasing" not in reply.json()["message"]
    anchors = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: few-aliases}\ndata:\n  a: &v hello\n  b: *v\n"
    created = live_api.call("POST", CONFIGMAPS, anchors, content_type="application/yaml")
    assert created.status == 201 and created.json()["data"] == {"a": "hello", "b": "hello"}


def test_a_self_containing_anchor_is_refused(live_api):
    status = refused(live_api, 400, "POST", CONFIGMAPS, b"a: &x {b: *x}\n", content_type="application/yaml")
    assert "yaml: anchor 'x' value contains itself" in status["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b'{"metadata":' + b"[" * 100_000, "application/json", "json parse error: exceeded max depth of 100"),
        (b"metadata: " + b"[" * 100_000, "application/yaml", "maximum nesting depth"),
        (b"- " * 100_000, "application/yaml", "yaml: exceeded max depth of 100"),
        (json.dumps({"metadata": {"name": "deep"}, "data": {"k": "v"}, "x": [[[[1]]]] * 1}).encode()[:-1]
         + b',"y":' + b"[" * 150 + b"]" * 150 + b"}", "application/json", "exceeded max depth of 100"),
    ],
)  # fmt: skip
def test_deep_nesting_is_refused_quickly(live_api, body, content_type, words):
    status = refused(live_api, 400, "POST", CONFIGMAPS, body, content_type=content_type)
    assert words in status["message"]
    assert live_api.call("POST", CONFIGMAPS, body, content_type=content_type).seconds < 1.0


def test_a_body_over_3_mib_is_refused_with_413(live_api):
    big = {"metadata": {"name": "big"}, "data": {"k": "x" * MAX_REQUEST_BODY}}
    status = refused(live_api, 413, "POST", CONFIGMAPS, big)
    assert status["reason"] == "RequestEntityTooLarge"
    assert status["message"] == "Request entity too large: limit is 3145728"
    # the same without a Content-Length (chunked): counted while read
    conn = live_api.connection()
    conn.putrequest("POST", CONFIGMAPS)
    conn.putheader("Authorization", f"Bearer {harness.TOKEN}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for _ in range(5):
            chunk = b"x" * (1024 * 1024)
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except ConnectionError:
        pass  # the server answered and closed before reading the rest
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["reason"] == "RequestEntityTooLarge"
    conn.close()


def test_an_object_over_etcds_limit_is_refused(live_api):
    big = {"metadata": {"name": "over-etcd"}, "data": {"k": "x" * (MAX_OBJECT_BYTES + 10)}}
    status = refused(live_api, 413, "POST", CONFIGMAPS, big)
    assert status["message"] == "etcdserver: request is too large"
    # growing an object past the limit by PATCH is refused the same way, and leaves it as it was
    small = {"metadata": {"name": "grows"}, "data": {"k": "x" * (MAX_OBJECT_BYTES // 2)}}
    assert live_api.call("POST", CONFIGMAPS, small).status == 201
    grow = {"data": {"k2": "y" * (MAX_OBJECT_BYTES // 2 + 100)}}
    refused(live_api, 413, "PATCH", f"{CONFIGMAPS}/grows", grow, content_type="application/merge-patch+json")


def test_metadata_that_is_not_a_map_is_a_400(live_api):
    for metadata in ("x", 1, ["a"], True):
        status = refused(live_api, 400, "POST", CONFIGMAPS, {"metadata": metadata})
        assert "cannot unmarshal" in status["message"]
        assert "into Go struct field ConfigMap.metadata of type v1.ObjectMeta" in status["message"]
    assert live_api.call("POST", CONFIGMAPS, {"metadata": {"name": "meta-ok"}}).status == 201
    patch = {"metadata": "x"}
    refused(live_api, 400, "PATCH", f"{CONFIGMAPS}/meta-ok", patch, content_type="application/merge-patch+json")
    refused(live_api, 400, "PUT", f"{CONFIGMAPS}/meta-ok", [1, 2])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=ten", 'strconv.ParseInt: parsing "ten": invalid syntax'),
        ("limit=99999999999999999999", 'strconv.ParseInt: parsing "99999999999999999999": value out of range'),
        ("watch=1&timeoutSeconds=soon", 'strconv.ParseInt: parsing "soon": invalid syntax'),
        ("resourceVersion=abc", 'Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax'),
        ("watch=1&resourceVersion=-1", 'Invalid value: "-1": strconv.ParseUint: parsing "-1": invalid syntax'),
        ("fieldSelector=spec.nodeName%3Dx", '"spec.nodeName" is not a known field selector: only "metadata.name"'),
        ("labelSelector=a%20b", "unable to parse requirement"),
    ],
)  # fmt: skip
def test_bad_list_and_watch_parameters_are_400s(live_api, query, message):
    status = refused(live_api, 400, "GET", f"{CONFIGMAPS}?{query}")
    assert message in status["message"]


def test_field_selectors_follow_each_kinds_labels(live_api):
    assert live_api.call("GET", f"{PODS}?fieldSelector=spec.nodeName%3Dnode-1,status.phase!%3DFailed").status == 200
    status = refused(live_api, 400, "GET", f"{PODS}?fieldSelector=spec.containers%3Dx")
    assert status["message"] == "field label not supported: spec.containers"
    status = refused(live_api, 400, "GET", "/apis/batch/v1/namespaces/default/jobs?fieldSelector=status.active%3D1")
    assert status["message"] == 'field label "status.active" not supported for Job'
    status = refused(live_api, 400, "GET", "/api/v1/nodes?fieldSelector=metadata.namespace%3Dx&watch=1")
    assert status["message"] == "field label not supported: metadata.namespace"
    assert live_api.call("GET", "/api/v1/events?fieldSelector=involvedObject.name%3Dx").status == 200


def pod(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "docker.io/x/y:1"}]}}


def test_malformed_delete_bodies_are_400s(live_api):
    assert live_api.call("POST", PODS, pod("victim")).status == 201
    for body in (b"[1,2]", b'"x"', b"{", b'{"gracePeriodSeconds":"soon"}', b'{"dryRun":"All"}'):
        refused(live_api, 400, "DELETE", f"{PODS}/victim", body)
    status = refused(live_api, 400, "DELETE", f"{PODS}/victim?gracePeriodSeconds=later")
    assert status["message"] == 'strconv.ParseInt: parsing "later": invalid syntax'
    refused(live_api, 400, "DELETE", f"{PODS}?fieldSelector=spec.image%3Dx")
    refused(live_api, 400, "DELETE", f"{PODS}/victim", {"kind": "Pod"})
    assert live_api.call("DELETE", f"{PODS}/victim", {"gracePeriodSeconds": 0}).status == 200
    assert live_api.call("GET", f"{PODS}/victim").status == 404


def delete_options_protobuf(grace: int, propagation: str) -> bytes:
    """A protobuf ``DeleteOptions`` in its ``runtime.Unknown`` envelope, as kubectl (drain) sends it."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    options = bytes([1 << 3, grace]) + field(4, propagation.encode())
    type_meta = field(1, b"v1") + field(2, b"DeleteOptions")
    return b"k8s\x00" + field(1, type_meta) + field(2, options)


def test_a_protobuf_delete_options_body_is_understood(live_api):
    assert live_api.call("POST", PODS, pod("drained")).status == 201
    body = delete_options_protobuf(0, "Background")
    reply = live_api.call("DELETE", f"{PODS}/drained", body, content_type="application/vnd.kubernetes.protobuf")
    assert reply.status == 200, reply.body
    assert live_api.call("GET", f"{PODS}/drained").status == 404
    garbage = b"k8s\x00\x0a\x05"
    refused(live_api, 400, "DELETE", f"{PODS}/x", garbage, content_type="application/vnd.kubernetes.protobuf")


def test_malformed_scale_bodies_are_400s(live_api):
    deployment = {
        "metadata": {"name": "scaled"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "s"}},
            "template": {"metadata": {"labels": {"app": "s"}}, "spec": pod("x")["spec"]},
        },
    }
    assert live_api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment).status == 201
    scale = "/apis/apps/v1/namespaces/default/deployments/scaled/scale"
    refused(live_api, 400, "PUT", scale, [1])
    refused(live_api, 400, "PUT", scale, {"spec": "three"})
    refused(live_api, 400, "PATCH", scale, b"{", content_type="application/merge-patch+json")
    refused(live_api, 400, "PATCH", scale, {"metadata": 5}, content_type="application/merge-patch+json")
    refused(live_api, 400, "PATCH", scale, {"spec": {"replicas": "3"}}, content_type="application/merge-patch+json")
    refused(live_api, 422, "PATCH", scale, {"spec": {"replicas": -1}}, content_type="application/merge-patch+json")
    ok = live_api.call("PATCH", scale, {"spec": {"replicas": 3}}, content_type="application/merge-patch+json")
    assert ok.status == 200 and ok.json()["spec"]["replicas"] == 3


def test_a_watch_from_a_future_resource_version_times_out_as_upstream(live_api, monkeypatch):
    monkeypatch.setattr(responses, "FUTURE_RV_WAIT", 0.3)
    future = live_api.core.store.rv + 1000
    status = refused(live_api, 504, "GET", f"{CONFIGMAPS}?watch=1&resourceVersion={future}")
    assert status["reason"] == "Timeout"
    assert status["message"] == f"Timeout: Too large resource version: {future}, current: {live_api.core.store.rv}"
    assert status["details"]["causes"] == [
        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
    ]
    assert status["details"]["retryAfterSeconds"] == 1


def test_the_watch_history_is_bounded_in_bytes(tmp_path):
    bound = 2 * 1024 * 1024
    store = Store(tmp_path / "state.db", history_bytes=bound)
    configmaps = RESOURCES.served("", "configmaps")
    first = store.create(configmaps, {"metadata": {"name": "cm-0", "namespace": "default"}})
    start_rv = int(first["metadata"]["resourceVersion"])
    for i in range(40):  # 40 writes of 200 kB: 8 MB of text, four times the bound
        store.create(
            configmaps, {"metadata": {"name": f"big-{i}", "namespace": "default"}, "data": {"k": "x" * 200_000}}
        )
        assert store.history_size <= bound

    async def watch_from(rv: int) -> None:
        store.watch(configmaps, "default", since_rv=rv).close()

    with pytest.raises(StatusError, match="too old resource version") as expired:
        asyncio.run(watch_from(start_rv))
    assert expired.value.code == 410 and expired.value.reason == "Expired"
    asyncio.run(watch_from(store.rv - 1))  # a recent version is still served
    store.close()


def test_a_slow_watcher_is_ended_by_bytes_too(tmp_path, monkeypatch):
    monkeypatch.setattr(watch_module, "MAX_PENDING_BYTES", 4 * 1024 * 1024)
    store = Store(tmp_path / "state.db")
    configmaps = RESOURCES.served("", "configmaps")

    async def scenario() -> int:
        watcher = store.watch(configmaps, "default", since_rv=store.rv)
        for i in range(50):  # nobody reads: 50 MB would queue up, far past the 4 MB bound
            store.create(
                configmaps, {"metadata": {"name": f"q-{i}", "namespace": "default"}, "data": {"k": "x" * 2**20}}
            )
            if watcher.closed:
                return i
        return -1

    ended_after = asyncio.run(scenario())
    assert 3 <= ended_after <= 6  # ended once its queue held more than 4 MB, not before
    store.close()


def test_a_big_log_and_a_big_list_are_served_off_the_loop(live_api):
    """Not a timing test (that is benchmarks/bench_safety.py): it proves the log and LIST paths work through
    the worker thread, with the right bytes."""
    pods = RESOURCES.served("", "pods")
    created = live_api.core.create(pods, "default", pod("logger"))[0]
    logs = PodLogs(live_api.log_dir)
    directory = logs.directory(created, "c")
    directory.mkdir(parents=True, exist_ok=True)
    line = "2026-01-01T00:00:00.000000000Z stdout F " + "y" * 100 + "\n"
    (directory / "0.log").write_text(line * 1000)
    live_api.core.store.update(
        pods,
        {**created, "status": {"containerStatuses": [{"name": "c", "restartCount": 0, "state": {"running": {}}}]}},
        check_rv=False,
    )
    reply = live_api.call("GET", f"{PODS}/logger/log")
    assert reply.status == 200 and reply.body == ("y" * 100 + "\n").encode() * 1000
    listed = live_api.call("GET", f"{PODS}?limit=2")
    assert listed.status == 200 and listed.json()["kind"] == "PodList" and len(listed.json()["items"]) <= 2
    table = live_api.call("GET", PODS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert table.json()["kind"] == "Table" and any(r["cells"][0] == "logger" for r in table.json()["rows"])


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize("how", [(), ("--disable-eviction",)], ids=["eviction", "protobuf-delete"])
def test_kubectl_drain_empties_a_node(live_api, tmp_path, how):
    """kubectl drain POSTs a policy/v1 Eviction; with --disable-eviction it DELETEs with a protobuf DeleteOptions."""
    nodes = live_api.call("GET", "/api/v1/nodes").json()["items"]
    node = nodes[0]["metadata"]["name"]
    for i in range(2):
        bound = pod(f"drain-{len(how)}-{i}")
        bound["spec"]["nodeName"] = node
        assert live_api.call("POST", PODS, bound).status == 201
    kubectl = Kubectl({**os.environ, "KUBECONFIG": str(live_api.kubeconfig), "HOME": str(tmp_path)})
    drained = kubectl("drain", node, "--force", "--grace-period=0", "--timeout=20s", *how)
    assert f"node/{node} drained" in drained.stdout
    if not how:
        assert "evicted" in drained.stdout
    left = live_api.call("GET", f"{PODS}?fieldSelector=spec.nodeName%3D{node}").json()["items"]
    assert [p["metadata"]["name"] for p in left if p["metadata"]["name"].startswith(f"drain-{len(how)}")] == []
    kubectl("uncordon", node)


def test_a_malformed_eviction_is_a_400(live_api):
    assert live_api.call("POST", PODS, pod("evictee")).status == 201
    eviction = f"{PODS}/evictee/eviction"
    refused(live_api, 400, "POST", eviction, [1])
    refused(live_api, 400, "POST", eviction, {"kind": "Eviction", "metadata": {"name": "other"}})
    refused(live_api, 400, "POST", eviction, {"kind": "Eviction", "deleteOptions": {"gracePeriodSeconds": "x"}})
    done = live_api.call("POST", eviction, {"kind": "Eviction", "deleteOptions": {"gracePeriodSeconds": 0}})
    assert done.status == 201 and done.json()["status"] == "Success"
    assert live_api.call("GET", f"{PODS}/evictee").status == 404


JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
SA_TOKEN = "/api/v1/namespaces/default/serviceaccounts/default/token"


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type"),
    [
        ("POST", SA_TOKEN, [1], "application/json"),
        ("POST", SA_TOKEN, {"spec": 5}, "application/json"),
        ("POST", SA_TOKEN, {"spec": {"expirationSeconds": "x"}}, "application/json"),
        ("POST", SA_TOKEN, {"spec": {"audiences": 5}}, "application/json"),
        ("POST", f"{PODS}/typed/binding", {"target": 5}, "application/json"),
        ("POST", f"{PODS}/typed/binding", {"target": {"name": 5}}, "application/json"),
        ("PUT", f"{PODS}/typed/status", {"metadata": {"name": "typed"}, "status": 5}, "application/json"),
        ("PUT", f"{PODS}/typed/status", {"metadata": {"name": "typed"}, "status": {"phase": 5}}, "application/json"),
        ("PATCH", f"{PODS}/typed/status", [{"op": "replace", "path": "/status", "value": 5}], JSON_PATCH),
        ("PATCH", f"{PODS}/typed/status?fieldManager=m", {"metadata": {"name": "typed"}, "status": {"conditions": 5}},
         APPLY),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {"spec": True}, "application/json"),
        ("POST", "/apis/events.k8s.io/v1/namespaces/default/events", None, "application/json"),
        ("DELETE", f"{PODS}/typed", {"preconditions": {"uid": 5}}, "application/json"),
    ],
)  # fmt: skip
def test_subresource_and_status_bodies_are_typed(live_api, method, path, body, content_type):
    """Found by the fuzzer: these gave 500 or stored a wrongly typed value."""
    if live_api.call("GET", f"{PODS}/typed").status == 404:
        assert live_api.call("POST", PODS, pod("typed")).status == 201
    data = b"null" if body is None else body
    status = refused(live_api, 400, method, path, data, content_type=content_type)
    assert "cannot unmarshal" in status["message"]
