"""The pod health report: per pod its phase, each container's readiness, restarts, state and last state, the
pod's Warning events, and CPU/memory as ``kubectl top pod --containers`` shows them.

>>> report = pod_health_report(cluster, "app=demo", namespace="lab-06")    # doctest: +SKIP
>>> report                  # in Jupyter: tables; print(report) or report.to_markdown(): Markdown  # doctest: +SKIP
>>> report.all_ready, report.restarts, report.problems()                    # doctest: +SKIP
(False, 4, ['pod demo-7c9d-x2x: container demo restarted 4 times; last: terminated Error, exit code 3'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kubernetes.utils import parse_quantity

from labkit.evidence import event_time
from labkit.reports import render, sources
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.cluster import Cluster

#: What a CPU or memory cell shows when the metrics API has no sample for the pod (or no metrics at all).
NO_SAMPLE = "-"


def _quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``"137208911n"``, ``"12796Ki"``) as a number, as the client library parses it."""
    value: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    return value


def top_cpu(quantity: str) -> str:
    """A CPU quantity as ``kubectl top`` prints it: millicores, rounded up.

    >>> top_cpu("137208911n"), top_cpu("0"), top_cpu("2")
    ('138m', '0m', '2000m')
    """
    return _millicores(_quantity(quantity))


def _millicores(cores: Decimal) -> str:
    return f"{math.ceil(cores * 1000)}m"


def top_memory(quantity: str) -> str:
    """A memory quantity as ``kubectl top`` prints it: whole MiB, rounded down.

    >>> top_memory("13103104"), top_memory("12796Ki"), top_memory("1Gi")
    ('12Mi', '12Mi', '1024Mi')
    """
    return _mebibytes(_quantity(quantity))


def _mebibytes(size: Decimal) -> str:
    return f"{math.ceil(size) // (1024 * 1024)}Mi"


def describe_state(state: dict[str, Any] | None) -> str:
    """A container state (``state`` or ``lastState``) in one line.

    >>> describe_state({"running": {"startedAt": "2025-07-06T05:03:41Z"}})
    'running since 2025-07-06T05:03:41Z'
    >>> describe_state({"terminated": {"reason": "Error", "exitCode": 3}})
    'terminated: Error, exit code 3'
    >>> describe_state({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}), describe_state({})
    ('waiting: CrashLoopBackOff (back-off 10s)', '-')
    """
    if not state:
        return "-"
    name, detail = next(iter(state.items()))
    detail = detail or {}
    if name == "running":
        since = detail.get("startedAt")
        return f"running since {since}" if since else "running"
    if name == "terminated":
        text = f"terminated: {detail.get('reason') or 'no reason'}, exit code {detail.get('exitCode')}"
        if detail.get("signal"):
            text += f", signal {detail['signal']}"
        return text + (f" ({detail['message']})" if detail.get("message") else "")
    text = f"{name}: {detail.get('reason') or 'no reason'}"
    return text + (f" ({detail['message']})" if detail.get("message") else "")


@dataclass
class ContainerHealth:
    """One container of a pod: ``state``/``last_state`` as :func:`describe_state` words them."""

    name: str
    ready: bool
    restart_count: int
    state: str
    last_state: str
    exit_code: int | None  # of the current or else the last terminated run
    cpu: str = NO_SAMPLE
    memory: str = NO_SAMPLE


@dataclass
class WarningEvent:
    """A Warning event about a pod: ``last_seen`` as the API wrote it (RFC 3339)."""

    pod: str
    reason: str
    count: int
    message: str
    last_seen: str


@dataclass
class PodHealth:
    """One pod: phase (``Terminating`` while it is being deleted), node, containers, Warning events, usage."""

    name: str
    phase: str
    node: str
    containers: list[ContainerHealth]
    warnings: list[WarningEvent] = field(default_factory=list)
    cpu: str = NO_SAMPLE
    memory: str = NO_SAMPLE

    @property
    def ready(self) -> str:
        """``"1/2"``: ready containers of all, as ``kubectl get pods`` shows them."""
        return f"{sum(c.ready for c in self.containers)}/{len(self.containers)}"

    @property
    def restarts(self) -> int:
        return sum(c.restart_count for c in self.containers)

    @property
    def healthy(self) -> bool:
        """Running with every container ready, or Succeeded."""
        return self.phase == "Succeeded" or (self.phase == "Running" and all(c.ready for c in self.containers))


@dataclass
class PodHealthReport(render.Rendered):
    """The health of the pods a namespace or selector holds, at one moment (``taken_at``).

    ``metrics`` is ``None`` when CPU/memory came from metrics.k8s.io, else why they are missing (a cluster
    without metrics-server); the report is complete either way.
    """

    namespace: str
    target: str | None
    taken_at: str
    pods: list[PodHealth]
    metrics: str | None = None

    @property
    def warnings(self) -> list[WarningEvent]:
        """Every pod's Warning events, the most recent last."""
        return sorted((e for p in self.pods for e in p.warnings), key=lambda e: (e.last_seen, e.pod))

    @property
    def restarts(self) -> int:
        return sum(p.restarts for p in self.pods)

    @property
    def all_ready(self) -> bool:
        """At least one pod, and each is Running and ready (or Succeeded)."""
        return bool(self.pods) and all(p.healthy for p in self.pods)

    def pod(self, name: str) -> PodHealth:
        """The pod called *name* (``KeyError`` naming the pods there are)."""
        for p in self.pods:
            if p.name == name:
                return p
        raise KeyError(f"no pod {name!r} in this report (it has: {', '.join(p.name for p in self.pods) or 'none'})")

    def problems(self) -> list[str]:
        """One sentence per thing worth a look: pods not healthy, restarted containers, Warning events."""
        found = []
        for p in self.pods:
            if not p.healthy:
                waiting = "; ".join(f"{c.name} {c.state}" for c in p.containers if not c.ready)
                found.append(f"pod {p.name}: {p.phase}, {p.ready} ready" + (f" ({waiting})" if waiting else ""))
            found += [
                f"pod {p.name}: container {c.name} restarted {c.restart_count} times; last: {c.last_state}"
                for c in p.containers
                if c.restart_count
            ]
        found += [f"pod {e.pod}: {e.reason} x{e.count}: {render.one_line(e.message, 200)}" for e in self.warnings]
        return found

    def document(self) -> render.Document:
        where = self.namespace + (f", {self.target}" if self.target else "")
        healthy = sum(p.healthy for p in self.pods)
        facts = (
            ("namespace", self.namespace),
            ("pods", self.target or "all"),
            ("taken at", self.taken_at),
            (
                "summary",
                f"{len(self.pods)} pods, {healthy} healthy, {self.restarts} restarts, {len(self.warnings)} warnings",
            ),
            ("metrics", self.metrics or "metrics.k8s.io (kubectl top)"),
        )
        pods = render.Table(
            "Pods",
            ("pod", "phase", "ready", "restarts", "node", "CPU", "memory"),
            tuple((p.name, p.phase, p.ready, str(p.restarts), p.node, p.cpu, p.memory) for p in self.pods),
            empty=f"no pods in {where}",
        )
        containers = render.Table(
            "Containers",
            ("pod", "container", "ready", "restarts", "state", "last state", "CPU", "memory"),
            tuple(
                (
                    p.name,
                    c.name,
                    "yes" if c.ready else "no",
                    str(c.restart_count),
                    c.state,
                    c.last_state,
                    c.cpu,
                    c.memory,
                )
                for p in self.pods
                for c in p.containers
            ),
            empty="no containers",
        )
        events = render.Table(
            "Warning events",
            ("pod", "reason", "count", "last seen", "message"),
            tuple((e.pod, e.reason, str(e.count), e.last_seen, e.message) for e in self.warnings),
            empty="no Warning events",
        )
        return render.Document(f"Pod health: {where}", facts, (pods, containers, events))


def _container(spec: dict[str, Any], status: dict[str, Any], usage: tuple[str, str] | None) -> ContainerHealth:
    state, last = status.get("state") or {}, status.get("lastState") or {}
    code = (state.get("terminated") or {}).get("exitCode")
    if code is None:
        code = (last.get("terminated") or {}).get("exitCode")
    return ContainerHealth(
        name=spec["name"],
        ready=bool(status.get("ready")),
        restart_count=int(status.get("restartCount") or 0),
        state=describe_state(state) if status else "waiting: no status yet",
        last_state=describe_state(last),
        exit_code=code,
        cpu=top_cpu(usage[0]) if usage else NO_SAMPLE,
        memory=top_memory(usage[1]) if usage else NO_SAMPLE,
    )


def _warning(pod: str, e: dict[str, Any]) -> WarningEvent:
    return WarningEvent(
        pod, str(e.get("reason") or ""), int(e.get("count") or 1), str(e.get("message") or ""), event_time(e)
    )


def build(
    namespace: str,
    target: str | None,
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    usage: dict[str, sources.Usage],
    metrics: str | None,
    taken_at: str | None = None,
) -> PodHealthReport:
    """The report from what the API returned (pods and events as dicts); pure, so tests need no cluster."""
    by_pod: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        involved = e.get("involvedObject") or {}
        by_pod.setdefault(str(involved.get("name")), []).append(e)
    out = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        statuses = {c.get("name"): c for c in status.get("containerStatuses") or []}
        pod_usage = usage.get(meta["name"])
        containers = [
            _container(c, statuses.get(c["name"]) or {}, pod_usage.containers.get(c["name"]) if pod_usage else None)
            for c in spec.get("containers") or []
        ]
        # a pod deleted and made again under the same name must not inherit the old one's events
        warnings = [
            _warning(meta["name"], e)
            for e in by_pod.get(meta["name"], [])
            if (e.get("involvedObject") or {}).get("uid") in (None, "", meta.get("uid"))
        ]
        cpu = memory = NO_SAMPLE
        if pod_usage and pod_usage.containers:
            cpu = _millicores(sum((_quantity(c) for c, _ in pod_usage.containers.values()), Decimal(0)))
            memory = _mebibytes(sum((_quantity(m) for _, m in pod_usage.containers.values()), Decimal(0)))
        out.append(
            PodHealth(
                name=meta["name"],
                phase="Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "Pending"),
                node=spec.get("nodeName") or "<none>",
                containers=containers,
                warnings=sorted(warnings, key=lambda w: w.last_seen),
                cpu=cpu,
                memory=memory,
            )
        )
    return PodHealthReport(namespace, target, taken_at or format_rfc3339(), out, metrics)


def pod_health_report(
    cluster: Cluster, target: str | None = None, *, namespace: str, metrics: bool = True
) -> PodHealthReport:
    """The health of the pods of *target* in *namespace*: all of them (``None``), a label selector
    (``"app=demo"``), a pod name, or a workload (``"deployment/demo"``).

    Per pod: phase, each container's readiness, restartCount, state and lastState, the pod's Warning events
    (reason, count, message, last seen) and CPU/memory from metrics.k8s.io (the numbers of ``kubectl top``;
    on a cluster without metrics-server the report says "metrics unavailable" instead). ``metrics=False``
    skips that request. An unknown namespace raises :class:`~labkit.errors.LabkitError` naming the fix.

    >>> report = pod_health_report(cluster, "app=demo", namespace="lab-06")   # doctest: +SKIP
    >>> print(report.to_markdown())                                          # doctest: +SKIP
    ### Pod health: lab-06, app=demo
    ...
    """
    sources.require_namespace(cluster, namespace)
    found = sources.pods(cluster, target, namespace)
    events = sources.warning_events(cluster, namespace) if found else []
    usage: dict[str, sources.Usage] = {}
    why: str | None = "not requested (metrics=False)"
    if metrics:
        selector = target if target and "=" in target else None
        usage, why = sources.pod_usage(cluster, namespace, selector)
    return build(namespace, target, found, events, usage, why)
