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

**Making a runtime the default.** k3s's v3 base emits the
``[plugins.'io.containerd.cri.v1.runtime'.containerd]`` table (holding
``default_runtime_name``) only when k3s's ``--default-runtime`` is set
(``default-runtime:`` in ``/etc/rancher/k3s/config.yaml``). So there are two
routes, and either one alone works: a template that adds that table after
``{{ template "base" . }}`` (the journey's route), or the k3s config key
(:func:`set_default_runtime`). Both at once declare the table twice, which
containerd refuses; so does redeclaring a runtime k3s auto-detected (a
``crun`` on its PATH). In a version 2 config the base always emits
``…grpc.v1.cri".containerd`` (it holds the snapshotter), so there only the
k3s config key works. :func:`crun_swap_plan` builds either route.

Sources: k3s ``pkg/agent/templates`` (``ContainerdConfigTemplateV3``, base
include since k3s PR #7991) and ``pkg/agent/containerd/runtimes.go``; the
rendered v3 base as k3s wrote it is quoted in the journey (seed) and in k3s
issues #9192-#9194 (v2, detected ``crun`` with ``SystemdCgroup = true``).
[inf] The stored copy of k3s's newest ``templates.go`` was not readable here;
the position of the ``…containerd`` table inside the base is inferred.

>>> paths = ContainerdPaths(Path("/"))
>>> str(paths.config)
'/var/lib/rancher/k3s/agent/etc/containerd/config.toml'
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from labkit.containerd_keys import CRI_RUNTIME_PLUGIN as CRI_RUNTIME_PLUGIN
from labkit.containerd_keys import IGNORED_KEY_TEXT as IGNORED_KEY_TEXT
from labkit.containerd_keys import STRICT_MODE_ERROR as STRICT_MODE_ERROR
from labkit.containerd_keys import dotted, ignored_keys, toml_string
from labkit.errors import LabkitError
from labkit.fsutil import write_atomic

CONTAINERD_DIR = Path("var/lib/rancher/k3s/agent/etc/containerd")
K3S_CONFIG = Path("etc/rancher/k3s/config.yaml")
#: The directories k3s searches for alternative runtimes at start (service PATH).
K3S_RUNTIME_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
#: How k3s names the containerd table keys in each version's template.
_QUOTE = {2: '"', 3: "'"}


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
    registry_config_dir: str = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"


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


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
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


def runtime_tables(version: int, name: str, spec: RuntimeSpec, quote_name: bool = True) -> str:
    """The TOML tables declaring runtime *name* under *version*'s key prefix.

    k3s quotes the names of the runtimes it detected (``runtimes.'crun'``) and
    not those it always writes (``runtimes.runc``): *quote_name*.

    >>> print(runtime_tables(3, "crun", RuntimeSpec("io.containerd.runc.v2", "/usr/local/bin/crun")))
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'crun']
      runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'crun'.options]
      BinaryName = "/usr/local/bin/crun"
    <BLANKLINE>
    """
    _check_render_version(version)
    q = _QUOTE[version] if quote_name else ""
    table = f"{_plugin(version, CRI_RUNTIME_PLUGIN[version])}.containerd.runtimes.{q}{name}{q}"
    lines = [f"[{table}]", f"  runtime_type = {toml_string(spec.runtime_type)}"]
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


def default_runtime_table(version: int, runtime: str) -> str:
    """The ``…containerd`` table that names the default runtime (what k3s's base writes for ``default-runtime``)."""
    _check_render_version(version)
    return (
        f"[{_plugin(version, CRI_RUNTIME_PLUGIN[version])}.containerd]\n"
        f"  default_runtime_name = {toml_string(runtime)}\n"
    )


def _base_head(version: int, s: NodeSettings) -> list[str]:
    opt = _plugin(version, "io.containerd.internal.v1.opt")
    template = "config-v3.toml.tmpl" if version == 3 else "config.toml.tmpl"
    return [
        "",
        f"# File generated by k3s (rendered by labkit's model of it). DO NOT EDIT. Use {template} instead.",
        f"version = {version}",
        f"root = {toml_string(s.root)}",
        f"state = {toml_string(s.state)}",
        "",
        "[grpc]",
        f"  address = {toml_string(s.address)}",
        "",
        f"[{opt}]",
        f"  path = {toml_string(s.root)}",
        "",
    ]


def _base_cri_v2(s: NodeSettings, default_runtime: str | None) -> list[str]:
    # the containerd table always exists in v2 (it holds the snapshotter); k3s adds
    # default_runtime_name to it when --default-runtime is set (k3s issue #9702 quotes that line)
    cri = _plugin(2, "io.containerd.grpc.v1.cri")
    return [
        f"[{cri}]",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "10010"',
        "  enable_selinux = false",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        f"  sandbox_image = {toml_string(s.pause_image)}",
        "",
        f"[{cri}.containerd]",
        f"  snapshotter = {toml_string(s.snapshotter)}",
        "  disable_snapshot_annotations = true",
        *([f"  default_runtime_name = {toml_string(default_runtime)}"] if default_runtime else []),
        "",
        f"[{cri}.cni]",
        f"  bin_dir = {toml_string(s.cni_bin_dir)}",
        f"  conf_dir = {toml_string(s.cni_conf_dir)}",
        "",
    ]


def _base_cri_v3(s: NodeSettings, default_runtime: str | None) -> list[str]:
    # containerd 2 split the CRI plugin: runtime and images are their own plugins,
    # the grpc one keeps only the streaming server. The order is the one of the
    # v3 base quoted in the journey (seed).
    runtime, images = _plugin(3, "io.containerd.cri.v1.runtime"), _plugin(3, "io.containerd.cri.v1.images")
    return [
        f"[{_plugin(3, 'io.containerd.grpc.v1.cri')}]",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "10010"',
        "",
        f"[{runtime}]",
        "  enable_selinux = false",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        "  device_ownership_from_security_context = false",
        "",
        f"[{images}]",
        f"  snapshotter = {toml_string(s.snapshotter)}",
        "  disable_snapshot_annotations = true",
        "",
        f"[{images}.pinned_images]",
        f"  sandbox = {toml_string(s.pause_image)}",
        "",
        f"[{runtime}.cni]",
        f"  bin_dir = {toml_string(s.cni_bin_dir)}",
        f"  conf_dir = {toml_string(s.cni_conf_dir)}",
        "",
        *([default_runtime_table(3, default_runtime)] if default_runtime else []),
    ]


def _registry_table(version: int, s: NodeSettings) -> str:
    plugin = "io.containerd.cri.v1.images" if version == 3 else "io.containerd.grpc.v1.cri"
    return f"[{_plugin(version, plugin)}.registry]\n  config_path = {toml_string(s.registry_config_dir)}\n"


def render_base_config(
    version: int,
    runtimes: Mapping[str, RuntimeSpec],
    default_runtime: str | None = None,
    settings: NodeSettings = NodeSettings(),
) -> str:
    """The config k3s renders when there is no template (its ``base``).

    *runtimes* are the extra runtimes k3s detected (crun, the wasmedge shim…):
    k3s gives each ``SystemdCgroup`` like runc's. ``runc`` (and, in version 3,
    Windows's ``runhcs-wcow-process``) are always declared. *default_runtime* is
    k3s's ``--default-runtime``; unset, a version 3 base has no ``…containerd``
    table and containerd's own default, ``runc``, applies.

    >>> text = render_base_config(3, {}, "crun")
    >>> tomllib.loads(text)["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["default_runtime_name"]
    'crun'
    >>> "default_runtime_name" in render_base_config(3, {})
    False
    """
    _check_render_version(version)
    body = _base_cri_v3(settings, default_runtime) if version == 3 else _base_cri_v2(settings, default_runtime)
    always = [
        runtime_tables(
            version,
            "runc",
            RuntimeSpec("io.containerd.runc.v2", systemd_cgroup=settings.systemd_cgroup),
            quote_name=False,
        )
    ]
    if version == 3:
        always.append(
            runtime_tables(3, "runhcs-wcow-process", RuntimeSpec("io.containerd.runhcs.v1"), quote_name=False)
        )
    detected = [
        runtime_tables(version, name, replace(spec, systemd_cgroup=settings.systemd_cgroup))
        for name, spec in runtimes.items()
    ]
    # v2 writes the registry before the detected runtimes (k3s issues #9192-#9194 quote it);
    # [inf] v3 after them
    registry = [_registry_table(version, settings)]
    tables = always + detected + registry if version == 3 else always + registry + detected
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
    containerd 2.x, 2 for 1.7). *default_runtime* (k3s's ``--default-runtime``)
    defaults to the node's k3s config ``default-runtime``, else none. Like k3s, the text is written
    without validation; containerd (:func:`read_runtime_info`) judges it.
    """
    template, effective = paths.select_template(version)
    chosen = default_runtime or k3s_default_runtime(paths)
    base = render_base_config(effective, detected_runtimes, chosen, settings)
    text = render_template(template.read_text(), base) if template else base
    write_atomic(paths.config, text, make_parents=True)
    return text


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
            table = ast.literal_eval(twice.group(1))
            # containerd 2 (go-toml v2's seen tracker) answers "toml: table <last key> already exists", wrapped in
            # "failed to unmarshal TOML at row R column C" (cmd/containerd/server/config/config.go), and stops
            problem = (
                f"containerd config line {line_no}: table {dotted(table)} is declared twice ({line}); "
                f"containerd 2 would stop with: toml: table {table[-1]} already exists"
            )
            fix = _redefinition_fix(table)
        else:
            problem = f"containerd config line {line_no}: {message} ({line})"
            fix = "fix the TOML syntax on that line; add only new tables after the base include"
        raise ContainerdConfigError(problem, fix) from None


def _redefinition_fix(table: tuple[str, ...]) -> str:
    """Why k3s's base already declared *table*, and what to write instead."""
    if table[-1] == "containerd" and table[1] == CRI_RUNTIME_PLUGIN[3]:
        return (
            "k3s's base writes this table because its default-runtime is set (config.yaml or --default-runtime): "
            "name the default runtime in one place, either drop default-runtime or drop this table from the template"
        )
    if table[-1] == "containerd":
        return (
            "in a version 2 config k3s's base always writes this table (it holds the snapshotter): "
            "set the default runtime with default-runtime in /etc/rancher/k3s/config.yaml instead"
        )
    if len(table) >= 2 and table[-2] == "runtimes":
        return (
            f"k3s auto-detected a runtime named {table[-1]!r} and its base already declares it: "
            f"give your runtime another name (e.g. '{table[-1]}-wasm') and use that name"
        )
    return 'add only new tables after the base include {{ template "base" . }}; the base already declares this one'


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

    >>> info = read_runtime_info(render_base_config(2, {}))
    >>> info.version, info.default_runtime, sorted(info.runtimes)
    (2, 'runc', ['runc'])
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
        ignored_keys=ignored_keys(config_text, doc, version),
    )


def node_runtime_info(paths: ContainerdPaths) -> RuntimeInfo:
    """The runtime info of the node's rendered ``config.toml`` (what a restarted containerd loads)."""
    if not paths.config.is_file():
        raise ContainerdConfigError(
            f"{paths.config} does not exist: containerd on this node has no config",
            "start (or restart) the node so k3s renders it from its template",
        )
    return read_runtime_info(paths.config.read_text())
