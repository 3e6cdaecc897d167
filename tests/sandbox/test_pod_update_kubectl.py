"""A pod's spec is fixed once created, but for its images and a few fields (upstream's ``ValidatePodUpdate``): a
learner who edits a pod's manifest and applies it again meets the same refusal in the sandbox as on k3s."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

POD = """apiVersion: v1
kind: Pod
metadata: {{name: fixed}}
spec:
  runtimeClassName: wasmedge
  containers:
  - {{name: demo, image: {image}, imagePullPolicy: IfNotPresent, ports: [{{containerPort: {port}}}]}}
{more}"""
DEMO = "docker.io/labkit/wasi-demo:latest"


def _apply(kubectl, namespace: str, *, image: str = DEMO, port: int = 80, more: str = ""):
    manifest = POD.format(image=image, port=port, more=more)
    return kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=False)


def test_an_edited_pod_is_refused_as_upstream_refuses_it_and_its_image_may_change(kubectl, namespace) -> None:
    assert _apply(kubectl, namespace).returncode == 0

    port_changed = _apply(kubectl, namespace, port=8080)
    assert port_changed.returncode == 1
    first = port_changed.stderr.splitlines()[0]
    assert first == (
        'The Pod "fixed" is invalid: spec: Forbidden: pod updates may not change fields other than '
        "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
        "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
        "(allow it to be set to 1 if it was previously negative)"
    ), port_changed.stderr
    assert "spec.containers" in port_changed.stderr  # labkit's diff names what differs

    sidecar = "  - {name: second, image: " + DEMO + "}\n"
    added = kubectl("apply", "-n", namespace, "-f", "-", check=False,
                    input=POD.format(image=DEMO, port=80, more="") + sidecar)  # fmt: skip
    assert "spec.containers: Forbidden: pod updates may not add or remove containers" in added.stderr, added.stderr

    stored = json.loads(kubectl("get", "pod", "fixed", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]

    image_changed = _apply(kubectl, namespace, image="docker.io/labkit/wasi-demo:v2")
    assert image_changed.returncode == 0, image_changed.stderr
    stored = json.loads(kubectl("get", "pod", "fixed", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["containers"][0]["image"] == "docker.io/labkit/wasi-demo:v2"


def test_a_deadline_may_be_lowered_never_raised_and_tolerations_only_added(kubectl, namespace) -> None:
    toleration = "  tolerations: [{key: lab, operator: Exists, effect: NoSchedule}]\n"
    assert _apply(kubectl, namespace, more="  activeDeadlineSeconds: 600\n").returncode == 0
    lowered = _apply(kubectl, namespace, more="  activeDeadlineSeconds: 300\n" + toleration)
    assert lowered.returncode == 0, lowered.stderr
    raised = _apply(kubectl, namespace, more="  activeDeadlineSeconds: 900\n" + toleration)
    assert "spec.activeDeadlineSeconds: Invalid value: 900: must be less than or equal to previous value" in (
        raised.stderr
    )
    dropped = _apply(kubectl, namespace, more="  activeDeadlineSeconds: 300\n")
    assert "spec: Forbidden: pod updates may not change fields other than" in dropped.stderr, dropped.stderr
