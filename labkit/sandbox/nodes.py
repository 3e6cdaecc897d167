"""Sandbox nodes and the scheduler.

Nodes are ordinary Node objects labelled ``labkit.io/sandbox-node=true``; the
daemon runs an agent for each, so ``labkit sandbox up --nodes 3`` is just three
Node objects. The scheduler binds pending pods through the same ``binding``
subresource kube-scheduler uses, honouring nodeSelector and taints.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections import Counter
from typing import Any

from labkit import config
from labkit.config import SANDBOX_DEFAULT_NODE
from labkit.sandbox.api.apicore import ApiCore, now_rfc3339
from labkit.sandbox.api.events import record_event
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import parse_field_selector
from labkit.sandbox.api.status import StatusError

log = logging.getLogger("labkit.sandbox.nodes")

NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")
SANDBOX_NODE_LABEL = config.SANDBOX_NODE_LABEL
_UNSCHEDULED = parse_field_selector("spec.nodeName=")
KUBELET_VERSION = "v1.32.5+labkit.sandbox"
#: Honesty: every place a learner reads the runtime says it is simulated.
RUNTIME_VERSION = "labkit-sandbox://0.1.0 (simulated containerd + runwasi wasmedge shim)"


def node_name(index: int) -> str:
    """``labkit-server-0`` for the first node (control plane, as k3s' server), then ``labkit-agent-N``."""
    return SANDBOX_DEFAULT_NODE if index == 0 else f"labkit-agent-{index - 1}"


def node_ip(index: int) -> str:
    return f"127.0.100.{index + 1}"


def node_object(index: int) -> dict[str, Any]:
    name = node_name(index)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "k3s",
        SANDBOX_NODE_LABEL: "true",
    }
    if index == 0:
        labels["node-role.kubernetes.io/control-plane"] = "true"
        labels["node-role.kubernetes.io/master"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"labkit.io/simulated": "true", "k3s.io/node-args": "[]"},
        },
        "spec": {"podCIDR": f"10.42.{index}.0/24", "podCIDRs": [f"10.42.{index}.0/24"], "providerID": f"k3s://{name}"},
    }


def ready_status(index: int) -> dict[str, Any]:
    now = now_rfc3339()

    def condition(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": type_,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }

    return {
        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"},
        "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"},
        "conditions": [
            condition(
                "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status (labkit sandbox node)"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": node_ip(index)},
            {"type": "Hostname", "address": node_name(index)},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": f"labkit-{index}",
            "systemUUID": f"labkit-{index}",
            "bootID": f"labkit-{index}",
            "kernelVersion": platform.release(),
            "osImage": "labkit sandbox (simulated k3s node)",
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def ensure_nodes(core: ApiCore, count: int) -> list[str]:
    """Make exactly *count* sandbox nodes exist (Ready); returns their names."""
    existing = {
        n["metadata"]["name"]: n
        for n in core.store.list(NODES)[0]
        if n["metadata"].get("labels", {}).get(SANDBOX_NODE_LABEL) == "true"
    }
    wanted = [node_name(i) for i in range(count)]
    for i, name in enumerate(wanted):
        node = existing.get(name)
        if node is None:
            node = core.store.create(NODES, node_object(i))
        node["status"] = ready_status(i)
        core.store.update(NODES, node, check_rv=False)
    for name in set(existing) - set(wanted):
        core.delete(NODES, None, name)
    return wanted


def _tolerates(pod: dict[str, Any], taint: dict[str, Any]) -> bool:
    for t in pod["spec"].get("tolerations") or ():
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _misfit(pod: dict[str, Any], node: dict[str, Any]) -> str | None:
    """Why *pod* cannot go to *node*, in kube-scheduler's words (``None`` when it fits)."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
        return "didn't match Pod's node affinity/selector"
    if node.get("spec", {}).get("unschedulable"):
        return "were unschedulable"
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions") or ())
    if not ready:  # the node lifecycle controller taints NotReady nodes
        return "had untolerated taint {node.kubernetes.io/not-ready: }"
    for taint in node.get("spec", {}).get("taints") or ():
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
            return f"had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    return None


class Scheduler:
    """Binds pending pods to the fitting node running the fewest pods (spreading).

    The per-node pod count is kept from the pod watch, not recounted per
    decision, so scheduling 1,000 pods stays linear.
    """

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        self.placed: dict[str, str] = {}  # pod uid -> node

    def observe(self, event_type: str, pod: dict[str, Any]) -> None:
        uid, node = pod["metadata"].get("uid"), pod.get("spec", {}).get("nodeName")
        if event_type == "DELETED" or not node:
            self.placed.pop(uid, None)
        else:
            self.placed[uid] = node

    def schedule(self, pod: dict[str, Any]) -> str | None:
        """Bind *pod*; None when nothing fits (a FailedScheduling event says why)."""
        core = self.core
        all_nodes = core.store.list(NODES)[0]
        misfits = {n["metadata"]["name"]: _misfit(pod, n) for n in all_nodes}
        nodes = [n for n in all_nodes if misfits[n["metadata"]["name"]] is None]
        if not nodes:
            total = len(all_nodes)
            counts = Counter(misfits.values())
            reasons = ", ".join(f"{count} node(s) {why}" for why, count in sorted(counts.items()))
            record_event(
                core,
                pod,
                "Warning",
                "FailedScheduling",
                f"0/{total} nodes are available: {reasons}. preemption: 0/{total} nodes are available: "
                f"{total} Preemption is not helpful for scheduling.",
                "default-scheduler",
            )
            return None
        load = {n["metadata"]["name"]: 0 for n in nodes}
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
        record_event(
            core,
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {target}",
            "default-scheduler",
        )
        return target


async def run_scheduler(core: ApiCore) -> None:
    """Watch pods, bind the unscheduled ones; retry unschedulable pods when nodes change."""
    while True:
        scheduler = Scheduler(core)
        watcher = core.store.watch(PODS, None, since_rv=None)
        node_watcher = core.store.watch(NODES, None, since_rv=core.store.rv)
        try:
            while not (watcher.closed or node_watcher.closed):  # the store ends watches that fall behind
                event = await watcher.next(0.5)
                if event is None:
                    if await node_watcher.next(0.001) is not None:
                        for pod in core.store.list(PODS, None, field_selector=_UNSCHEDULED)[0]:
                            if not pod["metadata"].get("deletionTimestamp"):
                                scheduler.schedule(pod)
                    continue
                pod = event.object
                scheduler.observe(event.type, pod)
                if (
                    event.type in ("ADDED", "MODIFIED")
                    and not pod["spec"].get("nodeName")
                    and not pod["metadata"].get("deletionTimestamp")
                ):
                    scheduler.schedule(pod)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep scheduling after a bug in one decision; the log says what happened
            log.exception("scheduler loop failed; restarting it")
            await asyncio.sleep(0.5)
        finally:
            watcher.close()
            node_watcher.close()
