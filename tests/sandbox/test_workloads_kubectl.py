"""DaemonSets, StatefulSets, CronJobs and ``kubectl top`` with the real kubectl 1.32 against the session sandbox
(2 nodes, real kubelets running wasm); the wording checked is kubectl's own (rollout_status.go) and the
controllers' (stateful_pod_control.go, cronjob_controllerv2.go)."""

from __future__ import annotations

import json

import wasmtime

from labkit.wasm.apps import module_path
from tests.sandbox.kubectl_harness import Kubectl, eventually, wasm_workload

WASM_PAGE = 65536

WORKLOADS = (
    wasm_workload("DaemonSet", "agent") + "---\n" + wasm_workload("StatefulSet", "web", replicas=3, serviceName="web")
)


def reasons(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    """The messages of the events about *name*, oldest first."""
    out = kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    items = sorted(json.loads(out)["items"], key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [f"{e['reason']}: {e['message']}" for e in items]


def test_daemonset_and_statefulset_roll_out_and_the_statefulset_scales_down_from_the_top(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=WORKLOADS)
    out = kubectl("rollout", "status", "-n", namespace, "daemonset/agent", "--timeout=60s").stdout
    assert 'daemon set "agent" successfully rolled out' in out
    out = kubectl("rollout", "status", "-n", namespace, "statefulset/web", "--timeout=60s").stdout
    # the defaulted partition (0) makes kubectl take its partitioned branch, as on k3s
    assert "partitioned roll out complete: 3 new pods have been updated..." in out
    ds_nodes = kubectl("get", "pods", "-n", namespace, "-l", "app=agent", "-o", "jsonpath={.items[*].spec.nodeName}")
    assert sorted(ds_nodes.stdout.split()) == ["labkit-agent-0", "labkit-server-0"]
    ds = json.loads(kubectl("get", "ds", "agent", "-n", namespace, "-o", "json").stdout)["status"]
    assert ds["desiredNumberScheduled"] == ds["numberReady"] == ds["updatedNumberScheduled"] == 2
    web = kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert sorted(web.split()) == ["web-0", "web-1", "web-2"]
    created = [m for m in reasons(kubectl, namespace, "web") if m.startswith("SuccessfulCreate")]
    assert created == [f"SuccessfulCreate: create Pod web-{i} in StatefulSet web successful" for i in range(3)]
    sts = json.loads(kubectl("get", "sts", "web", "-n", namespace, "-o", "json").stdout)["status"]
    revisions = kubectl("get", "controllerrevisions", "-n", namespace, "-o", "name").stdout.split()
    assert f"controllerrevision.apps/{sts['currentRevision']}" in revisions and sts["readyReplicas"] == 3

    kubectl("scale", "-n", namespace, "statefulset/web", "--replicas=1")
    eventually(
        lambda: " ".join(kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "name").stdout.split()) + ".",
        "pod/web-0.",
    )
    deleted = [m for m in reasons(kubectl, namespace, "web") if m.startswith("SuccessfulDelete")]
    assert deleted == [
        "SuccessfulDelete: delete Pod web-2 in StatefulSet web successful",
        "SuccessfulDelete: delete Pod web-1 in StatefulSet web successful",
    ]


def test_create_job_from_cronjob_makes_a_manual_job_the_cronjob_owns(kubectl: Kubectl, namespace: str) -> None:
    kubectl(
        "create", "cronjob", "tick", "-n", namespace, "--image=docker.io/labkit/wasi-demo:latest",
        "--schedule=0 0 1 1 *", "--", "/wasi-demo.wasm", "echo", "tick",
    )  # fmt: skip
    kubectl("patch", "cronjob", "tick", "-n", namespace, "-p", '{"spec":{"jobTemplate":{"spec":{"template":'
            '{"spec":{"runtimeClassName":"wasmedge"}}}}}}')  # fmt: skip
    kubectl("create", "job", "by-hand", "-n", namespace, "--from=cronjob/tick")
    job = json.loads(kubectl("get", "job", "by-hand", "-n", namespace, "-o", "json").stdout)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/by-hand", "--timeout=60s")
    assert "tick" in kubectl("logs", "-n", namespace, "job/by-hand").stdout
    assert "UnexpectedJob: Saw a job that the controller did not create or forgot: by-hand" in reasons(
        kubectl, namespace, "tick"
    )
    got = kubectl("get", "cronjob", "tick", "-n", namespace).stdout
    assert "0 0 1 1 *" in got


def _module_memory() -> int:
    """The wasi-demo module's initial linear memory, read from the module itself."""
    module = wasmtime.Module(wasmtime.Engine(), module_path("wasi-demo").read_bytes())
    memory = next(e.type for e in module.exports if isinstance(e.type, wasmtime.MemoryType))
    return int(memory.limits.min) * WASM_PAGE


def test_kubectl_top_shows_the_real_usage_of_nodes_and_wasm_pods(kubectl: Kubectl, namespace: str) -> None:
    kubectl("run", "busy", "-n", namespace, "--image=docker.io/labkit/wasi-demo:latest",
            "--overrides", '{"spec":{"runtimeClassName":"wasmedge"}}')  # fmt: skip
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/busy", "--timeout=60s")
    # two samples make a rate: metrics appear after one sampling period (kubelet.usage.SAMPLE_PERIOD_S)
    top = eventually(lambda: kubectl("top", "pod", "-n", namespace, check=False).stdout, "busy", timeout=30)
    assert top.split("\n")[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    raw = json.loads(kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/busy").stdout)
    assert raw["kind"] == "PodMetrics" and raw["window"].endswith("s")
    (container,) = raw["containers"]
    memory = container["usage"]["memory"]
    assert memory.endswith("Ki")
    size = int(memory[:-2]) * 1024
    assert size % WASM_PAGE == 0 and size >= _module_memory()  # the guest's linear memory, page by page
    assert container["usage"]["cpu"] == "0" or container["usage"]["cpu"][-1] in "num0123456789"
    nodes = eventually(lambda: kubectl("top", "nodes", check=False).stdout, "labkit-agent-0")
    assert "labkit-server-0" in nodes and "CPU(%)" in nodes
    node = json.loads(kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/labkit-server-0").stdout)
    assert node["kind"] == "NodeMetrics" and node["usage"]["cpu"] != "0"
    missing = kubectl("top", "pod", "nope", "-n", namespace, check=False)
    assert f'podmetrics.metrics.k8s.io "{namespace}/nope" not found' in missing.stderr


def test_kubectl_create_pdb_is_stored_and_its_status_kept(kubectl: Kubectl, namespace: str) -> None:
    # kubectl create pdb posts protobuf (policy/v1 generated.proto: minAvailable 1, selector 2)
    kubectl("create", "pdb", "guard", "-n", namespace, "--selector=app=nothing-yet", "--min-available=1")
    pdb = json.loads(kubectl("get", "pdb", "guard", "-n", namespace, "-o", "json").stdout)
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "nothing-yet"}}}
    out = eventually(
        lambda: kubectl("get", "pdb", "guard", "-n", namespace, "-o", "jsonpath={.status.observedGeneration}").stdout,
        "1",
    )
    assert out == "1"
    status = json.loads(kubectl("get", "pdb", "guard", "-n", namespace, "-o", "json").stdout)["status"]
    assert (status["expectedPods"], status["desiredHealthy"], status["disruptionsAllowed"]) == (0, 1, 0)
    assert "NoPods: No matching pods found" in reasons(kubectl, namespace, "guard")
