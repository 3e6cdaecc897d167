"""hostPath mounts for wasm pods: one helper gives both the pod ``volumes`` entry and the container ``volumeMounts``.

Read-only by default: a lab mounts plugins, libraries and models, it never writes to the node.

>>> m = host_path("/home/runner/models/llama.gguf", type="File")
>>> m.volume()["hostPath"], m.mount()["readOnly"]
({'path': '/home/runner/models/llama.gguf', 'type': 'File'}, True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from labkit.errors import InvalidManifest
from labkit.manifests.checks import dns_label

#: hostPath types the API server accepts ("" means: no check).
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")


@dataclass(frozen=True)
class Mount:
    """A node path mounted into the container; ``mount_path`` defaults to the same path (what WASI-NN needs)."""

    path: str
    mount_path: str | None = None
    read_only: bool = True
    type: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for what, p in (("host path", self.path), ("mount path", self.mount_path or self.path)):
            if not PurePosixPath(p).is_absolute():
                raise InvalidManifest(
                    f"{what} {p!r} is not absolute", f"write it from the root, e.g. '/{p.lstrip('./')}'"
                )
        if self.type not in (None, *HOST_PATH_TYPES):
            raise InvalidManifest(
                f"hostPath type {self.type!r} is not one Kubernetes knows",
                f"use one of: {', '.join(t for t in HOST_PATH_TYPES if t)}",
            )
        if self.name is not None:
            dns_label(self.name, "volume name")

    @property
    def volume_name(self) -> str:
        """The explicit name, else one derived from the path (``/home/runner/models`` → ``home-runner-models``)."""
        if self.name:
            return self.name
        derived = re.sub(r"[^a-z0-9]+", "-", self.path.lower()).strip("-") or "root"
        return derived[-63:].strip("-")  # the tail is the distinctive part of a long path

    def volume(self) -> dict[str, Any]:
        source: dict[str, Any] = {"path": self.path}
        if self.type:
            source["type"] = self.type
        return {"name": self.volume_name, "hostPath": source}

    def mount(self) -> dict[str, Any]:
        return {"name": self.volume_name, "mountPath": self.mount_path or self.path, "readOnly": self.read_only}


def host_path(
    path: str,
    mount_path: str | None = None,
    *,
    type: str | None = None,  # noqa: A002 - named as the hostPath field it sets
    read_only: bool = True,
    name: str | None = None,
) -> Mount:
    """A hostPath mount of node *path* at *mount_path* (default: the same path), read-only unless asked."""
    return Mount(str(path), str(mount_path) if mount_path else None, read_only, type, name)


def volumes_and_mounts(mounts: Iterable[Mount] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's ``volumes`` and the container's ``volumeMounts`` for *mounts*; duplicate names are an error."""
    volumes, volume_mounts = [], []
    seen: dict[str, Mount] = {}
    for m in mounts or ():
        if not isinstance(m, Mount):
            raise InvalidManifest(
                f"volumes must be Mount objects, got {m!r}", "build each with labkit.manifests.host_path('/node/path')"
            )
        if m.volume_name in seen:
            raise InvalidManifest(
                f"two mounts share the volume name {m.volume_name!r} ({seen[m.volume_name].path}, {m.path})",
                "give one of them name='...'",
            )
        seen[m.volume_name] = m
        volumes.append(m.volume())
        volume_mounts.append(m.mount())
    return volumes, volume_mounts
