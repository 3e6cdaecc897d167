"""The sandbox kubelet: one node's agent, in its own process, speaking to the API server only over HTTPS.

It does what a kubelet (or KWOK's fake kubelet) does with its node credentials: watches the pods bound
to its node (``fieldSelector=spec.nodeName=<node>``) and gives each a
:class:`~labkit.sandbox.kubelet.pod_workers.PodWorker`; writes pod status through its status manager;
posts Events; renews its Lease and keeps the Node's Ready condition posted. Its container runtime is
read from the node's containerd config (a k3s node's root directory); SIGHUP restarts that runtime as
``systemctl restart k3s`` would, and the outcome is reported in a JSON file the daemon reads.

Blocking work (image store, files, wasm) runs in threads; pod state lives on this process's event loop.
How the processes fit together: ``docs/architecture.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from labkit.containerd import ContainerdConfigError, RuntimeInfo, RuntimeSpec
from labkit.fsutil import write_atomic
from labkit.imagestore import ImageStore
from labkit.sandbox.execwire import token_file
from labkit.sandbox.kubeclient.events import EventRecorder
from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path
from labkit.sandbox.kubeclient.informer import Informer
from labkit.sandbox.kubelet.execserver import ExecServer
from labkit.sandbox.kubelet.failures import SandboxFailure
from labkit.sandbox.kubelet.images import NodeImages
from labkit.sandbox.kubelet.lease import renew_once, run_lease
from labkit.sandbox.kubelet.network import PodIPs
from labkit.sandbox.kubelet.node_status import NodeStatusReporter
from labkit.sandbox.kubelet.noderoot import prepare_node_root, runtime_class_objects, start_containerd
from labkit.sandbox.kubelet.pod_workers import PodWorker
from labkit.sandbox.kubelet.podfiles import PodFileWriter
from labkit.sandbox.kubelet.prober import ProbeBudget
from labkit.sandbox.kubelet.runtime import RUNC_TYPE, WASMEDGE_TYPE
from labkit.sandbox.kubelet.service_env import service_env
from labkit.sandbox.kubelet.status_manager import StatusManager
from labkit.sandbox.kubelet.usage import run_usage_reporter
from labkit.sandbox.kubelet.wasmrun import ModuleCache
from labkit.sandbox.logfiles import LogDirectory
from labkit.sandbox.nodes import node_index, node_ip
from labkit.sandbox.usagefiles import usage_dir

log = logging.getLogger("labkit.sandbox.kubelet.agent")

COMPONENT = "kubelet"
#: How many ended pods the kubelet remembers, so late watch events of a finished pod start nothing.
ENDED_MEMORY = 4096
RUNTIMECLASSES_API = "node.k8s.io/v1"

T = TypeVar("T")


@dataclass(frozen=True)
class SandboxLayout:
    """Where a node finds its parts in a sandbox home: its root, the image store, pod logs, the module cache."""

    home: Path

    def node_root(self, name: str) -> Path:
        return self.home / "nodes" / name

    @property
    def images(self) -> Path:
        return self.home / "images"

    @property
    def pod_logs(self) -> Path:
        return self.home / "pod-logs"

    @property
    def module_cache(self) -> Path:
        return self.home / "module-cache"


class Kubelet:
    """One sandbox node's kubelet and container runtime."""

    def __init__(
        self, client: KubeClient, name: str, home: Path, report_file: Path | None = None, slot: int = 0
    ) -> None:
        layout = SandboxLayout(Path(home))
        self.client, self.name, self.root = client, name, layout.node_root(name)
        self.images = NodeImages(ImageStore(layout.images))
        self.logs = LogDirectory(layout.pod_logs)
        self.usage_dir = usage_dir(layout.home)
        self.cache = ModuleCache(layout.module_cache)
        self.report_file = report_file
        self.index = node_index(name)
        self.host_ip = node_ip(self.index)
        self.ips = PodIPs(self.index, slot)  # the sandbox's address slot: its pod range (netmap.plan)
        self.recorder = EventRecorder(client, COMPONENT, name)
        self.status = StatusManager(client, self.recorder)
        self.probe_budget = ProbeBudget()  # what this node's probes may cost, all pods together
        self.node_status = NodeStatusReporter(client, name, self.index)
        self.runtime_info: RuntimeInfo | None = None
        self.runtime_error = ""
        self.restarts = 0
        self.workers: dict[str, PodWorker] = {}
        #: uids of pods whose worker ended -> whether it crashed (then only a deletion is still handled)
        self.ended: OrderedDict[str, bool] = OrderedDict()
        pods_path = resource_path("v1", "pods")
        self.pods = Informer(client, pods_path, {"fieldSelector": f"spec.nodeName={name}"})
        self.pods.handlers.append(self.observe)
        self.runtime_classes = Informer(client, resource_path(RUNTIMECLASSES_API, "runtimeclasses"))
        #: the Services, for the variables every container gets (kubelet/service_env.py), as the kubelet's lister
        self.services = Informer(client, resource_path("v1", "services"))
        self.pod_files = PodFileWriter(client, self.root, client.ca_file)
        #: the node's exec endpoint (upstream's :10250), which the API server dials for pods/exec
        self.exec_server = ExecServer(self.workers, self.host_ip, token_file(layout.home))
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kubelet")

    def service_vars(self, pod: dict[str, Any]) -> dict[str, str]:
        """The Service environment variables of the pod's containers."""
        ns = pod["metadata"].get("namespace") or "default"
        return service_env(self.services.cache.values(), ns, pod["spec"].get("enableServiceLinks", True) is not False)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run *fn* in the kubelet's thread pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---------------------------------------------------------------- the container runtime

    def start_runtime(self) -> RuntimeInfo | None:
        """k3s's start: prepare the node root, render and read the containerd config (blocking)."""
        prepare_node_root(self.root)
        try:
            self.runtime_info, self.runtime_error = start_containerd(self.root), ""
        except ContainerdConfigError as err:
            self.runtime_info, self.runtime_error = None, str(err)
            log.error("node %s: containerd cannot load its config: %s", self.name, err)
        return self.runtime_info

    async def ensure_runtime_classes(self) -> list[str]:
        """Create the RuntimeClasses the k3s server ships, installed or not (existing ones are kept)."""
        created = []
        for obj in runtime_class_objects():
            try:
                await self.client.create(resource_path(RUNTIMECLASSES_API, "runtimeclasses"), obj)
                created.append(obj["metadata"]["name"])
            except ApiError as err:
                if err.code != 409:
                    raise
        return created

    async def runtime_for(self, pod: dict[str, Any]) -> RuntimeSpec:
        """The containerd runtime for the pod: RuntimeClass → handler → runtime table (or the default)."""
        if self.runtime_info is None:
            raise SandboxFailure(
                f"rpc error: code = Unavailable desc = containerd on {self.name} is not running: {self.runtime_error}"
            )
        class_name = pod["spec"].get("runtimeClassName")
        handler = self.runtime_info.default_runtime
        if class_name:
            runtime_class = self.runtime_classes.get(None, class_name) or await self._runtime_class(class_name)
            if runtime_class is None:
                raise SandboxFailure(f'runtimeclass.node.k8s.io "{class_name}" not found')
            handler = runtime_class.get("handler", "")
        spec = self.runtime_info.runtimes.get(handler)
        if spec is None:
            raise SandboxFailure(
                f"rpc error: code = Unknown desc = failed to get sandbox runtime: "
                f'no runtime for "{handler}" is configured'
            )
        if spec.runtime_type not in (WASMEDGE_TYPE, RUNC_TYPE):
            shim = "containerd-shim-" + spec.runtime_type.removeprefix("io.containerd.").replace(".", "-")
            raise SandboxFailure(
                f"rpc error: code = Unknown desc = failed to start sandbox: failed to start shim: "
                f'start failed: {spec.runtime_type}: binary not installed "{shim}": file does not exist '
                "(the labkit sandbox simulates the runwasi wasmedge shim, runc and crun only)"
            )
        return spec

    async def _runtime_class(self, name: str) -> dict[str, Any] | None:
        """A RuntimeClass the informer has not seen yet (created a moment ago): ask the API server."""
        try:
            return await self.client.get(resource_path(RUNTIMECLASSES_API, "runtimeclasses", None, name))
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    async def restart(self) -> RuntimeInfo | None:
        """A k3s restart: re-render and re-read the containerd config; running pods keep running."""
        info = await self.blocking(self.start_runtime)
        await self.ensure_runtime_classes()
        self.node_status.runtime_error = None if info is not None else self.runtime_error
        node = await self.node_status.fetch()
        # the Lease first: the node lifecycle controller must not see a fresh Ready next to a stale Lease
        await renew_once(self.client, self.name, self.node_status.node_uid)
        await self.node_status.post(node)
        self.restarts += 1
        if self.report_file is not None:
            await self.blocking(self._report, info)
        for worker in self.workers.values():
            worker.wake.set()  # a restarted kubelet retries its pods at once
        return info

    def _report(self, info: RuntimeInfo | None) -> None:
        """Tell the daemon how this (re)start went: the runtimes containerd loaded, or why it did not start."""
        assert self.report_file is not None
        report: dict[str, Any] = {"restarts": self.restarts, "node": self.name}
        if info is None:
            report["error"] = self.runtime_error
        else:
            report.update(
                defaultRuntime=info.default_runtime, runtimes=sorted(info.runtimes), ignoredKeys=info.ignored_keys
            )
        write_atomic(self.report_file, json.dumps(report), mode=0o600)

    # ---------------------------------------------------------------- the node's loops

    async def run(self) -> None:
        """Start the runtime, then heartbeat and run pods until cancelled."""
        informers = (self.runtime_classes, self.services)
        loops: list[asyncio.Task[None]] = [asyncio.ensure_future(informer.run()) for informer in informers]
        try:
            self.node_status.kubelet_port = await self.exec_server.start()  # posted with the node's status
            await self.restart()
            loops.append(asyncio.ensure_future(run_lease(self.client, self.name, self.node_status.node_uid)))
            loops.append(asyncio.ensure_future(self.node_status.run()))
            loops.append(asyncio.ensure_future(run_usage_reporter(self.name, self.workers, self.usage_dir)))
            listed = await self.client.get(self.pods.path, self.pods.params)
            for pod in listed.get("items") or ():
                if (pod.get("status") or {}).get("podIP"):  # keep addresses across restarts
                    self.ips.allocate(pod["metadata"]["uid"], pod["status"]["podIP"])
            # upstream's kubelet builds no container env before the Services were read once (getServiceEnvVarMap)
            await self.services.synced.wait()
            loops.append(asyncio.ensure_future(self.pods.run()))
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            for worker in self.workers.values():
                if worker.task:
                    worker.task.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)
            await self.exec_server.stop()

    def observe(self, event_type: str, pod: dict[str, Any]) -> None:
        """A watch event about a pod bound to this node."""
        pod.setdefault("apiVersion", "v1")
        pod.setdefault("kind", "Pod")  # list items come without it; events about the pod need it
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            self.ended.pop(uid, None)
            if worker is not None:
                worker.terminate()
            return
        if uid in self.ended:  # late events of a pod whose worker is done
            if self.ended[uid] and meta.get("deletionTimestamp"):
                self._background(self.delete_terminated(pod))
            return
        if worker is None:
            try:
                worker = self.workers[uid] = PodWorker(self, pod)
            except SandboxFailure as err:  # no pod address left on this node
                self.recorder.record(
                    pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {err.problem}"
                )
                return
            worker.task = asyncio.ensure_future(self._run_worker(worker))
        else:
            worker.pod = pod
            self.status.reconcile(uid, pod.get("status") or {})
            worker.start_ephemeral()  # kubectl debug added a container
        if meta.get("deletionTimestamp"):
            worker.terminate()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def delete_terminated(self, pod: dict[str, Any]) -> None:
        """The pod's containers stopped: remove the object (grace period 0, only this very pod), as the kubelet does."""
        meta = pod["metadata"]
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]}}
        try:
            await self.client.delete(
                resource_path("v1", "pods", meta.get("namespace") or "default", meta["name"]),
                {"gracePeriodSeconds": "0"},
                options,
            )
        except ApiError as err:
            if err.code not in (404, 409):
                log.warning("pod %s/%s not deleted: %s", meta.get("namespace"), meta["name"], err.problem)

    async def _run_worker(self, worker: PodWorker) -> None:
        crashed = False
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # one pod's bug must not stop the node; the log and an event say what happened
            log.exception("pod worker %s/%s failed", worker.ns, worker.name)
            crashed = True
            for c in worker.containers:
                if c.process is not None:
                    c.process.kill()
            worker.event(
                "Warning",
                "FailedSync",
                f"labkit sandbox kubelet error: {type(err).__name__}: {err} "
                f"(the pod is no longer run; delete it: kubectl delete pod {worker.name})",
            )
        finally:
            self.workers.pop(worker.uid, None)
            self.ips.release(worker.uid)
            self.pod_files.forget(worker.uid)
            self.status.forget(worker.uid)
        self.ended[worker.uid] = crashed
        while len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)
        if crashed and worker.pod["metadata"].get("deletionTimestamp"):
            await self.delete_terminated(worker.pod)
