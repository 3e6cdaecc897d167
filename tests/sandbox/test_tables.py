"""Table output: the 1.32 printers' columns and derivations, and kubectl rendering them."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labkit.sandbox.api.printers import human_duration, pod_status
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.tables import table_event, to_table
from tests.sandbox.conftest import KUBECTL

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def res(group: str, plural: str):
    resource = RESOURCES.served(group, plural)
    assert resource is not None, plural
    return resource


def cells(group: str, plural: str, obj: dict[str, Any], **kw: Any) -> list[Any]:
    return to_table(res(group, plural), [obj], now=NOW, **kw)["rows"][0]["cells"]


def header(group: str, plural: str, wide: bool = True) -> list[str]:
    return [c["name"] for c in to_table(res(group, plural), [], wide_hint=wide)["columnDefinitions"]]


# --------------------------------------------------------------------------- ages


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (182, "3m2s"), (599, "9m59s"),
     (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (7 * 3600 + 59 * 60, "7h59m"), (8 * 3600, "8h"),
     (47 * 3600, "47h"), (48 * 3600, "2d"), (51 * 3600, "2d3h"), (8 * 86400, "8d"), (729 * 86400, "729d"),
     (730 * 86400, "2y"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")],
)  # fmt: skip
def test_human_duration_matches_kubernetes(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


# --------------------------------------------------------------------------- pods


def pod(phase: str = "Running", statuses: list[dict[str, Any]] | None = None, *, containers: int = 1,
        init: list[dict[str, Any]] | None = None, init_statuses: list[dict[str, Any]] | None = None,
        conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": "img"} for i in range(containers)]}
    if init:
        spec["initContainers"] = init
    return {
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": ago(300), "uid": "u1"},
        "spec": spec,
        "status": {"phase": phase, **({"containerStatuses": statuses} if statuses else {}),
                   **({"initContainerStatuses": init_statuses} if init_statuses else {}),
                   "conditions": conditions or [], **status},
    }  # fmt: skip


def running(ready: bool = True, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": "c0",
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(60)}},
        **extra,
    }


def waiting(reason: str, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {"name": "c0", "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}}, **extra}


def terminated(restarts: int = 0, **term: Any) -> dict[str, Any]:
    return {"name": "c0", "ready": False, "restartCount": restarts, "state": {"terminated": term}}


READY = [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]


@pytest.mark.parametrize(
    ("obj", "status", "ready"),
    [
        (pod("Pending"), "Pending", "0/1"),
        (pod("Pending", [waiting("ContainerCreating")]), "ContainerCreating", "0/1"),
        (pod("Pending", [waiting("ErrImageNeverPull")]), "ErrImageNeverPull", "0/1"),
        (pod("Running", [waiting("CrashLoopBackOff", 4)]), "CrashLoopBackOff", "0/1"),
        (pod("Running", [waiting("RunContainerError")]), "RunContainerError", "0/1"),
        (pod("Running", [running()], conditions=READY), "Running", "1/1"),
        (pod("Running", [running(False)]), "Running", "0/1"),
        (pod("Succeeded", [terminated(reason="Completed", exitCode=0)]), "Completed", "0/1"),
        (pod("Failed", [terminated(reason="Error", exitCode=1)]), "Error", "0/1"),
        (pod("Failed", [terminated(exitCode=2)]), "ExitCode:2", "0/1"),
        (pod("Failed", [terminated(exitCode=137, signal=9)]), "Signal:9", "0/1"),
        (pod("Failed", reason="Evicted"), "Evicted", "0/1"),
        (pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
         "SchedulingGated", "0/1"),
        # one container completed, the other still running: Running with Ready, else NotReady
        (pod("Running", [terminated(reason="Completed", exitCode=0), {**running(), "name": "c1"}], containers=2,
             conditions=READY), "Running", "1/2"),
        (pod("Running", [terminated(reason="Completed", exitCode=0), {**running(), "name": "c1"}], containers=2),
         "NotReady", "1/2"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_pod_status_column(obj: dict[str, Any], status: str, ready: str) -> None:
    row = cells("", "pods", obj)
    assert row[1:3] == [ready, status]


INIT = [{"name": "setup", "image": "i"}, {"name": "migrate", "image": "i"}]


@pytest.mark.parametrize(
    ("init_statuses", "status"),
    [
        ([{"name": "setup", "restartCount": 0, "state": {"running": {}}}], "Init:0/2"),
        ([{"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
          {"name": "migrate", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}], "Init:1/2"),
        ([{"name": "setup", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
         "Init:CrashLoopBackOff"),
        ([{"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
         "Init:Error"),
        ([{"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}], "Init:ExitCode:3"),
        ([{"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 3, "signal": 15}}}],
         "Init:Signal:15"),
    ],
)  # fmt: skip
def test_pod_init_container_status(init_statuses: list[dict[str, Any]], status: str) -> None:
    obj = pod("Pending", [waiting("PodInitializing")], init=INIT, init_statuses=init_statuses)
    assert cells("", "pods", obj)[2] == status


def test_sidecar_init_container_counts_as_a_container() -> None:
    init = [{"name": "proxy", "image": "i", "restartPolicy": "Always"}]
    init_status = [{"name": "proxy", "started": True, "ready": True, "restartCount": 1,
                    "lastState": {"terminated": {"finishedAt": ago(90)}}, "state": {"running": {}}}]  # fmt: skip
    obj = pod("Running", [running()], init=init, init_statuses=init_status, conditions=READY)
    assert cells("", "pods", obj)[1:4] == ["2/2", "Running", "1 (90s ago)"]


def test_restarts_show_when_the_last_one_was() -> None:
    last = {"lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(42)}}}
    obj = pod("Running", [waiting("CrashLoopBackOff", 3, **last)])
    assert cells("", "pods", obj)[3] == "3 (42s ago)"
    assert cells("", "pods", pod("Running", [waiting("CrashLoopBackOff", 3)]))[3] == "3"  # no termination time known


def test_terminating_and_unknown() -> None:
    deleting = pod("Running", [running()], conditions=READY)
    deleting["metadata"]["deletionTimestamp"] = ago(1)
    assert pod_status(deleting)[0] == "Terminating"
    lost = pod("Running", [running()], reason="NodeLost")
    lost["metadata"]["deletionTimestamp"] = ago(1)
    assert pod_status(lost)[0] == "Unknown"
    done = pod("Succeeded", [terminated(reason="Completed", exitCode=0)])
    done["metadata"]["deletionTimestamp"] = ago(1)
    assert pod_status(done)[0] == "Completed"  # terminal pods are not "Terminating"


def test_pod_columns_wide_cells_and_row_conditions() -> None:
    assert header("", "pods") == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                                  "Readiness Gates"]  # fmt: skip
    assert header("", "pods", wide=False) == ["Name", "Ready", "Status", "Restarts", "Age"]
    obj = pod("Running", [running()], conditions=[*READY, {"type": "lb/ready", "status": "True"}],
              podIPs=[{"ip": "127.1.0.5"}], podIP="127.1.0.5")  # fmt: skip
    obj["spec"].update(nodeName="node-1", readinessGates=[{"conditionType": "lb/ready"}, {"conditionType": "x"}])
    assert cells("", "pods", obj) == ["p", "1/1", "Running", "0", "5m", "127.1.0.5", "node-1", "<none>", "1/2"]
    assert cells("", "pods", pod("Pending"))[5:] == ["<none>", "<none>", "<none>", "<none>"]
    table = to_table(res("", "pods"), [pod("Succeeded", [terminated(reason="Completed", exitCode=0)])], now=NOW)
    assert table["rows"][0]["conditions"][0]["reason"] == "Succeeded"
    assert "conditions" not in to_table(res("", "pods"), [pod()], now=NOW)["rows"][0]


# --------------------------------------------------------------------------- workloads


def template(*images: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}}  # fmt: skip


def test_deployment_columns() -> None:
    assert header("apps", "deployments") == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers",
                                             "Images", "Selector"]  # fmt: skip
    deploy = {"metadata": {"name": "web", "creationTimestamp": ago(182)},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "a"}},
                       "template": template("wasi-demo:1", "sidecar:2")},
              "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}  # fmt: skip
    assert cells("apps", "deployments", deploy) == ["web", "2/3", 3, 2, "3m2s", "c0,c1", "wasi-demo:1,sidecar:2",
                                                    "app=web,tier=a"]  # fmt: skip
    fresh = {"metadata": {"name": "new"}, "spec": {"template": template("i")}}
    assert cells("apps", "deployments", fresh)[:5] == ["new", "0/1", 0, 0, "<unknown>"]


def test_replicaset_columns() -> None:
    rs = {"metadata": {"name": "web-5d4f", "creationTimestamp": ago(7200)},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"},
                   "matchExpressions": [{"key": "pod-template-hash", "operator": "In", "values": ["5d4f"]}]},
                   "template": template("img")},
          "status": {"replicas": 2, "readyReplicas": 1}}  # fmt: skip
    assert header("apps", "replicasets", wide=False) == ["Name", "Desired", "Current", "Ready", "Age"]
    assert cells("apps", "replicasets", rs) == ["web-5d4f", 2, 2, 1, "120m", "c0", "img",
                                                "app=web,pod-template-hash in (5d4f)"]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "status", "meta", "expected"),
    [
        ({"completions": 1}, {"succeeded": 1, "startTime": ago(200), "completionTime": ago(75),
                              "conditions": [{"type": "Complete", "status": "True"}]}, {}, ["Complete", "1/1", "2m5s"]),
        ({"completions": 3}, {"startTime": ago(30), "conditions": [{"type": "Failed", "status": "True"}]}, {},
         ["Failed", "0/3", "30s"]),
        ({"parallelism": 2}, {"succeeded": 1, "startTime": ago(10)}, {}, ["Running", "1/1 of 2", "10s"]),
        ({}, {}, {}, ["Running", "0/1", ""]),
        ({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, {}, ["Suspended", "0/1", ""]),
        ({}, {"conditions": [{"type": "FailureTarget", "status": "True"}]}, {}, ["FailureTarget", "0/1", ""]),
        ({}, {}, {"deletionTimestamp": ago(1)}, ["Terminating", "0/1", ""]),
    ],
)  # fmt: skip
def test_job_status_completions_duration(spec, status, meta, expected) -> None:
    job = {"metadata": {"name": "j", "creationTimestamp": ago(300), **meta},
           "spec": {**spec, "template": template("busybox")}, "status": status}  # fmt: skip
    assert header("batch", "jobs", wide=False) == ["Name", "Status", "Completions", "Duration", "Age"]
    row = cells("batch", "jobs", job)
    assert row[1:4] == expected
    assert row[4] == "5m" and row[7] == "<none>"


# --------------------------------------------------------------------------- networking


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({"type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
          "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "web"}}, {},
         ["ClusterIP", "10.43.0.10", "<none>", "80/TCP", "app=web"]),
        ({"type": "NodePort", "clusterIPs": ["10.43.0.11"], "externalIPs": ["1.2.3.4"],
          "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}, {},
         ["NodePort", "10.43.0.11", "1.2.3.4", "80:30080/TCP,53/UDP", "<none>"]),
        ({"type": "LoadBalancer", "clusterIPs": ["10.43.0.12"],
          "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31000}]},
         {}, ["LoadBalancer", "10.43.0.12", "<pending>", "443:31000/TCP", "<none>"]),
        ({"type": "LoadBalancer", "clusterIPs": ["10.43.0.12"], "ports": []},
         {"loadBalancer": {"ingress": [{"ip": "192.168.1.9"}, {"hostname": "lb.example"}]}},
         ["LoadBalancer", "10.43.0.12", "192.168.1.9,lb.example", "<none>", "<none>"]),
        ({"type": "ExternalName", "externalName": "db.example.com"}, {},
         ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"]),
        ({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "x"}}, {},
         ["ClusterIP", "None", "<none>", "<none>", "app=x"]),
    ],
)  # fmt: skip
def test_service_columns(spec, status, expected) -> None:
    assert header("", "services") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    svc = {"metadata": {"name": "svc", "creationTimestamp": ago(40)}, "spec": spec, "status": status}
    row = cells("", "services", svc)
    assert row[1:5] + row[6:] == expected and row[5] == "40s"


def test_endpoints_and_endpointslices() -> None:
    many = {"metadata": {"name": "web", "creationTimestamp": ago(5)},
            "subsets": [{"addresses": [{"ip": f"127.1.0.{i}"} for i in range(1, 5)],
                         "ports": [{"port": 8080, "protocol": "TCP"}]}]}  # fmt: skip
    assert cells("", "endpoints", many) == ["web", "127.1.0.1:8080,127.1.0.2:8080,127.1.0.3:8080 + 1 more...", "5s"]
    assert cells("", "endpoints", {"metadata": {"name": "e"}})[1] == "<none>"
    headless = {"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "127.1.0.9"}]}]}
    assert cells("", "endpoints", headless)[1] == "127.1.0.9"
    v6 = {"metadata": {"name": "v6"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}
    assert cells("", "endpoints", v6)[1] == "[fd00::1]:80"
    slice_ = {"metadata": {"name": "web-abc", "creationTimestamp": ago(5)}, "addressType": "IPv4",
              "ports": [{"name": "http", "port": 8080}, {"name": "named"}, {}],
              "endpoints": [{"addresses": ["127.1.0.1"]}, {"addresses": ["127.1.0.2"]}]}  # fmt: skip
    assert header("discovery.k8s.io", "endpointslices") == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert cells("discovery.k8s.io", "endpointslices", slice_) == ["web-abc", "IPv4", "8080,named,*",
                                                                   "127.1.0.1,127.1.0.2", "5s"]  # fmt: skip
    empty = {"metadata": {"name": "e"}, "addressType": "IPv4"}
    assert cells("discovery.k8s.io", "endpointslices", empty)[2:4] == ["<unset>", "<unset>"]


# --------------------------------------------------------------------------- config, cluster, rbac


def test_configmaps_secrets_namespaces_serviceaccounts_runtimeclasses() -> None:
    meta = {"name": "x", "creationTimestamp": ago(3 * 86400)}
    assert cells("", "configmaps", {"metadata": meta, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}) == [
        "x",
        2,
        "3d",
    ]
    assert header("", "secrets") == ["Name", "Type", "Data", "Age"]
    assert cells("", "secrets", {"metadata": meta, "type": "Opaque", "data": {"k": "dg=="}}) == ["x", "Opaque", 1, "3d"]
    assert cells("", "namespaces", {"metadata": meta, "status": {"phase": "Terminating"}}) == ["x", "Terminating", "3d"]
    assert cells("", "serviceaccounts", {"metadata": meta}) == ["x", 0, "3d"]
    assert header("node.k8s.io", "runtimeclasses") == ["Name", "Handler", "Age"]
    assert cells("node.k8s.io", "runtimeclasses", {"metadata": meta, "handler": "wasmedge"}) == ["x", "wasmedge", "3d"]


def test_node_columns() -> None:
    node = {"metadata": {"name": "sandbox-1", "creationTimestamp": ago(86400 + 7200),
                         "labels": {"node-role.kubernetes.io/control-plane": "true",
                                    "node-role.kubernetes.io/master": "",
                                    "kubernetes.io/role": "lab", "node-role.kubernetes.io/": "x"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.10.1"},
                                     {"type": "Hostname", "address": "sandbox-1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.5-labkit", "osImage": "labkit sandbox (simulated)",
                                    "kernelVersion": "", "containerRuntimeVersion": "containerd://2.0.0"}}}  # fmt: skip
    assert header("", "nodes", wide=False) == ["Name", "Status", "Roles", "Age", "Version"]
    assert cells("", "nodes", node) == ["sandbox-1", "Ready,SchedulingDisabled", "control-plane,lab,master", "26h",
                                        "v1.32.5-labkit", "127.0.10.1", "<none>", "labkit sandbox (simulated)",
                                        "<unknown>", "containerd://2.0.0"]  # fmt: skip
    assert cells("", "nodes", {"metadata": {"name": "n"}})[1:3] == ["Unknown", "<none>"]
    not_ready = {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert cells("", "nodes", not_ready)[1] == "NotReady"


def test_event_columns_core_and_events_k8s_io() -> None:
    assert header("", "events", wide=False) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    event = {"metadata": {"name": "p.17a", "namespace": "default"}, "type": "Warning", "reason": "BackOff",
             "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{main}"},
             "message": "Back-off restarting failed container\n", "source": {"component": "kubelet", "host": "node-1"},
             "firstTimestamp": ago(600), "lastTimestamp": ago(12), "count": 7}  # fmt: skip
    assert cells("", "events", event) == ["12s", "Warning", "BackOff", "pod/p", "spec.containers{main}",
                                          "kubelet, node-1", "Back-off restarting failed container", "10m", 7,
                                          "p.17a"]  # fmt: skip
    singleton = {"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled", "involvedObject": {"kind": "Node"},
                 "eventTime": "2025-06-01T11:59:00.000000Z", "reportingComponent": "default-scheduler"}  # fmt: skip
    assert cells("", "events", singleton)[:4] + cells("", "events", singleton)[7:9] == ["60s", "Normal", "Scheduled",
                                                                                         "node", "60s", 1]  # fmt: skip
    new_api = {"metadata": {"name": "e2"}, "type": "Normal", "reason": "Pulled", "note": "pulled image",
               "regarding": {"kind": "Pod", "name": "p"}, "eventTime": "2025-06-01T11:58:00.000000Z",
               "reportingController": "kubelet", "reportingInstance": "node-2",
               "series": {"count": 4, "lastObservedTime": "2025-06-01T11:59:55.000000Z"}}  # fmt: skip
    assert cells("events.k8s.io", "events", new_api) == ["5s", "Normal", "Pulled", "pod/p", "", "kubelet, node-2",
                                                         "pulled image", "2m", 4, "e2"]  # fmt: skip


def test_rbac_columns() -> None:
    binding = {"metadata": {"name": "watcher", "creationTimestamp": ago(90)},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "svc-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "watcher", "namespace": "lab"},
                            {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                            {"kind": "Group", "name": "devs"}]}  # fmt: skip
    assert header("rbac.authorization.k8s.io", "rolebindings") == ["Name", "Role", "Age", "Users", "Groups",
                                                                   "ServiceAccounts"]  # fmt: skip
    expected = ["watcher", "Role/svc-reader", "90s", "alice, bob", "devs", "lab/watcher"]
    assert cells("rbac.authorization.k8s.io", "rolebindings", binding) == expected
    assert cells("rbac.authorization.k8s.io", "clusterrolebindings", binding) == expected
    role = {"metadata": {"name": "svc-reader", "creationTimestamp": "2025-05-30T08:00:00Z"}, "rules": []}
    roles = to_table(res("rbac.authorization.k8s.io", "roles"), [role], now=NOW)
    assert [(c["name"], c["type"]) for c in roles["columnDefinitions"]] == [("Name", "string"), ("Created At", "date")]
    assert roles["rows"][0]["cells"] == ["svc-reader", "2025-05-30T08:00:00Z"]
    assert cells("rbac.authorization.k8s.io", "clusterroles", role)[1] == "2025-05-30T08:00:00Z"


def test_built_in_kinds_without_a_printer_get_the_default_convertors_columns() -> None:
    """printers.go has no printer for LimitRange: the API server's default convertor answers NAME, CREATED AT."""
    limits = res("", "limitranges")
    table = to_table(limits, [{"metadata": {"name": "l", "creationTimestamp": "2025-05-30T08:00:00Z"}}], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert table["rows"][0]["cells"] == ["l", "2025-05-30T08:00:00Z"]


# --------------------------------------------------------------------------- the Table envelope


def test_table_envelope_and_row_objects() -> None:
    obj = {"metadata": {"name": "cfg", "namespace": "lab", "uid": "u", "resourceVersion": "42",
                        "creationTimestamp": ago(1)}, "data": {"a": "1"}}  # fmt: skip
    table = to_table(res("", "configmaps"), [obj], now=NOW, list_rv="43", continue_token="tok")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "43", "continue": "tok"}
    assert table["columnDefinitions"][0] == {"name": "Name", "type": "string", "format": "name",
                                             "description": table["columnDefinitions"][0]["description"],
                                             "priority": 0}  # fmt: skip
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                          "metadata": obj["metadata"]}  # fmt: skip
    full = to_table(res("", "configmaps"), [obj], include_object="Object")["rows"][0]["object"]
    assert full == {"kind": "ConfigMap", "apiVersion": "v1", **obj}
    assert "object" not in to_table(res("", "configmaps"), [obj], include_object="None")["rows"][0]
    assert "continue" not in to_table(res("", "configmaps"), [])["metadata"]


def test_table_event_is_a_one_row_table() -> None:
    obj = pod("Running", [running()], conditions=READY)
    obj["metadata"]["resourceVersion"] = "99"
    table = table_event(res("", "pods"), "MODIFIED", obj, now=NOW)
    assert table["kind"] == "Table" and table["metadata"]["resourceVersion"] == "99"
    assert [r["cells"][:3] for r in table["rows"]] == [["p", "1/1", "Running"]]
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"}
    assert table_event(res("", "pods"), "ERROR", status) is status


def test_every_served_resource_has_cells_for_every_column() -> None:
    now = datetime.now(UTC)
    for resource in RESOURCES:
        table = to_table(resource, [{"metadata": {"name": "x", "creationTimestamp": ago(1)}}], now=now)
        assert len(table["rows"][0]["cells"]) == len(table["columnDefinitions"]), resource.plural


# --------------------------------------------------------------------------- real kubectl


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """kubectl 1.32 against a real HTTP server that answers list requests with these Tables."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    from tests.sandbox.test_protobuf import Capture  # the same stub API server the protobuf tests use

    recent = datetime.now(UTC) - timedelta(minutes=15, seconds=30)  # "15m" for a whole minute
    stamp = recent.strftime("%Y-%m-%dT%H:%M:%SZ")
    crash = pod("Running", [waiting("CrashLoopBackOff", 5)], podIPs=[{"ip": "127.1.0.7"}])
    crash["metadata"].update(name="llm", creationTimestamp=stamp)
    crash["spec"]["nodeName"] = "node-2"
    role = {"metadata": {"name": "svc-reader", "namespace": "default", "creationTimestamp": "2025-05-30T08:00:00Z"}}
    server = Capture({
        "/api/v1/namespaces/default/pods": (res("", "pods"), [crash]),
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles":
            (res("rbac.authorization.k8s.io", "roles"), [role]),
    })  # fmt: skip
    server.start()
    home = tmp_path_factory.mktemp("kubectl-tables")

    def get(*args: str) -> list[list[str]]:
        command = [KUBECTL, f"--server={server.url}", f"--cache-dir={home}", "-n", "default", "get", *args]
        env = {**os.environ, "HOME": str(home)}
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
        assert result.returncode == 0, result.stderr
        return [line.split("  ") for line in result.stdout.splitlines()]

    yield get
    server.stop()


def _words(rows: list[list[str]]) -> list[list[str]]:
    return [[cell.strip() for cell in row if cell.strip()] for row in rows]


def test_kubectl_prints_pod_columns(served) -> None:
    assert _words(served("pods")) == [["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                                      ["llm", "0/1", "CrashLoopBackOff", "5", "15m"]]  # fmt: skip


def test_kubectl_prints_wide_pod_columns(served) -> None:
    rows = _words(served("pods", "-o", "wide"))
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert rows[1] == ["llm", "0/1", "CrashLoopBackOff", "5", "15m", "127.1.0.7", "node-2", "<none>", "<none>"]


def test_kubectl_prints_roles_created_at(served) -> None:
    assert _words(served("roles")) == [["NAME", "CREATED AT"], ["svc-reader", "2025-05-30T08:00:00Z"]]
