"""Sandbox nodes: their names, addresses, the Node objects k3s would register, and how their kubelets start.

Nodes are ordinary Node objects labelled ``labkit.io/sandbox-node=true``; the daemon
registers them and starts one kubelet process per node (``python -m labkit.sandbox.kubelet``
with the argv of a :class:`KubeletConfig`), so ``labkit sandbox up --nodes 3`` is three Node
objects and three processes. This module is shared by both sides and imports neither.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import config
from labkit.config import SANDBOX_DEFAULT_NODE
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.processes import config_argv, parse_config
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

NODES = RESOURCES.served("", "nodes")

SANDBOX_NODE_LABEL = config.SANDBOX_NODE_LABEL
KUBELET_VERSION = "v1.32.5+labkit.sandbox"
#: Honesty: every place a learner reads the runtime says it is simulated.
RUNTIME_VERSION = "labkit-sandbox://0.1.0 (simulated containerd + runwasi wasmedge shim)"
#: The kubelet module the daemon starts by argv (it never imports it).
KUBELET_MODULE = "labkit.sandbox.kubelet"


def node_name(index: int) -> str:
    """``labkit-server-0`` for the first node (control plane, as k3s' server), then ``labkit-agent-N``."""
    return SANDBOX_DEFAULT_NODE if index == 0 else f"labkit-agent-{index - 1}"


def node_index(name: str) -> int:
    """``labkit-server-0`` → 0, ``labkit-agent-N`` → N + 1 (the inverse of :func:`node_name`)."""
    if name.startswith("labkit-agent-"):
        return int(name.rsplit("-", 1)[1]) + 1
    return 0


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


def ready_status(index: int, kubelet_port: int = 10250) -> dict[str, Any]:
    now = format_rfc3339()

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
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},  # the kubelet posts the port it serves
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


def sandbox_nodes(core: ApiCore) -> list[str]:
    """The names of the sandbox's Nodes, the server node first."""
    listed = core.list(NODES, None, label_selector=f"{SANDBOX_NODE_LABEL}=true")["items"]
    return sorted((n["metadata"]["name"] for n in listed), key=lambda n: (n != node_name(0), n))


def ensure_nodes(core: ApiCore, count: int, *, ready: bool = True) -> list[str]:
    """Register exactly *count* sandbox Nodes; returns their names.

    The daemon registers them with ``ready=False``: each node's kubelet posts its own status. Tests that run
    no kubelet (the scheduler's, in process) take the default and get Ready nodes, as a kubelet would post.
    """
    existing = set(sandbox_nodes(core))
    wanted = [node_name(i) for i in range(count)]
    for i, name in enumerate(wanted):
        if name not in existing:
            core.create(NODES, None, node_object(i))
        if ready:
            body = json.dumps({"status": ready_status(i)}).encode()
            core.patch(NODES, None, name, "application/merge-patch+json", body, subresource="status")
    for name in existing - set(wanted):
        core.delete(NODES, None, name)
    return wanted


@dataclass(frozen=True)
class KubeletConfig:
    """What one node's kubelet process needs: its name, the sandbox home, the API server and its credentials."""

    node_name: str
    home: Path
    server: str
    token_file: Path
    ca_file: Path
    #: where the kubelet reports each (re)start of its container runtime (JSON), for the daemon's node restart
    report_file: Path
    #: the sandbox's address slot on this machine: its pod and Service ranges (labkit.sandbox.netmap.plan)
    slot: int = 0

    def argv(self) -> list[str]:
        """The command line that starts this kubelet."""
        return config_argv(KUBELET_MODULE, self)

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> KubeletConfig:
        return parse_config(cls, KUBELET_MODULE, "run one labkit sandbox node's kubelet", argv)
