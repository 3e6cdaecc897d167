"""What a notebook asks of a node through its Host door: its containerd config once it exists, its runtimes.

>>> config_text = wait_for_containerd_config(host, timeout=120)        # doctest: +SKIP
>>> print(runtime_table(host.runtime_info()))                          # doctest: +SKIP
config version 3; default runtime: runc (read from config.toml)
  runc                io.containerd.runc.v2      (runc on PATH)                               pod_annotations=[]
  runhcs-wcow-process io.containerd.runhcs.v1    (containerd-shim-runhcs-v1 on PATH)          pod_annotations=[]
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from labkit.errors import LabkitError, PrerequisiteMissing

if TYPE_CHECKING:
    from labkit.host.base import Host, HostRuntimeInfo

#: Between two reads of a config that is not there yet (s): a file, not an API object, so nothing to watch.
CONFIG_POLL_S = 0.5


def wait_for_containerd_config(host: Host, timeout: float = 120.0) -> str:
    """The node's rendered containerd ``config.toml``, waiting until it exists.

    A node renders it when its k3s (re)starts, so right after the cluster came up it may not be there yet.
    Raises :class:`~labkit.errors.PrerequisiteMissing` at once when it may not be read (waiting will not help),
    and the last error when *timeout* seconds pass without it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return host.read_containerd_config()
        except PrerequisiteMissing:
            raise
        except LabkitError:
            if time.monotonic() > deadline:
                raise
            time.sleep(CONFIG_POLL_S)


def runtime_table(info: HostRuntimeInfo) -> str:
    """The node's containerd runtimes as a table: config version, default runtime and where it was read,
    then one row per runtime (type, binary, the pod annotations it passes on)."""
    lines = [f"config version {info.version}; default runtime: {info.default_runtime} (read from {info.source})"]
    width = max((len(name) for name in info.runtimes), default=0)
    lines += [
        f"  {name:<{width}} {spec.runtime_type:<26} {spec.binary_name or _binary_on_path(spec.runtime_type):<44}"
        f" pod_annotations={list(spec.pod_annotations)}"
        for name, spec in sorted(info.runtimes.items())
    ]
    return "\n".join(lines)


def _binary_on_path(runtime_type: str) -> str:
    """What runs a runtime without ``BinaryName``: runc for the runc shim, else the shim containerd derives
    from the type (``io.containerd.runhcs.v1`` → ``containerd-shim-runhcs-v1``)."""
    if runtime_type == "io.containerd.runc.v2":
        return "(runc on PATH)"
    parts = runtime_type.split(".")
    return f"(containerd-shim-{parts[-2]}-{parts[-1]} on PATH)" if len(parts) >= 3 else "(unknown)"
