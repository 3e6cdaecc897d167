"""The kubelet's prober: readiness, liveness and startup probes for one pod's containers.

It follows ``pkg/kubelet/prober/`` (Kubernetes 1.32):

- one :class:`ProbeWorker` per container and probe type (``worker.go``), ticking every ``periodSeconds``; a new
  container ID resets it to its initial value (readiness: failure, liveness: success, startup: unknown) and takes
  it off hold; nothing is probed before ``initialDelaySeconds`` have passed since the container started; a result
  changes only after ``successThreshold``/``failureThreshold`` runs in a row;
- startup gates the others: until the startup probe succeeds, liveness and readiness do not run, and once it has
  succeeded it runs no more for that container;
- a probe that errored (it could not be run) is retried up to 3 times, then its result is thrown away
  (``prober.go``: ``maxProbeRetries``);
- events as the prober records them: ``Unhealthy`` (Warning) ``<Type> probe failed: <output>`` or
  ``<Type> probe errored and resulted in unknown state: <error>``, ``ProbeWarning`` for a redirect not followed;
- a liveness (or startup) failure kills the container: ``Killing`` (Normal) ``Container <name> failed liveness
  probe, will be restarted`` (``kuberuntime_manager.go`` computePodActions; no ", will be restarted" when
  restartPolicy is Never), after which the pod worker restarts it with its back-off;
- :meth:`ProbeManager.update_status` is ``UpdatePodStatus`` (``prober_manager.go``): ``started`` is true for a
  running container whose startup probe succeeded (or that has none), ``ready`` for a started, running container
  whose readiness probe succeeded (or that has none) — so the pod's Ready condition, and with it the Endpoints,
  follow the readiness probe.

A node bounds what probes may cost (:class:`ProbeBudget`): at most :data:`MAX_CONCURRENT` run at once and
:data:`MAX_PER_SECOND` start per second; a probe over budget waits its turn, so many probes with short periods
slow down instead of starving the node's other work. Upstream sets no such limit [sandbox rule].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from labkit.sandbox.kubelet import probe_handlers as handlers
from labkit.sandbox.kubelet.probe_handlers import FAILURE, SUCCESS, UNKNOWN, WARNING, CommandRunner, Outcome

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.podstate import ContainerRun

log = logging.getLogger("labkit.sandbox.kubelet.prober")

READINESS, LIVENESS, STARTUP = "Readiness", "Liveness", "Startup"
FIELDS = {READINESS: "readinessProbe", LIVENESS: "livenessProbe", STARTUP: "startupProbe"}
#: worker.go newWorker: the result a probe holds before it has run for a container
INITIAL = {READINESS: FAILURE, LIVENESS: SUCCESS, STARTUP: UNKNOWN}
MAX_PROBE_RETRIES = 3  # prober.go maxProbeRetries
#: the node's probe budget [sandbox rule]: concurrent probe runs, and probe runs started per second
MAX_CONCURRENT, MAX_PER_SECOND = 16, 50.0


class ProbeBudget:
    """What one node lets its probes cost: a semaphore and an evenly spaced start rate."""

    def __init__(self, concurrent: int = MAX_CONCURRENT, per_second: float = MAX_PER_SECOND) -> None:
        self._slots = asyncio.Semaphore(concurrent)
        self._spacing = 1.0 / per_second
        self._next = 0.0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._spacing
            if start > now:
                await asyncio.sleep(start - now)
            yield


class ProbeHost(Protocol):
    """What the prober uses of its pod worker (:class:`~labkit.sandbox.kubelet.pod_workers.PodWorker`)."""

    pod: dict[str, Any]
    pod_ip: str
    containers: list[ContainerRun]
    stopping: asyncio.Event

    def event(self, type_: str, reason: str, message: str, container: ContainerRun | None = None) -> None: ...

    def publish(self, settle: bool = False) -> None: ...

    def phase(self) -> str: ...


class ProbeManager:
    """The probe workers of one pod and their latest results (results are kept per container ID)."""

    def __init__(self, host: ProbeHost, budget: ProbeBudget, runner: CommandRunner) -> None:
        self.host, self.budget, self.runner = host, budget, runner
        self.workers: dict[tuple[str, str], ProbeWorker] = {}
        for c in host.containers:
            for kind, field in FIELDS.items():
                if c.spec.get(field):
                    self.workers[(c.name, kind)] = ProbeWorker(self, c, kind, c.spec[field])
        self.results: dict[tuple[str, str], tuple[str, str]] = {}  # (container, kind) -> (container ID, result)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(w.run()) for w in self.workers.values()]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    def result(self, c: ContainerRun, kind: str) -> str | None:
        held = self.results.get((c.name, kind))
        return held[1] if held and held[0] == c.container_id else None

    def set_result(self, c: ContainerRun, kind: str, result: str) -> None:
        key = (c.name, kind)
        if self.results.get(key) != (c.container_id, result):
            self.results[key] = (c.container_id, result)
            self.host.publish()

    def started(self, c: ContainerRun) -> bool:
        """isContainerStarted: running, and the startup probe succeeded or there is none."""
        if "running" not in c.state:
            return False
        result = self.result(c, STARTUP)
        if result is not None:
            return result == SUCCESS
        return (c.name, STARTUP) not in self.workers

    def update_status(self, statuses: Sequence[dict[str, Any]]) -> None:
        """UpdatePodStatus: each container status's ``started`` and ``ready``."""
        by_name = {c.name: c for c in self.host.containers}
        for status in statuses:
            c = by_name.get(status["name"])
            if c is None:
                continue
            started = self.started(c)
            status["started"] = started
            ready = False
            if started:
                if self.result(c, READINESS) == SUCCESS:
                    ready = True
                else:
                    worker = self.workers.get((c.name, READINESS))
                    ready = worker is None  # no readinessProbe -> always ready
                    if worker is not None:
                        worker.trigger()  # run the readiness probe now rather than at its next tick
            status["ready"] = ready

    def kill(self, c: ContainerRun, kind: str) -> None:
        """A liveness or startup failure: the container is killed; the pod worker restarts it per restartPolicy.

        A wasm guest cannot catch SIGTERM, so the kill is prompt [inferred]; the probe's (or pod's)
        terminationGracePeriodSeconds would bound the wait, as it does for a deleted pod."""
        message = f"Container {c.name} failed {kind.lower()} probe"
        if self.host.pod["spec"].get("restartPolicy", "Always") != "Never":
            message += ", will be restarted"
        self.host.event("Normal", "Killing", message, c)
        if c.process is not None:
            c.process.kill()


class ProbeWorker:
    """Probes one container periodically (worker.go)."""

    def __init__(self, manager: ProbeManager, c: ContainerRun, kind: str, spec: dict[str, Any]) -> None:
        self.manager, self.c, self.kind, self.spec = manager, c, kind, spec
        self.period = float(spec.get("periodSeconds") or 10)
        self.timeout = float(spec.get("timeoutSeconds") or 1)
        self.initial_delay = float(spec.get("initialDelaySeconds") or 0)
        self.success_threshold = int(spec.get("successThreshold") or 1)
        self.failure_threshold = int(spec.get("failureThreshold") or 3)
        self.container_id = ""
        self.last_result: str | None = None
        self.result_run = 0
        self.on_hold = False
        self._manual = asyncio.Event()

    def trigger(self) -> None:
        self._manual.set()

    async def run(self) -> None:
        stopping = self.manager.host.stopping
        while not stopping.is_set() and await self.do_probe():
            self._manual.clear()
            waiters = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._manual.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.period, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def do_probe(self) -> bool:
        """One tick; False when the worker should end."""
        host, c = self.manager.host, self.c
        if host.phase() in ("Succeeded", "Failed"):
            return False
        if not c.container_id:
            return True  # not created yet
        if c.container_id != self.container_id:
            self.container_id, self.on_hold = c.container_id, False
            self.last_result, self.result_run = None, 0
            self.manager.set_result(c, self.kind, INITIAL[self.kind])
        if self.on_hold:
            return True
        if "running" not in c.state or c.process is None:
            self.manager.set_result(c, self.kind, FAILURE)
            return "terminated" not in c.state or host.pod["spec"].get("restartPolicy") != "Never"
        if host.pod["metadata"].get("deletionTimestamp") and self.kind in (LIVENESS, STARTUP):
            self.manager.set_result(c, self.kind, SUCCESS)  # a quiet shutdown
            return False
        if time.monotonic() - (c.process.started_at or 0.0) < self.initial_delay:
            return True
        if self.manager.started(c) != (self.kind != STARTUP):
            return True  # startup runs only until the container started; the others only after
        outcome = await self.probe()
        if outcome.error is not None:
            return True  # a prober error: the result is thrown away
        result = SUCCESS if outcome.result in (SUCCESS, WARNING) else FAILURE
        if result == self.last_result:
            self.result_run += 1
        else:
            self.last_result, self.result_run = result, 1
        if (result == FAILURE and self.result_run < self.failure_threshold) or (
            result == SUCCESS and self.result_run < self.success_threshold
        ):
            return True
        self.manager.set_result(c, self.kind, result)
        if (self.kind == LIVENESS and result == FAILURE) or self.kind == STARTUP:
            self.on_hold, self.result_run = True, 0  # until a new container
            if result == FAILURE:
                self.manager.kill(c, self.kind)
        return True

    async def probe(self) -> Outcome:
        """prober.probe: run with retries, record the event."""
        outcome = Outcome(UNKNOWN)
        for _ in range(MAX_PROBE_RETRIES):
            async with self.manager.budget.slot():
                outcome = await self.run_handler()
            if outcome.error is None:
                break
        host, c, kind = self.manager.host, self.c, self.kind
        if outcome.error is not None:
            errored = f"{kind} probe errored and resulted in {outcome.result} state: {outcome.error}"
            host.event("Warning", "Unhealthy", errored, c)
        elif outcome.result == WARNING:
            host.event("Warning", "ProbeWarning", f"{kind} probe warning: {outcome.output}", c)
        elif outcome.result == FAILURE:
            host.event("Warning", "Unhealthy", f"{kind} probe failed: {outcome.output}", c)
        return outcome

    async def run_handler(self) -> Outcome:
        spec, c, host = self.spec, self.c, self.manager.host
        try:
            if "exec" in spec:
                command = (spec["exec"] or {}).get("command") or []
                return await handlers.exec_probe(self.manager.runner, c.name, c.container_id, command, self.timeout)
            if "httpGet" in spec:
                target = handlers.http_target(spec["httpGet"], c.spec, host.pod_ip)
                return await handlers.http_probe(target, self.timeout)
            if "tcpSocket" in spec:
                action = spec["tcpSocket"]
                port = handlers.resolve_port(action.get("port"), c.spec)
                return await handlers.tcp_probe(action.get("host") or host.pod_ip, port, self.timeout)
            if "grpc" in spec:
                action = spec["grpc"]
                port = handlers.resolve_port(action.get("port"), c.spec)
                return await handlers.grpc_probe(host.pod_ip, port, action.get("service") or "", self.timeout)
        except LookupError as err:  # a named port the container does not declare
            return Outcome(UNKNOWN, error=str(err.args[0]))
        meta = host.pod["metadata"]
        return Outcome(UNKNOWN, error=f"missing probe handler for {meta['name']}_{meta.get('namespace')}:{c.name}")
