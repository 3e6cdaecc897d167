"""The WASI-NN rows of :mod:`labkit.diagnosis`: a plugin found but a library missing, a malformed
``WASMEDGE_WASINN_PRELOAD``, the CLI without the plugin, a wrong ``WASMEDGE_PLUGIN_PATH``
(WasmEdge #2329, #3192, #3279, #4303).

The plugin missing altogether (``unknown import, Code: 0x302`` on ``wasi_ephemeral_nn``) and ``wasi:logging``
stay with the other unknown imports in :mod:`labkit.diagnosis`. The texts are WasmEdge's, glibc's and the
wasmedge-sdk's, as the sandbox prints them too (``sandbox/wasmedge/podview.py``, ``kubelet/wasinn_abi.py``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from labkit.errors import Diagnosis

if TYPE_CHECKING:
    from labkit.podfacts import Facts

#: WasmEdge's plugin load failure (``lib/plugin/plugin.cpp``): the dlerror() text after ``load library failed:``.
_LOAD_FAILED = r"load library failed:\s*(\S+?): cannot open shared object file"
MOUNTS_API = "labkit.wasinn_mounts(host, profile) generates them from the node's own ldd"


def library_missing(f: Facts) -> Diagnosis | None:
    hits = f.find(_LOAD_FAILED)
    if not hits:
        return None
    missing = re.search(_LOAD_FAILED, hits[0]).group(1)  # type: ignore[union-attr]
    if missing.startswith("libwasmedge"):
        where = "WasmEdge's lib directory (~/.wasmedge/lib, plugin dir/../lib) as a Directory"
    elif "/" in missing:
        where = f"{missing} (type File)"
    else:
        where = f"the path `ldd <plugin>` shows for {missing} on the node (type File)"
    return Diagnosis(
        f"WasmEdge found the WASI-NN plugin in the pod but could not load it: {missing} is not in the pod",
        "the shim dlopen()s the plugin inside the container, so every library the plugin needs must be visible "
        "there at the path the loader searches; this one is not mounted, so the plugin is not registered and the "
        "module's wasi_ephemeral_nn imports stay unknown (Code: 0x302)",
        f"mount {where} read-only at the same path in the pod, and every other library `ldd` lists for the "
        f"plugin (the loader line included); {MOUNTS_API}",
        [*f.find(r"loading failed: invalid path")[:1], *hits[:2], *f.find(r"When linking module")[:1]],
        "wasi-nn-library-missing",
    )


#: wasmedge-sdk's ``NNPreload::from_str`` errors, as runwasi logs them ("error running start function: …").
_PRELOAD_BAD = r"Failed to convert to (NNPreload|NNBackend|ExecutionTarget) value"


def _env_value(f: Facts, name: str) -> str | None:
    for c in f.containers:
        for env in c.get("env") or ():
            if env.get("name") == name:
                return str(env.get("value") or "")
    return None


def preload_malformed(f: Facts) -> Diagnosis | None:
    hits = f.find(_PRELOAD_BAD)
    if not hits:
        return None
    value = _env_value(f, "WASMEDGE_WASINN_PRELOAD")
    part = re.search(_PRELOAD_BAD, hits[0]).group(1)  # type: ignore[union-attr]
    cause = {
        "NNPreload": "it does not split into exactly four ':'-separated parts (a ':' in the path counts too)",
        "NNBackend": "its second part is not a backend name (GGML for llama.cpp models)",
        "ExecutionTarget": "its third part is not an execution target (CPU, GPU, TPU or AUTO)",
    }[part]
    return Diagnosis(
        "WASMEDGE_WASINN_PRELOAD is malformed" + (f" ({value!r})" if value is not None else ""),
        f"the shim parses it before the module starts and {cause}; the start fails and the container exits 137",
        "write it as alias:backend:target:path, e.g. default:GGML:AUTO:/home/runner/models/model.gguf, the path "
        "being the model's path inside the pod (mount the GGUF at that same path); " + MOUNTS_API,
        hits[:2],
        "wasi-nn-preload-malformed",
    )


def cli_without_plugin(f: Facts) -> Diagnosis | None:
    hits = f.find(r"unknown option:?\s*nn-preload")
    if not hits:
        return None
    return Diagnosis(
        "the wasmedge CLI does not know --nn-preload: the WASI-NN (GGML) plugin is not installed",
        "--nn-preload is an option the wasi_nn plugin adds to the CLI; without the plugin loaded the option is unknown",
        "install the plugin: curl -sSf https://raw.githubusercontent.com/WasmEdge/WasmEdge/master/utils/install.sh "
        "| bash -s -- --plugins wasi_nn-ggml -v 0.14.1, then `source ~/.wasmedge/env` (wasmedge -v lists it)",
        hits[:2],
        "wasi-nn-plugin-not-installed",
    )


def plugin_path_wrong(f: Facts) -> Diagnosis | None:
    hits = f.find(r"WASI-NN plugin not installed")
    if not hits:
        return None
    value = _env_value(f, "WASMEDGE_PLUGIN_PATH")
    return Diagnosis(
        "WasmEdge looked for the WASI-NN plugin where it is not (WASI-NN plugin not installed)",
        "WASMEDGE_PLUGIN_PATH"
        + (f" ({value!r})" if value is not None else " (unset)")
        + " does not lead to libwasmedgePluginWasiNN.so, so the plugin was never loaded",
        "set WASMEDGE_PLUGIN_PATH to the directory holding libwasmedgePluginWasiNN.so (or to the file), as the "
        "pod sees it: in a pod, mount the plugin at its node path and point the variable there; " + MOUNTS_API,
        hits[:2],
        "wasi-nn-plugin-path",
    )
