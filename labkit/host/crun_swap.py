"""The crun swap's files: a containerd template adding a crun runtime, and k3s's ``default-runtime``.

Why two routes exist, and which combinations containerd refuses, is in
:mod:`labkit.containerd`'s docstring; :meth:`labkit.host.Host.plan_crun_swap`
turns these files into a previewable, reversible change.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from labkit.containerd import (
    ContainerdConfigError,
    ContainerdPaths,
    RuntimeSpec,
    default_runtime_table,
    runtime_tables,
)

#: The annotations containerd must pass to crun: ``module.wasm.image/variant`` selects its wasm handler.
CRUN_POD_ANNOTATIONS = ("module.wasm.image/*",)


def crun_runtime_template(
    version: int,
    binary: str = "/usr/local/bin/crun",
    pod_annotations: Iterable[str] = CRUN_POD_ANNOTATIONS,
    name: str = "crun",
    systemd_cgroup: bool = True,
    default: bool = False,
) -> str:
    """The template notebook 02 writes: the k3s base plus a crun runtime table.

    ``pod_annotations`` whitelists the annotations containerd passes to crun
    (``module.wasm.image/variant`` selects crun's wasm handler). With *default*
    the template also names crun the default runtime (the ``…containerd``
    table: valid only while k3s's own ``default-runtime`` is unset, see the
    module docstring). If k3s auto-detects a runtime with the same *name* (a
    ``crun`` binary on its PATH), the base already declares that table and
    containerd rejects the file; pick another *name* then.
    """
    spec = RuntimeSpec(
        "io.containerd.runc.v2",
        binary_name=binary,
        systemd_cgroup=systemd_cgroup,
        pod_annotations=tuple(pod_annotations),
    )
    table = "\n" + default_runtime_table(version, name) if default else ""
    return '{{ template "base" . }}\n\n' + runtime_tables(version, name, spec) + table


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


#: Where a crun swap names the default runtime: k3s's config file, or the template's ``…containerd`` table.
DEFAULT_RUNTIME_ROUTES = ("config", "template")


def crun_swap_plan(
    paths: ContainerdPaths,
    version: int,
    binary: str = "/usr/local/bin/crun",
    default: bool = True,
    pod_annotations: Iterable[str] = CRUN_POD_ANNOTATIONS,
    name: str = "crun",
    route: str = "config",
) -> dict[Path, str]:
    """The files (path → new text) that add crun and, with *default*, make it the default runtime.

    *route* ``config`` sets ``default-runtime`` in k3s's config file;
    ``template`` writes the ``…containerd`` table in the template (the
    journey's route) and leaves k3s's config alone. The caller (a ``Host``)
    previews, backs up and writes the files, then restarts k3s.
    """
    if route not in DEFAULT_RUNTIME_ROUTES:
        raise ContainerdConfigError(
            f"unknown route {route!r} for the default runtime", f"use one of {', '.join(DEFAULT_RUNTIME_ROUTES)}"
        )
    in_template = default and route == "template"
    template = crun_runtime_template(version, binary, pod_annotations, name, default=in_template)
    plan = {paths.template_path(version): template}
    if default and route == "config":
        current = paths.k3s_config.read_text() if paths.k3s_config.is_file() else ""
        plan[paths.k3s_config] = set_default_runtime(current, name)
    return plan
