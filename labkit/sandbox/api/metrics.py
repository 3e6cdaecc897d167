"""The resource metrics API (``metrics.k8s.io/v1beta1``) that ``kubectl top`` reads, fed by the nodes' real usage.

On k3s, metrics-server serves this group as an aggregated API. It answers NodeMetrics and PodMetrics
(lists and single objects) with ``timestamp``, ``window`` and ``usage`` ``{"cpu": "<n>n", "memory":
"<k>Ki"}``: CPU in nanocores, memory in bytes as a binary quantity (metrics-server
pkg/api/{node,pod}.go and pkg/storage). The numbers come from each node's usage file
(:mod:`labkit.sandbox.usagefiles`): the CPU clocks of the guests' threads and the size of their
linear memory. Label selectors filter as metrics-server filters, by the node's or pod's labels.

>>> cpu_quantity(137208911), cpu_quantity(5_000_000), cpu_quantity(0), memory_quantity(13103104)
('137208911n', '5m', '0', '12796Ki')
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.usagefiles import read_samples
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")
#: The two resources as metrics-server registers them, for discovery (not stored: not in the registry).
DISCOVERY_RESOURCES = [
    Resource(GROUP, VERSION, "NodeMetrics", "nodes", False, verbs=("get", "list")),
    Resource(GROUP, VERSION, "PodMetrics", "pods", True, verbs=("get", "list")),
]


def cpu_quantity(nanocores: int) -> str:
    """A decimal quantity in its canonical form (``resource.NewScaledQuantity(n, -9).String()``)."""
    if nanocores == 0:
        return "0"
    for suffix, scale in (("", 10**9), ("m", 10**6), ("u", 10**3)):
        if nanocores % scale == 0:
            return f"{nanocores // scale}{suffix}"
    return f"{nanocores}n"


def memory_quantity(size: int) -> str:
    """A binary-SI quantity in its canonical form (``resource.NewQuantity(b, BinarySI).String()``)."""
    for suffix, scale in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size and size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def go_duration(seconds: float) -> str:
    """A window as Go's ``time.Duration.String()`` writes it.

    >>> go_duration(10.0625), go_duration(5.0), go_duration(75.5), go_duration(0.25), go_duration(3661)
    ('10.0625s', '5s', '1m15.5s', '250ms', '1h1m1s')
    """
    ns = round(seconds * 1e9)

    def decimal(value: int, unit: int) -> str:
        whole, frac = divmod(value, unit)
        digits = len(str(unit)) - 1
        return f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".") if frac else str(whole)

    if ns < 10**9:
        for unit, name in ((10**6, "ms"), (10**3, "µs"), (1, "ns")):
            if ns >= unit or unit == 1:
                return f"{decimal(ns, unit)}{name}"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = f"{decimal(rest, 10**9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


def _meta(obj: dict[str, Any], now: str) -> dict[str, Any]:
    meta = {"name": obj["metadata"]["name"], "creationTimestamp": now}
    if obj["metadata"].get("namespace"):
        meta["namespace"] = obj["metadata"]["namespace"]
    if obj["metadata"].get("labels"):
        meta["labels"] = obj["metadata"]["labels"]
    return meta


def _usage(sample: dict[str, Any]) -> dict[str, str]:
    """A node's or container's sample as the metrics API's usage: CPU and memory quantities."""
    return {"cpu": cpu_quantity(int(sample["cpuNanoCores"])), "memory": memory_quantity(int(sample["memoryBytes"]))}


def _item(obj: dict[str, Any], now: str, timestamp: str, window: float, **usage: Any) -> dict[str, Any]:
    """A NodeMetrics or PodMetrics item: *obj*'s metadata, the sample's time and window, then *usage*."""
    return {"metadata": _meta(obj, now), "timestamp": timestamp, "window": go_duration(window), **usage}


class MetricsApi:
    """Answers the metrics group's paths from the nodes' usage files and the stored Nodes and Pods."""

    def __init__(self, core: ApiCore, directory: Path) -> None:
        self.core, self.directory = core, Path(directory)

    def node_metrics(self, label_selector: str = "", name: str | None = None) -> list[dict[str, Any]]:
        samples = {s.get("node"): s for s in read_samples(self.directory) if s.get("cpuNanoCores") is not None}
        now = format_rfc3339()
        return [
            _item(node, now, sample["timestamp"], sample["window"], usage=_usage(sample))
            for node, sample in self._sampled(NODES, None, label_selector, name, "name", samples)
        ]

    def pod_metrics(
        self, namespace: str | None, label_selector: str = "", name: str | None = None
    ) -> list[dict[str, Any]]:
        by_uid = {p["uid"]: (s, p) for s in read_samples(self.directory) for p in s.get("pods") or ()}
        now = format_rfc3339()
        return [
            _item(
                pod,
                now,
                sample["timestamp"],
                usage["window"],
                containers=[{"name": c["name"], "usage": _usage(c)} for c in usage["containers"]],
            )
            for pod, (sample, usage) in self._sampled(PODS, namespace, label_selector, name, "uid", by_uid)
        ]

    def _sampled(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        name: str | None,
        key: str,
        samples: dict[Any, Any],
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """The stored objects (named *name*, if given) that have a sample, found by their ``metadata[key]``."""
        for obj in self.core.list(resource, namespace, label_selector=label_selector)["items"]:
            found = samples.get(obj["metadata"][key])
            if found is not None and (name is None or obj["metadata"]["name"] == name):
                yield obj, found

    @staticmethod
    def target(rest: list[str]) -> tuple[Resource, str | None, str | None]:
        """The metrics resource, namespace and name a path below ``/apis/metrics.k8s.io/v1beta1/`` names."""
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = next((r for r in DISCOVERY_RESOURCES if rest and r.plural == rest[0]), None)
        if resource is None or len(rest) > 2 or (namespace is not None and not resource.namespaced):
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return resource, namespace, rest[1] if len(rest) == 2 else None

    def answer(
        self, resource: Resource, namespace: str | None, name: str | None, label_selector: str
    ) -> dict[str, Any]:
        """A NodeMetrics/PodMetrics object or list; 404 in metrics-server's words when there is none."""
        kind = resource.kind
        if kind == "NodeMetrics":
            items = self.node_metrics(label_selector, name)
        else:
            items = self.pod_metrics(namespace, label_selector, name)
        if name is None:
            return {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items}
        if not items:  # metrics-server's words: podmetrics.metrics.k8s.io "default/web-0" not found
            shown = f"{namespace}/{name}" if namespace else name
            details = {"name": shown, "group": GROUP, "kind": kind.lower()}
            raise StatusError(404, "NotFound", f'{kind.lower()}.{GROUP} "{shown}" not found', details)
        return {"kind": kind, "apiVersion": API_VERSION, **items[0]}
