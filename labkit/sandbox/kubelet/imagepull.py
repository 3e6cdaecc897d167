"""A container's image, as the kubelet's image manager gets it: present, pulled, or waiting in back-off.

Events and waiting reasons as upstream's (pkg/kubelet/images/image_manager.go): ``Pulled`` "already present
on machine", ``ErrImageNeverPull``, ``Pulling``/``Pulled``, ``ErrImagePull`` then ``ImagePullBackOff`` with the
same back-off as container restarts, and ``InvalidImageName`` for a reference that does not parse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from labkit.sandbox.kubelet import registry_mirror
from labkit.sandbox.kubelet.podstate import ContainerRun, go_duration, pod_key

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.images import ImageContent, NodeImages

log = logging.getLogger("labkit.sandbox.kubelet.pod_workers")
T = TypeVar("T")

#: kubelet's container restart back-off (pkg/kubelet/kubelet.go: backOffPeriod, MaxContainerBackOff).
BACKOFF_INITIAL_S, BACKOFF_MAX_S = 10.0, 300.0
#: How long ErrImagePull shows before the pull back-off (ImagePullBackOff) takes over.
ERR_IMAGE_PULL_SHOWN_S = 1.0


class PullingNode(Protocol):
    """What pulling needs of the node: its image store and a way to run blocking work."""

    images: NodeImages

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T: ...


class PullingWorker(Protocol):
    """What pulling needs of a pod worker (:class:`~labkit.sandbox.kubelet.pod_workers.PodWorker`)."""

    pod: dict[str, Any]
    stopping: asyncio.Event

    @property
    def kubelet(self) -> PullingNode: ...

    def event(self, type_: str, reason: str, message: str, container: ContainerRun | None = None) -> None: ...

    def publish(self, settle: bool = False) -> None: ...

    async def sleep(self, seconds: float) -> bool: ...


async def ensure_image(worker: PullingWorker, c: ContainerRun) -> ImageContent | None:
    """The container's image, present or pulled; None when the pod stops while it waits."""
    ref = c.spec.get("image", "")
    policy = c.spec.get("imagePullPolicy", "IfNotPresent")
    images = worker.kubelet.images
    if not registry_mirror.valid_ref(ref):
        message = (
            f'Failed to apply default image tag "{ref}": couldn\'t parse image name "{ref}": invalid reference format'
        )
        worker.event("Warning", "InspectFailed", message, c)
        worker.event("Warning", "Failed", "Error: InvalidImageName", c)
        c.state = {"waiting": {"reason": "InvalidImageName", "message": message}}
        worker.publish()
        await worker.stopping.wait()  # nothing changes a pod's image but a new pod
        return None
    while not worker.stopping.is_set():
        image = await worker.kubelet.blocking(images.present, ref)
        wants_pull = policy == "Always" and registry_mirror.mirror_source(ref) is not None
        if image is not None and not wants_pull:
            worker.event("Normal", "Pulled", f'Container image "{ref}" already present on machine', c)
            return image
        if policy == "Never":
            message = f'Container image "{ref}" is not present with pull policy of Never'
            worker.event("Warning", "ErrImageNeverPull", message, c)
            worker.event("Warning", "Failed", "Error: ErrImageNeverPull", c)
            c.state = {"waiting": {"reason": "ErrImageNeverPull", "message": message}}
            worker.publish()
            if await worker.sleep(_pull_delay(c)):
                return None
            continue
        worker.event("Normal", "Pulling", f'Pulling image "{ref}"', c)
        try:
            image, pulled = await worker.kubelet.blocking(images.pull, ref)
        except registry_mirror.PullFailed as err:
            if await _pull_failed(worker, c, ref, err):
                return None
            continue
        took = go_duration(pulled.seconds)
        worker.event(
            "Normal",
            "Pulled",
            f'Successfully pulled image "{ref}" in {took} ({took} including waiting). '
            f"Image size: {pulled.size} bytes. ({registry_mirror.SIMULATED_NOTE})",
            c,
        )
        c.pull_backoff_s = 0.0
        return image
    return None


def _pull_delay(c: ContainerRun) -> float:
    c.pull_backoff_s = min(c.pull_backoff_s * 2, BACKOFF_MAX_S) if c.pull_backoff_s else BACKOFF_INITIAL_S
    return c.pull_backoff_s


async def _pull_failed(worker: PullingWorker, c: ContainerRun, ref: str, err: registry_mirror.PullFailed) -> bool:
    """ErrImagePull, then ImagePullBackOff until the next try; True when the pod stops meanwhile."""
    message = err.containerd_message  # containerd's words only; labkit's hint goes to the kubelet log
    log.info("%s: pull of %s failed (hint: %s)", pod_key(worker.pod), ref, err.fix)
    worker.event("Warning", "Failed", f'Failed to pull image "{ref}": {message}', c)
    worker.event("Warning", "Failed", "Error: ErrImagePull", c)
    c.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
    worker.publish()
    delay = _pull_delay(c)
    if await worker.sleep(ERR_IMAGE_PULL_SHOWN_S):
        return True
    # events first: whoever sees the new state finds its events already recorded
    worker.event("Normal", "BackOff", f'Back-off pulling image "{ref}"', c)
    worker.event("Warning", "Failed", "Error: ImagePullBackOff", c)
    c.state = {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": f'Back-off pulling image "{ref}": ErrImagePull: {message}',
        }
    }
    worker.publish()
    return await worker.sleep(max(delay - ERR_IMAGE_PULL_SHOWN_S, 0.0))
