"""The scheduler: binds pending pods to nodes as kube-scheduler does.

It binds through the same ``binding`` subresource kube-scheduler uses, honouring
nodeSelector, unschedulable nodes, the not-ready taint and NoSchedule/NoExecute taints,
and spreads pods to the fitting node that runs the fewest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.events import record_event
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import parse_field_selector
from labkit.sandbox.api.status import StatusError

log = logging.getLogger("labkit.sandbox.scheduler")

NODES = RESOURCES.served("", "nodes")
PODS = RESOURCES.served("", "pods")
_UNSCHEDULED = parse_field_selector("spec.nodeName=")


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
