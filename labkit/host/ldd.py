"""Reading ``ldd`` and ``wasmedge -v`` output as hostile text: every path is checked before it becomes a mount.

``ldd`` prints one line per object the loader maps (glibc ``elf/rtld.c``, ``_dl_show_objects`` via
``--list``), the same on x86_64 and aarch64; only the paths and the loader's name differ:

- ``name => /absolute/path (0x…)``: a DT_NEEDED name and where the loader found it;
- ``name => not found``: the loader found it nowhere (the object would not load);
- ``/absolute/path (0x…)``: the program interpreter (``/lib64/ld-linux-x86-64.so.2``,
  ``/lib/ld-linux-aarch64.so.1``); some distributions print it as ``name => /path (0x…)`` too;
- ``linux-vdso.so.1 (0x…)`` (``linux-vdso.so.1 =>  (0x…)`` on old glibc; ``linux-gate.so.1`` on i386): the
  kernel's vDSO, no file.

A file ``ldd`` reads may be a node file anyone with a writable hostPath could have replaced, so its output is
not trusted: a line that is none of the above, a relative path, a path with ``.``/``..`` parts, control
characters or a doubled ``/``, too many lines or too much text are all refused (:class:`LddOutputRefused`),
and a path outside the allowed prefixes is refused by :func:`check_allowed`.

>>> [e.path for e in parse_ldd(X86_64_EXAMPLE) if e.path][:2]
['/home/runner/.wasmedge/lib/libwasmedge.so.0', '/lib/x86_64-linux-gnu/libstdc++.so.6']
>>> parse_wasmedge_plugins('/home/runner/.wasmedge/lib/../plugin/libwasmedgePluginWasiNN.so (plugin "wasi_nn") '
...     'version 0.1.28.0')
['/home/runner/.wasmedge/lib/../plugin/libwasmedgePluginWasiNN.so']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from labkit.errors import LabkitError, PrerequisiteMissing

#: More than any real plugin prints (the CUDA build lists ~20 lines); beyond it the output is not ldd's.
MAX_LINES = 256
MAX_CHARS = 64 * 1024
MAX_PATH = 4096
#: Where a plugin's libraries may live on a node: the system's library directories (multiarch included) and
#: /usr/local and /opt installs (CUDA under /usr/local/cuda). The WasmEdge install (plugin dir/..) is added per call.
SYSTEM_LIBRARY_PREFIXES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/cuda", "/opt")

#: Node directories no allow-list opens: kernel views, devices, config and k3s's own state (its tokens).
NEVER = ("/proc", "/sys", "/dev", "/etc", "/run", "/var/lib/rancher", "/root/.ssh")
#: x86_64 ldd of WasmEdge 0.14.1's GGML plugin on a Debian/Ubuntu runner (the format ldd prints).
X86_64_EXAMPLE = """\tlinux-vdso.so.1 (0x00007ffc8a5f2000)
\tlibwasmedge.so.0 => /home/runner/.wasmedge/lib/libwasmedge.so.0 (0x00007f2b1c000000)
\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f2b1bc00000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f2b1bf19000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f2b1bef9000)
\tlibpthread.so.0 => /lib/x86_64-linux-gnu/libpthread.so.0 (0x00007f2b1bef4000)
\tlibdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f2b1beef000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2b1ba1f000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2b1e8b6000)
"""


class LddOutputRefused(LabkitError):
    """``ldd``'s output (or a path in it) is not something labkit will turn into a mount."""


class LibraryNotFound(PrerequisiteMissing):
    """``ldd`` says a library the plugin needs is nowhere on the node: the plugin would not load there either."""

    def __init__(self, plugin: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"ldd {plugin}: {', '.join(f'{m} => not found' for m in missing)}; the plugin cannot load on this node "
            "(WasmEdge would log `load library failed:" + f"{missing[0]}: cannot open shared object file`)",
            _missing_fix(missing[0]),
        )


def _missing_fix(name: str) -> str:
    if name.startswith("libwasmedge"):
        return (
            "reinstall WasmEdge with the plugin so lib/ and plugin/ match (curl -sSf https://raw.githubusercontent.com/"
            "WasmEdge/WasmEdge/master/utils/install.sh | bash -s -- --plugins wasi_nn-ggml -v 0.14.1); "
            "libwasmedge.so.0 belongs in ~/.wasmedge/lib, next to the plugin's directory"
        )
    if re.match(r"lib(cuda|cudart|cublas|cublasLt)\b", name):
        return f"install the CUDA runtime that provides {name} on the node, or install the CPU build of the plugin"
    return (
        f"install the package that provides {name} on the node (Debian/Ubuntu: `apt-file search {name}`, then "
        "apt-get install it), then generate the mounts again"
    )


@dataclass(frozen=True)
class LddEntry:
    """One line of ``ldd``: the DT_NEEDED *name* (``""`` for the interpreter line), where it was found
    (``None``: nowhere, or no file as for the vDSO) and the line itself."""

    name: str
    path: str | None
    line: str

    @property
    def missing(self) -> bool:
        return self.path is None and "not found" in self.line

    @property
    def is_loader(self) -> bool:
        return bool(self.path) and PurePosixPath(self.path or "").name.startswith("ld-linux")


_ADDR = r"\(0x[0-9a-fA-F]+\)"
_FOUND = re.compile(rf"^(\S+) => (\S+) {_ADDR}$")
_NOT_FOUND = re.compile(r"^(\S+) => not found$")
_DIRECT = re.compile(rf"^(/\S+) {_ADDR}$")
_VIRTUAL = re.compile(rf"^(linux-vdso\.so\.1|linux-gate\.so\.1|linux-vdso64\.so\.1)(?: =>)?\s+{_ADDR}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,255}$")


def check_path(path: str, what: str = "path") -> str:
    """*path* if it is absolute and plain (no ``.``/``..`` parts, no ``//``, no control characters); else refuse.

    >>> check_path("/lib/../etc/shadow")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    labkit.host.ldd.LddOutputRefused: path '/lib/../etc/shadow' is not a plain absolute path (it has '.' or '..' ...
    """
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH:
        raise LddOutputRefused(
            f"{what} {path!r} is not an absolute path",
            "ldd prints absolute paths for every library it finds; check the node's files by hand (ldd <plugin>)",
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or " " in path:
        raise LddOutputRefused(
            f"{what} {path!r} holds control characters or spaces",
            "rename the file on the node; labkit mounts only plain paths",
        )
    parts = path.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts):  # "/" itself has an empty part: it is no file to mount
        raise LddOutputRefused(
            f"{what} {path!r} is not a plain absolute path (it has '.' or '..' parts, a doubled '/' or a trailing '/')",
            "labkit mounts only plain absolute paths; check the node's files by hand (ls -l, ldd)",
        )
    return path


def check_allowed(path: str, prefixes: tuple[str, ...] | list[str]) -> str:
    """*path* if it lies under one of *prefixes* (directories); else :class:`LddOutputRefused`.

    >>> check_allowed("/lib/x86_64-linux-gnu/libc.so.6", SYSTEM_LIBRARY_PREFIXES)
    '/lib/x86_64-linux-gnu/libc.so.6'
    """
    check_path(path)
    if any(PurePosixPath(p) == PurePosixPath(path) or PurePosixPath(p) in PurePosixPath(path).parents for p in NEVER):
        raise LddOutputRefused(
            f"ldd names {path}: labkit never mounts anything under {', '.join(NEVER)}",
            "no library of a WASI-NN plugin lives there; check the plugin file on the node (ldd <plugin>)",
        )
    for prefix in prefixes:
        top = PurePosixPath(prefix)
        if top in PurePosixPath(path).parents:
            return path
    raise LddOutputRefused(
        f"ldd names {path}, outside the directories labkit mounts libraries from ({', '.join(prefixes)})",
        "a WASI-NN plugin's libraries live in the system library directories or in the WasmEdge install; if this "
        "one really belongs elsewhere, pass allowed_prefixes=[...] naming its directory",
    )


def parse_ldd(text: str) -> list[LddEntry]:
    """The lines of ``ldd`` output as entries; refuses text that is not ldd's (see the module docs)."""
    if len(text) > MAX_CHARS:
        raise LddOutputRefused(
            f"ldd printed {len(text)} characters (more than {MAX_CHARS}): that is not a plugin's library list",
            "run ldd on the plugin by hand and check what it is",
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        raise LddOutputRefused(
            f"ldd printed {len(lines)} lines (more than {MAX_LINES})", "run ldd on the plugin by hand"
        )
    if any(("statically linked" in line or "not a dynamic executable" in line) for line in lines):
        raise LddOutputRefused(
            f"ldd: {lines[0]}: the file is not a shared object that links libraries",
            "point labkit at WasmEdge's libwasmedgePluginWasiNN.so (a shared object)",
        )
    entries = []
    for line in lines:
        if _VIRTUAL.match(line):
            entries.append(LddEntry(line.split()[0], None, line))
        elif m := _NOT_FOUND.match(line):
            entries.append(LddEntry(_name(m.group(1), line), None, line))
        elif m := _FOUND.match(line):
            entries.append(LddEntry(_name(m.group(1), line), check_path(m.group(2), "ldd path"), line))
        elif m := _DIRECT.match(line):
            entries.append(LddEntry("", check_path(m.group(1), "ldd path"), line))
        else:
            raise LddOutputRefused(
                f"ldd printed a line labkit does not read: {line[:200]!r}",
                "run ldd on the plugin by hand; a line with a relative path or extra words is not ldd's format",
            )
    return entries


def _name(name: str, line: str) -> str:
    if not _NAME.match(name) and not name.startswith("/"):
        raise LddOutputRefused(f"ldd printed a library name labkit does not read: {line[:200]!r}")
    return name


_PLUGIN_LINE = re.compile(r'^(/\S+\.so) \(plugin "([^"]+)"\) version (\S+)$')


def parse_wasmedge_plugins(text: str, plugin: str = "wasi_nn") -> list[str]:
    """The paths ``wasmedge -v`` lists for *plugin* (``…/libwasmedgePluginWasiNN.so (plugin "wasi_nn") version
    0.1.28.0``), as printed (``lib/../plugin`` included: realpath them on the node)."""
    found = []
    for line in text[:MAX_CHARS].splitlines():
        m = _PLUGIN_LINE.match(line.strip())
        if m and m.group(2) == plugin and len(m.group(1)) <= MAX_PATH:
            found.append(m.group(1))
    return found


@dataclass(frozen=True)
class LddRun:
    """``ldd`` of one node file: the command as it would run on the node, its output as printed on this
    machine, and the entries with every path as a *node* path."""

    argv: tuple[str, ...]
    env: dict[str, str]
    output: str
    entries: tuple[LddEntry, ...]

    @property
    def paths(self) -> list[str]:
        """Every node path the loader found, in ldd's order, the interpreter included."""
        return [e.path for e in self.entries if e.path]

    @property
    def missing(self) -> list[str]:
        return [e.name for e in self.entries if e.missing]

    def command(self) -> str:
        """The command line to run on the node to see the same list."""
        prefix = "".join(f"{k}={v} " for k, v in self.env.items())
        return prefix + " ".join(self.argv)
