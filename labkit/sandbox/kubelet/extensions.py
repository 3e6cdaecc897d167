"""Host extensions: wasm import modules a sandbox node provides beyond WASI (docs/architecture.md, §2).

WasmEdge gives guests more than WASI: its socket functions, and
``wasi_ephemeral_nn`` when the WASI-NN plugin is loaded. In the sandbox each
such capability is a :class:`HostExtension`, registered by name, and linked
into a container only when it :meth:`~HostExtension.applies` to the pod, so a
pod that does not mount the WASI-NN plugin fails at link time exactly as
under the runwasi shim.

>>> class Clock:
...     name, import_module = "clock", "labkit_clock"
...     def applies(self, context): return True
...     def define(self, linker, store, context): pass
>>> registry = ExtensionRegistry()
>>> registry.register(Clock())
>>> [e.name for e in registry.extensions_for(PodContext(name="p"))]
['clock']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from labkit.errors import LabkitError
from labkit.sandbox.kubelet.wasi_sockets import WasiSockets
from labkit.sandbox.kubelet.wasinn import WasiNN

if TYPE_CHECKING:
    import wasmtime


Release = Callable[[], None]


class ExtensionError(LabkitError):
    """A host extension that cannot be registered or linked."""


@dataclass(frozen=True)
class PodContext:
    """What an extension may know about the container it serves.

    ``mounts`` maps guest paths to host paths (directories and files), so an
    extension can tell whether e.g. the WASI-NN plugin is mounted and read
    host files the way a WasmEdge plugin loaded by the shim would.
    """

    name: str
    namespace: str = "default"
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_ip: str = "127.0.0.1"


@runtime_checkable
class LogsAtStart(Protocol):
    """An extension that logs when the runtime starts (WasmEdge's plugin loader does), before linking."""

    def startup_lines(self, context: PodContext) -> list[str]:
        """The lines for the container's stderr; may raise :class:`StartFailed` to fail the start."""
        ...


@runtime_checkable
class HostExtension(Protocol):
    """A named set of host functions under one wasm import module."""

    name: str
    import_module: str

    def applies(self, context: PodContext) -> bool:
        """Whether this pod gets the extension (e.g. WASI-NN only with the plugin mounted)."""
        ...

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store, context: PodContext) -> Release | None:
        """Define the module's functions in *linker* for one container's *store*.

        Returns what frees the container's resources (sockets, models) when it ends, or None: the container calls
        it as soon as its guest has stopped, as a dying process's descriptors close at once, not when garbage
        collection gets round to the store.
        """
        ...


class ExtensionRegistry:
    """Extensions by name; later registrations of the same name replace earlier ones."""

    def __init__(self) -> None:
        self._by_name: dict[str, HostExtension] = {}

    def register(self, ext: HostExtension) -> None:
        if not isinstance(ext, HostExtension) or not ext.name or not ext.import_module:
            raise ExtensionError(
                f"{ext!r} is not a host extension",
                "give it a name, an import_module, and applies(context) and define(linker, store, context) methods",
            )
        self._by_name[ext.name] = ext

    def unregister(self, name: str) -> None:
        self._by_name.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def extensions_for(self, context: PodContext) -> list[HostExtension]:
        """The registered extensions that apply to this pod, in registration order."""
        return [ext for ext in self._by_name.values() if ext.applies(context)]


#: The process-wide registry sandbox nodes use.
REGISTRY = ExtensionRegistry()
REGISTRY.register(WasiSockets())  # WasmEdge's sock_* functions: every WasmEdge run has them
REGISTRY.register(WasiNN())  # wasi_ephemeral_nn, defined only for pods that see the plugin and its libraries


def register(ext: HostExtension) -> None:
    """Register *ext* in the process-wide registry."""
    REGISTRY.register(ext)


def extensions_for(context: PodContext) -> list[HostExtension]:
    """The process-wide registry's extensions that apply to *context*."""
    return REGISTRY.extensions_for(context)
