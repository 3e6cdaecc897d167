"""The host door (DESIGN.md §4): actions on a node's machine rather than through the API.

Cluster actions go through the Kubernetes API; host actions (importing images
into the node's containerd, later containerd config templates and restarts) go
through a :class:`Host`. ``LocalHost`` acts on a real k3s machine,
``SandboxHost`` on a sandbox node's directory and image store.
"""

from __future__ import annotations

import abc
from pathlib import Path

from ..sandbox.images import ImageRecord


class Host(abc.ABC):
    """What labkit may do on a node's machine."""

    @abc.abstractmethod
    def import_image(self, archive: Path) -> list[str]:
        """Import an OCI image archive into the node's image store; return the refs imported.

        Same effect as ``k3s ctr -n k8s.io images import --all-platforms <archive>``.
        """

    @abc.abstractmethod
    def list_images(self) -> list[ImageRecord]:
        """The images the node's container runtime has."""
