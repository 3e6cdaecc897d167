"""The scheduler: binds pending pods to nodes as kube-scheduler does.

It binds through the same ``binding`` subresource kube-scheduler uses, honouring
nodeSelector, unschedulable nodes, the not-ready taint and NoSchedule/NoExecute taints,
and spreads pods to the fitting node that runs the fewest. Unschedulable pods are
tried again when a node changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source, key_of
from labkit.sandbox.controllers.taints import tolerates

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.store import WatchEvent

NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")
#: kube-scheduler's NodeUnschedulable plugin lets a pod that tolerates this taint onto a cordoned node.
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def _ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions") or ())


def _fit_view(node: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What of a node :func:`_misfit` reads; a change elsewhere (a heartbeat) cannot make room for a pod."""
    if node is None:
        return None
    spec = node.get("spec", {})
    return node["metadata"].get("labels"), spec.get("unschedulable"), spec.get("taints"), _ready(node)


def _affinity_fits(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """The pod's required node affinity: the ``metadata.name`` field terms a DaemonSet writes (other terms
    are not evaluated here); terms are ORed, as upstream."""
    required = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    name = node["metadata"]["name"]

    def fits(term: dict[str, Any]) -> bool:
        return all(
            (f.get("operator") == "In") == (name in (f.get("values") or ()))
            for f in term.get("matchFields") or ()
            if f.get("key") == "metadata.name" and f.get("operator") in ("In", "NotIn")
        )

    return any(fits(term) for term in terms)


def _misfit(pod: dict[str, Any], node: dict[str, Any]) -> str | None:
    """Why *pod* cannot go to *node*, in kube-scheduler's words (``None`` when it fits)."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
        return "didn't match Pod's node affinity/selector"
    if not _affinity_fits(pod, node):
        return "didn't match Pod's node affinity/selector"
    if node.get("spec", {}).get("unschedulable") and not tolerates(pod, UNSCHEDULABLE_TAINT):
        return "were unschedulable"
    if not _ready(node):  # the node lifecycle controller taints NotReady nodes
        return "had untolerated taint {node.kubernetes.io/not-ready: }"
    for taint in node.get("spec", {}).get("taints") or ():
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod, taint):
            return f"had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    return None


class Scheduler(Controller):
    """Binds pending pods to the fitting node running the fewest pods (spreading).

    Like kube-scheduler it decides from a cache its watches keep (the nodes, the pods waiting, the
    per-node pod count), not from a read per decision, so scheduling 1,000 pods stays linear. The
    cache may lag the store by an event: a bind that raced a deletion or another bind gets 404/409
    and the pod is left alone.
    """

    name = "default-scheduler"
    primary = PODS
    resync = None  # unschedulable pods wait for a node to change, not for a timer

    def __init__(self, core: ApiCore) -> None:
        super().__init__(core)
        self.placed: dict[str, str] = {}  # pod uid -> node
        self.waiting: dict[Key, dict[str, Any]] = {}  # pods without a node, as last seen
        self.nodes: dict[str, dict[str, Any]] = {}

    def primary_source(self) -> Source:
        return Source(PODS, self.observe_pod, restart=self._forget_pods)

    def sources(self) -> Sequence[Source]:
        return [Source(NODES, self.observe_node, restart=self.nodes.clear)]

    def _forget_pods(self) -> None:
        # a new watch lists every pod again, so the cache starts afresh
        self.placed.clear()
        self.waiting.clear()

    def observe_pod(self, event: WatchEvent) -> list[Key]:
        """Cache where the pod runs or that it waits; the pod's key when it waits for a node."""
        pod, key = event.object, key_of(event.object)
        uid, node = pod["metadata"].get("uid"), pod.get("spec", {}).get("nodeName")
        if event.type == "DELETED" or not node:
            self.placed.pop(uid, None)
        else:
            self.placed[uid] = node
        if event.type != "DELETED" and _pending(pod):
            self.waiting[key] = pod
            return [key]
        self.waiting.pop(key, None)
        return []

    def observe_node(self, event: WatchEvent) -> list[Key]:
        """Cache the node; every waiting pod's key when the node changed in a way that may make room."""
        name = event.object["metadata"]["name"]
        before = _fit_view(self.nodes.get(name))
        if event.type == "DELETED":
            self.nodes.pop(name, None)
            return []
        self.nodes[name] = event.object
        return list(self.waiting) if _fit_view(event.object) != before else []

    def sync(self, key: Key) -> float | None:
        pod = self.waiting.get(key)
        if pod is not None:
            self.schedule(pod)
        return None

    def schedule(self, pod: dict[str, Any]) -> str | None:
        """Bind *pod*; None when nothing fits (a FailedScheduling event says why)."""
        core = self.core
        all_nodes = [self.nodes[name] for name in sorted(self.nodes)]
        misfits = {n["metadata"]["name"]: _misfit(pod, n) for n in all_nodes}
        nodes = [n for n in all_nodes if misfits[n["metadata"]["name"]] is None]
        if not nodes:
            total = len(all_nodes)
            counts = Counter(misfits.values())
            reasons = ", ".join(f"{count} node(s) {why}" for why, count in sorted(counts.items()))
            self.recorder.event(
                pod,
                "Warning",
                "FailedScheduling",
                f"0/{total} nodes are available: {reasons}. preemption: 0/{total} nodes are available: "
                f"{total} Preemption is not helpful for scheduling.",
            )
            return None
        load: dict[str, int] = {n["metadata"]["name"]: 0 for n in nodes}
        for node in self.placed.values():
            if node in load:
                load[node] += 1
        target = min(load, key=lambda name: (load[name], name))
        meta = pod["metadata"]
        try:
            core.bind(meta["namespace"], meta["name"], {"target": {"kind": "Node", "name": target}})
        except StatusError as e:
            if e.code in (404, 409):  # deleted or bound meanwhile
                return None
            raise
        self.placed[meta["uid"]] = target
        self.waiting.pop(key_of(pod), None)
        self.recorder.event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {target}",
        )
        return target


def _pending(pod: dict[str, Any]) -> bool:
    return not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp")


async def run_scheduler(core: ApiCore) -> None:
    """The scheduler's loop, as the daemon starts it."""
    await Scheduler(core).run()
