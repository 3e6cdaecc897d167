"""The sandbox API server through the official Python client, lightkube, and raw HTTP for the error codes."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException


def _pod(name: str, labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "demo", "image": "docker.io/labkit/wasi-demo:latest"}]},
    }


def test_python_client_crud_and_conflict(api_client, namespace):
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(namespace, _pod("p", {"app": "x"}))
    assert created.metadata.uid and created.spec.dns_policy == "ClusterFirst"
    assert created.spec.containers[0].image_pull_policy == "Always"  # :latest
    with pytest.raises(ApiException) as dup:
        core.create_namespaced_pod(namespace, _pod("p"))
    assert dup.value.status == 409 and json.loads(dup.value.body)["reason"] == "AlreadyExists"
    stale = core.read_namespaced_pod("p", namespace)
    core.patch_namespaced_pod("p", namespace, {"metadata": {"labels": {"step": "1"}}})
    stale.metadata.labels = {"step": "stale"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_pod("p", namespace, stale)
    body = json.loads(conflict.value.body)
    assert conflict.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    listed = core.list_namespaced_pod(namespace, label_selector="app in (x,y),step")
    assert [p.metadata.name for p in listed.items] == ["p"]
    assert core.list_namespaced_pod(namespace, label_selector="app notin (x)").items == []


def test_python_client_watch_sees_added_then_ends(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})

    def later():
        time.sleep(0.5)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})

    threading.Thread(target=later).start()
    seen = []
    started = time.monotonic()
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
    assert ("ADDED", "before") in seen and ("ADDED", "after") in seen
    assert time.monotonic() - started < 6  # timeoutSeconds ends the stream


def test_lightkube_crud_and_watch(sandbox, namespace):
    from lightkube import Client, KubeConfig
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap

    kube = Client(KubeConfig.from_file(str(sandbox.kubeconfig)), namespace=namespace)
    kube.create(ConfigMap(metadata=ObjectMeta(name="lk"), data={"a": "1"}))
    assert kube.get(ConfigMap, "lk").data == {"a": "1"}
    kube.patch(ConfigMap, "lk", {"data": {"b": "2"}})
    assert kube.get(ConfigMap, "lk").data == {"a": "1", "b": "2"}
    threading.Timer(0.5, lambda: kube.patch(ConfigMap, "lk", {"data": {"c": "3"}})).start()
    events = []
    for op, obj in kube.watch(ConfigMap, namespace=namespace):  # lightkube re-watches forever: stop ourselves
        events.append((op, obj.metadata.name, dict(obj.data)))
        if op == "MODIFIED":
            break
    assert events[0] == ("ADDED", "lk", {"a": "1", "b": "2"})
    assert events[-1] == ("MODIFIED", "lk", {"a": "1", "b": "2", "c": "3"})
    kube.delete(ConfigMap, "lk")
    assert [c.metadata.name for c in kube.list(ConfigMap)] == []


def test_status_codes(raw, namespace, sandbox):
    base = f"/api/v1/namespaces/{namespace}"
    assert raw("GET", f"{base}/pods", auth=None)[0] == 401
    assert raw("GET", f"{base}/pods", auth="wrong")[0] == 401
    code, status = raw("GET", f"{base}/pods/nope")
    assert (code, status["reason"], status["message"]) == (404, "NotFound", 'pods "nope" not found')
    assert raw("POST", f"{base}/pods/nope")[0] == 405
    code, status = raw("POST", f"{base}/configmaps", b"\x00\x01", content_type="application/x-protobuf-nope")
    assert code == 415 and status["reason"] == "UnsupportedMediaType"
    code, status = raw(
        "POST",
        f"{base}/pods?fieldValidation=Strict",
        {"metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c", "image": "i", "imagee": 1}]}},
    )
    assert code == 400 and 'unknown field "spec.containers[0].imagee"' in status["message"]
    code, status = raw(
        "POST", f"{base}/pods", {"metadata": {"name": "noimage"}, "spec": {"containers": [{"name": "c"}]}}
    )
    assert code == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "spec.containers[0].image"
    code, status = raw("POST", "/api/v1/namespaces/does-not-exist/configmaps", {"metadata": {"name": "x"}})
    assert (code, status["message"]) == (404, 'namespaces "does-not-exist" not found')


def test_service_account_is_forbidden_then_allowed(raw, namespace):
    raw("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "watcher-sa"}})
    code, review = raw("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/watcher-sa/token", {"spec": {}})
    token = review["status"]["token"]
    code, status = raw("GET", f"/api/v1/namespaces/{namespace}/services", auth=token)
    assert code == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        f'services is forbidden: User "system:serviceaccount:{namespace}:watcher-sa" cannot list '
        f'resource "services" in API group "" in the namespace "{namespace}"'
    )
    raw(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "metadata": {"name": f"{namespace}-watch"},
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}],
        },
    )
    raw(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": f"{namespace}-watch"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{namespace}-watch"},
            "subjects": [{"kind": "ServiceAccount", "name": "watcher-sa", "namespace": namespace}],
        },
    )
    assert raw("GET", "/api/v1/services", auth=token)[0] == 200  # cluster-wide list, as the service-watcher does
    assert raw("DELETE", f"/api/v1/namespaces/{namespace}/services/x", auth=token)[0] == 403
    raw("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{namespace}-watch")
    raw("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{namespace}-watch")


def test_deletion_semantics(raw, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    raw("POST", base, {"metadata": {"name": "owner"}})
    _, owner = raw("GET", f"{base}/owner")
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    for name in ("dep-a", "dep-b"):
        raw("POST", base, {"metadata": {"name": name, "ownerReferences": [ref]}})
    raw("POST", base, {"metadata": {"name": "held", "finalizers": ["labkit.io/hold"]}})
    # foreground: the owner waits for its dependents, which go first
    code, _ = raw("DELETE", f"{base}/owner", {"propagationPolicy": "Foreground"})
    assert code == 200
    assert raw("GET", f"{base}/dep-a")[0] == 404 and raw("GET", f"{base}/owner")[0] == 404
    # a finalizer keeps the object, marked for deletion, until it is removed
    code, held = raw("DELETE", f"{base}/held")
    assert code == 200 and held["metadata"]["deletionTimestamp"]
    assert raw("GET", f"{base}/held")[0] == 200
    raw("PATCH", f"{base}/held", {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
    assert raw("GET", f"{base}/held")[0] == 404
    # orphan: dependents stay, without the ownerReference
    raw("POST", base, {"metadata": {"name": "owner2"}})
    _, owner2 = raw("GET", f"{base}/owner2")
    raw(
        "POST",
        base,
        {
            "metadata": {
                "name": "kept",
                "ownerReferences": [{**ref, "name": "owner2", "uid": owner2["metadata"]["uid"]}],
            }
        },
    )
    raw("DELETE", f"{base}/owner2", {"propagationPolicy": "Orphan"})
    code, kept = raw("GET", f"{base}/kept")
    assert code == 200 and "ownerReferences" not in kept["metadata"]


@pytest.mark.slow  # restarts a real daemon
def test_objects_survive_daemon_restart(sandbox_home, tmp_path):
    """down/up keeps every object: state lives in SQLite, not in the process."""
    from labkit.sandbox import client as daemon

    home = tmp_path / "restart"
    info = daemon.ensure_running(nodes=1, home=home)
    api = client.CoreV1Api(_client(info))
    api.create_namespace({"metadata": {"name": "kept"}})
    api.create_namespaced_config_map("kept", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    assert daemon.stop(home=home)
    assert daemon.status(home=home) is None
    info = daemon.ensure_running(home=home)
    try:
        api = client.CoreV1Api(_client(info))
        assert api.read_namespaced_config_map("cm", "kept").data == {"k": "v"}
        assert [n.metadata.name for n in api.list_node().items] == ["labkit-server-0"]
        # the watch history is memory only: a resourceVersion from before the restart is gone (410 Expired)
        with pytest.raises(ApiException) as gone:
            api.list_namespaced_config_map("kept", watch=True, resource_version="2", timeout_seconds=2)
        assert gone.value.status == 410 and json.loads(gone.value.body)["reason"] == "Expired"
    finally:
        daemon.stop(home=home)


def _client(info):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(info.kubeconfig))


def test_runtime_class_admission_and_protected_namespaces(raw, namespace):
    code, status = raw(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "metadata": {"name": "p"},
            "spec": {"runtimeClassName": "no-such-class", "containers": [{"name": "c", "image": "i"}]},
        },
    )
    assert (code, status["message"]) == (
        403,
        'pods "p" is forbidden: pod rejected: RuntimeClass "no-such-class" not found',
    )
    code, status = raw("DELETE", "/api/v1/namespaces/kube-system")
    assert (code, status["message"]) == (
        403,
        'namespaces "kube-system" is forbidden: this namespace may not be deleted',
    )


def test_events_k8s_io_is_a_view_of_core_events(raw, namespace):
    raw(
        "POST",
        f"/api/v1/namespaces/{namespace}/events",
        {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": namespace},
            "reason": "Tested",
            "message": "core event",
            "type": "Normal",
            "source": {"component": "pytest"},
        },
    )
    code, listing = raw("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    assert code == 200 and listing["apiVersion"] == "events.k8s.io/v1"
    event = next(e for e in listing["items"] if e["metadata"]["name"] == "e1")
    assert (event["note"], event["regarding"]["name"], event["reportingController"]) == ("core event", "x", "pytest")
    code, _created = raw(
        "POST",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        {
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Pod", "name": "y"},
            "reason": "Also",
            "note": "v1 event",
            "type": "Warning",
            "reportingController": "pytest",
            "reportingInstance": "me",
            "action": "Testing",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        },
    )
    assert code == 201
    code, core_view = raw("GET", f"/api/v1/namespaces/{namespace}/events/e2")
    assert (code, core_view["message"], core_view["involvedObject"]["name"]) == (200, "v1 event", "y")


def test_no_new_content_in_a_terminating_namespace(raw, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    raw("POST", base, {"metadata": {"name": "held", "finalizers": ["labkit.io/hold"]}})
    raw("DELETE", f"/api/v1/namespaces/{namespace}")  # stays Terminating while "held" keeps its finalizer
    code, status = raw("POST", base, {"metadata": {"name": "late"}})
    assert (code, status["message"]) == (
        403,
        (
            f'configmaps "late" is forbidden: unable to create new content in '
            f"namespace {namespace} because it is being terminated"
        ),
    )
    raw("PATCH", f"{base}/held", {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")


def test_status_patch_records_its_writer_for_the_status_only(raw, namespace):
    """A pods/status PATCH gives its manager the status fields it wrote (subresource "status"), as
    ``kubectl get pod --show-managed-fields`` shows the kubelet's entry; the spec it also sent is reset, so
    the writer owns none of it (GetResetFields in kubernetes' pkg/registry/core/pod/strategy.go)."""
    base = f"/api/v1/namespaces/{namespace}/pods"
    pod = {**_pod("owned"), "spec": {**_pod("owned")["spec"], "nodeName": "no-kubelet-runs-here"}}
    assert raw("POST", f"{base}?fieldManager=creator", pod)[0] == 201
    patch = {"spec": {"activeDeadlineSeconds": 5}, "status": {"phase": "Running", "hostIP": "10.0.0.1"}}
    code, patched = raw(
        "PATCH", f"{base}/owned/status?fieldManager=node-agent", patch, content_type="application/merge-patch+json"
    )
    assert code == 200, patched
    assert patched["status"]["phase"] == "Running" and "activeDeadlineSeconds" not in patched["spec"]
    entries = {e["manager"]: e for e in patched["metadata"]["managedFields"]}
    assert entries["node-agent"]["subresource"] == "status"
    assert entries["node-agent"]["fieldsV1"] == {"f:status": {"f:hostIP": {}, "f:phase": {}}}
    assert "f:status" not in entries["creator"]["fieldsV1"] and "f:spec" in entries["creator"]["fieldsV1"]
    stored = raw("GET", f"{base}/owned")[1]
    assert stored["metadata"]["managedFields"] == patched["metadata"]["managedFields"]
