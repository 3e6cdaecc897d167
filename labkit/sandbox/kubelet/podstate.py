"""What the kubelet knows of a pod and its containers: phases, QoS, the failures it reports, its names in messages.

Pure functions and records, no I/O: the pod workers (:mod:`labkit.sandbox.kubelet.pod_workers`) drive them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.native import NativeContainer
    from labkit.sandbox.kubelet.wasmrun import WasmContainer
    from labkit.sandbox.logfiles import LogWriter


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, truncated to milliseconds as the kubelet's pull event does.

    >>> go_duration(0.0123), go_duration(1.5), go_duration(0.0004)
    ('12ms', '1.5s', '0s')
    """
    ms = int(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"


def pod_key(pod: dict[str, Any]) -> str:
    """``name_namespace(uid)``, the kubelet's pod name in messages."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace')}({meta.get('uid')})"


def pod_phase(restart_policy: str, statuses: list[dict[str, Any]]) -> str:
    """The kubelet's pod phase from container statuses (pkg/kubelet/kubelet_pods.go getPhase)."""
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif (status.get("lastState") or {}).get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


def qos_class(pod: dict[str, Any]) -> str:
    """BestEffort, Guaranteed or Burstable, from the containers' requests and limits."""
    resources = [c.get("resources") or {} for c in pod["spec"].get("containers") or ()]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits")
        and all(k in r["limits"] for k in ("cpu", "memory"))
        and all(r["limits"].get(k) == v for k, v in (r.get("requests") or {}).items())
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


@dataclass
class ContainerRun:
    """One container of a pod as the kubelet tracks it."""

    spec: dict[str, Any]
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""
    image: str = ""
    image_id: str = ""
    process: WasmContainer | NativeContainer | None = None
    writer: LogWriter | None = None
    backoff_s: float = 0.0  # the next restart's delay (0: restart at once)
    pull_backoff_s: float = 0.0
    #: the pod spec's list it comes from: ``containers`` or ``ephemeralContainers``
    kind: str = "containers"

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        status: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": running,
            "restartCount": self.restart_count,
            "image": self.image or self.spec.get("image", ""),
            "imageID": self.image_id,
            "started": running,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        if self.kind == "ephemeralContainers":
            # no probe decides an ephemeral container's readiness or start: the kubelet reports it never ready
            # and leaves ``started`` unset (convertToAPIContainerStatuses; the prober skips them) [inferred]
            status["ready"] = False
            del status["started"]
        return status
