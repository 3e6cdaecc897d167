"""labkit: WebAssembly on Kubernetes, one notebook at a time.

The public face; everything else is private machinery.
"""

from labkit.errors import (
    ApiError,
    ClusterUnreachable,
    ContextNotAllowed,
    ImageError,
    InvalidManifest,
    LabkitError,
    NotebookFailed,
    PrerequisiteMissing,
    SandboxError,
    UnknownBackend,
    WaitFailed,
    WasmError,
)

__version__ = "0.1.0"

# After the errors and __version__: the modules below import them.
from labkit.doctor import Check, DoctorReport, doctor
from labkit.profiles import Profile, profile_for
from labkit.runner import run_notebooks

#: Names served from their modules on first use: those modules import the kubernetes client,
#: which takes seconds, and `labkit --help` or `import labkit` should not pay for it.
_LAZY = {
    "Cluster": "cluster",
    "api_call": "cluster",
    "connect": "cluster",
    "lab": "operations",
    "apply": "operations",
    "wait_for": "operations",
    "logs": "operations",
    "events": "operations",
    "describe": "operations",
    "delete": "operations",
    "show": "operations",
    "diagnose": "diagnosis",
    "host_for_backend": "host",
    "manifests": None,
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)


__all__ = [
    "ApiError",
    "Check",
    "Cluster",
    "ClusterUnreachable",
    "ContextNotAllowed",
    "DoctorReport",
    "ImageError",
    "InvalidManifest",
    "LabkitError",
    "NotebookFailed",
    "PrerequisiteMissing",
    "Profile",
    "SandboxError",
    "UnknownBackend",
    "WaitFailed",
    "WasmError",
    "api_call",
    "apply",
    "connect",
    "delete",
    "describe",
    "diagnose",
    "doctor",
    "events",
    "host_for_backend",
    "lab",
    "logs",
    "manifests",
    "profile_for",
    "run_notebooks",
    "show",
    "wait_for",
]
