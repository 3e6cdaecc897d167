"""Cluster operations against a real sandbox daemon: apply, lab cleanup, waits, logs, events, describe, delete, show.

Pods bound to ``played-node`` (a node no sandbox agent runs) get their status from the test, which plays that
node's kubelet through the status subresource; the rest run for real on the sandbox node.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from labkit.errors import ApiError, InvalidManifest, LabkitError, WaitFailed
from labkit.manifests import runtime_class, service, wasm_deployment, wasm_job
from labkit.operations import (
    Lab,
    apply,
    cleanup,
    delete,
    describe,
    events,
    lab,
    logs,
    open_lab,
    show,
    wait_for,
)

IMAGE = "docker.io/labkit/wasi-demo:latest"
PLAYED_NODE = "played-node"


@pytest.fixture(scope="module")
def cluster(sandbox_cluster):
    return sandbox_cluster


@pytest.fixture(scope="module")
def ns(cluster) -> str:
    """A namespace left in place (the daemon goes at the end of the module)."""
    apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}})
    return "ops"


def namespace_exists(cluster, name: str) -> bool:
    return any(n.metadata.name == name for n in cluster.core.list_namespace().items)


def played_pod(cluster, ns: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod on the played node: Pending until the test writes its status."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"nodeName": PLAYED_NODE, "containers": [{"name": "app", "image": IMAGE}]},
    }
    return apply(cluster, body, namespace=ns)[0]


def set_status(
    cluster,
    ns: str,
    name: str,
    phase: str,
    state: dict[str, Any],
    *,
    ready: bool = False,
    restarts: int = 0,
    last_state: dict[str, Any] | None = None,
) -> None:
    cluster.core.patch_namespaced_pod_status(
        name,
        ns,
        {
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": IMAGE,
                        "imageID": "",
                        "ready": ready,
                        "restartCount": restarts,
                        "state": state,
                        "lastState": last_state or {},
                    }
                ],
            }
        },
    )


def later(seconds: float, fn, *args, **kw) -> threading.Thread:
    def run():
        time.sleep(seconds)  # the node reports a little after the wait started: the wait must be watching
        fn(*args, **kw)

    t = threading.Thread(target=run)
    t.start()
    return t


# -------------------------------------------------------------------------------------------------- apply, lab
def test_apply_is_idempotent_labels_everything_and_the_lab_removes_it_all(cluster):
    objs = [
        runtime_class("ops-wasm", handler="wasmedge"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}},
        service("web", "demo", 80, 8080),
    ]
    with lab(cluster, "ops-apply") as the_lab:
        assert the_lab.namespace == "lab-ops-apply"
        first = the_lab.apply(objs)
        again = the_lab.apply(objs)
        assert [o["metadata"]["resourceVersion"] for o in first] == [o["metadata"]["resourceVersion"] for o in again]
        for o in again:
            assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "labkit"
            assert o["metadata"]["labels"]["labkit.io/lab"] == "ops-apply"
            assert [m["manager"] for m in o["metadata"]["managedFields"]] == ["labkit"]
        assert "namespace" not in again[0]["metadata"] and again[1]["metadata"]["namespace"] == "lab-ops-apply"
        assert "labels" not in objs[1]["metadata"]  # the caller's dicts are not touched
        changed = the_lab.apply({**objs[1], "data": {"a": "2"}})[0]
        assert changed["data"] == {"a": "2"}
    assert not namespace_exists(cluster, "lab-ops-apply")
    assert "ops-wasm" not in {rc.metadata.name for rc in cluster.node.list_runtime_class().items}


def test_apply_yaml_documents_in_the_given_namespace(cluster, ns):
    text = """
apiVersion: v1
kind: ConfigMap
metadata: {name: from-yaml-1}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: from-yaml-2}
"""
    applied = apply(cluster, text, namespace=ns)
    assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in applied] == [
        ("from-yaml-1", ns),
        ("from-yaml-2", ns),
    ]
    assert applied[0]["metadata"]["labels"] == {"app.kubernetes.io/part-of": "labkit"}


def test_apply_refuses_bad_input_and_applies_nothing_when_one_document_is_rejected(cluster, ns):
    with pytest.raises(InvalidManifest, match="does not parse") as bad_yaml:
        apply(cluster, "kind: ConfigMap\n  metadata: [", namespace=ns)
    assert "line" in str(bad_yaml.value)
    with pytest.raises(InvalidManifest, match="no kind 'Deploymnet'"):
        apply(cluster, {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}, namespace=ns)
    with pytest.raises(InvalidManifest, match=r"lacks metadata\.name"):
        apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, namespace=ns)
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first-of-two"}}
    bad = wasm_deployment("second-of-two", IMAGE)
    bad["spec"]["selector"]["matchLabels"] = {"app": "someone-else"}
    with pytest.raises(ApiError) as rejected:
        apply(cluster, [good, bad], namespace=ns)
    assert "Deployment/second-of-two" in str(rejected.value) and "nothing was applied" in str(rejected.value)
    assert rejected.value.code == 422
    assert "first-of-two" not in {cm.metadata.name for cm in cluster.core.list_namespaced_config_map(ns).items}


def test_lab_cleans_up_after_a_failed_step_and_keep_leaves_it(cluster):
    def failing_step(the_lab: Lab) -> None:
        the_lab.apply(
            [runtime_class("ops-fail-rc"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]
        )
        assert namespace_exists(cluster, "lab-ops-fail")
        raise RuntimeError("a step failed")

    with pytest.raises(RuntimeError, match="a step failed"), lab(cluster, "ops-fail") as the_lab:
        failing_step(the_lab)
    assert not namespace_exists(cluster, "lab-ops-fail")
    assert "ops-fail-rc" not in {rc.metadata.name for rc in cluster.node.list_runtime_class().items}

    with lab(cluster, "ops-keep", namespace="ops-kept", keep=True) as kept:
        kept.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert namespace_exists(cluster, "ops-kept")
    assert cleanup(cluster, "ops-keep") == ["namespace/ops-kept"]
    assert not namespace_exists(cluster, "ops-kept")


def test_an_open_lab_runs_its_undo_steps_newest_first_then_deletes_its_objects(cluster):
    the_lab = open_lab(cluster, "ops-open", timeout=60)
    assert namespace_exists(cluster, "lab-ops-open")
    scratch = the_lab.workdir
    (scratch / "image.tar").write_bytes(b"x")
    steps: list[object] = []
    the_lab.on_close(lambda: steps.append(("late", namespace_exists(cluster, "lab-ops-open"))))
    early = the_lab.on_close(steps.append, "early")
    early()  # run by hand, so closing does not run it again
    assert steps == ["early"]
    the_lab.close()
    assert steps == ["early", ("late", True)]  # the undo steps ran while the namespace was still there
    assert not namespace_exists(cluster, "lab-ops-open") and not scratch.exists()
    the_lab.close()  # closing again does nothing
    assert steps == ["early", ("late", True)]


def test_a_lab_left_open_by_a_killed_kernel_starts_clean_next_time(cluster):
    first = open_lab(cluster, "ops-again", timeout=60)
    first.apply(
        [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-the-first-run"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ops-again"}},
        ]
    )
    # no close: the kernel died before its exit hook ran; the next run of the same lab starts clean
    second = open_lab(cluster, "ops-again", timeout=60)
    try:
        assert [c.metadata.name for c in cluster.core.list_namespaced_config_map(second.namespace).items] in (
            [],
            ["kube-root-ca.crt"],
        )
        assert "ops-again" not in [r.metadata.name for r in cluster.rbac.list_cluster_role().items]
    finally:
        second.close()
        first.close()  # its exit hook would otherwise run after the test's sandbox is gone


def test_undo_on_failure_closes_the_lab_and_lets_the_error_through(cluster):
    the_lab = open_lab(cluster, "ops-undo", timeout=60)
    undone: list[str] = []
    the_lab.on_close(undone.append, "node restored")
    with the_lab.undo_on_failure():
        the_lab.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine"}})
    assert namespace_exists(cluster, "lab-ops-undo") and undone == []
    with pytest.raises(LabkitError, match="a step failed"), the_lab.undo_on_failure():
        raise LabkitError("a step failed")
    assert undone == ["node restored"] and not namespace_exists(cluster, "lab-ops-undo")


def test_an_open_lab_closes_when_the_interpreter_exits(cluster):
    """A notebook that stops at a failing cell still leaves nothing: the kernel's exit closes the lab."""
    code = (
        "import labkit; cluster = labkit.connect('sandbox'); "
        "labkit.open_lab(cluster, 'ops-atexit', timeout=60); print('opened')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "opened" in done.stdout, done.stderr
    assert not namespace_exists(cluster, "lab-ops-atexit")


def test_apply_never_labels_what_labkit_did_not_create(cluster):
    """k3s creates RuntimeClasses for the shims it detects: a lab may apply to them but must not delete them."""
    cluster.node.create_runtime_class({"metadata": {"name": "preexisting"}, "handler": "wasmedge"})
    with lab(cluster, "ops-foreign") as the_lab:
        [applied] = the_lab.apply(runtime_class("preexisting", handler="wasmedge"))
        assert "labkit.io/lab" not in (applied["metadata"].get("labels") or {})
    assert cluster.node.read_runtime_class("preexisting").handler == "wasmedge"


def test_lab_delete_refuses_what_the_lab_did_not_create(cluster):
    """The sandbox ships k3s's RuntimeClasses (k3s manifests/runtimes.yaml), installed or not; a lab keeps off them."""
    shipped = {rc.metadata.name: rc.handler for rc in cluster.node.list_runtime_class().items}
    k3s_list = ["nvidia", "nvidia-experimental", "crun", "lunatic", "slight", "spin", "wws", "wasmedge", "wasmer"]
    assert all(shipped.get(name) == name for name in [*k3s_list, "wasmtime"]), shipped
    other_lab = runtime_class("other-labs-rc", handler="wasmedge")
    apply(cluster, other_lab, lab="ops-other")  # labelled for another lab
    with lab(cluster, "ops-refuse") as the_lab:
        for name in ("wasmtime", "other-labs-rc"):
            with pytest.raises(LabkitError, match=f"runtimeclass/{name} is not labelled labkit.io/lab=ops-refuse"):
                the_lab.delete("RuntimeClass", name)
        the_lab.apply(runtime_class("own-rc", handler="wasm"))
        assert the_lab.delete("RuntimeClass", "own-rc") is True  # what the lab made, it may delete
    assert cluster.node.read_runtime_class("wasmtime").handler == "wasmtime"
    assert cluster.node.read_runtime_class("other-labs-rc").handler == "wasmedge"
    cleanup(cluster, "ops-other")


def test_lab_kubectl_shows_the_command_and_the_real_answer(cluster, monkeypatch):
    with lab(cluster, "ops-kubectl") as the_lab:
        the_lab.apply(runtime_class("ops-kubectl-rc", handler="wasmedge"))
        shown = the_lab.kubectl("get", "runtimeclass", "ops-kubectl-rc", "-o", "name", namespaced=False)
        assert shown.splitlines() == [
            "$ kubectl get runtimeclass ops-kubectl-rc -o name",
            "runtimeclass.node.k8s.io/ops-kubectl-rc",
        ]
        missing = the_lab.kubectl("get", "pod", "nosuch")
        assert missing.startswith("$ kubectl get pod nosuch -n lab-ops-kubectl\n")
        assert 'pods "nosuch" not found' in missing  # kubectl's own error, as a learner would see it
        monkeypatch.setenv("PATH", "/nonexistent")  # no kubectl: the command alone, and no error
        assert the_lab.kubectl("get", "pods").splitlines() == [
            "$ kubectl get pods -n lab-ops-kubectl",
            "(kubectl is not installed here: on k3s this is the command to type)",
        ]


def test_lab_with_running_pods_is_gone_after_exit(cluster):
    with lab(cluster, "ops-running", timeout=30) as the_lab:
        the_lab.apply([runtime_class(), wasm_deployment("demo", IMAGE)])
        the_lab.wait_for("Deployment", "demo", timeout=60)
    assert not namespace_exists(cluster, "lab-ops-running")


def test_lab_refuses_a_namespace_that_is_not_a_lab(cluster):
    cluster.core.create_namespace({"metadata": {"name": "someones-work"}})
    with (
        pytest.raises(LabkitError, match="not a labkit lab namespace"),
        lab(cluster, "ops-x", namespace="someones-work"),
    ):
        pass
    assert namespace_exists(cluster, "someones-work")


# -------------------------------------------------------------------------------------------------- waiting
def test_wait_for_a_pod_to_become_ready_as_the_node_reports_it(cluster, ns, capsys):
    played_pod(cluster, ns, "becomes-ready")
    node = later(0.5, set_status, cluster, ns, "becomes-ready", "Running", {"running": {}}, ready=True)
    [final] = wait_for(cluster, "Pod", "becomes-ready", namespace=ns, timeout=30)
    node.join()
    assert final["status"]["phase"] == "Running"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("waiting for pod/becomes-ready to be Ready: pod/becomes-ready Pending")
    assert lines[-1].endswith("pod/becomes-ready Running, Ready")


def test_wait_for_stops_at_crash_loop_with_the_diagnosis(cluster, ns):
    played_pod(cluster, ns, "crashes")
    node = later(
        0.5,
        set_status,
        cluster,
        ns,
        "crashes",
        "Running",
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
        restarts=3,
        last_state={"terminated": {"reason": "Error", "exitCode": 2}},
    )
    start = time.monotonic()
    with pytest.raises(WaitFailed) as failed:
        wait_for(cluster, "Pod", "crashes", namespace=ns, timeout=60)
    node.join()
    assert time.monotonic() - start < 30  # it stopped at the failure, not at the timeout
    assert failed.value.diagnosis is not None
    assert failed.value.diagnosis.signature == "crash-loop"
    assert "pod/crashes will not become Ready" in str(failed.value) and "exit code 2" in str(failed.value)


def test_wait_for_times_out_with_what_it_last_saw(cluster, ns):
    played_pod(cluster, ns, "stays-pending")
    with pytest.raises(WaitFailed, match=r"did not become Ready within 2 s \(last: pod/stays-pending Pending\)") as e:
        wait_for(cluster, "Pod", "stays-pending", namespace=ns, timeout=2)
    assert e.value.diagnosis is not None and e.value.diagnosis.signature is None


def test_wait_for_a_phase_of_every_selected_pod(cluster, ns):
    for name in ("batch-a", "batch-b"):
        played_pod(cluster, ns, name, labels={"batch": "one"})
    done = {"terminated": {"reason": "Completed", "exitCode": 0}}

    def both_succeed() -> None:
        for name in ("batch-a", "batch-b"):
            set_status(cluster, ns, name, "Succeeded", done)

    node = later(0.3, both_succeed)
    finals = wait_for(cluster, "Pod", "batch=one", namespace=ns, phase="Succeeded", timeout=30)
    node.join()
    assert sorted(p["metadata"]["name"] for p in finals) == ["batch-a", "batch-b"]
    with pytest.raises(LabkitError, match="exactly one of name"):
        wait_for(cluster, "Pod", "batch-a", selector="batch=one", namespace=ns)


# -------------------------------------------------------------------------------------------------- real workloads
def test_deployment_rollout_logs_scale_and_delete_on_the_sandbox_node(cluster, ns):
    apply(cluster, [runtime_class(), wasm_deployment("demo", IMAGE)], namespace=ns)
    [d] = wait_for(cluster, "Deployment", "demo", namespace=ns, timeout=60)
    assert d["status"]["availableReplicas"] == 1
    text = logs(cluster, "deployment/demo", namespace=ns, follow_seconds=2.5)
    assert "[wasi-demo]" in text

    apply(cluster, wasm_deployment("demo", IMAGE, replicas=2), namespace=ns)
    wait_for(cluster, "Deployment", "demo", namespace=ns, timeout=60)
    both = logs(cluster, "app=demo", namespace=ns, tail=1)
    assert both.count("==> pod/demo-") == 2
    followed = logs(cluster, "app=demo", namespace=ns, follow_seconds=1.5, tail=1).split("==> pod/demo-")[1:]
    assert len(followed) == 2 and all("[wasi-demo]" in block for block in followed)

    summary = describe(cluster, "deploy", "demo", namespace=ns)
    assert (
        summary.fields["replicas"].startswith("2 desired, 2 updated") and summary.fields["runtimeClass"] == "wasmedge"
    )
    assert any(e["reason"] == "ScalingReplicaSet" for e in summary.events)
    assert str(summary).startswith("Deployment/demo (namespace ops)\n  replicas: 2 desired")

    assert delete(cluster, "Deployment", "demo", namespace=ns, timeout=60) is True
    assert [p.metadata.name for p in cluster.core.list_namespaced_pod(ns, label_selector="app=demo").items] == []
    assert delete(cluster, "Deployment", "demo", namespace=ns) is False


def test_jobs_complete_or_fail_with_their_exit_code(cluster, ns):
    apply(
        cluster,
        [
            runtime_class(),
            wasm_job("echo", IMAGE, args=["echo", "hello from a job"]),
            wasm_job("exit3", IMAGE, args=["exit", "3"]),
        ],
        namespace=ns,
    )
    wait_for(cluster, "Job", "echo", namespace=ns, timeout=60)
    assert "hello from a job" in logs(cluster, "job/echo", namespace=ns)
    with pytest.raises(WaitFailed) as failed:
        wait_for(cluster, "Job", "exit3", namespace=ns, timeout=60)
    assert "job 'exit3' ended Failed" in str(failed.value)
    assert failed.value.diagnosis is not None
    assert failed.value.diagnosis.signature == "exit-nonzero" and "code 3" in failed.value.diagnosis.summary
    wait_for(cluster, "Job", "exit3", namespace=ns, condition="Failed", timeout=10)


# ---------------------------------------------------------------------------------- logs, events, describe, show
def test_logs_errors_say_what_to_do(cluster, ns):
    with pytest.raises(ApiError) as missing:
        logs(cluster, "no-such-pod", namespace=ns)
    assert missing.value.code == 404 and "kubectl get pods" in str(missing.value)
    played_pod(cluster, ns, "not-started")
    with pytest.raises(ApiError) as waiting:
        logs(cluster, "not-started", namespace=ns)
    assert waiting.value.code == 400 and "wait_for" in str(waiting.value.fix)
    with pytest.raises(ApiError) as previous:
        logs(cluster, "not-started", namespace=ns, previous=True)
    assert "drop previous=True" in str(previous.value.fix)
    with pytest.raises(LabkitError, match="no pod matches 'app=nobody'"):
        logs(cluster, "app=nobody", namespace=ns)


def test_events_and_describe_of_a_pod(cluster, ns):
    played_pod(cluster, ns, "described")
    set_status(
        cluster,
        ns,
        "described",
        "Running",
        {"waiting": {"reason": "CrashLoopBackOff"}},
        restarts=4,
        last_state={"terminated": {"reason": "Error", "exitCode": 137}},
    )
    for i, reason in enumerate(("Pulled", "BackOff")):
        cluster.core.create_namespaced_event(
            ns,
            {
                "metadata": {"name": f"described.{i}"},
                "reason": reason,
                "type": "Normal" if i == 0 else "Warning",
                "message": f"message {i}",
                "lastTimestamp": f"2026-01-01T10:00:0{i}Z",
                "involvedObject": {"kind": "Pod", "name": "described", "namespace": ns},
            },
        )
    found = events(cluster, "pod/described", namespace=ns)
    assert [(e["reason"], e["object"]) for e in found] == [("Pulled", "Pod/described"), ("BackOff", "Pod/described")]
    d = describe(cluster, "pod", "described", namespace=ns)
    assert d.fields["node"] == PLAYED_NODE and d.fields["phase"] == "Running"
    assert d.containers[0] | {} == {
        "name": "app",
        "image": IMAGE,
        "state": "waiting",
        "reason": "CrashLoopBackOff",
        "restarts": 4,
        "exit code": 137,
        "ready": False,
    }
    assert "Warning BackOff: message 1" in str(d) and "CrashLoopBackOff" in d._repr_html_()


def test_show_gives_what_a_learner_writes(cluster, ns):
    live = apply(cluster, wasm_deployment("shown", IMAGE, replicas=0), namespace=ns)[0]
    text = str(show(live))
    for noise in (
        "managedFields",
        "uid:",
        "resourceVersion",
        "creationTimestamp",
        "status:",
        "terminationMessagePath",
        "dnsPolicy",
        "revisionHistoryLimit",
        "imagePullPolicy",
    ):
        assert noise not in text, noise
    assert text.startswith("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shown\n")
    assert "runtimeClassName: wasmedge" in text
    assert "<span" in show(live)._repr_html_()
    assert str(show([live, live])).count("---\n") == 1


# -------------------------------------------------------------------------------------------------- progress views
def test_progress_is_plain_outside_a_frontend_and_widgets_on_request(monkeypatch, capsys):
    from labkit import widgets

    monkeypatch.delenv("LABKIT_PROGRESS", raising=False)
    assert widgets.has_frontend() is False  # pytest, like papermill, is no frontend
    view = widgets.progress("waiting")
    view.update("one")
    view.update("one")
    view.close("two")
    assert [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["waiting: one", "waiting: two"]

    monkeypatch.setenv("LABKIT_PROGRESS", "widget")
    assert widgets.has_frontend() is True
    board = widgets.progress("rollout")
    assert isinstance(board, widgets.WidgetProgress)
    pod = {
        "metadata": {"name": "demo-1"},
        "spec": {"containers": [{"name": "demo"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "demo",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        },
    }
    board.update("1 of 2 available", [pod])
    assert "1 of 2 available" in board.line.value and "rollout" in board.line.value
    assert "<td>demo-1</td><td>Running</td><td>0/1</td><td>2</td><td>CrashLoopBackOff</td>" in board.board.value


def test_docstring_examples():
    import doctest

    import labkit.operations.describing

    result = doctest.testmod(labkit.operations.describing, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_the_same_operations_through_a_kubeconfig_context(cluster, ns):
    """The kubeconfig backend (a real cluster's door) runs the same code: here pointed at the sandbox's context."""
    from labkit.cluster import connect

    other = connect("kubeconfig", context=cluster.context, kubeconfig=cluster.kubeconfig)
    assert other.backend == "kubeconfig"
    played_pod(other, ns, "via-kubeconfig")
    node = later(0.3, set_status, other, ns, "via-kubeconfig", "Running", {"running": {}}, ready=True)
    [final] = wait_for(other, "Pod", "via-kubeconfig", namespace=ns, timeout=30)
    node.join()
    assert final["status"]["phase"] == "Running"

    # a running pod goes only once its node confirms the containers stopped: play that node too
    def node_confirms():
        deadline = time.monotonic() + 20
        while (
            getattr(other.core.read_namespaced_pod("via-kubeconfig", ns).metadata, "deletion_timestamp", None) is None
        ):
            assert time.monotonic() < deadline, "the pod was never deleted"
            time.sleep(0.1)
        other.core.delete_namespaced_pod("via-kubeconfig", ns, grace_period_seconds=0)

    confirm = later(0, node_confirms)
    assert delete(other, "pod", "via-kubeconfig", namespace=ns, timeout=30) is True
    confirm.join()
    assert "via-kubeconfig" not in {p.metadata.name for p in other.core.list_namespaced_pod(ns).items if p.metadata}


def test_delete_reports_an_object_that_does_not_go(cluster, ns):
    played_pod(cluster, ns, "never-confirmed")
    set_status(cluster, ns, "never-confirmed", "Running", {"running": {}}, ready=True)
    with pytest.raises(WaitFailed, match="pod/never-confirmed was still there 2 s after deletion") as stuck:
        delete(cluster, "Pod", "never-confirmed", namespace=ns, timeout=2)
    assert "a node that is down cannot confirm" in str(stuck.value.fix)
