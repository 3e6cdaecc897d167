"""labkit: WebAssembly on Kubernetes, one notebook at a time.

The public face; everything else is private machinery.
"""

from .errors import (
    ApiError,
    ClusterUnreachable,
    ContextNotAllowed,
    ImageError,
    LabkitError,
    NotebookFailed,
    PrerequisiteMissing,
    SandboxError,
    UnknownBackend,
    WasmError,
)

__version__ = "0.1.0"

# After the errors and __version__: the modules below import them.
from .doctor import Check, DoctorReport, doctor  # noqa: E402
from .profiles import Profile, profile_for  # noqa: E402
from .runner import run_notebooks  # noqa: E402

#: Names served from labkit.cluster on first use: the kubernetes client takes seconds to import.
_FROM_CLUSTER = ("Cluster", "api_call", "connect")


def __getattr__(name: str):
    if name in _FROM_CLUSTER:
        from . import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


__all__ = [
    "ApiError",
    "Check",
    "Cluster",
    "ClusterUnreachable",
    "ContextNotAllowed",
    "DoctorReport",
    "ImageError",
    "LabkitError",
    "NotebookFailed",
    "PrerequisiteMissing",
    "Profile",
    "SandboxError",
    "UnknownBackend",
    "WasmError",
    "api_call",
    "connect",
    "doctor",
    "profile_for",
    "run_notebooks",
]
