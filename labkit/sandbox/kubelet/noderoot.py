"""A sandbox node's root directory and its container runtime start-up, as on a k3s node.

Each node has ``<sandbox>/nodes/<node>/`` mirroring the k3s paths a learner
touches: ``var/lib/rancher/k3s/agent/etc/containerd/`` (templates and the
rendered ``config.toml``), ``etc/rancher/k3s/config.yaml`` and
``usr/local/bin/`` with stand-ins for the binaries a k3s node with the WasmEdge
shim has. :func:`start_containerd` is what k3s does at every start: detect the
alternative runtimes on its PATH, render the containerd config from the
template (so a learner's ``config-v3.toml.tmpl`` takes effect on a restart) and
let containerd read it back.

>>> import tempfile
>>> info = start_containerd(prepare_node_root(Path(tempfile.mkdtemp())))
>>> info.default_runtime, sorted(info.runtimes)
('runc', ['crun', 'runc', 'runhcs-wcow-process', 'wasmedge'])
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

from labkit.containerd import (
    ContainerdPaths,
    RuntimeInfo,
    detect_runtimes,
    node_runtime_info,
    render_node_config,
)
from labkit.models import ModelMissing, smollm2_gguf
from labkit.profiles import profile_for
from labkit.sandbox.wasmedge.pluginfiles import WASMEDGE_VERSION, install_model, install_wasmedge

#: containerd 2 (k3s >= v1.32.2) prefers config version 3.
CONTAINERD_CONFIG_VERSION = 3

_STAND_IN = """#!/bin/sh
# labkit sandbox stand-in for {what}.
# This file only marks that the binary is installed on this simulated k3s node, so k3s's runtime
# detection finds it; the sandbox's kubelet runs wasm itself (wasmtime), nothing executes this script.
echo "{name}: labkit sandbox stand-in, not the real binary" >&2
exit 1
"""

#: What a k3s node with the runwasi WasmEdge shim and a WasmEdge-enabled crun has in /usr/local/bin
#: (runc ships with k3s).
STAND_INS = {
    "containerd-shim-wasmedge-v1": "the runwasi WasmEdge shim (containerd-shim-wasmedge-v1)",
    "crun": "crun built with WasmEdge support (crun --version would list +WASM:wasmedge)",
}


def prepare_node_root(root: Path) -> Path:
    """Create the node's k3s directories and stand-in binaries (existing files are left alone), and WasmEdge's
    files at the profile's home with the lab's model in its model directory; returns *root*."""
    paths = ContainerdPaths(root)
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.k3s_config.parent.mkdir(parents=True, exist_ok=True)
    bin_dir = root / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, what in STAND_INS.items():
        path = bin_dir / name
        if not path.exists():
            path.write_text(_STAND_IN.format(what=what, name=name))
            os.chmod(path, 0o755)  # noqa: S103 - a binary on a k3s node is 0755; the node root mirrors it
    install_wasmedge_files(root)
    return root


def install_wasmedge_files(root: Path) -> None:
    """``~/.wasmedge/{bin,lib,plugin}`` with the WASI-NN plugin, as WasmEdge's installer leaves a k3s node
    (sandbox/wasmedge/pluginfiles.py), and SmolLM2's GGUF in the profile's model directory when installed."""
    profile = profile_for("sandbox")
    home = PurePosixPath(profile.plugin_dir).parent.parent
    if install_wasmedge(root, home):
        wasmedge_bin = root / str(home).lstrip("/") / ".wasmedge/bin/wasmedge"
        if not wasmedge_bin.exists():
            wasmedge_bin.write_text(_STAND_IN.format(what=f"WasmEdge {WASMEDGE_VERSION}'s CLI", name="wasmedge"))
            os.chmod(wasmedge_bin, 0o755)  # noqa: S103 - as the installer leaves it
    with contextlib.suppress(ModelMissing, OSError):
        install_model(root, PurePosixPath(profile.model_dir), smollm2_gguf())


def start_containerd(root: Path) -> RuntimeInfo:
    """k3s's start sequence on the node at *root*: detect runtimes, render ``config.toml``, read it back.

    Raises :class:`~labkit.containerd.ContainerdConfigError` for a
    template containerd would reject (on k3s, containerd would not start).
    """
    paths = ContainerdPaths(root)
    render_node_config(paths, CONTAINERD_CONFIG_VERSION, detect_runtimes(root))
    return node_runtime_info(paths)


#: The RuntimeClasses the k3s server ships (k3s ``manifests/runtimes.yaml``), whether or not a node has the
#: runtime: "harmless for these to be present even if some/all nodes do not have the matching runtime" (k3s #8700).
K3S_RUNTIME_CLASSES = (
    "nvidia",
    "nvidia-experimental",
    "crun",
    "lunatic",
    "slight",
    "spin",
    "wws",
    "wasmedge",
    "wasmer",
    "wasmtime",
)


def runtime_class_objects() -> list[dict[str, Any]]:
    """The RuntimeClasses the k3s server creates, each with the handler of its name.

    >>> [rc["handler"] for rc in runtime_class_objects()][:3]
    ['nvidia', 'nvidia-experimental', 'crun']
    """
    return [
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "k3s"}},
            "handler": name,
        }
        for name in K3S_RUNTIME_CLASSES
    ]
