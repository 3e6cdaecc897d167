"""labkit: WebAssembly on Kubernetes, one notebook at a time.

The public face; everything else is private machinery. The errors, the preflight, the profiles and the
runner load at once; the names that need the ``kubernetes`` client (which takes seconds to import) load on
first use, so ``import labkit`` and ``labkit --help`` stay fast. Type checkers and editors see them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from labkit.errors import (
    ApiError,
    CheckFailed,
    ClusterUnreachable,
    ContextNotAllowed,
    Diagnosis,
    ImageError,
    InvalidManifest,
    LabkitError,
    NotebookFailed,
    PrerequisiteMissing,
    SandboxError,
    UnknownBackend,
    WaitFailed,
    WasmError,
    require,
)
from labkit.preflight import Check, DoctorReport, doctor, lab_checks
from labkit.profiles import Profile, profile_for
from labkit.runner import run_notebooks

if TYPE_CHECKING:  # the lazy names below, with their real types
    from labkit import apps as apps
    from labkit import host as host
    from labkit import manifests as manifests
    from labkit import measure as measure
    from labkit import reports as reports
    from labkit import wasm as wasm
    from labkit.board import LiveBoard, live_board
    from labkit.cluster import Cluster, api_call, connect
    from labkit.diagnosis import diagnose
    from labkit.evidence import events, logs
    from labkit.host import host_for_backend
    from labkit.host.runtimes import runtime_table, wait_for_containerd_config
    from labkit.operations import Description, Lab, apply, delete, describe, lab, open_lab, show, wait_for
    from labkit.pluginmounts import WasiNNMounts, wasinn_mounts
    from labkit.portforward import Forward, port_forward

__version__ = "0.1.0"

#: Lazy name → the module that defines it (``""``: the name is a subpackage of labkit).
_LAZY = {
    "LiveBoard": "labkit.board",
    "live_board": "labkit.board",
    "Cluster": "labkit.cluster",
    "api_call": "labkit.cluster",
    "connect": "labkit.cluster",
    "diagnose": "labkit.diagnosis",
    "events": "labkit.evidence",
    "logs": "labkit.evidence",
    "host_for_backend": "labkit.host",
    "runtime_table": "labkit.host.runtimes",
    "wait_for_containerd_config": "labkit.host.runtimes",
    "Description": "labkit.operations",
    "Lab": "labkit.operations",
    "apply": "labkit.operations",
    "delete": "labkit.operations",
    "describe": "labkit.operations",
    "lab": "labkit.operations",
    "open_lab": "labkit.operations",
    "show": "labkit.operations",
    "wait_for": "labkit.operations",
    "WasiNNMounts": "labkit.pluginmounts",
    "wasinn_mounts": "labkit.pluginmounts",
    "Forward": "labkit.portforward",
    "port_forward": "labkit.portforward",
    "apps": "",
    "host": "",
    "manifests": "",
    "measure": "",
    "reports": "",
    "wasm": "",
}

__all__ = [
    "ApiError",
    "Check",
    "CheckFailed",
    "Cluster",
    "ClusterUnreachable",
    "ContextNotAllowed",
    "Description",
    "Diagnosis",
    "DoctorReport",
    "Forward",
    "ImageError",
    "InvalidManifest",
    "Lab",
    "LabkitError",
    "LiveBoard",
    "NotebookFailed",
    "PrerequisiteMissing",
    "Profile",
    "SandboxError",
    "UnknownBackend",
    "WaitFailed",
    "WasiNNMounts",
    "WasmError",
    "api_call",
    "apply",
    "apps",
    "connect",
    "delete",
    "describe",
    "diagnose",
    "doctor",
    "events",
    "host",
    "host_for_backend",
    "lab",
    "lab_checks",
    "live_board",
    "logs",
    "manifests",
    "measure",
    "open_lab",
    "port_forward",
    "profile_for",
    "reports",
    "require",
    "run_notebooks",
    "runtime_table",
    "show",
    "wait_for",
    "wait_for_containerd_config",
    "wasinn_mounts",
    "wasm",
]

if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there

    def __getattr__(name: str) -> Any:
        """Import a lazy name on first use and keep it, so the next access is a plain global."""
        if name not in _LAZY:
            raise AttributeError(f"module 'labkit' has no attribute {name!r}")
        module = importlib.import_module(_LAZY[name] or f"labkit.{name}")
        value = getattr(module, name) if _LAZY[name] else module
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
