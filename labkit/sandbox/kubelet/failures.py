"""Why the kubelet could not run a container or set up a pod: the runtime's message and the reason it reports."""

from __future__ import annotations

from labkit.errors import LabkitError


class ContainerFailure(LabkitError):
    """A container the runtime could not create or start; ``problem`` is the runtime's message."""

    def __init__(self, problem: str, reason: str = "StartError", fix: str | None = None) -> None:
        super().__init__(problem, fix)
        self.reason = reason


class SandboxFailure(LabkitError):
    """A pod whose sandbox or volumes cannot be set up; ``event_reason`` is the Warning event's reason."""

    def __init__(self, problem: str, event_reason: str = "FailedCreatePodSandBox") -> None:
        super().__init__(problem)
        self.event_reason = event_reason
