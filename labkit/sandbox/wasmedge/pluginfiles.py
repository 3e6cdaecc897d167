"""WasmEdge's files on a sandbox node: ``~/.wasmedge/{bin,lib,plugin}`` as the installer lays them out.

WasmEdge's ``utils/install.sh --plugins wasi_nn-ggml`` puts ``libwasmedge.so.0`` in ``$HOME/.wasmedge/lib``
and ``libwasmedgePluginWasiNN.so`` in ``$HOME/.wasmedge/plugin``. A sandbox node gets the
same two files at its profile's home (``/home/runner``), as **real ELF shared objects** that labkit compiles
with clang once per machine (cached under ``LABKIT_HOME/cache``), so the real ``ldd`` and ``readelf`` work on
them. They carry no WasmEdge code: the plugin's functions run in the kubelet (``kubelet/wasinn.py``); what
they do carry is the real objects' link shape:

- the plugin's DT_NEEDED names ``libwasmedge.so.0`` (WasmEdge ``plugins/wasi_nn/CMakeLists.txt`` links
  ``wasmedge_shared``), then the C++ runtime; its RUNPATH is ``$ORIGIN`` (``cmake/Helper.cmake``,
  ``wasmedge_add_library``: ``INSTALL_RPATH "$ORIGIN"``), so ``libwasmedge.so.0`` in ``../lib`` is found
  through ``LD_LIBRARY_PATH`` (the installer's ``~/.wasmedge/env`` sets it [inferred]) or not at all;
- both need ``libstdc++.so.6``, ``libm.so.6``, ``libgcc_s.so.1``, ``libc.so.6``, ``libpthread.so.0`` and
  ``libdl.so.2`` (the list ``ldd`` prints for the release plugin; on glibc ≥ 2.34 the last two
  are empty stubs, linked here with ``--no-as-needed`` to keep the list).

The system libraries the objects need are copied into the node root at the paths the host's loader finds
them (``/lib/x86_64-linux-gnu/…`` and the loader ``/lib64/ld-linux-x86-64.so.2``), so a pod can mount them
by hostPath exactly as the seed manifest mounts them on k3s. Copies, never links: a pod with a writable
mount must not reach the machine's own libc.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from labkit.sandbox.wasmedge.elfdeps import read_dynamic

#: The WasmEdge release the files stand for (the journey installs 0.14.1).
WASMEDGE_VERSION = "0.14.1"
PLUGIN_NAME = "libwasmedgePluginWasiNN.so"
LIB_NAME = "libwasmedge.so.0"
SYSTEM_LIBS = ("-lstdc++", "-lm", "-lgcc_s", "-l:libpthread.so.0", "-l:libdl.so.2", "-lc")
#: Where a glibc loader looks after RUNPATH and LD_LIBRARY_PATH (Debian's ld.so.conf order, multiarch first).
SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")
LOADER = "/lib64/ld-linux-x86-64.so.2"

_LIB_C = f"""/* labkit sandbox stand-in for WasmEdge {WASMEDGE_VERSION}'s libwasmedge.so.0: the file and its links are
   real, the runtime is not (the sandbox runs wasm with wasmtime). */
const char *WasmEdge_VersionGet(void) {{ return "{WASMEDGE_VERSION} (labkit sandbox stand-in)"; }}
unsigned WasmEdge_VersionGetMajor(void) {{ return 0; }}
unsigned WasmEdge_VersionGetMinor(void) {{ return 14; }}
unsigned WasmEdge_VersionGetPatch(void) {{ return 1; }}
"""
_PLUGIN_C = """/* labkit sandbox stand-in for WasmEdge's WASI-NN GGML plugin: the kubelet provides wasi_ephemeral_nn
   (labkit/sandbox/kubelet/wasinn.py) when a pod sees this file and every library it needs. */
extern const char *WasmEdge_VersionGet(void);
static const char name[] = "wasi_nn";
const void *GetDescriptor(void) { return WasmEdge_VersionGet() ? name : 0; }
"""


def machine_cache() -> Path:
    """labkit's per-machine cache (``LABKIT_CACHE_DIR``, default ``~/.cache/labkit``; scripts/llm-engine uses it)."""
    explicit = os.environ.get("LABKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit"


def _cache_dir() -> Path:
    return machine_cache() / "wasmedge-elf"


def _clang() -> str | None:
    return shutil.which("clang") or shutil.which("cc")


def build_objects(cache: Path | None = None) -> Path | None:
    """The directory holding the built ``lib/`` and ``plugin/`` objects, compiled on first use; None without
    a C compiler (then nodes have no WasmEdge plugin, like a k3s node where it was never installed)."""
    compiler = _clang()
    if compiler is None:
        return None
    key = hashlib.sha256(f"{_LIB_C}{_PLUGIN_C}{SYSTEM_LIBS}{compiler}".encode()).hexdigest()[:16]
    out = (cache or _cache_dir()) / key
    if (out / "plugin" / PLUGIN_NAME).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
    try:
        (work / "lib").mkdir()
        (work / "plugin").mkdir()
        (work / "wasmedge.c").write_text(_LIB_C)
        (work / "plugin.c").write_text(_PLUGIN_C)
        common = [compiler, "-shared", "-fPIC", "-O2", "-Wl,--no-as-needed"]
        lib = work / "lib" / LIB_NAME
        subprocess.run(
            [*common, f"-Wl,-soname,{LIB_NAME}", "-o", str(lib), str(work / "wasmedge.c"), *SYSTEM_LIBS],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *common,
                "-Wl,-rpath,$ORIGIN",
                "-o",
                str(work / "plugin" / PLUGIN_NAME),
                str(work / "plugin.c"),
                str(lib),
                *SYSTEM_LIBS,
            ],
            check=True,
            capture_output=True,
        )
        try:
            os.rename(work, out)
        except OSError:  # another process built it meanwhile
            shutil.rmtree(work, ignore_errors=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(work, ignore_errors=True)
        return None
    return out


def _copy(source: Path, target: Path) -> None:
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755 if ".so" in target.name else 0o644)
    os.replace(tmp, target)


def host_library(name: str) -> Path | None:
    """Where the machine's loader finds library *name* in the system directories."""
    return next((Path(d) / name for d in SYSTEM_DIRS if (Path(d) / name).is_file()), None)


def install_wasmedge(node_root: Path, home: PurePosixPath, cache: Path | None = None) -> bool:
    """Lay out ``<home>/.wasmedge/{bin,lib,plugin}`` and the system libraries they need in *node_root*.

    Returns False (and installs nothing) when the objects cannot be built on this machine.
    """
    built = build_objects(cache)
    if built is None:
        return False
    base = node_root / str(home).lstrip("/") / ".wasmedge"
    (base / "bin").mkdir(parents=True, exist_ok=True)
    _copy(built / "lib" / LIB_NAME, base / "lib" / LIB_NAME)
    link = base / "lib" / "libwasmedge.so"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(LIB_NAME)  # relative: stays inside the node root
    _copy(built / "plugin" / PLUGIN_NAME, base / "plugin" / PLUGIN_NAME)
    needed = set()
    for obj in (built / "lib" / LIB_NAME, built / "plugin" / PLUGIN_NAME):
        needed.update(read_dynamic(obj.read_bytes()).needed)
    for name in sorted(needed - {LIB_NAME}):
        found = host_library(name)
        if found is not None:
            _copy(Path(os.path.realpath(found)), node_root / str(found).lstrip("/"))
    if Path(LOADER).exists():
        _copy(Path(os.path.realpath(LOADER)), node_root / LOADER.lstrip("/"))
    return True


def install_model(node_root: Path, model_dir: PurePosixPath, model: Path) -> Path:
    """Put *model* in the node's *model_dir*: a hard link to labkit's one read-only copy of it in the machine
    cache (a copy where links cannot be made), so every node's file is the same inode and llama.cpp's mmap of
    it is one set of pages in the page cache, whichever node process maps it. The cached copy is not the
    installed wheel's file, so nothing a pod does to its node's model reaches the Python environment."""
    cached = machine_cache() / "models" / model.name
    if not (cached.is_file() and cached.stat().st_size == model.stat().st_size):
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        shutil.copyfile(model, tmp)
        os.chmod(tmp, 0o444)
        os.replace(tmp, cached)
    target = node_root / str(model_dir).lstrip("/") / model.name
    if target.is_file() and os.path.samefile(target, cached):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(cached, target)
    except OSError:
        _copy(cached, target)
    return target
