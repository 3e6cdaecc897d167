"""The sandbox kubelet over HTTPS: a real daemon (API server, scheduler, controllers), a real Kubelet, real wasm.

Each test starts a daemon that registers the nodes but runs no kubelet process
(``--no-kubelets``), then runs the node's :class:`Kubelet` on an event loop in a
background thread, with the node credentials the daemon wrote, so a test can reach
into it (restart its runtime, drop its connection). It speaks to the API server
only over HTTPS, as in its own process; tests/sandbox/test_node_processes.py runs
kubelets as processes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from labkit.containerd import ContainerdPaths, RuntimeSpec, runtime_tables
from labkit.host.crun_swap import crun_runtime_template
from labkit.imagestore import ImageStore
from labkit.sandbox import client as daemon
from labkit.sandbox.kubeclient import https
from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path
from labkit.sandbox.kubelet.agent import Kubelet
from labkit.sandbox.kubelet.failures import ContainerFailure
from labkit.sandbox.kubelet.images import ImageContent
from labkit.sandbox.kubelet.pod_workers import PodWorker
from labkit.sandbox.kubelet.podstate import go_duration, pod_phase
from labkit.sandbox.kubelet.runtime import crun_exec_failure, plan_launch
from labkit.sandbox.kubelet.volumes import ProjectedSources, container_env, prepare_volumes
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.wasm.oci import build_image

DEMO = "labkit/wasi-demo:latest"  # served by the simulated registry (runwasi layout)
COMPAT = "labkit/wasi-demo:compat"  # crun's compat layout: /wasi-demo.wasm in the rootfs
NODE = "labkit-server-0"
PODS = resource_path("v1", "pods", "default")
RUNTIMECLASSES = resource_path("node.k8s.io/v1", "runtimeclasses")


class Cluster:
    """A sandbox daemon without kubelet processes, and node *NODE*'s kubelet on a loop thread, over HTTPS."""

    def __init__(self, home: Path, nodes: int = 1) -> None:
        self.root = home
        args = [sys.executable, "-m", "labkit.sandbox.daemon", "--home", str(home), "--nodes", str(nodes)]
        home.mkdir(parents=True, exist_ok=True)
        with open(home / "daemon.log", "ab") as out:
            self.daemon = subprocess.Popen([*args, "--no-kubelets"], stdout=out, stderr=subprocess.STDOUT)
        self.info = self.wait_for(lambda: daemon.status(home), "the daemon to answer", timeout=30)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.admin = KubeClient(self.info.server, (home / "admin-token").read_text().strip(), home / "ca.crt")
        self.kubelet: Kubelet
        self.task: Any = None
        self.start_kubelet()

    def start_kubelet(self) -> None:
        token = (self.root / "kubelets" / NODE / "token").read_text().strip()

        async def start() -> None:
            client = KubeClient(self.info.server, token, self.root / "ca.crt", user_agent=f"kubelet ({NODE})")
            self.kubelet = Kubelet(client, NODE, self.root)
            self.task = asyncio.ensure_future(self.kubelet.run())

        self.run(start())
        self.wait_for(lambda: self.get(f"{RUNTIMECLASSES}/wasmedge"), "the kubelet's start")

    def stop_kubelet(self) -> None:
        async def stop() -> None:
            self.task.cancel()
            await asyncio.wait([self.task], timeout=5)
            await asyncio.sleep(0.05)  # the pod workers' own cancellations
            await self.kubelet.client.close()

        self.run(stop())

    def run(self, work: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run *work* on the cluster's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        self.stop_kubelet()
        self.run(self.admin.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        daemon.stop(home=self.root)
        self.daemon.wait(10)

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    # ---------------------------------------------------------------- the API, as the admin

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.run(self.admin.get(path))
        except ApiError as err:
            if err.code == 404:
                return None
            raise
        return found

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.run(self.admin.create(path, obj))
        return created

    def delete_pod(self, name: str) -> dict[str, Any]:
        deleted: dict[str, Any] = self.run(self.admin.delete(f"{PODS}/{name}"))
        return deleted

    def run_pod(self, name: str, image: str = DEMO, args: list[str] | None = None, **spec: Any) -> dict[str, Any]:
        container = {"name": "demo", "image": image, **({"args": args} if args else {}), **spec.pop("container", {})}
        meta = {"name": name, **({"annotations": spec.pop("annotations")} if "annotations" in spec else {})}
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"runtimeClassName": "wasmedge", "restartPolicy": "Never", "containers": [container], **spec},
        }
        if pod["spec"]["runtimeClassName"] is None:
            del pod["spec"]["runtimeClassName"]
        return self.create(PODS, pod)

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.get(f"{PODS}/{name}")

    def live(self, name: str) -> dict[str, Any]:
        """Pod *name*, which must exist."""
        pod = self.pod(name)
        assert pod is not None, f"pod {name} is gone"
        return pod

    def node(self, name: str = NODE) -> dict[str, Any]:
        node = self.get(resource_path("v1", "nodes", None, name))
        assert node is not None
        return node

    def container(self, name: str) -> dict[str, Any]:
        statuses = (self.pod(name) or {}).get("status", {}).get("containerStatuses") or [{}]
        return dict(statuses[0])

    def wait_phase(self, name: str, *phases: str, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_for(
            lambda: (p := self.pod(name)) and p.get("status", {}).get("phase") in phases and p,
            f"pod {name} in {phases}",
            timeout,
        )

    def wait_waiting(self, name: str, reason: str, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_for(
            lambda: (
                self.container(name).get("state", {}).get("waiting", {}).get("reason") == reason
                and self.container(name)
            ),
            f"{name} waiting {reason}",
            timeout,
        )

    def events(self, name: str) -> list[tuple[str, str, str]]:
        listed = self.get(resource_path("v1", "events", "default")) or {}
        return [
            (e["type"], e["reason"], e["message"])
            for e in listed.get("items") or ()
            if e["involvedObject"]["name"] == name
        ]

    def wait_event(self, name: str, reason: str, timeout: float = 10.0) -> str:
        return self.wait_for(
            lambda: next((m for _, r, m in self.events(name) if r == reason), None),
            f"event {reason} for {name}",
            timeout,
        )

    def log(self, name: str, restart: int = 0) -> str:
        pod = self.pod(name)
        assert pod is not None
        meta = pod["metadata"]
        path = self.root / "pod-logs" / f"default_{name}_{meta['uid']}" / "demo" / f"{restart}.log"
        return path.read_text() if path.exists() else ""

    def node_root(self, node: str = NODE) -> Path:
        return self.root / "nodes" / node

    def restart_node(self) -> Any:
        return self.run(self.kubelet.restart())

    def import_module(self, wasm: bytes, name: str, layout: str = "runwasi") -> str:
        built = build_image(wasm, name, "v1", layout, self.root / f"{name}.tar")
        ImageStore(self.root / "images").import_archive(built.path)
        return built.ref


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


def test_node_root_mirrors_a_k3s_node_with_the_wasmedge_shim(cluster: Cluster) -> None:
    root = cluster.node_root()
    shim = root / "usr/local/bin/containerd-shim-wasmedge-v1"
    assert "sandbox stand-in" in shim.read_text() and shim.stat().st_mode & 0o111
    config = ContainerdPaths(root).config.read_text()
    assert "io.containerd.wasmedge.v1" in config and "version = 3" in config
    # the k3s server's list (k3s manifests/runtimes.yaml), whatever the node has installed
    shipped = ["nvidia", "nvidia-experimental", "crun", "lunatic", "slight", "spin", "wws", "wasmedge", "wasmer"]
    expected = {name: name for name in [*shipped, "wasmtime"]}

    def handlers() -> dict[str, str]:
        return {rc["metadata"]["name"]: rc["handler"] for rc in (cluster.get(RUNTIMECLASSES) or {})["items"]}

    cluster.wait_for(lambda: handlers() == expected, "the node to create k3s's RuntimeClasses", timeout=5)


def test_wasm_pod_runs_to_completion_with_status_events_and_logs(cluster: Cluster) -> None:
    cluster.run_pod("hello", args=["echo", "hello", "wasm"])
    pod = cluster.wait_phase("hello", "Succeeded")
    status = pod["status"]
    c = status["containerStatuses"][0]
    assert c["state"]["terminated"]["reason"] == "Completed" and c["state"]["terminated"]["exitCode"] == 0
    assert c["containerID"].startswith("containerd://") and len(c["containerID"]) == len("containerd://") + 64
    assert c["image"] == "docker.io/labkit/wasi-demo:latest" and c["imageID"].startswith("sha256:")
    assert status["podIP"].startswith("127.42.0.") and status["hostIP"] == "127.0.100.1" and status["startTime"]
    ready = next(x for x in status["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    assert "stdout F hello wasm" in cluster.log("hello") and "stderr F exiting" in cluster.log("hello")
    reasons = [r for _, r, _ in cluster.events("hello")]
    assert {"Scheduled", "Pulling", "Pulled", "Created", "Started"} <= set(reasons)
    pulled = cluster.wait_event("hello", "Pulled")
    assert (
        pulled.startswith('Successfully pulled image "labkit/wasi-demo:latest" in ') and "simulated registry" in pulled
    )
    assert ("Normal", "Created", "Created container: demo") in cluster.events("hello")


def test_exit_code_makes_the_pod_failed_with_reason_error(cluster: Cluster) -> None:
    cluster.run_pod("three", args=["exit", "3"])
    cluster.wait_phase("three", "Failed")
    terminated = cluster.container("three")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_running_pod_is_ready_then_killed_promptly_on_delete(cluster: Cluster) -> None:
    cluster.run_pod("daemon", restartPolicy="Always")
    pod = cluster.wait_for(
        lambda: (
            (p := cluster.pod("daemon"))
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            and p
        ),
        "Ready",
    )
    assert pod["status"]["phase"] == "Running" and "running" in pod["status"]["containerStatuses"][0]["state"]
    cluster.wait_for(lambda: "heartbeat 1" in cluster.log("daemon"), "a heartbeat in the log")
    started = time.monotonic()
    deleted = cluster.delete_pod("daemon")
    assert deleted["metadata"]["deletionGracePeriodSeconds"] == 30
    cluster.wait_for(lambda: cluster.pod("daemon") is None, "the pod to go", timeout=5)
    assert time.monotonic() - started < 3
    killing = [m for _, r, m in cluster.events("daemon") if r == "Killing"]
    assert killing == ["Stopping container demo"]
    time.sleep(0.2)
    assert "SandboxChanged" not in [r for _, r, _ in cluster.events("daemon")]  # no second life for a deleted pod


def test_a_kubelet_bug_in_one_pod_is_reported_and_the_pod_can_still_be_deleted(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: PodWorker) -> bool:
        raise RuntimeError("simulated kubelet bug")

    monkeypatch.setattr(PodWorker, "create_sandbox", broken)
    cluster.run_pod("buggy")
    message = cluster.wait_event("buggy", "FailedSync")
    assert "simulated kubelet bug" in message and "kubectl delete pod buggy" in message
    cluster.delete_pod("buggy")
    cluster.wait_for(lambda: cluster.pod("buggy") is None, "the pod to go", timeout=3)


def test_runtime_class_handler_missing_then_fixed_by_template_and_restart(cluster: Cluster) -> None:
    cluster.create(
        RUNTIMECLASSES,
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasm"}, "handler": "wasm"},
    )
    cluster.run_pod("mismatch", runtimeClassName="wasm", args=["echo", "ok"])
    message = cluster.wait_event("mismatch", "FailedCreatePodSandBox")
    assert message == (
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: "
        'no runtime for "wasm" is configured'
    )
    assert cluster.live("mismatch")["status"]["phase"] == "Pending"
    assert cluster.container("mismatch")["state"]["waiting"]["reason"] == "ContainerCreating"
    paths = ContainerdPaths(cluster.node_root())
    paths.template_v3.write_text(
        '{{ template "base" . }}\n' + runtime_tables(3, "wasm", RuntimeSpec("io.containerd.wasmedge.v1"))
    )
    cluster.run_pod("bystander", restartPolicy="Always")
    before = cluster.wait_for(
        lambda: "running" in cluster.container("bystander").get("state", {}) and cluster.container("bystander"),
        "a running pod",
    )
    info = cluster.restart_node()
    assert "wasm" in info.runtimes
    cluster.wait_phase("mismatch", "Succeeded", timeout=5)
    after = cluster.container("bystander")  # a k3s restart leaves running containers alone
    assert (after["containerID"], after["restartCount"]) == (before["containerID"], 0) and "running" in after["state"]


def test_arg0_that_is_not_wasm_fails_with_the_shims_wording_and_backs_off(cluster: Cluster) -> None:
    cluster.run_pod("arg0", image=COMPAT, restartPolicy="Always", container={"command": ["/wasi-demo"]})
    status = cluster.wait_waiting("arg0", "CrashLoopBackOff")
    message = status["lastState"]["terminated"]["message"]
    # runwasi's words exactly (executor.rs); its "Note: arg0 must be a path to a Wasm file" goes to the shim's
    # log only, and labkit's hint is nowhere in what the node reports
    assert message == (
        "failed to create containerd task: failed to create shim task: failed to create container: "
        "exec process failed with error error in executing process : wasmedge executor can't handle spec"
    )
    terminated = status["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"], status["restartCount"]) == ("StartError", 128, 1)
    failed = [m for t, r, m in cluster.events("arg0") if r == "Failed"]
    assert failed and failed[0] == f"Error: {message}"


def test_image_never_pull_and_pull_failures(cluster: Cluster) -> None:
    cluster.run_pod("never", image="wasi-demo:latest", container={"imagePullPolicy": "Never"})
    status = cluster.wait_waiting("never", "ErrImageNeverPull")
    assert (
        status["state"]["waiting"]["message"]
        == 'Container image "wasi-demo:latest" is not present with pull policy of Never'
    )
    cluster.run_pod("nopull", image="nosuch/app:v1")
    status = cluster.wait_waiting("nopull", "ErrImagePull")
    assert status["state"]["waiting"]["message"].startswith(
        'failed to pull and unpack image "docker.io/nosuch/app:v1": failed to resolve reference'
    )
    failed = next(m for _, r, m in cluster.events("nopull") if r == "Failed" and m.startswith("Failed to pull"))
    # the kubelet's words with containerd's message, nothing of labkit's inside (its hint goes to the kubelet log)
    assert failed == f'Failed to pull image "nosuch/app:v1": {status["state"]["waiting"]["message"]}'
    cluster.run_pod("badref", image="Not/A:valid:ref")
    status = cluster.wait_waiting("badref", "InvalidImageName")
    assert (
        'couldn\'t parse image name "Not/A:valid:ref": invalid reference format'
        in status["state"]["waiting"]["message"]
    )
    cluster.wait_waiting("nopull", "ImagePullBackOff", timeout=3)
    assert ("Normal", "BackOff", 'Back-off pulling image "nosuch/app:v1"') in cluster.events("nopull")
    cluster.delete_pod("nopull")  # a pod waiting out its back-off goes at once
    cluster.wait_for(lambda: cluster.pod("nopull") is None, "the backed-off pod to go", timeout=2)


UNKNOWN_IMPORT_WAT = """(module
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $compute (i32.const 0)))))"""


def test_unknown_import_exits_137_with_wasmedge_wording_then_crash_loop(cluster: Cluster) -> None:
    ref = cluster.import_module(bytes(wasmtime.wat2wasm(UNKNOWN_IMPORT_WAT)), "nn-app")
    cluster.run_pod("nn", image=ref, restartPolicy="Always", container={"imagePullPolicy": "Never"})
    status = cluster.wait_waiting("nn", "CrashLoopBackOff")
    assert (
        status["lastState"]["terminated"]["exitCode"] == 137 and status["lastState"]["terminated"]["reason"] == "Error"
    )
    assert status["state"]["waiting"]["message"].startswith(
        "back-off 10s restarting failed container=demo pod=nn_default("
    )
    log = cluster.log("nn")
    assert "[error] instantiation failed: unknown import, Code: 0x302" in log
    assert '"wasi_ephemeral_nn" , function name: "compute"' in log
    assert cluster.log("nn", 1), "the restart writes 1.log, which kubectl logs --previous reads next"
    uid = cluster.live("nn")["metadata"]["uid"]
    assert (
        "Warning",
        "BackOff",
        f"Back-off restarting failed container demo in pod nn_default({uid})",
    ) in cluster.events("nn")


def test_runc_cannot_exec_a_wasm_module(cluster: Cluster) -> None:
    cluster.run_pod("runc", image=COMPAT, runtimeClassName=None)  # the node's default runtime: runc
    cluster.wait_phase("runc", "Failed")
    terminated = cluster.container("runc")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)
    assert (
        'runc create failed: unable to start container process: error during container init: exec: "/wasi-demo.wasm": '
        "exec format error" in terminated["message"]
    )


def test_crun_runs_wasm_only_with_the_annotation_passed_through(cluster: Cluster) -> None:
    # the auto-detected crun passes no pod annotations: the wasm handler never sees the variant
    cluster.run_pod(
        "plain", image=COMPAT, runtimeClassName="crun", annotations={"module.wasm.image/variant": "compat-smart"}
    )
    cluster.wait_phase("plain", "Failed")
    # crun execs after the start: its error is a JSON line in the container's log, exit 1, reason Error
    terminated = cluster.container("plain")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Error", 1) and "message" not in terminated
    [line] = [json.loads(entry.split(" ", 3)[3]) for entry in cluster.log("plain").splitlines()]
    assert (line["msg"], line["level"]) == ("exec container process `/wasi-demo.wasm`: Exec format error", "error")
    assert ("Normal", "Started", "Started container demo") in cluster.events("plain")
    # notebook 02's lesson: a crun runtime with pod_annotations, plus the pod annotation
    paths = ContainerdPaths(cluster.node_root())
    paths.template_v3.write_text(crun_runtime_template(3, name="crun-wasm"))
    cluster.restart_node()
    cluster.create(
        RUNTIMECLASSES,
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": "crun-wasm"},
            "handler": "crun-wasm",
        },
    )
    cluster.run_pod(
        "smart",
        image=COMPAT,
        runtimeClassName="crun-wasm",
        args=["echo", "from", "crun"],
        annotations={"module.wasm.image/variant": "compat-smart"},
    )
    cluster.run_pod("bare", image=COMPAT, runtimeClassName="crun-wasm")
    cluster.run_pod(
        "exit3",
        image=COMPAT,
        runtimeClassName="crun-wasm",
        args=["exit", "3"],
        annotations={"module.wasm.image/variant": "compat-smart"},
    )
    cluster.wait_phase("smart", "Succeeded")
    assert "stdout F from crun" in cluster.log("smart")
    cluster.wait_phase("bare", "Failed")
    assert "exec container process `/wasi-demo.wasm`: Exec format error" in cluster.log("bare")
    # crun's WasmEdge handler exits 0 after any run that did not trap: proc_exit(3) is lost
    cluster.wait_phase("exit3", "Succeeded")
    assert cluster.container("exit3")["state"]["terminated"]["exitCode"] == 0


@pytest.mark.parametrize("arg0", ['/a "quoted" \\ path\n) (func $evil)', "/" + "x" * 70000 + ".wasm"])
def test_crun_exec_failure_writes_any_arg0_as_data_only(arg0: str) -> None:
    """arg0 comes from the manifest: whatever it holds, it ends up JSON-escaped in crun's log line, never as WAT."""
    lines: list[str] = []
    process = WasmContainer(ContainerSpec(crun_exec_failure(arg0), [arg0]), on_stderr=lines.append)
    process.start()
    assert process.wait(10) == 1
    line = "".join(lines)  # a line over 16 KiB reaches the log in parts, as containerd splits it
    assert json.loads(line)["msg"] == f"exec container process `{arg0}`: Exec format error"


def test_volumes_env_and_read_only_mounts(cluster: Cluster) -> None:
    cluster.create(
        resource_path("v1", "configmaps", "default"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hi"}},
    )
    (cluster.node_root() / "srv/ro").mkdir(parents=True)
    volumes = [
        {"name": "data", "hostPath": {"path": "/srv/data", "type": "DirectoryOrCreate"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "ro", "hostPath": {"path": "/srv/ro"}},
        {"name": "cfg", "configMap": {"name": "cfg"}},
    ]
    mounts = [
        {"name": "data", "mountPath": "/data"},
        {"name": "ro", "mountPath": "/ro", "readOnly": True},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "cfg", "mountPath": "/etc/cfg"},
    ]
    cluster.run_pod(
        "writer",
        args=["write", "/data/out.txt", "written", "by", "wasm"],
        volumes=volumes,
        container={"volumeMounts": mounts},
    )
    cluster.run_pod("ro", args=["write", "/ro/out.txt", "nope"], volumes=volumes, container={"volumeMounts": mounts})
    cluster.wait_phase("writer", "Succeeded")
    assert (cluster.node_root() / "srv/data/out.txt").read_text().strip() == "written by wasm"
    uid = cluster.live("writer")["metadata"]["uid"]
    projected = cluster.node_root() / "var/lib/kubelet/pods" / uid / "volumes/kubernetes.io~configmap/cfg/greeting"
    assert projected.read_text() == "hi"
    cluster.run_pod(
        "scratch", args=["write", "/scratch/note", "temp"], volumes=volumes, container={"volumeMounts": mounts}
    )
    cluster.wait_phase("scratch", "Succeeded")
    scratch_uid = cluster.live("scratch")["metadata"]["uid"]
    scratch = (
        cluster.node_root() / "var/lib/kubelet/pods" / scratch_uid / "volumes/kubernetes.io~empty-dir/scratch/note"
    )
    assert scratch.read_text().strip() == "temp"
    cluster.run_pod(
        "cfgwrite", args=["write", "/etc/cfg/new", "x"], volumes=volumes, container={"volumeMounts": mounts}
    )
    cluster.wait_phase("cfgwrite", "Failed")  # configMap volumes are read-only even without readOnly: true
    cluster.wait_phase("ro", "Failed")
    assert not (cluster.node_root() / "srv/ro/out.txt").exists()
    assert "stderr F " in cluster.log("ro")


def test_missing_configmap_volume_is_a_failed_mount(cluster: Cluster) -> None:
    cluster.run_pod("nocfg", volumes=[{"name": "cfg", "configMap": {"name": "absent"}}])
    assert (
        cluster.wait_event("nocfg", "FailedMount")
        == 'MountVolume.SetUp failed for volume "cfg" : configmap "absent" not found'
    )


def test_pod_ips_are_unique_and_released(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.run_pod(name, restartPolicy="Always")
    ips = {
        n: cluster.wait_for(lambda n=n: (cluster.pod(n) or {}).get("status", {}).get("podIP"), f"{n}'s IP")  # type: ignore[misc]
        for n in ("a", "b", "c")
    }
    assert len(set(ips.values())) == 3
    cluster.delete_pod("a")
    cluster.wait_for(lambda: cluster.pod("a") is None, "a to go")
    cluster.run_pod("d", restartPolicy="Always")
    assert cluster.wait_for(lambda: (cluster.pod("d") or {}).get("status", {}).get("podIP"), "d's IP") == ips["a"]


@pytest.mark.slow  # restarts a real daemon
def test_pods_are_recovered_after_a_daemon_restart(tmp_path: Path) -> None:
    first = Cluster(tmp_path)
    first.run_pod("survivor", restartPolicy="Always")
    first.wait_phase("survivor", "Running")
    first.wait_for(lambda: "running" in first.container("survivor").get("state", {}), "running")
    ip = first.live("survivor")["status"]["podIP"]
    first.close()
    second = Cluster(tmp_path)  # the same state.db: a daemon and node restart
    try:
        status = second.wait_for(
            lambda: (c := second.container("survivor")).get("restartCount") == 1 and "running" in c["state"] and c,
            "the restarted container",
        )
        assert status["lastState"]["terminated"]["reason"] == "Unknown"
        assert second.live("survivor")["status"]["podIP"] == ip
        assert second.wait_event("survivor", "SandboxChanged")
    finally:
        second.close()


def test_pod_phase_rules() -> None:
    running: dict[str, Any] = {"state": {"running": {}}}
    failed = {"state": {"terminated": {"exitCode": 1}}}
    ok = {"state": {"terminated": {"exitCode": 0}}}
    crashlooping = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    assert pod_phase("Always", [creating]) == "Pending"
    assert pod_phase("Always", [running, crashlooping]) == "Running"
    assert pod_phase("Never", [failed, ok]) == "Failed"
    assert pod_phase("OnFailure", [ok]) == "Succeeded"
    assert pod_phase("Always", [ok]) == "Running"
    assert go_duration(2.0) == "2s"


def test_rejected_runtime_class_reference_is_an_admission_error(cluster: Cluster) -> None:
    with pytest.raises(ApiError, match='RuntimeClass "nope" not found'):
        cluster.run_pod("nope", runtimeClassName="nope")


def test_a_template_containerd_rejects_leaves_the_node_without_a_runtime(cluster: Cluster) -> None:
    ContainerdPaths(cluster.node_root()).template_v3.write_text(
        '{{ template "base" . }}\n' + runtime_tables(3, "wasmedge", RuntimeSpec("io.containerd.wasmedge.v1"))
    )
    assert cluster.restart_node() is None  # the wasmedge table is declared twice: containerd would not start
    assert "declared twice" in cluster.kubelet.runtime_error
    ready = next(c for c in cluster.node()["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert ready["message"].startswith("container runtime is down: containerd config line")
    cluster.run_pod("stuck", args=["echo", "x"])  # a NotReady node gets no new pods
    assert cluster.wait_event("stuck", "FailedScheduling").startswith("0/1 nodes are available")
    ContainerdPaths(cluster.node_root()).template_v3.unlink()
    assert cluster.restart_node() is not None
    ready = next(c for c in cluster.node()["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    cluster.wait_phase("stuck", "Succeeded", timeout=5)


def test_native_images_fail_with_a_clear_message() -> None:
    native = ImageContent(
        "docker.io/library/nginx:latest", "sha256:" + "0" * 64, "native", ["/docker-entrypoint.sh"], [], None
    )
    pod = {"metadata": {"name": "web"}, "spec": {}}
    for runtime in (RuntimeSpec("io.containerd.wasmedge.v1"), RuntimeSpec("io.containerd.runc.v2")):
        with pytest.raises(ContainerFailure) as failure:
            plan_launch(runtime, pod, native, ["/docker-entrypoint.sh"], {}, "/")
        assert failure.value.reason == "StartError" and "runs only wasm images yet" in str(failure.value)


def test_containers_of_one_pod_run_side_by_side(cluster: Cluster) -> None:
    second = {"name": "second", "image": DEMO, "args": ["exit", "2"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pair"},
        "spec": {
            "runtimeClassName": "wasmedge",
            "restartPolicy": "Never",
            "containers": [{"name": "demo", "image": DEMO, "args": ["echo", "first"]}, second],
        },
    }
    cluster.create(PODS, pod)
    statuses = cluster.wait_phase("pair", "Failed")["status"]["containerStatuses"]
    codes = {s["name"]: s["state"]["terminated"]["exitCode"] for s in statuses}
    assert codes == {"demo": 0, "second": 2}
    assert "stdout F first" in cluster.log("pair")


def test_container_env_resolves_values_fields_and_config(cluster: Cluster) -> None:
    cluster.create(
        resource_path("v1", "configmaps", "default"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "env"}, "data": {"level": "debug"}},
    )
    pod = cluster.run_pod("envy", args=["echo"])
    container = {
        "name": "demo",
        "env": [
            {"name": "WASMEDGE_PLUGIN_PATH", "value": "/plugins"},
            {"name": "GREETING", "value": "at $(WASMEDGE_PLUGIN_PATH)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "env", "key": "level"}}},
        ],
    }
    sources = ProjectedSources({("configmap", "env"): cluster.get(resource_path("v1", "configmaps", "default", "env"))})
    env = container_env(
        sources, pod, container, ["PATH=/bin", "WASMEDGE_PLUGIN_PATH=/old"], "127.42.0.9", "127.0.100.1"
    )
    assert env["WASMEDGE_PLUGIN_PATH"] == "/plugins" and env["GREETING"] == "at /plugins"
    assert (env["POD_NAME"], env["LEVEL"], env["PATH"], env["HOSTNAME"]) == ("envy", "debug", "/bin", "envy")
    missing = {"name": "demo", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "env", "key": "nope"}}}]}
    with pytest.raises(ContainerFailure, match="couldn't find key nope in ConfigMap default/env"):
        container_env(sources, pod, missing, [], "", "")


def test_secret_volume_projects_decoded_items(cluster: Cluster) -> None:
    cluster.create(
        resource_path("v1", "secrets", "default"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"token": base64.b64encode(b"s3cret").decode(), "other": "eA=="},
        },
    )
    pod = cluster.run_pod(
        "secretive",
        volumes=[
            {"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "token", "path": "auth/token"}]}}
        ],
    )
    sources = cluster.run(ProjectedSources.fetch(cluster.kubelet.client, pod))
    paths = prepare_volumes(sources, pod, cluster.node_root())
    assert (paths["creds"] / "auth/token").read_bytes() == b"s3cret"
    assert not (paths["creds"] / "other").exists()  # items select keys


def test_init_containers_are_not_run_and_say_so(cluster: Cluster) -> None:
    cluster.run_pod("init", initContainers=[{"name": "setup", "image": DEMO, "args": ["echo", "init"]}])
    assert "does not run initContainers yet (setup)" in cluster.wait_event("init", "Failed")
    pod = cluster.live("init")
    initialized = next(c for c in pod["status"]["conditions"] if c["type"] == "Initialized")
    assert (initialized["status"], initialized["message"]) == ("False", "containers with incomplete status: [setup]")
    assert (
        pod["status"]["phase"] == "Pending"
        and cluster.container("init")["state"]["waiting"]["reason"] == "PodInitializing"
    )


def test_a_kubelet_watches_again_when_the_api_server_ends_its_pod_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API server ends watches (their timeout; the store ends one whose reader fell behind): the node watches
    again from where it was, so pods keep running and new ones run."""
    monkeypatch.setattr(https, "WATCH_TIMEOUT_S", 1)  # every watch of this kubelet ends after a second
    cluster = Cluster(tmp_path)
    try:
        cluster.run_pod("steady", restartPolicy="Always")
        cluster.wait_for(lambda: "running" in cluster.container("steady").get("state", {}), "steady running")
        time.sleep(2.5)  # two watches ended meanwhile
        cluster.run_pod("later", args=["echo", "after the watch ended"])
        cluster.wait_phase("later", "Succeeded")
        assert "after the watch ended" in cluster.log("later")
        assert "running" in cluster.container("steady")["state"]
        assert cluster.container("steady")["restartCount"] == 0
    finally:
        cluster.close()
