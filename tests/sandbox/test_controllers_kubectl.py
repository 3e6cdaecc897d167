"""The controllers in the real daemon, driven and read with the real kubectl 1.32.

The test plays the kubelet through the API (pod status via the status subresource). Its pods carry a
nodeSelector no sandbox node has, so they stay unscheduled and no node agent touches their status.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Self

NO_NODE = {"labkit.io/test-only": "no-kubelet"}


def _pods(api: Any, ns: str, selector: str) -> list[Any]:
    from kubernetes import client

    return client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items


def set_pod_status(
    api: Any,
    ns: str,
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    ip: str | None = None,
    exit_code: int | None = None,
) -> None:
    """What a kubelet reports: phase, podIP, the Ready condition and the container's state."""
    from kubernetes import client

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state: dict[str, Any] = {"running": {"startedAt": now}}
    if exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": now,
                "finishedAt": now,
            }
        }
    status: dict[str, Any] = {
        "phase": phase,
        "startTime": now,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}],
        "containerStatuses": [
            {
                "name": "main",
                "image": "demo:1",
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": ready,
                "state": state,
            }
        ],
    }
    if ip:
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
    client.CoreV1Api(api).patch_namespaced_pod_status(name, ns, {"status": status})


class FakeKubelet:
    """A thread that reports every new pod of a namespace Running and Ready with its own IP."""

    def __init__(self, api: Any, ns: str) -> None:
        self.api, self.ns = api, ns
        self.ips: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pod in _pods(self.api, self.ns, ""):
                name = pod.metadata.name
                if name in self.ips or pod.metadata.deletion_timestamp:
                    continue
                self.ips[name] = f"10.42.9.{len(self.ips) + 2}"
                set_pod_status(self.api, self.ns, name, ip=self.ips[name])
            self._stop.wait(0.1)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.1)


def create_unschedulable(kubectl: Any, ns: str, *generator: str) -> None:
    """``kubectl create <generator> --dry-run=client -o json``, given a nodeSelector no node has, then created."""
    obj = json.loads(kubectl("create", *generator, "-n", ns, "--dry-run=client", "-o", "json").stdout)
    obj["spec"]["template"]["spec"]["nodeSelector"] = NO_NODE
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj))


def rollout_status(kubectl: Any, ns: str, name: str = "web") -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = kubectl(
        "rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=20s", check=False
    )
    return result


def test_deployment_rollout_scale_describe_restart_undo(kubectl: Any, namespace: str, api_client: Any) -> None:
    create_unschedulable(kubectl, namespace, "deployment", "web", "--image=demo:1", "--replicas=3")
    # rollout status waits (watching) until the pods are reported ready
    waiting = subprocess.Popen(
        [kubectl.binary, "rollout", "status", "deployment/web", "-n", namespace, "--timeout=20s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env,
    )
    # not rolled out while no pod is ready (the first line comes before any pod is reported)
    assert waiting.stdout is not None
    assert waiting.stdout.readline().startswith('Waiting for deployment "web" rollout to finish: ')
    wait_for("3 pods", lambda: len(_pods(api_client, namespace, "app=web")) == 3)
    with FakeKubelet(api_client, namespace):
        out, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 0, err
        assert out.strip().endswith('deployment "web" successfully rolled out')

        kubectl("scale", "deployment/web", "--replicas=5", "-n", namespace)
        result = rollout_status(kubectl, namespace)
        assert result.returncode == 0, result.stderr
        rs = json.loads(kubectl("get", "rs", "-n", namespace, "-o", "json").stdout)["items"]
        assert len(rs) == 1
        rs_name = rs[0]["metadata"]["name"]
        table = kubectl("get", "rs,pods", "-n", namespace).stdout
        assert f"replicaset.apps/{rs_name}" in table
        assert sum(1 for line in table.splitlines() if line.startswith(f"pod/{rs_name}-")) == 5
        described = kubectl("describe", "deployment", "web", "-n", namespace).stdout
        assert f"Scaled up replica set {rs_name} from 0 to 3" in described
        assert f"Scaled up replica set {rs_name} from 3 to 5" in described
        assert "MinimumReplicasAvailable" in described and "NewReplicaSetAvailable" in described
        assert f"NewReplicaSet:   {rs_name} (5/5 replicas created)" in described

        kubectl("rollout", "restart", "deployment/web", "-n", namespace)
        result = rollout_status(kubectl, namespace)
        assert result.returncode == 0, result.stderr
        names = {
            r["metadata"]["name"]: r
            for r in json.loads(kubectl("get", "rs", "-n", namespace, "-o", "json").stdout)["items"]
        }
        assert len(names) == 2 and names[rs_name]["spec"]["replicas"] == 0
        history = kubectl("rollout", "history", "deployment/web", "-n", namespace).stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

        kubectl("rollout", "undo", "deployment/web", "-n", namespace)
        result = rollout_status(kubectl, namespace)
        assert result.returncode == 0, result.stderr
        back = json.loads(kubectl("get", "rs", rs_name, "-n", namespace, "-o", "json").stdout)
        assert back["spec"]["replicas"] == 5  # undo scaled the first ReplicaSet up again, as revision 3
        assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_job_completes_and_kubectl_wait_sees_it(kubectl: Any, namespace: str, api_client: Any) -> None:
    create_unschedulable(kubectl, namespace, "job", "ok", "--image=demo:1")
    (pod,) = wait_for("job pod", lambda: _pods(api_client, namespace, "job-name=ok"))
    assert pod.metadata.name.startswith("ok-")
    set_pod_status(api_client, namespace, pod.metadata.name, phase="Succeeded", ready=False, exit_code=0)
    result = kubectl("wait", "--for=condition=complete", "job/ok", "-n", namespace, "--timeout=20s")
    assert result.stdout.strip() == "job.batch/ok condition met"
    job = json.loads(kubectl("get", "job", "ok", "-n", namespace, "-o", "json").stdout)
    assert job["status"]["succeeded"] == 1 and job["status"]["completionTime"]
    described = kubectl("describe", "job", "ok", "-n", namespace).stdout
    assert f"Created pod: {pod.metadata.name}" in described and "Job completed" in described


def test_job_fails_with_backoff_limit_exceeded(kubectl: Any, namespace: str, api_client: Any) -> None:
    obj = json.loads(
        kubectl("create", "job", "bad", "--image=demo:1", "-n", namespace, "--dry-run=client", "-o", "json").stdout
    )
    obj["spec"]["backoffLimit"] = 0
    obj["spec"]["template"]["spec"]["nodeSelector"] = NO_NODE
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    (pod,) = wait_for("job pod", lambda: _pods(api_client, namespace, "job-name=bad"))
    set_pod_status(api_client, namespace, pod.metadata.name, phase="Failed", ready=False, exit_code=3)
    result = kubectl("wait", "--for=condition=failed", "job/bad", "-n", namespace, "--timeout=20s")
    assert result.stdout.strip() == "job.batch/bad condition met"
    job = json.loads(kubectl("get", "job", "bad", "-n", namespace, "-o", "json").stdout)
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    assert job["status"]["failed"] == 1
    events = kubectl("describe", "job", "bad", "-n", namespace).stdout
    assert "BackoffLimitExceeded" in events and "Job has reached the specified backoff limit" in events


def test_endpoints_list_ready_pod_ips(kubectl: Any, namespace: str, api_client: Any) -> None:
    create_unschedulable(kubectl, namespace, "deployment", "web", "--image=demo:1", "--replicas=2", "--port=8080")
    kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", namespace)
    with FakeKubelet(api_client, namespace) as kubelet:
        wait_for("2 pods reported", lambda: len(kubelet.ips) == 2)
        ips = sorted(kubelet.ips.values())
        wait_for(
            "endpoints",
            lambda: (
                kubectl(
                    "get", "endpoints", "web", "-n", namespace, "-o", "jsonpath={.subsets[0].addresses[*].ip}"
                ).stdout.split()
                == ips
            ),
        )
    row = kubectl("get", "endpoints", "web", "-n", namespace).stdout.splitlines()[1]
    assert row.split()[1] == ",".join(f"{ip}:8080" for ip in ips)
    slices = json.loads(
        kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-n", namespace, "-o", "json").stdout
    )["items"]
    assert len(slices) == 1 and sorted(e["addresses"][0] for e in slices[0]["endpoints"]) == ips
    assert all(e["conditions"]["ready"] for e in slices[0]["endpoints"])
    described = kubectl("describe", "service", "web", "-n", namespace).stdout
    assert f"{ips[0]}:8080,{ips[1]}:8080" in described

    # a pod reported not ready leaves the addresses for notReadyAddresses
    name = next(n for n, ip in kubelet.ips.items() if ip == ips[0])
    set_pod_status(api_client, namespace, name, ready=False, ip=ips[0])
    wait_for(
        "not ready",
        lambda: (
            kubectl(
                "get", "endpoints", "web", "-n", namespace, "-o", "jsonpath={.subsets[0].notReadyAddresses[*].ip}"
            ).stdout.split()
            == [ips[0]]
        ),
    )
    kubectl("delete", "service", "web", "-n", namespace)
    wait_for(
        "endpoints gone",
        lambda: (
            kubectl("get", "endpoints,endpointslices", "-n", namespace, "-o", "name", check=False).stdout.strip() == ""
        ),
    )
