"""Sandbox nodes: their names, addresses and the Node objects k3s would register.

Nodes are ordinary Node objects labelled ``labkit.io/sandbox-node=true``; the
daemon runs an agent for each, so ``labkit sandbox up --nodes 3`` is just three
Node objects. The scheduler binds pending pods through the same ``binding``
subresource kube-scheduler uses, honouring nodeSelector and taints.
"""

from __future__ import annotations

import logging
import platform
from typing import Any

from labkit import config
from labkit.config import SANDBOX_DEFAULT_NODE
from labkit.sandbox.api.apicore import ApiCore, now_rfc3339
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import parse_field_selector

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
