"""The network process's command line, shared by the daemon that starts it and the process that parses it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

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

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            MODULE,
            "--root",
            str(self.root),
            "--server",
            self.server,
            "--token-file",
            str(self.token_file),
            "--ca-file",
            str(self.ca_file),
        ]

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> NetworkConfig:
        parser = argparse.ArgumentParser(
            prog=f"python -m {MODULE}", description="the sandbox's Service proxy and cluster DNS"
        )
        parser.add_argument("--root", type=Path, required=True)
        parser.add_argument("--server", required=True)
        parser.add_argument("--token-file", type=Path, required=True)
        parser.add_argument("--ca-file", type=Path, required=True)
        args = parser.parse_args(argv)
        return cls(args.root, args.server, args.token_file, args.ca_file)
