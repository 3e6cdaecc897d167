"""The DaemonSet controller: one pod per eligible node, as upstream's pkg/controller/daemon.

A node is eligible when the pod template's nodeSelector matches it and the pod tolerates its
NoSchedule and NoExecute taints (``NodeShouldRunDaemonPod``). Each pod is pinned to its node by the
node affinity upstream writes (``matchFields metadata.name``) and carries the tolerations
``AddOrUpdateDaemonPodTolerations`` adds, so the scheduler binds it there even when the node is
cordoned. A template change rolls out as ``RollingUpdate`` does: old pods are deleted while at most
``maxUnavailable`` are unavailable, and new ones take their place. Events are RealPodControl's
(``Created pod: web-x7k2p``); the history is kept as ControllerRevisions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.conditions import now, write_status
from labkit.sandbox.controllers.deploymentutil import created, scaled_value
from labkit.sandbox.controllers.podutil import (
    PODS,
    claim_pods,
    controlled_by,
    create_pod,
    delete_pod,
    pod_active,
    pod_available_in,
    pod_ready,
)
from labkit.sandbox.controllers.revisions import REVISION_LABEL, current_revision, truncate_history
from labkit.sandbox.controllers.taints import tolerates

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.store import WatchEvent

DAEMONSETS = RESOURCES.served("apps", "daemonsets")
NODES = RESOURCES.served("", "nodes")
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
#: The tolerations every daemon pod gets (daemon/util AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}
#: Seconds before a DaemonSet whose pod could not be created, or failed, tries again.
RETRY = 5.0


def daemon_tolerations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The template's tolerations plus the daemon ones it lacks."""
    extra = [*DAEMON_TOLERATIONS, *([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])]
    have = list(spec.get("tolerations") or ())
    return have + [t for t in extra if t not in have]


def should_run(template_spec: dict[str, Any], node: dict[str, Any]) -> tuple[bool, bool]:
    """Upstream's NodeShouldRunDaemonPod: (should run, should continue running). nodeSelector and nodeName
    must match; a new pod needs every NoSchedule/NoExecute taint tolerated, a running one only the
    NoExecute ones (a node that turns unreachable keeps its daemon pods)."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (template_spec.get("nodeSelector") or {}).items()):
        return False, False
    if template_spec.get("nodeName") and template_spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    pod = {"spec": {"tolerations": daemon_tolerations(template_spec)}}
    taints = (node.get("spec") or {}).get("taints") or ()
    no_execute_ok = all(tolerates(pod, t) for t in taints if t.get("effect") == "NoExecute")
    no_schedule_ok = all(tolerates(pod, t) for t in taints if t.get("effect") == "NoSchedule")
    return no_execute_ok and no_schedule_ok, no_execute_ok


def pinned_template(ds: dict[str, Any], node: str, hash_: str) -> dict[str, Any]:
    """The pod template for *node*: node affinity on its name, daemon tolerations, revision labels."""
    template: dict[str, Any] = copy.deepcopy(ds["spec"]["template"])
    meta = template.setdefault("metadata", {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        REVISION_LABEL: hash_,
        TEMPLATE_GENERATION_LABEL: str(ds["metadata"].get("generation", 1)),
    }
    spec = template.setdefault("spec", {})
    spec["tolerations"] = daemon_tolerations(spec)
    # util.ReplaceDaemonSetPodNodeNameNodeAffinity: the required term names the node, replacing others
    spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
    }
    return template


def _hash(pod: dict[str, Any]) -> str | None:
    hash_: str | None = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL)
    return hash_


def pod_node(pod: dict[str, Any]) -> str | None:
    """The node a daemon pod is for: where it runs, else the node its affinity names."""
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    required = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return None


class DaemonSetController(Controller):
    """Keeps one pod of each DaemonSet on every node that should run it; keeps its status."""

    name = "daemonset-controller"
    primary = DAEMONSETS

    def sources(self) -> Sequence[Source]:
        return [Source(PODS, controlled_by("DaemonSet")), Source(NODES, self._every_daemonset)]

    def __init__(self, core: ApiCore) -> None:
        super().__init__(core)
        #: node -> what should_run reads of it, so a heartbeat (a status write) wakes no DaemonSet
        self.node_views: dict[str, tuple[Any, ...]] = {}

    def _every_daemonset(self, event: WatchEvent) -> list[Key]:
        name, spec = event.object["metadata"]["name"], event.object.get("spec") or {}
        view = (event.type == "DELETED", event.object["metadata"].get("labels"), spec.get("taints"))
        if self.node_views.get(name) == view:
            return []
        self.node_views[name] = view
        return [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in self.core.list(DAEMONSETS, None)["items"]]

    def sync(self, key: Key) -> float | None:
        ds = self.get(DAEMONSETS, *key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return None
        revision, history = current_revision(self.core, ds)
        hash_ = revision["metadata"]["labels"][REVISION_LABEL]
        nodes = {n["metadata"]["name"]: n for n in self.core.list(NODES, None)["items"]}
        verdicts = {name: should_run(ds["spec"]["template"].get("spec") or {}, n) for name, n in nodes.items()}
        wanted = {name for name, (run, _) in verdicts.items() if run}
        kept = {name for name, (_, keep) in verdicts.items() if keep}
        on_node: dict[str, list[dict[str, Any]]] = {}
        for pod in claim_pods(self.core, ds):
            node = pod_node(pod)
            if node is not None and not pod["metadata"].get("deletionTimestamp"):
                on_node.setdefault(node, []).append(pod)
        after = self.manage(ds, hash_, wanted, kept, on_node)
        pods = [p for p in claim_pods(self.core, ds) if pod_active(p)]
        self.write(ds, hash_, wanted, pods)
        truncate_history(self.core, ds, history, {revision["metadata"]["name"]})
        return after

    def manage(
        self,
        ds: dict[str, Any],
        hash_: str,
        wanted: set[str],
        kept: set[str],
        on_node: dict[str, list[dict[str, Any]]],
    ) -> float | None:
        """podsShouldBeOnNode for each node: create where it should run, delete failed and extra pods and
        those on nodes where it should not continue running."""
        after = None
        for node in sorted(kept):
            pods = on_node.get(node, [])
            failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
            for pod in failed:
                self.recorder.event(
                    ds,
                    "Warning",
                    "FailedDaemonPod",
                    f"Found failed daemon pod {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                    f"on node {node}, will try to kill it",
                )
                delete_pod(self.core, self.recorder, ds, pod)
                after = RETRY
            pods = sorted((p for p in pods if p not in failed), key=created)
            if not pods and not failed and node in wanted and self.create_on(ds, node, hash_) is None:
                after = RETRY
            # more than one on a node: keep the oldest, and with maxSurge also the oldest of the new revision
            rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
            surge = scaled_value(rolling.get("maxSurge", 0), len(wanted), round_up=True)
            if surge:
                keep = [p for p in pods if _hash(p) != hash_][:1] + [p for p in pods if _hash(p) == hash_][:1]
            else:
                keep = pods[:1]
            for extra in pods:
                if extra not in keep:
                    delete_pod(self.core, self.recorder, ds, extra)
        for node, pods in on_node.items():
            if node not in kept:
                for pod in pods:
                    delete_pod(self.core, self.recorder, ds, pod)
        self.roll(ds, hash_, wanted, on_node)
        return after

    def roll(self, ds: dict[str, Any], hash_: str, wanted: set[str], on_node: dict[str, list[dict[str, Any]]]) -> None:
        """RollingUpdate (daemon/update.go): without maxSurge, delete old pods while fewer than maxUnavailable
        are unavailable; with it, start the new pod beside the old one and delete the old once the new is
        available."""
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return  # OnDelete
        rolling = strategy.get("rollingUpdate") or {}
        surge = scaled_value(rolling.get("maxSurge", 0), len(wanted), round_up=True)
        budget = scaled_value(rolling.get("maxUnavailable", 1), len(wanted), round_up=True)
        if surge == 0 and budget == 0:
            budget = 1  # a rollout must be able to make progress (updatedDesiredNodeCounts)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        moment = now()

        def available(pod: dict[str, Any]) -> bool:
            return pod_available_in(pod, min_ready, moment) == 0

        def is_new(pod: dict[str, Any]) -> bool:
            return bool(pod["metadata"].get("labels", {}).get(REVISION_LABEL) == hash_)

        if surge:
            self.surge(ds, hash_, surge, {n: on_node.get(n, []) for n in wanted}, available, is_new)
            return
        live = {node: pods[0] for node, pods in on_node.items() if node in wanted and pods}
        unavailable = len(wanted) - sum(1 for p in live.values() if available(p))
        old = [p for p in live.values() if not is_new(p)]
        old.sort(key=available)  # unavailable old pods go first: deleting them costs nothing
        for pod in old:
            if available(pod):
                if unavailable >= budget:
                    break
                unavailable += 1
            delete_pod(self.core, self.recorder, ds, pod)

    def surge(
        self,
        ds: dict[str, Any],
        hash_: str,
        max_surge: int,
        on_node: dict[str, list[dict[str, Any]]],
        available: Callable[[dict[str, Any]], bool],
        is_new: Callable[[dict[str, Any]], bool],
    ) -> None:
        surging, candidates = 0, []
        for node, pods in sorted(on_node.items()):
            new = next((p for p in pods if is_new(p)), None)
            old = next((p for p in pods if not is_new(p)), None)
            if old is None:
                continue
            if new is None:
                if not available(old):
                    self.create_on(ds, node, hash_)  # replacing an unavailable pod costs no availability
                else:
                    candidates.append(node)
                continue
            if available(new):
                delete_pod(self.core, self.recorder, ds, old)
            else:
                surging += 1
        for node in candidates[: max(max_surge - surging, 0)]:
            self.create_on(ds, node, hash_)

    def create_on(self, ds: dict[str, Any], node: str, hash_: str) -> dict[str, Any] | None:
        """Create the DaemonSet's pod for *node*; records SuccessfulCreate or FailedCreate."""
        owner = {**ds, "spec": {**ds["spec"], "template": pinned_template(ds, node, hash_)}}
        return create_pod(self.core, self.recorder, owner)

    def write(self, ds: dict[str, Any], hash_: str, wanted: set[str], pods: list[dict[str, Any]]) -> None:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        moment = now()
        scheduled = [p for p in pods if pod_node(p) in wanted]
        available = sum(1 for p in scheduled if pod_available_in(p, min_ready, moment) == 0)
        status: dict[str, Any] = {
            "currentNumberScheduled": len({pod_node(p) for p in scheduled}),
            "numberMisscheduled": len({pod_node(p) for p in pods if pod_node(p) not in wanted}),
            "desiredNumberScheduled": len(wanted),
            "numberReady": sum(1 for p in scheduled if pod_ready(p)),
            "observedGeneration": ds["metadata"].get("generation", 1),
            "updatedNumberScheduled": len(
                {pod_node(p) for p in scheduled if p["metadata"].get("labels", {}).get(REVISION_LABEL) == hash_}
            ),
            "numberAvailable": available,
            "numberUnavailable": len(wanted) - available,
        }
        for field in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):  # omitempty in the Go type
            if not status[field]:
                del status[field]
        write_status(self.core, DAEMONSETS, ds, status)


async def run_daemonset_controller(core: ApiCore) -> None:
    """The DaemonSet controller's loop, as the daemon starts it."""
    await DaemonSetController(core).run()
