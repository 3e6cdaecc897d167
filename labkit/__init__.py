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

__all__ = [
    "ApiError",
    "ClusterUnreachable",
    "ContextNotAllowed",
    "ImageError",
    "LabkitError",
    "NotebookFailed",
    "PrerequisiteMissing",
    "SandboxError",
    "UnknownBackend",
    "WasmError",
]
