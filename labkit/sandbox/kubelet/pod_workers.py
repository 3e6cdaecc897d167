"""Pod workers: one per pod UID, taking the pod from sandbox creation to deletion with a real kubelet's steps.

1. **sandbox**: the pod's RuntimeClass → handler → a runtime in the node's containerd config; volumes
   are set up. A handler the node lacks fails with containerd's ``no runtime for "X" is configured``.
2. **image**: resolved in the sandbox image store, honouring ``imagePullPolicy``; a "pull" only reaches
   the simulated registry of :mod:`labkit.sandbox.kubelet.registry_mirror`.
3. **container**: what the runtime would do with the image (:mod:`labkit.sandbox.kubelet.runtime`); wasm
   modules run in wasmtime (:mod:`labkit.sandbox.kubelet.wasmrun`), in this node's process; the Python
   programs labkit ships run as its subprocesses (:mod:`labkit.sandbox.kubelet.native`).
4. **restarts** with the kubelet's back-off (10 s doubling to 300 s, reset after 10 min of running),
   and **termination** on delete, ending with the DELETE (grace period 0) that removes the pod object.

Status goes through the node's :class:`~labkit.sandbox.kubelet.status_manager.StatusManager`,
events through its recorder; probes through its :class:`~labkit.sandbox.kubelet.prober.ProbeManager`, which
decides the containers' ``started`` and ``ready``. Not yet: init containers (such a pod stays initializing, and an
event says so), unknown Linux images (a clear StartError).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from labkit.errors import WasmError
from labkit.sandbox.kubeclient.https import ApiError
from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.failures import ContainerFailure, SandboxFailure
from labkit.sandbox.kubelet.imagepull import BACKOFF_INITIAL_S, BACKOFF_MAX_S, ensure_image
from labkit.sandbox.kubelet.limits import Limits
from labkit.sandbox.kubelet.native import NativeContainer, NativeLaunch, PodExec, start_native
from labkit.sandbox.kubelet.podstate import ContainerRun, pod_key, pod_phase, qos_class
from labkit.sandbox.kubelet.prober import ProbeManager
from labkit.sandbox.kubelet.runtime import plan_launch, task_error
from labkit.sandbox.kubelet.volumes import (
    ProjectedSources,
    container_env,
    container_mounts,
    expand,
    prepare_volumes,
)
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, WasmContainer
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.containerd import RuntimeSpec
    from labkit.sandbox.kubeclient.events import EventRecorder
    from labkit.sandbox.kubeclient.https import KubeClient
    from labkit.sandbox.kubelet.images import ImageContent, NodeImages
    from labkit.sandbox.kubelet.network import PodIPs
    from labkit.sandbox.kubelet.podfiles import PodFiles, PodFileWriter
    from labkit.sandbox.kubelet.prober import ProbeBudget
    from labkit.sandbox.kubelet.status_manager import StatusManager
    from labkit.sandbox.kubelet.wasmrun import ModuleCache
    from labkit.sandbox.logfiles import LogDirectory, LogWriter

T = TypeVar("T")


class NodeServices(Protocol):
    """What a pod worker uses of its node (the :class:`~labkit.sandbox.kubelet.agent.Kubelet`).

    Upstream's pod workers likewise see the kubelet only through an interface (pkg/kubelet/pod_workers.go:
    ``podSyncer``), so this module does not import the agent that owns the workers.
    """

    client: KubeClient
    root: Path
    host_ip: str
    ips: PodIPs
    images: NodeImages
    logs: LogDirectory
    cache: ModuleCache
    recorder: EventRecorder
    status: StatusManager
    probe_budget: ProbeBudget
    pod_files: PodFileWriter

    def service_vars(self, pod: dict[str, Any]) -> dict[str, str]: ...

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def runtime_for(self, pod: dict[str, Any]) -> RuntimeSpec: ...

    async def delete_terminated(self, pod: dict[str, Any]) -> None: ...


log = logging.getLogger("labkit.sandbox.kubelet.pod_workers")

#: kubelet's container restart back-off (pkg/kubelet/kubelet.go: backOffPeriod, MaxContainerBackOff).
#: (BACKOFF_INITIAL_S and BACKOFF_MAX_S, shared with the image pull back-off, live in imagepull.py)
BACKOFF_RESET_S = 600.0
#: Pod-sandbox and volume retries (the pod worker's sync back-off).
SANDBOX_RETRY_INITIAL_S, SANDBOX_RETRY_MAX_S = 2.0, 60.0
EXIT_START_ERROR = 128


class PodWorker:
    """Runs one pod on its node from sandbox creation to deletion."""

    def __init__(self, kubelet: NodeServices, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta.get("namespace") or "default", meta["name"], meta["uid"]
        self.containers = [ContainerRun(c) for c in pod["spec"].get("containers") or ()]
        #: init containers are not run yet: such a pod stays initializing, and an event says why
        self.init_names = [c["name"] for c in pod["spec"].get("initContainers") or ()]
        if self.init_names:
            for c in self.containers:
                c.state = {"waiting": {"reason": "PodInitializing"}}
        self.sandbox_ready = False
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.runtime: RuntimeSpec | None = None
        self.volumes: dict[str, Path] = {}
        self.read_only_volumes = {
            v["name"] for v in pod["spec"].get("volumes") or () if "configMap" in v or "secret" in v
        }
        self.transitions: dict[str, tuple[str, str]] = {}
        status = pod.get("status") or {}
        self.start_time = status.get("startTime") or format_rfc3339()
        self.pod_ip = kubelet.ips.allocate(self.uid, status.get("podIP"))
        self.finished = status.get("phase") in ("Succeeded", "Failed")
        self._recover(status)
        #: the ephemeral containers (``kubectl debug``), each started once when it appears in the spec
        self.ephemeral: list[ContainerRun] = []
        self._launched: set[str] = set()
        self._ephemeral_tasks: set[asyncio.Task[None]] = set()
        self._add_ephemeral(status)
        self.task: asyncio.Task[None] | None = None
        #: the probes; an exec runs in a native container, and a wasm container answers it as runwasi does
        self.probes = ProbeManager(self, kubelet.probe_budget, PodExec(self._process_of))

    def _process_of(self, name: str) -> object:
        return next((c.process for c in self.all_containers() if c.name == name), None)

    def all_containers(self) -> list[ContainerRun]:
        return [*self.containers, *self.ephemeral]

    def _add_ephemeral(self, status: dict[str, Any]) -> bool:
        """Track the spec's new ephemeral containers; True if there were any. One that ran before a node
        restart keeps its last state and is not started again: the kubelet never restarts them."""
        known = {c.name for c in self.ephemeral}
        previous = {s["name"]: s for s in status.get("ephemeralContainerStatuses") or ()}
        added = False
        for spec in self.pod["spec"].get("ephemeralContainers") or ():
            if spec["name"] in known:
                continue
            c = ContainerRun(spec, kind="ephemeralContainers")
            old = previous.get(c.name) or {}
            if old.get("containerID"):
                state = old.get("state") or {}
                c.state = state if "running" not in state else {"terminated": {"exitCode": 255, "reason": "Unknown"}}
                c.container_id, c.image, c.image_id = old["containerID"], old.get("image", ""), old.get("imageID", "")
                self._launched.add(c.name)
            self.ephemeral.append(c)
            added = True
        return added

    def start_ephemeral(self) -> None:
        """Start the ephemeral containers not started yet, in the pod's sandbox with the pod's runtime, as the
        kubelet's SyncPod does; like any container they go through the image pull and the runtime's decision
        (:func:`~labkit.sandbox.kubelet.runtime.plan_launch`), so a Linux image in a wasm pod meets what a
        regular container meets there. They are never restarted."""
        if self._add_ephemeral({}):
            self.publish()
        if not self.sandbox_ready or self.stopping.is_set() or self.finished:
            return
        for c in self.ephemeral:
            if c.name not in self._launched:
                self._launched.add(c.name)
                task = asyncio.ensure_future(self.run_container(c))
                self._ephemeral_tasks.add(task)  # the loop keeps only weak references to tasks
                task.add_done_callback(self._ephemeral_tasks.discard)

    def _recover(self, status: dict[str, Any]) -> None:
        """After a daemon restart (a node reboot): keep counts; containers that had started start again."""
        previous = {s["name"]: s for s in status.get("containerStatuses") or ()}
        for c in self.containers:
            old = previous.get(c.name)
            if not old:
                continue
            c.image, c.image_id = old.get("image", ""), old.get("imageID", "")
            if self.finished:
                c.state, c.last_state = old.get("state") or {}, old.get("lastState") or {}
                c.restart_count, c.container_id = int(old.get("restartCount", 0)), old.get("containerID", "")
                continue
            if old.get("containerID"):
                c.restart_count = int(old.get("restartCount", 0)) + 1
                state = old.get("state") or {}
                c.last_state = (
                    {"terminated": state["terminated"]}
                    if "terminated" in state
                    else {
                        "terminated": {
                            "exitCode": 255,
                            "reason": "Unknown",
                            "startedAt": (state.get("running") or {}).get("startedAt"),
                            "finishedAt": format_rfc3339(),
                            "containerID": old["containerID"],
                        }
                    }
                )
                c.container_id = old["containerID"]

    # ---------------------------------------------------------------- plumbing

    def event(self, type_: str, reason: str, message: str, container: ContainerRun | None = None) -> None:
        field_path = f"spec.{container.kind}{{{container.name}}}" if container else None
        self.kubelet.recorder.record(self.pod, type_, reason, message, field_path)

    async def sleep(self, seconds: float) -> bool:
        """Wait *seconds* unless woken; True when the pod is stopping."""
        self.wake.clear()
        waiters = [asyncio.ensure_future(self.stopping.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        return self.stopping.is_set()

    def _condition(self, type_: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self.transitions.get(type_)
        if previous is None or previous[0] != status:
            previous = self.transitions[type_] = (status, format_rfc3339())
        cond: dict[str, Any] = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": previous[1],
        }
        if not ok and reason:
            cond.update(reason=reason, message=message)
        return cond

    def phase(self) -> str:
        return pod_phase(self.pod["spec"].get("restartPolicy", "Always"), [c.status() for c in self.containers])

    def status(self, live: dict[str, Any]) -> dict[str, Any]:
        phase = self.phase()
        statuses = [c.status() for c in self.containers]
        self.probes.update_status(statuses)
        if phase in ("Succeeded", "Failed"):
            for s in statuses:
                s["ready"] = s["started"] = False
        unready = [s["name"] for s in statuses if not s["ready"]]
        terminal = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
        scheduled = next(
            (c for c in (live.get("status") or {}).get("conditions") or () if c["type"] == "PodScheduled"),
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": self.start_time},
        )
        host_ip = self.kubelet.host_ip
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                self._condition("PodReadyToStartContainers", self.sandbox_ready and not terminal),
                self._condition(
                    "Initialized",
                    not self.init_names,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(self.init_names)}]",
                ),
                self._condition("Ready", not unready, reason, message),
                self._condition("ContainersReady", not unready, reason, message),
                scheduled,
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
            "qosClass": qos_class(self.pod),
        }
        if self.ephemeral:
            status["ephemeralContainerStatuses"] = [c.status() for c in self.ephemeral]
        if self.sandbox_ready or self.finished:
            status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        return status

    def publish(self, settle: bool = False) -> None:
        """Hand the pod's status to the status manager (the only writer of ``pods/status``); with *settle*,
        while the pod is starting, a newer status may replace it before it is written."""
        self.kubelet.status.set_status(self.ns, self.name, self.uid, self.status(self.pod), settle)

    # ---------------------------------------------------------------- the pod's life

    async def run(self) -> None:
        try:
            if not self.finished:
                if any(c.container_id for c in self.containers):
                    self.event("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
                self.publish(settle=not self.init_names)
                if self.init_names:
                    self.event(
                        "Warning",
                        "Failed",
                        "the labkit sandbox does not run initContainers yet "
                        f"({', '.join(self.init_names)}): do the init step in the main "
                        "container, or use a real k3s cluster",
                    )
                elif await self.create_sandbox():
                    self.publish(settle=True)
                    self.probes.start()
                    self.start_ephemeral()
                    await asyncio.gather(*(self.run_container(c) for c in self.containers))
                self.finished = self.sandbox_ready and not self.stopping.is_set()
                self.publish()
            await self.stopping.wait()
            self.probes.stop()
            await self.kill_all()
        finally:
            self.probes.stop()
            for c in self.all_containers():
                if c.process is not None:
                    c.process.kill()
        self.publish()
        await self.finish_deletion()

    async def finish_deletion(self) -> None:
        """Containers stopped: delete the pod object with grace period 0, as the kubelet ends a graceful deletion."""
        await self.kubelet.status.flush(self.uid)
        await self.kubelet.recorder.flush(self.uid)
        if not self.pod["metadata"].get("deletionTimestamp"):
            return  # the pod went away without a graceful deletion (or the node stops): nothing to finish
        await self.kubelet.delete_terminated(self.pod)

    def terminate(self) -> None:
        """The pod was deleted gracefully: stop its containers, then the object goes."""
        self.stopping.set()

    async def kill_all(self) -> None:
        """Stop running containers; the grace period bounds the wait (a wasm kill is prompt)."""
        running = [c for c in self.all_containers() if c.process is not None]
        grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds") or 30)
        for c in running:
            self.event("Normal", "Killing", f"Stopping container {c.name}", c)
            assert c.process is not None
            c.process.terminate()  # SIGTERM to a native container; a wasm guest, which has no signals, is killed
        deadline = time.monotonic() + grace
        for c in running:
            assert c.process is not None
            if await self.kubelet.blocking(c.process.wait, max(deadline - time.monotonic(), 0.0)) is None:
                c.process.kill()  # the grace period is over: SIGKILL
                await self.kubelet.blocking(c.process.wait, 5.0)
            self._terminated(c, c.process)
            c.process = None

    async def create_sandbox(self) -> bool:
        delay = SANDBOX_RETRY_INITIAL_S
        while not self.stopping.is_set():
            try:
                self.runtime = await self.kubelet.runtime_for(self.pod)
                sources = await ProjectedSources.fetch(self.kubelet.client, self.pod)
                if self.pod["spec"].get("volumes"):  # file work, off the loop; most wasm pods have none
                    self.volumes = await self.kubelet.blocking(prepare_volumes, sources, self.pod, self.kubelet.root)
            except (ApiError, SandboxFailure) as err:  # an API server that did not answer is retried alike
                reason = err.event_reason if isinstance(err, SandboxFailure) else "FailedCreatePodSandBox"
                message = err.problem if reason == "FailedMount" else f"Failed to create pod sandbox: {err.problem}"
                self.publish()  # the starting status first, then the event that explains why it stays so
                self.event("Warning", reason, message)
                if await self.sleep(delay):
                    return False
                delay = min(delay * 2, SANDBOX_RETRY_MAX_S)
                continue
            self.sandbox_ready = True
            return True
        return False

    async def run_container(self, c: ContainerRun) -> None:
        # an ephemeral container is never restarted: as under restartPolicy Never
        policy = "Never" if c.kind == "ephemeralContainers" else self.pod["spec"].get("restartPolicy", "Always")
        while not self.stopping.is_set():
            image = await ensure_image(self, c)
            if image is None:
                return
            c.image, c.image_id = image.ref, image.digest
            ran_for = 0.0
            exit_code: int | None
            try:
                sources = await ProjectedSources.fetch(self.kubelet.client, self.pod)
                files = await self.kubelet.pod_files.ensure(self.pod, self.pod_ip) if image.layout == "python" else None
                process = await self.kubelet.blocking(self._start, c, image, sources, files)
            except ContainerFailure as err:
                self._start_failed(c, err)
                exit_code = EXIT_START_ERROR
            else:
                exit_code = await self._wait(process)
                if exit_code is None:  # stopping: kill_all finishes it
                    return
                self._terminated(c, process)
                c.process = None
                ran_for = (process.finished_at or 0.0) - (process.started_at or 0.0)
            stays_terminated = policy == "Never" or (policy == "OnFailure" and exit_code == 0)
            if "terminated" in c.state and stays_terminated:
                self.publish()
                return
            if await self.restart_after_backoff(c, ran_for):
                return

    def _start(
        self, c: ContainerRun, image: ImageContent, sources: ProjectedSources, files: PodFiles | None
    ) -> WasmContainer | NativeContainer:
        """Create and start the container (in a thread): the runtime's decision, then wasmtime or a subprocess."""
        kubelet = self.kubelet
        spec = c.spec
        env = container_env(
            sources, self.pod, spec, image.env, self.pod_ip, kubelet.host_ip, kubelet.service_vars(self.pod)
        )
        command = [expand(word, env) for word in spec.get("command") or ()]  # the image's entrypoint is not expanded
        argv = [*(command or image.entrypoint), *(expand(word, env) for word in spec.get("args") or ())]
        working_dir = spec.get("workingDir") or "/"
        mounts = container_mounts(spec, self.volumes, self.read_only_volumes)
        try:
            limits = Limits.of(spec)
        except ValueError as err:  # the API server refuses these; an object stored before it did gets this
            raise ContainerFailure(f"invalid resources.limits: {err}", "CreateContainerConfigError") from None
        # the CRI container exists from here on; what follows is the task start, where runtimes fail
        c.container_id = f"containerd://{secrets.token_hex(32)}"
        assert self.runtime is not None
        writer = kubelet.logs.writer(self.pod, c.name, c.restart_count)  # containerd creates the log with the container
        try:
            launch = plan_launch(self.runtime, self.pod, image, argv, env, working_dir)
        except ContainerFailure:
            writer.close()
            raise
        if isinstance(launch, NativeLaunch):
            assert files is not None  # run_container wrote them for a python image
            output = (_log_to(writer, "stdout"), _log_to(writer, "stderr"))
            renew = partial(kubelet.pod_files.refresh_soon, self.pod, self.pod_ip)  # the token, as it ages
            c.process = start_native(
                kubelet.root, c.container_id, c.name, launch, env, working_dir, mounts, files, self.pod_ip,
                kubelet.client.server, limits, output, renew,
            )  # fmt: skip
            c.writer = writer
            return c.process
        context = PodContext(
            name=self.name,
            namespace=self.ns,
            env=env,
            mounts={m.guest_path: str(m.host_dir) for m in mounts},
            annotations=self.pod["metadata"].get("annotations") or {},
            pod_ip=self.pod_ip,
        )
        try:
            process = WasmContainer(
                ContainerSpec(
                    launch.module,
                    launch.argv,
                    env,
                    working_dir,
                    mounts,
                    launch.entry,
                    c.name,
                    launch.crun_exit_status,
                    limits,
                ),
                kubelet.cache,
                _log_to(writer, "stdout"),
                _log_to(writer, "stderr"),
                extensions_for(context),
                context,
            )
        except WasmError as err:
            writer.close()
            raise ContainerFailure(task_error(f"OCI runtime create failed: {err.problem}"), fix=err.fix) from None
        process.start()
        c.process = process
        c.writer = writer
        return process

    async def _wait(self, process: WasmContainer | NativeContainer) -> int | None:
        """The started container's exit code, or None when the pod is stopping first."""
        c = self._run_of(process)
        self.event("Normal", "Created", f"Created container: {c.name}", c)
        self.event("Normal", "Started", f"Started container {c.name}", c)
        c.state = {"running": {"startedAt": format_rfc3339()}}
        self.publish()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int | None] = loop.create_future()

        def settle(code: int | None) -> None:
            if not done.done():
                done.set_result(code)

        writer = c.writer

        def report() -> None:  # one thread per container waits for its end, then closes its log
            code = process.wait()
            if writer is not None:
                writer.close()
            loop.call_soon_threadsafe(settle, code)

        threading.Thread(target=report, name=f"wait-{process.spec.name}", daemon=True).start()
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([done, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        return done.result() if done.done() and not self.stopping.is_set() else None

    def _run_of(self, process: WasmContainer | NativeContainer) -> ContainerRun:
        return next(c for c in self.all_containers() if c.process is process)

    def _terminated(self, c: ContainerRun, process: WasmContainer | NativeContainer) -> None:
        code = process.exit_code if process.exit_code is not None else 137
        started = (c.state.get("running") or {}).get("startedAt") or format_rfc3339()
        reason = "OOMKilled" if process.outcome == "oom-killed" else "Completed" if code == 0 else "Error"
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": format_rfc3339(),
                "containerID": c.container_id,
            }
        }

    def _start_failed(self, c: ContainerRun, err: ContainerFailure) -> None:
        message = err.problem  # the runtime's words only; labkit's hint goes to the kubelet log
        if err.fix:
            log.info("%s/%s: %s (hint: %s)", pod_key(self.pod), c.name, err.problem, err.fix)
        if err.reason == "CreateContainerConfigError":
            self.event("Warning", "Failed", f"Error: {message}", c)
            c.state = {"waiting": {"reason": err.reason, "message": message}}
            return
        self.event(
            "Normal", "Created", f"Created container: {c.name}", c
        )  # created, as the kubelet records it; the start failed
        self.event("Warning", "Failed", f"Error: {message}", c)
        now = format_rfc3339()
        c.state = {
            "terminated": {
                "exitCode": EXIT_START_ERROR,
                "reason": "StartError",
                "message": message,
                "startedAt": "1970-01-01T00:00:00Z",
                "finishedAt": now,
                "containerID": c.container_id,
            }
        }

    async def restart_after_backoff(self, c: ContainerRun, ran_for: float) -> bool:
        """The kubelet's restart back-off; True when the pod stops meanwhile."""
        finished = c.state.get("terminated")
        if finished:
            c.last_state = {"terminated": finished}
        if ran_for >= BACKOFF_RESET_S:
            c.backoff_s = 0.0
        delay = c.backoff_s
        c.backoff_s = min(delay * 2, BACKOFF_MAX_S) if delay else BACKOFF_INITIAL_S
        if finished and finished.get("reason") == "StartError":
            c.state = {"waiting": {"reason": "RunContainerError", "message": finished.get("message", "")}}
            self.publish()
        if delay:
            self.event(
                "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {pod_key(self.pod)}", c
            )
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(delay)}s restarting failed container={c.name} pod={pod_key(self.pod)}",
                }
            }
            self.publish()
            if await self.sleep(delay):
                return True
        elif "waiting" not in c.state:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        if finished:
            c.restart_count += 1
        return self.stopping.is_set()


def _log_to(writer: LogWriter, stream: str) -> Callable[[str], None]:
    return lambda line: writer.write(stream, line)
