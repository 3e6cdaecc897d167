"""k3s-style containerd configuration: base config, templates, runtime read-back.

The same code serves a real k3s node (node root ``/``) and a sandbox node,
whose root directory mirrors a k3s node's paths (docs/architecture.md, "The two doors"). What k3s does
at each start is reproduced in :func:`render_node_config`:

1. pick the template for the containerd version (``config-v3.toml.tmpl`` for
   config version 3, ``config.toml.tmpl`` for version 2 or as the fallback);
2. render it, with ``{{ template "base" . }}`` replaced by k3s's default
   config (:func:`render_base_config`), or render the base alone;
3. write ``config.toml``.

containerd's side is :func:`read_runtime_info`: it parses the rendered file
with ``tomllib`` and reads the CRI runtimes under the key prefix that matches
the file's ``version``; runtime tables under another version's prefix are
reported the way containerd 2 logs them (``Ignoring unknown key in TOML for
plugin``), and a table declared twice is a :class:`ContainerdConfigError`.

**Making a runtime the default.** The base config already emits the
``…containerd`` table that holds ``default_runtime_name``; declaring that
table again after ``{{ template "base" . }}`` is a TOML redefinition error,
and Go templates cannot change the data the base sees. So, as on k3s, the
default runtime is k3s's ``--default-runtime`` flag (``default-runtime:`` in
``/etc/rancher/k3s/config.yaml``), which the base honours. The crun swap is
therefore two files: a template that *adds* the crun runtime table
(:func:`crun_runtime_template`) and the k3s config key
(:func:`set_default_runtime`); :func:`crun_swap_plan` returns both.

>>> paths = ContainerdPaths(Path("/"))
>>> str(paths.config)
'/var/lib/rancher/k3s/agent/etc/containerd/config.toml'
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labkit.errors import LabkitError
from labkit.fsutil import write_atomic

CONTAINERD_DIR = Path("var/lib/rancher/k3s/agent/etc/containerd")
K3S_CONFIG = Path("etc/rancher/k3s/config.yaml")
#: The directories k3s searches for alternative runtimes at start (service PATH).
K3S_RUNTIME_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
#: CRI plugin id holding ``containerd.runtimes`` per config version.
CRI_RUNTIME_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
#: How k3s names the containerd table keys in each version's template.
_QUOTE = {2: '"', 3: "'"}
IGNORED_KEY_TEXT = "Ignoring unknown key in TOML for plugin"
CRUN_POD_ANNOTATIONS = ("module.wasm.image/*",)


class ContainerdConfigError(LabkitError):
    """A containerd config or k3s template that containerd or k3s would reject."""


@dataclass(frozen=True)
class ContainerdPaths:
    """The containerd config files of a node whose filesystem starts at *root*."""

    root: Path

    @property
    def dir(self) -> Path:
        return self.root / CONTAINERD_DIR

    @property
    def config(self) -> Path:
        """``config.toml``: rendered by k3s at each start; manual edits are lost."""
        return self.dir / "config.toml"

    @property
    def template_v2(self) -> Path:
        return self.dir / "config.toml.tmpl"

    @property
    def template_v3(self) -> Path:
        return self.dir / "config-v3.toml.tmpl"

    @property
    def k3s_config(self) -> Path:
        """k3s's own config file (flags as YAML keys, e.g. ``default-runtime``)."""
        return self.root / K3S_CONFIG

    def template_path(self, version: int) -> Path:
        """Where a learner writes the template for config *version* (2 or 3)."""
        return self.template_v3 if version == 3 else self.template_v2

    def select_template(self, version: int) -> tuple[Path | None, int]:
        """The template k3s would use and the config version it renders.

        containerd 2 (version 3) prefers ``config-v3.toml.tmpl``; without it k3s
        falls back to ``config.toml.tmpl`` and renders a legacy version 2 config.
        """
        if version == 3 and self.template_v3.is_file():
            return self.template_v3, 3
        if self.template_v2.is_file():
            return self.template_v2, 2
        return None, version


@dataclass(frozen=True)
class RuntimeSpec:
    """One CRI runtime table: ``runtimes.<name>`` and its ``options``."""

    runtime_type: str
    binary_name: str | None = None
    systemd_cgroup: bool | None = None
    pod_annotations: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeInfo:
    """What containerd learns from a config: what ``k3s crictl info`` would show."""

    version: int
    default_runtime: str
    runtimes: dict[str, RuntimeSpec]
    ignored_keys: list[str]


@dataclass(frozen=True)
class NodeSettings:
    """The node facts k3s fills into its base template (k3s defaults)."""

    root: str = "/var/lib/rancher/k3s/agent/containerd"
    state: str = "/run/k3s/containerd"
    address: str = "/run/k3s/containerd/containerd.sock"
    cni_bin_dir: str = "/var/lib/rancher/k3s/data/cni"
    cni_conf_dir: str = "/var/lib/rancher/k3s/agent/etc/cni/net.d"
    pause_image: str = "rancher/mirrored-pause:3.6"
    snapshotter: str = "overlayfs"
    systemd_cgroup: bool = True


#: k3s's alternative-runtime detection: runtime name -> (runtime_type, binary).
K3S_KNOWN_RUNTIMES: dict[str, tuple[str, str]] = {
    "crun": ("io.containerd.runc.v2", "crun"),
    "lunatic": ("io.containerd.lunatic.v1", "containerd-shim-lunatic-v1"),
    "slight": ("io.containerd.slight.v1", "containerd-shim-slight-v1"),
    "spin": ("io.containerd.spin.v2", "containerd-shim-spin-v2"),
    "wasmedge": ("io.containerd.wasmedge.v1", "containerd-shim-wasmedge-v1"),
    "wasmer": ("io.containerd.wasmer.v1", "containerd-shim-wasmer-v1"),
    "wasmtime": ("io.containerd.wasmtime.v1", "containerd-shim-wasmtime-v1"),
    "wws": ("io.containerd.wws.v1", "containerd-shim-wws-v1"),
}


def detect_runtimes(root: Path, search_path: Iterable[str] = K3S_RUNTIME_PATH) -> dict[str, RuntimeSpec]:
    """The extra runtimes k3s would auto-detect on the node at *root*.

    The first directory of *search_path* holding a runtime's binary wins, and
    ``BinaryName`` is its absolute path on the node, as k3s writes it.
    """
    found: dict[str, RuntimeSpec] = {}
    for name, (runtime_type, binary) in K3S_KNOWN_RUNTIMES.items():
        for directory in search_path:
            if (root / directory.lstrip("/") / binary).is_file():
                found[name] = RuntimeSpec(runtime_type, binary_name=f"{directory}/{binary}")
                break
    return found


def _q(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _q(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ContainerdConfigError(
        f"cannot write {value!r} into a containerd config", "use strings, numbers, booleans or lists"
    )


def _check_render_version(version: int) -> None:
    """k3s renders config version 2 (containerd 1.7) or 3 (containerd 2.x) only."""
    if version not in _QUOTE:
        raise ContainerdConfigError(
            f"config version {version} is not supported", "use version 2 (containerd 1.7) or 3 (containerd 2.x)"
        )


def _plugin(version: int, plugin_id: str) -> str:
    q = _QUOTE[version]
    return f"plugins.{q}{plugin_id}{q}"


def runtime_tables(version: int, name: str, spec: RuntimeSpec) -> str:
    """The TOML tables declaring runtime *name* under *version*'s key prefix.

    >>> print(runtime_tables(3, "crun", RuntimeSpec("io.containerd.runc.v2", "/usr/local/bin/crun")))
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'crun']
      runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'crun'.options]
      BinaryName = "/usr/local/bin/crun"
    <BLANKLINE>
    """
    _check_render_version(version)
    q = _QUOTE[version]
    table = f"{_plugin(version, CRI_RUNTIME_PLUGIN[version])}.containerd.runtimes.{q}{name}{q}"
    lines = [f"[{table}]", f"  runtime_type = {_q(spec.runtime_type)}"]
    if spec.pod_annotations:
        lines.append(f"  pod_annotations = {_toml_value(spec.pod_annotations)}")
    options: dict[str, Any] = dict(spec.options)
    if spec.binary_name is not None:
        options["BinaryName"] = spec.binary_name
    if spec.systemd_cgroup is not None:
        options["SystemdCgroup"] = spec.systemd_cgroup
    if options:
        lines.append(f"[{table}.options]")
        lines += [f"  {key} = {_toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def _base_head(version: int, s: NodeSettings) -> list[str]:
    opt = _plugin(version, "io.containerd.internal.v1.opt")
    template = "config-v3.toml.tmpl" if version == 3 else "config.toml.tmpl"
    return [
        "",
        f"# File generated by k3s (rendered by labkit's model of it). DO NOT EDIT. Use {template} instead.",
        f"version = {version}",
        f"root = {_q(s.root)}",
        f"state = {_q(s.state)}",
        "",
        "[grpc]",
        f"  address = {_q(s.address)}",
        "",
        f"[{opt}]",
        f"  path = {_q(s.root)}",
        "",
    ]


def _base_cri_v2(s: NodeSettings, default_runtime: str) -> list[str]:
    cri = _plugin(2, "io.containerd.grpc.v1.cri")
    return [
        f"[{cri}]",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "10010"',
        "  enable_selinux = false",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        f"  sandbox_image = {_q(s.pause_image)}",
        "",
        f"[{cri}.containerd]",
        f"  snapshotter = {_q(s.snapshotter)}",
        "  disable_snapshot_annotations = true",
        f"  default_runtime_name = {_q(default_runtime)}",
        "",
        f"[{cri}.cni]",
        f"  bin_dir = {_q(s.cni_bin_dir)}",
        f"  conf_dir = {_q(s.cni_conf_dir)}",
        "",
    ]


def _base_cri_v3(s: NodeSettings, default_runtime: str) -> list[str]:
    # containerd 2 split the CRI plugin: runtime and images are their own plugins,
    # the grpc one keeps only the streaming server.
    runtime, images = _plugin(3, "io.containerd.cri.v1.runtime"), _plugin(3, "io.containerd.cri.v1.images")
    return [
        f"[{runtime}]",
        "  enable_selinux = false",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        "  device_ownership_from_security_context = false",
        "",
        f"[{images}]",
        f"  snapshotter = {_q(s.snapshotter)}",
        "  disable_snapshot_annotations = true",
        "",
        f"[{images}.pinned_images]",
        f"  sandbox = {_q(s.pause_image)}",
        "",
        f"[{runtime}.cni]",
        f"  bin_dir = {_q(s.cni_bin_dir)}",
        f"  conf_dir = {_q(s.cni_conf_dir)}",
        "",
        f"[{runtime}.containerd]",
        f"  default_runtime_name = {_q(default_runtime)}",
        "",
        f"[{_plugin(3, 'io.containerd.grpc.v1.cri')}]",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "10010"',
        "",
    ]


def render_base_config(
    version: int,
    runtimes: Mapping[str, RuntimeSpec],
    default_runtime: str = "runc",
    settings: NodeSettings = NodeSettings(),
) -> str:
    """The config k3s renders when there is no template (its ``base``).

    *runtimes* are the extra runtimes k3s detected (crun, the wasmedge shim…);
    ``runc`` is always declared, as k3s does, unless *runtimes* overrides it.
    *default_runtime* is k3s's ``--default-runtime``.

    >>> text = render_base_config(3, {})
    >>> tomllib.loads(text)["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["default_runtime_name"]
    'runc'
    """
    _check_render_version(version)
    body = _base_cri_v3(settings, default_runtime) if version == 3 else _base_cri_v2(settings, default_runtime)
    all_runtimes = {"runc": RuntimeSpec("io.containerd.runc.v2", systemd_cgroup=settings.systemd_cgroup), **runtimes}
    tables = [runtime_tables(version, name, spec) for name, spec in all_runtimes.items()]
    return "\n".join(_base_head(version, settings) + body) + "\n" + "\n".join(tables)


_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
_BASE_INCLUDE = re.compile(r'template\s+"base"\s+\.')
SUPPORTED_ACTIONS = (
    '{{ template "base" . }} (k3s\'s default config) and comments {{/* ... */}}, with optional {{- -}} trim markers'
)


def render_template(tmpl_text: str, base_text: str) -> str:
    """Render a k3s containerd template the way Go's ``text/template`` would.

    Supported: ``{{ template "base" . }}``, comments and trim markers; any other
    action raises :class:`ContainerdConfigError` naming what is supported.

    >>> render_template('{{ template "base" . }}\\n[extra]\\n', "[base]\\n")
    '[base]\\n\\n[extra]\\n'
    """
    out: list[str] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(tmpl_text):
        text = tmpl_text[pos : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        out.append(text)
        action = match.group(2).strip()
        if _BASE_INCLUDE.fullmatch(action):
            out.append(base_text)
        elif not (action.startswith("/*") and action.endswith("*/")):
            line = tmpl_text.count("\n", 0, match.start()) + 1
            raise ContainerdConfigError(
                f"template line {line}: the action {{{{ {action} }}}} is not supported by labkit's template renderer",
                f"labkit renders only {SUPPORTED_ACTIONS}; write plain TOML tables after the base include",
            )
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = tmpl_text[pos:]
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)


def k3s_default_runtime(paths: ContainerdPaths) -> str | None:
    """``default-runtime`` from the node's k3s config file, if set."""
    if not paths.k3s_config.is_file():
        return None
    data = yaml.safe_load(paths.k3s_config.read_text()) or {}
    if not isinstance(data, dict):
        raise ContainerdConfigError(
            f"{paths.k3s_config} is not a YAML mapping", "write k3s flags as 'flag-name: value' lines"
        )
    value = data.get("default-runtime")
    return str(value) if value else None


def render_node_config(
    paths: ContainerdPaths,
    version: int,
    detected_runtimes: Mapping[str, RuntimeSpec],
    default_runtime: str | None = None,
    settings: NodeSettings = NodeSettings(),
) -> str:
    """Do what k3s does at start: render the template (or the base) into ``config.toml``.

    *version* is the config version the node's containerd prefers (3 for
    containerd 2.x, 2 for 1.7). *default_runtime* defaults to the node's k3s
    config ``default-runtime``, else ``runc``. Like k3s, the text is written
    without validation; containerd (:func:`read_runtime_info`) judges it.
    """
    template, effective = paths.select_template(version)
    chosen = default_runtime or k3s_default_runtime(paths) or "runc"
    base = render_base_config(effective, detected_runtimes, chosen, settings)
    text = render_template(template.read_text(), base) if template else base
    write_atomic(paths.config, text, make_parents=True)
    return text


def _dotted(key: tuple[str, ...] | list[str]) -> str:
    return ".".join(k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _q(k) for k in key)


def _parse(config_text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(config_text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        where = re.search(r"at line (\d+)", message)
        line_no = int(where.group(1)) if where else None
        line = (
            config_text.splitlines()[line_no - 1].strip()
            if line_no and line_no <= len(config_text.splitlines())
            else ""
        )
        twice = re.search(r"Cannot declare (\(.*?\)) twice", message)
        if twice:
            table = _dotted(ast.literal_eval(twice.group(1)))
            problem = f"containerd config line {line_no}: table {table} is declared twice ({line})"
            fix = (
                'add only new tables after the base include {{ template "base" . }}; '
                "the base already declares this one (a runtime k3s auto-detected, or the containerd table: "
                "set the default runtime with k3s's default-runtime instead)"
            )
        else:
            problem = f"containerd config line {line_no}: {message} ({line})"
            fix = "fix the TOML syntax on that line; add only new tables after the base include"
        raise ContainerdConfigError(problem, fix) from None


def _leaf_keys(table: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterable[tuple[str, ...]]:
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from _leaf_keys(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _ignored(plugins: Mapping[str, Any], version: int) -> list[str]:
    """Runtime keys written under another config version's CRI prefix."""
    found: list[str] = []
    for other_version, plugin_id in CRI_RUNTIME_PLUGIN.items():
        section = plugins.get(plugin_id)
        if other_version == version or not isinstance(section, Mapping):
            continue
        # the v2 grpc plugin id still exists in containerd 2 (streaming server),
        # so only its ``containerd`` subtree is unknown there
        subtree = section.get("containerd") if plugin_id == CRI_RUNTIME_PLUGIN[2] else section
        if not isinstance(subtree, Mapping):
            continue
        base = ("containerd",) if plugin_id == CRI_RUNTIME_PLUGIN[2] else ()
        for key in _leaf_keys(subtree, base):
            found.append(f'{IGNORED_KEY_TEXT}: plugin="{plugin_id}" key="{_dotted(key)}"')
    return found


def _runtime_spec(table: Mapping[str, Any]) -> RuntimeSpec:
    options = dict(table.get("options") or {})
    return RuntimeSpec(
        runtime_type=str(table.get("runtime_type", "")),
        binary_name=options.get("BinaryName"),
        systemd_cgroup=options.get("SystemdCgroup"),
        pod_annotations=tuple(table.get("pod_annotations") or ()),
        options=options,
    )


def read_runtime_info(config_text: str) -> RuntimeInfo:
    """Read a containerd config as containerd would: version, default runtime, runtimes.

    >>> info = read_runtime_info(render_base_config(3, {}, default_runtime="runc"))
    >>> info.version, info.default_runtime, sorted(info.runtimes)
    (3, 'runc', ['runc'])
    """
    doc = _parse(config_text)
    version = int(doc.get("version", 1))
    if version not in CRI_RUNTIME_PLUGIN:
        raise ContainerdConfigError(
            f"containerd config version {version} is not supported by labkit",
            "render version 2 or 3 (k3s templates do)",
        )
    plugins = doc.get("plugins") or {}
    containerd = (plugins.get(CRI_RUNTIME_PLUGIN[version]) or {}).get("containerd") or {}
    runtimes = {name: _runtime_spec(table) for name, table in (containerd.get("runtimes") or {}).items()}
    return RuntimeInfo(
        version=version,
        default_runtime=str(containerd.get("default_runtime_name", "runc")),
        runtimes=runtimes,
        ignored_keys=_ignored(plugins, version),
    )


def node_runtime_info(paths: ContainerdPaths) -> RuntimeInfo:
    """The runtime info of the node's rendered ``config.toml`` (what a restarted containerd loads)."""
    if not paths.config.is_file():
        raise ContainerdConfigError(
            f"{paths.config} does not exist: containerd on this node has no config",
            "start (or restart) the node so k3s renders it from its template",
        )
    return read_runtime_info(paths.config.read_text())


def crun_runtime_template(
    version: int,
    binary: str = "/usr/local/bin/crun",
    pod_annotations: Iterable[str] = CRUN_POD_ANNOTATIONS,
    name: str = "crun",
    systemd_cgroup: bool = True,
) -> str:
    """The template notebook 02 writes: the k3s base plus a crun runtime table.

    ``pod_annotations`` whitelists the annotations containerd passes to crun
    (``module.wasm.image/variant`` selects crun's wasm handler). The default
    runtime is *not* set here (see the module docstring): use
    :func:`set_default_runtime` or :func:`crun_swap_plan`. If k3s auto-detects
    a runtime with the same *name* (a ``crun`` binary on its PATH), the base
    already declares that table and containerd rejects the file; pick another
    *name* then.
    """
    spec = RuntimeSpec(
        "io.containerd.runc.v2",
        binary_name=binary,
        systemd_cgroup=systemd_cgroup,
        pod_annotations=tuple(pod_annotations),
    )
    return '{{ template "base" . }}\n\n' + runtime_tables(version, name, spec)


def set_default_runtime(k3s_config_text: str, runtime: str | None) -> str:
    """k3s config YAML with ``default-runtime`` set to *runtime* (removed when ``None``).

    >>> set_default_runtime("write-kubeconfig-mode: '644'\\n", "crun")
    "write-kubeconfig-mode: '644'\\ndefault-runtime: crun\\n"
    """
    data = yaml.safe_load(k3s_config_text) if k3s_config_text.strip() else {}
    if not isinstance(data, dict):
        raise ContainerdConfigError(
            "the k3s config file is not a YAML mapping", "write k3s flags as 'flag-name: value' lines"
        )
    data.pop("default-runtime", None)
    if runtime:
        data["default-runtime"] = runtime
    return yaml.safe_dump(data, sort_keys=False) if data else ""


def crun_swap_plan(
    paths: ContainerdPaths,
    version: int,
    binary: str = "/usr/local/bin/crun",
    default: bool = True,
    pod_annotations: Iterable[str] = CRUN_POD_ANNOTATIONS,
    name: str = "crun",
) -> dict[Path, str]:
    """The files (path → new text) that add crun and, with *default*, make it the default runtime.

    The caller (a ``Host``) previews, backs up and writes them, then restarts k3s.
    """
    plan = {paths.template_path(version): crun_runtime_template(version, binary, pod_annotations, name)}
    if default:
        current = paths.k3s_config.read_text() if paths.k3s_config.is_file() else ""
        plan[paths.k3s_config] = set_default_runtime(current, name)
    return plan
