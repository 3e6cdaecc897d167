"""Per-kind column printers, so ``kubectl get`` prints the columns a real cluster prints.

The printers follow the Kubernetes 1.32 API server printers
(``pkg/printers/internalversion/printers.go``): the same columns, the same derivations (a pod's
STATUS, RESTARTS ``N (Xs ago)``, a job's STATUS/DURATION, ...) and the same
``duration.HumanDuration`` ages. :mod:`labkit.sandbox.api.tables` wraps their rows in a Table.

>>> from datetime import datetime, timezone
>>> from labkit.sandbox.api.registry import RESOURCES
>>> cm = {"metadata": {"name": "cfg", "creationTimestamp": "2025-01-01T00:00:00Z"}, "data": {"a": "1"}}
>>> printer = PRINTERS[("", "configmaps")]
>>> printer.row(cm, datetime(2025, 1, 1, 0, 3, 2, tzinfo=timezone.utc))
['cfg', 1, '3m2s']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labkit.timefmt import parse_optional

Obj = dict[str, Any]


# --------------------------------------------------------------------------- time


def human_duration(seconds: float) -> str:
    """Kubernetes ``duration.HumanDuration``: about 2-3 significant figures.

    >>> [human_duration(s) for s in (5, 119, 182, 600, 3 * 3600 + 5 * 60, 51 * 3600, 9 * 86400, 800 * 86400)]
    ['5s', '119s', '3m2s', '10m', '3h5m', '2d3h', '9d', '2y70d']
    """
    whole = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(value: str | None, now: datetime) -> str:
    moment = parse_optional(value)
    return "<unknown>" if moment is None else human_duration((now - moment).total_seconds())


def _age(obj: Obj, now: datetime) -> str:
    return _since(obj.get("metadata", {}).get("creationTimestamp"), now)


# --------------------------------------------------------------------------- shared formatting


def format_labels(labels: dict[str, str] | None, empty: str = "<none>") -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or empty


def format_selector(selector: Obj | None, empty: str = "<none>") -> str:
    """``metav1.FormatLabelSelector``: requirements sorted by key, as ``kubectl get -o wide`` shows them.

    >>> format_selector({"matchLabels": {"app": "web"},
    ...                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]})
    'app=web,tier in (a,b)'
    """
    requirements: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (selector or {}).get("matchLabels", {}).items()]
    for expr in (selector or {}).get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], ",".join(sorted(expr.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                "DoesNotExist": f"!{key}"}.get(op, f"{key} {op} ({values})")  # fmt: skip
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0])) or empty


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers", [])
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _template_spec(obj: Obj) -> Obj:
    spec: Obj = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def _condition_true(conditions: list[Obj] | None, kind: str) -> bool:
    """The first condition of this type is True (printers.go ``hasJobCondition`` and friends)."""
    return next((c.get("status") == "True" for c in conditions or [] if c.get("type") == kind), False)


def _list_with_more(items: list[str], total: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty


# --------------------------------------------------------------------------- columns and printers


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0  # 1 = only with -o wide
    format: str = ""

    def definition(self) -> Obj:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}  # fmt: skip


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column("Age", description="Time since the object was created (creationTimestamp).")
CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")
SELECTOR = Column("Selector", priority=1, description="Label query over the pods this object manages.")

RowFn = Callable[[Obj, datetime], list[Any]]


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    row: RowFn


def _name(obj: Obj) -> str:
    name: str = obj.get("metadata", {}).get("name", "")
    return name


# ---- pods


def _restartable(container: Obj | None) -> bool:
    return container is not None and container.get("restartPolicy") == "Always"


def _finished_at(status: Obj) -> datetime | None:
    return parse_optional(status.get("lastState", {}).get("terminated", {}).get("finishedAt"))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a


def _exit_text(terminated: Obj, prefix: str = "") -> str:
    if terminated.get("reason"):
        return f"{prefix}{terminated['reason']}"
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def pod_status(pod: Obj) -> tuple[str, int, int, int, datetime | None]:
    """``(STATUS, ready, total, restarts, last restart)`` exactly as the 1.32 pod printer derives them.

    >>> pod_status({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running",
    ...     "containerStatuses": [{"name": "c", "restartCount": 3, "ready": False,
    ...                            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})[:4]
    ('CrashLoopBackOff', 0, 1, 3)
    """
    spec, status = pod.get("spec", {}), pod.get("status", {})
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    conditions = status.get("conditions", [])
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions):
        reason = "SchedulingGated"

    init_specs = {c.get("name"): c for c in spec.get("initContainers", [])}
    total = len(spec.get("containers", [])) + sum(_restartable(c) for c in init_specs.values())
    ready = restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = None

    initializing = False
    for index, cs in enumerate(status.get("initContainerStatuses", [])):
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, _finished_at(cs))
        sidecar = _restartable(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = _later(last_sidecar_restart, _finished_at(cs))
        state = cs.get("state", {})
        if "terminated" in state and state["terminated"].get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started"):
            ready += bool(cs.get("ready"))
            continue
        waiting_reason = state.get("waiting", {}).get("reason", "")
        if "terminated" in state:
            reason = _exit_text(state["terminated"], "Init:")
        elif waiting_reason and waiting_reason != "PodInitializing":
            reason = "Init:" + waiting_reason
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses", [])):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, _finished_at(cs))
            state = cs.get("state", {})
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif "terminated" in state:
                reason = _exit_text(state["terminated"])
            elif cs.get("ready") and "running" in state:
                has_running = True
                ready += 1
        # a completed container next to a running one: the pod is still running
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if pod.get("metadata", {}).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: Obj, now: datetime) -> list[Any]:
    reason, ready, total, restarts, last_restart = pod_status(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    spec, status = pod.get("spec", {}), pod.get("status", {})
    # the real API server always fills podIPs from podIP; accept either
    ips = [p.get("ip", "") for p in status.get("podIPs", [])] or [status.get("podIP", "")]
    gates = spec.get("readinessGates", [])
    gates_text = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in reversed(status.get("conditions", []))}
        true = sum(conditions.get(g.get("conditionType")) == "True" for g in gates)
        gates_text = f"{true}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
            ips[0] or "<none>", spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            gates_text]  # fmt: skip


# ---- workloads


def _deployment_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    names, images = _containers(_template_spec(obj))
    return [_name(obj), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(obj, now),
            names, images, format_selector(spec.get("selector"), empty="")]  # fmt: skip


def _replicaset_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    names, images = _containers(_template_spec(obj))
    return [_name(obj), spec.get("replicas", 1), status.get("replicas", 0), status.get("readyReplicas", 0),
            _age(obj, now), names, images, format_selector(spec.get("selector"))]  # fmt: skip


def _job_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_optional(status.get("startTime")), parse_optional(status.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    conditions = status.get("conditions", [])
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif obj.get("metadata", {}).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template_spec(obj))
    return [_name(obj), state, completions, duration, _age(obj, now), names, images,
            format_selector(spec.get("selector"))]  # fmt: skip


def _cronjob_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    suspend = spec.get("suspend")
    job_spec = spec.get("jobTemplate", {}).get("spec", {})
    names, images = _containers(job_spec.get("template", {}).get("spec", {}))
    last = status.get("lastScheduleTime")
    return [_name(obj), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else str(bool(suspend)), len(status.get("active", [])),
            _since(last, now) if last else "<none>", _age(obj, now), names, images,
            format_selector(job_spec.get("selector"))]  # fmt: skip


# ---- networking


def _external_ip(spec: Obj, status: Obj) -> str:
    kind, external = spec.get("type", "ClusterIP"), spec.get("externalIPs", [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = status.get("loadBalancer", {}).get("ingress", [])
        lb = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
        return ",".join(lb + external) or "<pending>"
    if kind == "ExternalName":
        return f"{spec.get('externalName', '')}"
    return "<unknown>"


def _service_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    ports = ",".join(
        f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
        else f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports", [])
    )  # fmt: skip
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_name(obj), spec.get("type", "ClusterIP"), cluster_ips[0] if cluster_ips else "<none>",
            _external_ip(spec, obj.get("status", {})), ports or "<none>", _age(obj, now),
            format_labels(spec.get("selector"))]  # fmt: skip


def format_endpoints(endpoints: Obj) -> str:
    """``ip:port`` of the first three addresses, then ``+ N more...``; ``<none>`` without subsets."""
    subsets = endpoints.get("subsets", [])
    if not subsets:
        return "<none>"
    shown: list[str] = []
    total = 0
    for subset in subsets:
        addresses = [a.get("ip", "") for a in subset.get("addresses", [])]
        ports = subset.get("ports", [])
        pairs = addresses if not ports else [_host_port(ip, p.get("port")) for p in ports for ip in addresses]
        total += len(pairs)
        shown.extend(pairs[: max(0, 3 - len(shown))])
    return _list_with_more(shown, total, empty="")


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _endpointslice_row(obj: Obj, now: datetime) -> list[Any]:
    ports = obj.get("ports") or []
    port_names = [str(p["port"]) if p.get("port") is not None else p.get("name") or "*" for p in ports]
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses", [])]
    return [_name(obj), obj.get("addressType", ""), _list_with_more(port_names, len(port_names)),
            _list_with_more(addresses, len(addresses)), _age(obj, now)]  # fmt: skip


# ---- cluster


def _node_row(obj: Obj, now: datetime) -> list[Any]:
    status, info = obj.get("status", {}), obj.get("status", {}).get("nodeInfo", {})
    ready = next((c for c in reversed(status.get("conditions", [])) if c.get("type") == "Ready"), None)
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if obj.get("spec", {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in obj.get("metadata", {}).get("labels", {}).items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    addresses = status.get("addresses", [])

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    return [_name(obj), ",".join(states), ",".join(sorted(roles)) or "<none>", _age(obj, now),
            info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]  # fmt: skip


def _core_event(obj: Obj) -> Obj:
    """An ``events.k8s.io/v1`` Event in the core ``v1`` field names the printer reads."""
    if "regarding" not in obj and "note" not in obj and "deprecatedSource" not in obj:
        return obj
    return {
        "metadata": obj.get("metadata", {}),
        "involvedObject": obj.get("regarding", {}),
        "message": obj.get("note", ""),
        "type": obj.get("type", ""),
        "reason": obj.get("reason", ""),
        "source": obj.get("deprecatedSource", {}),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount", 0),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }


def _event_row(obj: Obj, now: datetime) -> list[Any]:
    event = _core_event(obj)
    first = _since(event.get("firstTimestamp") or event.get("eventTime"), now)
    last = _since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 1  # singleton events of the new API carry no count
    if event.get("series"):
        last = _since(event["series"].get("lastObservedTime"), now)
        count = event["series"].get("count", 0)
    involved = event.get("involvedObject", {})
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent", "")
    host = source.get("host") or event.get("reportingInstance", "")
    return [last, event.get("type", ""), event.get("reason", ""), target, involved.get("fieldPath", ""),
            f"{component}, {host}" if host else component, (event.get("message") or "").strip(), first, count,
            _name(obj)]  # fmt: skip


def _binding_row(obj: Obj, now: datetime) -> list[Any]:
    ref = obj.get("roleRef", {})
    subjects = obj.get("subjects") or []

    def of(kind: str) -> str:
        names = [f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount" else s.get("name", "")
                 for s in subjects if s.get("kind") == kind]  # fmt: skip
        return ", ".join(names)

    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj, now),
            of("User"), of("Group"), of("ServiceAccount")]  # fmt: skip


def _created_at(obj: Obj, now: datetime) -> list[Any]:
    created = parse_optional(obj.get("metadata", {}).get("creationTimestamp"))
    stamp = (created or datetime(1, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return [_name(obj), stamp.strftime("%Y-%m-%dT%H:%M:%SZ")]


def _simple(*cells: Callable[[Obj], Any]) -> RowFn:
    """A row of NAME, the given cells, then AGE: the shape of most printers."""
    return lambda obj, now: [_name(obj), *(cell(obj) for cell in cells), _age(obj, now)]


def _col(name: str, description: str, cell_type: str = "string", priority: int = 0) -> Column:
    return Column(name, type=cell_type, description=description, priority=priority)


_WORKLOAD_WIDE = (CONTAINERS, IMAGES, SELECTOR)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "pods"): Printer((NAME, _col("Ready", "Ready containers of all containers."),
                           _col("Status", "The aggregate status of the containers in this pod."),
                           _col("Restarts", "Container restarts, and how long ago the last one was."),
                           AGE, _col("IP", "The pod's IP address.", priority=1),
                           _col("Node", "The node the pod is bound to.", priority=1),
                           _col("Nominated Node", "The node a preempting pod is nominated for.", priority=1),
                           _col("Readiness Gates", "True readiness gates of all gates.", priority=1)), _pod_row),
    ("apps", "deployments"): Printer((NAME, _col("Ready", "Ready pods of desired pods."),
                                      _col("Up-to-date", "Pods running the latest template."),
                                      _col("Available", "Pods available to serve."), AGE, *_WORKLOAD_WIDE),
                                     _deployment_row),
    ("apps", "replicasets"): Printer((NAME, _col("Desired", "Desired pods.", "integer"),
                                      _col("Current", "Current pods.", "integer"),
                                      _col("Ready", "Ready pods.", "integer"), AGE, *_WORKLOAD_WIDE), _replicaset_row),
    ("batch", "jobs"): Printer((NAME, _col("Status", "Status of the job."),
                                _col("Completions", "Succeeded pods of the completions wanted."),
                                _col("Duration", "Time required to complete the job."), AGE, *_WORKLOAD_WIDE),
                               _job_row),
    ("batch", "cronjobs"): Printer((NAME, _col("Schedule", "The cron schedule."), _col("Timezone", "Time zone."),
                                    _col("Suspend", "Whether scheduling is suspended.", "boolean"),
                                    _col("Active", "Running jobs.", "integer"),
                                    _col("Last Schedule", "When a job was last scheduled."), AGE, *_WORKLOAD_WIDE),
                                   _cronjob_row),
    ("", "services"): Printer((NAME, _col("Type", "How the service is exposed."),
                               _col("Cluster-IP", "The service's cluster IP."),
                               _col("External-IP", "External addresses of the service."),
                               _col("Port(s)", "The service's ports."), AGE,
                               _col("Selector", "Pods this service routes to.", priority=1)), _service_row),
    ("", "endpoints"): Printer((NAME, _col("Endpoints", "Ready addresses and ports."), AGE),
                               _simple(format_endpoints)),
    ("discovery.k8s.io", "endpointslices"): Printer((NAME, _col("AddressType", "Address family."),
                                                     _col("Ports", "Ports of the slice."),
                                                     _col("Endpoints", "Addresses of the slice."), AGE),
                                                    _endpointslice_row),
    ("", "configmaps"): Printer((NAME, _col("Data", "Number of keys.", "string"), AGE),
                                _simple(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))),
    ("", "secrets"): Printer((NAME, _col("Type", "The secret type."), _col("Data", "Number of keys."), AGE),
                             _simple(lambda o: o.get("type", ""), lambda o: len(o.get("data") or {}))),
    ("", "namespaces"): Printer((NAME, _col("Status", "The status of the namespace."), AGE),
                                _simple(lambda o: o.get("status", {}).get("phase", ""))),
    ("", "serviceaccounts"): Printer((NAME, _col("Secrets", "Number of secrets."), AGE),
                                     _simple(lambda o: len(o.get("secrets") or []))),
    ("", "nodes"): Printer((NAME, _col("Status", "The status of the node."), _col("Roles", "The roles of the node."),
                            AGE, _col("Version", "Kubelet version."),
                            _col("Internal-IP", "The node's internal address.", priority=1),
                            _col("External-IP", "The node's external address.", priority=1),
                            _col("OS-Image", "Operating system image.", priority=1),
                            _col("Kernel-Version", "Kernel version.", priority=1),
                            _col("Container-Runtime", "Container runtime and version.", priority=1)), _node_row),
    ("node.k8s.io", "runtimeclasses"): Printer((NAME, _col("Handler", "The CRI handler this class runs with."), AGE),
                                               _simple(lambda o: o.get("handler", ""))),
}  # fmt: skip

_EVENT = Printer((_col("Last Seen", "When the event last happened."), _col("Type", "Normal or Warning."),
                  _col("Reason", "Why the event happened."), _col("Object", "The object the event is about."),
                  _col("Subobject", "The part of the object, e.g. a container.", priority=1),
                  _col("Source", "The component that reported it.", priority=1),
                  _col("Message", "What happened."),
                  _col("First Seen", "When the event first happened.", priority=1),
                  _col("Count", "How often it happened.", priority=1),
                  Column("Name", format="name", priority=1, description="The event's name.")), _event_row)  # fmt: skip
_BINDING = Printer((NAME, _col("Role", "The role the subjects get."), AGE,
                    _col("Users", "Users bound.", priority=1), _col("Groups", "Groups bound.", priority=1),
                    _col("ServiceAccounts", "Service accounts bound.", priority=1)), _binding_row)  # fmt: skip
# Built-in kinds without a printer (roles) get the API server's default convertor.
_CREATED_AT = Printer((NAME, Column("Created At", type="date", description="When the object was created.")),
                      _created_at)  # fmt: skip
PRINTERS.update({
    ("", "events"): _EVENT, ("events.k8s.io", "events"): _EVENT,
    ("rbac.authorization.k8s.io", "rolebindings"): _BINDING,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _BINDING,
    ("rbac.authorization.k8s.io", "roles"): _CREATED_AT, ("rbac.authorization.k8s.io", "clusterroles"): _CREATED_AT,
})  # fmt: skip

#: any other kind (custom resources): NAME and AGE
DEFAULT = Printer((NAME, AGE), _simple())
