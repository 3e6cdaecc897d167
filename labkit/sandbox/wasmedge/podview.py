"""What WasmEdge's plugin loader would find inside a pod: the plugin, and every library ``dlopen`` needs.

The runwasi shim calls ``PluginManager::load(None)`` in the container (runwasi
``crates/containerd-shim-wasmedge/src/instance.rs``), so plugin paths and the plugin's libraries are
looked up in the pod's filesystem: its mounts. This module answers, for one pod (its mounts as guest path →
host path, and its env), what WasmEdge's ``Plugin::loadFromDefaultPaths`` would do
(WasmEdge ``lib/plugin/plugin.cpp``):

- the search paths are ``WASMEDGE_PLUGIN_PATH`` split on ``:`` (``getDefaultPluginPaths``), each a
  directory searched recursively for ``*.so`` or a ``.so`` file. The install-relative default
  (``<libwasmedge dir>/../plugin``) names a directory of the shim's host, not of the pod, so it finds nothing
  in a container [inferred from WasmEdge's plugin search order];
- each candidate is ``dlopen``-ed (``lib/loader/shared_library.cpp``); on failure WasmEdge logs
  ``loading failed: invalid path, Code: 0x100`` (the ``IllegalPath`` ErrCode formatted by
  ``include/common/errcode.h``) and ``    load library failed:<dlerror()>``, and the plugin is not
  registered, so its module's imports stay unknown (Code 0x302 at instantiation).

The loader's search for each DT_NEEDED name is modelled on glibc's: the object's RUNPATH (``$ORIGIN``
expanded), then ``LD_LIBRARY_PATH``, then the system directories, each resolved through the pod's mounts
[inferred: in the shim, ``LD_LIBRARY_PATH`` is the shim process's, and libraries the shim itself already
loaded are not searched again; labkit asks, as the seed manifests do, for every library to be mounted].
A path is resolved inside its mount only: a symlink that leaves the mount it lies in finds nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from labkit.sandbox.wasmedge.elfdeps import NotElf, read_dynamic
from labkit.sandbox.wasmedge.pluginfiles import PLUGIN_NAME, SYSTEM_DIRS

ILLEGAL_PATH = "[error] loading failed: invalid path, Code: 0x100"
MAX_OBJECTS = 64  # libraries one plugin may pull in: a hostile dependency graph ends here
MAX_PLUGIN_FILES = 1024  # files a plugin directory walk looks at
#: the dynamic loader itself: every process has it loaded (its PT_INTERP), so libc's DT_NEEDED on it is met
RUNNING_LOADER = frozenset({"ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"})


@dataclass
class PodFiles:
    """A pod's filesystem as its mounts make it: guest path → host path (files or directories)."""

    mounts: Mapping[str, str]
    node_root: Path | None = None

    def host(self, guest: str) -> Path | None:
        """The host path behind *guest*, or None when no mount holds it or it leaves its mount."""
        path = PurePosixPath(os.path.normpath("/" + guest.lstrip("/")))
        best: tuple[PurePosixPath, str] | None = None
        for mount_guest, mount_host in self.mounts.items():
            m = PurePosixPath(os.path.normpath(mount_guest))
            if (path == m or m in path.parents) and (best is None or len(m.parts) > len(best[0].parts)):
                best = (m, mount_host)
        if best is None:
            return None
        top = Path(os.path.realpath(best[1]))
        real = Path(os.path.realpath(top / path.relative_to(best[0])))
        if real != top and top not in real.parents:
            return None
        if self.node_root is not None:
            root = Path(os.path.realpath(self.node_root))
            if real != root and root not in real.parents:
                return None
        return real if real.exists() else None

    def files_under(self, guest_dir: str) -> list[str]:
        """Guest paths of the regular files below *guest_dir* (recursively), mounts inside it included."""
        found: list[str] = []
        host = self.host(guest_dir)
        base = PurePosixPath(os.path.normpath(guest_dir))
        if host is not None and host.is_dir():
            for dirpath, _dirs, names in os.walk(host):
                for name in sorted(names):
                    rel = Path(dirpath, name).relative_to(host)
                    found.append(str(base / rel.as_posix()))
                    if len(found) >= MAX_PLUGIN_FILES:
                        return found
        for mount_guest in self.mounts:
            m = PurePosixPath(os.path.normpath(mount_guest))
            if base in m.parents and str(m) not in found:
                inner = self.host(str(m))
                if inner is not None and inner.is_file():
                    found.append(str(m))
        return found


@dataclass
class PluginLoad:
    """The outcome: the WASI-NN plugin's guest path when it loaded, and the lines WasmEdge logged."""

    plugin: str | None = None
    lines: list[str] = field(default_factory=list)


class _DlError(Exception):
    pass


def _search(files: PodFiles, name: str, origin: str, runpath: list[str], env: Mapping[str, str]) -> str | None:
    if "/" in name:
        return name if files.host(name) is not None else None
    dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in runpath if d]
    dirs += [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += list(SYSTEM_DIRS)
    for d in dirs:
        candidate = str(PurePosixPath(d) / name)
        host = files.host(candidate)
        if host is not None and host.is_file():
            return candidate
    return None


def dlopen(files: PodFiles, guest_path: str, env: Mapping[str, str]) -> None:
    """Raise :class:`_DlError` with glibc's ``dlerror()`` text when *guest_path* would not load in the pod."""
    loaded: set[str] = set()
    pending = [guest_path]
    while pending:
        current = pending.pop(0)
        if current in loaded:
            continue
        if len(loaded) >= MAX_OBJECTS:
            raise _DlError(f"{current}: cannot load: too many shared objects")
        loaded.add(current)
        host = files.host(current)
        if host is None or not host.is_file():
            raise _DlError(f"{current}: cannot open shared object file: No such file or directory")
        try:
            with open(host, "rb") as f:
                dynamic = read_dynamic(f.read(8 << 20))
        except NotElf:
            raise _DlError(f"{current}: invalid ELF header") from None
        except OSError as err:
            raise _DlError(f"{current}: cannot open shared object file: {err.strerror}") from None
        origin = str(PurePosixPath(current).parent)
        for name in dynamic.needed:
            if name in RUNNING_LOADER:
                continue
            found = _search(files, name, origin, dynamic.runpath or dynamic.rpath, env)
            if found is None:
                # glibc names the missing object, not the one that needed it
                raise _DlError(f"{name}: cannot open shared object file: No such file or directory")
            pending.append(found)


def plugin_search_paths(env: Mapping[str, str]) -> list[str]:
    """``getDefaultPluginPaths``'s env part: ``WASMEDGE_PLUGIN_PATH`` split on ``:`` (empty parts dropped)."""
    return [p for p in env.get("WASMEDGE_PLUGIN_PATH", "").split(":") if p]


def load_plugins(files: PodFiles, env: Mapping[str, str]) -> PluginLoad:
    """What ``Plugin::loadFromDefaultPaths`` would log and register inside the pod."""
    result = PluginLoad()
    for path in plugin_search_paths(env):
        host = files.host(path)
        # a directory that only holds mounts (the runtime made it as their mount point) is still a directory
        inner = files.files_under(path) if host is None or host.is_dir() else [path]
        if host is None and not inner:
            continue  # std::filesystem::status fails: nothing loaded, nothing logged
        candidates = inner
        for candidate in candidates:
            if not candidate.endswith(".so"):
                continue
            try:
                dlopen(files, candidate, env)
            except _DlError as err:
                result.lines += [ILLEGAL_PATH, f"[error]     load library failed:{err}"]
                continue
            # registered when the library exports the WASI-NN descriptor: labkit's objects are known by name
            if PurePosixPath(candidate).name == PLUGIN_NAME and result.plugin is None:
                result.plugin = candidate
    return result
