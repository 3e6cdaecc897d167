"""Where labkit keeps its files and which backend and contexts it uses.

Everything is read from the environment at call time (not import time), so a
notebook can ``os.environ[...] = ...`` and connect again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from labkit.errors import LabkitError, UnknownBackend

BACKENDS = ("sandbox", "kubeconfig")
SANDBOX_CONTEXT = "labkit-sandbox"
#: Contexts that are labs by construction: the sandbox, and the names the
#: kit's own docs use for local k3s/kind/k3d clusters are NOT included on
#: purpose: a real cluster must be allowed explicitly.
DEFAULT_ALLOWED_CONTEXTS = (SANDBOX_CONTEXT,)


def labkit_home() -> Path:
    """The directory for sandbox state, kubeconfig, caches (``LABKIT_HOME``, default ``~/.labkit``)."""
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit").expanduser()


def sandbox_dir() -> Path:
    return labkit_home() / "sandbox"


#: Group and others may write: the bits that let another user plant or swap a file.
_SHARED_WRITE = stat.S_IWGRP | stat.S_IWOTH


def private_dir(path: Path) -> Path:
    """Make *path* a directory only its owner can enter (0700), creating it and missing parents so; returns it.

    An existing directory that is only readable by others is tightened to 0700 (it is labkit's own). One that
    another user can write, or whose parent everyone can write (without the sticky bit of ``/tmp``), is
    refused: someone may already have swapped a file in it, so the owner must look and fix it.
    """
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise LabkitError(f"{path} is not a directory", f"move it away: mv {path} {path}.old")
    if info.st_uid != os.getuid():
        raise LabkitError(
            f"{path} belongs to another user (uid {info.st_uid}), so labkit does not keep secrets in it",
            "set LABKIT_HOME to a directory of your own",
        )
    if info.st_mode & _SHARED_WRITE:
        raise LabkitError(
            f"{path} can be written by other users (mode {stat.S_IMODE(info.st_mode):o}), "
            "so they could change the sandbox's state or read its secrets",
            f"make it yours alone: chmod 700 {path}",
        )
    # A group-writable parent is common (container images make $HOME group-writable for their one user), so
    # only a world-writable one without the sticky bit of /tmp is refused.
    parent = path.parent.stat()
    if parent.st_mode & stat.S_IWOTH and not parent.st_mode & stat.S_ISVTX:
        raise LabkitError(
            f"{path.parent} can be written by other users (mode {stat.S_IMODE(parent.st_mode):o}), "
            f"so they could replace {path}",
            f"chmod go-w {path.parent}, or set LABKIT_HOME to a directory of your own",
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


#: The sandbox node the host door acts on by default: the first one, k3s' server node.
SANDBOX_DEFAULT_NODE = "labkit-server-0"
#: The label the sandbox puts on its own Node objects.
SANDBOX_NODE_LABEL = "labkit.io/sandbox-node"


def sandbox_node_root(node: str = SANDBOX_DEFAULT_NODE) -> Path:
    """Where a sandbox node's filesystem (laid out like a k3s node's ``/``) lives on this machine."""
    return sandbox_dir() / "nodes" / node


def sandbox_kubeconfig() -> Path:
    return sandbox_dir() / "kubeconfig"


def project_root() -> Path:
    """The checkout labkit runs from (notebooks/, wasm-apps/ live there)."""
    return Path(__file__).resolve().parent.parent


def resolve_backend(backend: str | None = None) -> str:
    """The backend to use: the argument, else ``LABKIT_BACKEND``, else ``sandbox``.

    >>> resolve_backend("kubeconfig")
    'kubeconfig'
    """
    name = (backend or os.environ.get("LABKIT_BACKEND") or "sandbox").strip().lower()
    if name not in BACKENDS:
        raise UnknownBackend(
            f"unknown backend {name!r}",
            f"use one of: {', '.join(BACKENDS)} (argument backend=..., or LABKIT_BACKEND)",
        )
    return name


def allowed_contexts(extra: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The kubeconfig contexts labkit may touch: the sandbox, ``LABKIT_ALLOWED_CONTEXTS`` (comma-separated), *extra*."""
    from_env = [c.strip() for c in os.environ.get("LABKIT_ALLOWED_CONTEXTS", "").split(",") if c.strip()]
    return tuple(dict.fromkeys([*DEFAULT_ALLOWED_CONTEXTS, *from_env, *(extra or ())]))


#: Labels every lab object carries; ``labkit clean`` deletes exactly the objects that have them.
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF_VALUE = "labkit"
LAB_LABEL = "labkit.io/lab"

#: How to get kubectl (doctor and Cluster.kubectl both name it).
KUBECTL_INSTALL_FIX = (
    "install kubectl: `apt-get install kubectl` where your apt sources carry it (Ubuntu snap: "
    "`snap install kubectl --classic`), or the binary from the Kubernetes release page; on a k3s "
    "host `k3s kubectl` is built in"
)
