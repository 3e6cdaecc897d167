"""``kubectl debug`` against the sandbox with the real kubectl: ``pods/ephemeralcontainers`` is served, the
node starts the ephemeral container in the pod with the pod's runtime, and upstream's validation refuses what
the API server refuses (issue 11)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.sandbox.kubectl_harness import eventually

pytestmark = pytest.mark.slow

DEMO = "docker.io/labkit/wasi-demo:latest"


def _wasm_pod(kubectl, namespace: str, name: str = "p1") -> None:
    kubectl("run", name, "-n", namespace, f"--image={DEMO}", "--restart=Never",
            "--overrides", '{"apiVersion": "v1", "spec": {"runtimeClassName": "wasmedge"}}')  # fmt: skip
    kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=60s")


def _ephemeral_status(kubectl, namespace: str, pod: str, container: str) -> dict:
    got = json.loads(kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
    statuses = got["status"].get("ephemeralContainerStatuses") or []
    return next((s for s in statuses if s["name"] == container), {})


def test_kubectl_debug_adds_a_wasm_container_that_runs_and_logs(kubectl, namespace) -> None:
    _wasm_pod(kubectl, namespace)
    added = kubectl("debug", "pod/p1", "-n", namespace, f"--image={DEMO}", "-c", "dbg", "--profile=general",
                    "--arguments-only", "--", "echo", "hello", "from", "debug")  # fmt: skip
    assert added.returncode == 0, added.stderr
    eventually(lambda: json.dumps(_ephemeral_status(kubectl, namespace, "p1", "dbg")), '"reason": "Completed"')
    status = _ephemeral_status(kubectl, namespace, "p1", "dbg")
    assert status["state"]["terminated"]["exitCode"] == 0 and status["ready"] is False and "started" not in status
    logs = kubectl("logs", "pod/p1", "-n", namespace, "-c", "dbg").stdout
    assert sorted(logs.splitlines()) == ["exiting", "hello from debug"]  # stdout, and stderr's "exiting"
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=p1", "-o", "json")
    paths = {(e["reason"], e["involvedObject"].get("fieldPath")) for e in json.loads(events.stdout)["items"]}
    assert ("Started", "spec.ephemeralContainers{dbg}") in paths
    pod = json.loads(kubectl("get", "pod", "p1", "-n", namespace, "-o", "json").stdout)
    assert pod["status"]["phase"] == "Running"  # the pod's own container goes on; the debug one does not count
    assert pod["spec"]["ephemeralContainers"][0]["terminationMessagePolicy"] == "File"


def test_kubectl_debug_it_with_a_linux_image_waits_and_reports_why(kubectl, namespace) -> None:
    """busybox in a wasm pod: the sandbox's node cannot pull it (its registry serves labkit's images only),
    and kubectl 1.32 waits, printing the container's waiting message, as it does for any image that does not
    come; the user ends it (here: the test, after it printed the reason)."""
    _wasm_pod(kubectl, namespace)
    debug = subprocess.Popen(
        [kubectl.binary, "debug", "-it", "pod/p1", "-n", namespace, "--image=busybox", "-c", "bb", "--profile=general",
         "--", "sh"],
        env=kubectl.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        status = eventually(
            lambda: json.dumps(_ephemeral_status(kubectl, namespace, "p1", "bb")), "ImagePullBackOff", timeout=30
        )
        time.sleep(1)  # kubectl prints the message of the watch event it got
    finally:
        debug.terminate()
        _out, err = debug.communicate(timeout=10)
    assert "ephemeral containers are disabled" not in err and "panic" not in err
    assert 'Warning: container bb: Back-off pulling image "busybox"' in err, err
    assert "docker.io/library/busybox:latest: not found" in status
    assert json.loads(kubectl("get", "pod", "p1", "-n", namespace, "-o", "json").stdout)["status"]["phase"] == "Running"


def test_a_labkit_python_image_in_a_wasm_pod_runs_natively(kubectl, namespace) -> None:
    """A Python program labkit ships runs under any handler, as the shim runs a Linux image as a Linux container."""
    _wasm_pod(kubectl, namespace)
    kubectl("debug", "pod/p1", "-n", namespace, "--image=docker.io/labkit/echo-server:latest", "-c", "echo",
            "--profile=general")  # fmt: skip
    eventually(lambda: json.dumps(_ephemeral_status(kubectl, namespace, "p1", "echo")), '"running"', timeout=60)


def test_invalid_ephemeral_containers_are_refused_with_upstreams_words(kubectl, namespace, raw) -> None:
    _wasm_pod(kubectl, namespace)
    path = f"/api/v1/namespaces/{namespace}/pods/p1/ephemeralcontainers"
    code, pod = raw("GET", path)
    assert code == 200 and pod["kind"] == "Pod"
    bad = {**pod, "spec": {**pod["spec"], "ephemeralContainers": [
        {"name": "bad", "image": DEMO, "ports": [{"containerPort": 80}], "readinessProbe": {"tcpSocket": {"port": 80}}}
    ]}}  # fmt: skip
    refused = kubectl("replace", "--raw", path, "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode == 1
    assert (
        'The Pod "p1" is invalid: \n* spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral '
        "Container\n* spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container"
    ) in refused.stderr
    same_name = {"spec": {"ephemeralContainers": [{"name": "p1", "image": DEMO}]}}
    code, status = raw("PATCH", path, same_name, content_type="application/strategic-merge-patch+json")
    assert code == 422 and status["details"]["causes"][0] == {
        "reason": "FieldValueDuplicate", "message": 'Duplicate value: "p1"', "field": "spec.ephemeralContainers[0].name"
    }  # fmt: skip
    kubectl("debug", "pod/p1", "-n", namespace, f"--image={DEMO}", "-c", "dbg", "--profile=general")
    change = {"spec": {"ephemeralContainers": [{"name": "dbg", "image": "docker.io/labkit/wasi-demo:compat"}]}}
    code, status = raw("PATCH", path, change, content_type="application/strategic-merge-patch+json")
    assert code == 422
    assert status["message"].startswith(
        'Pod "p1" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers "dbg" may not be '
        "changed\n"
    )
    code, status = raw("PATCH", path, [{"op": "remove", "path": "/spec/ephemeralContainers/0"}],
                       content_type="application/json-patch+json")  # fmt: skip
    assert code == 422 and 'existing ephemeral containers "dbg" may not be removed' in status["message"]
    create = json.loads(kubectl("get", "pod", "p1", "-n", namespace, "-o", "json").stdout)
    create = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2"}, "spec": create["spec"]}
    create["spec"].pop("nodeName")
    refused = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(create), check=False)
    assert "spec.ephemeralContainers: Forbidden: cannot be set on create" in refused.stderr
