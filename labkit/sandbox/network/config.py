"""The network process's command line, shared by the daemon that starts it and the process that parses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labkit.sandbox.processes import config_argv, parse_config

MODULE = "labkit.sandbox.network"


def network_dir(root: Path) -> Path:
    """``<sandbox root>/network``: the process's token, log, status and the Service rules the kubelets read."""
    return root / "network"


def rules_file(root: Path) -> Path:
    """Where the proxy writes its TCP frontends for the kubelets' in-process DNAT (``kubelet/servicerules.py``)."""
    return network_dir(root) / "rules.json"


@dataclass(frozen=True)
class NetworkConfig:
    root: Path  # the sandbox's state directory
    server: str
    token_file: Path
    ca_file: Path
    #: the sandbox's address slot on this machine: the DNS address and the Service range (netmap.plan)
    slot: int = 0

    def argv(self) -> list[str]:
        return config_argv(MODULE, self)

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> NetworkConfig:
        return parse_config(cls, MODULE, "the sandbox's Service proxy and cluster DNS", argv)
