"""Sub-commands of ``labkit``: each module has ``register(subparsers)`` and a ``run(args) -> int`` handler.

Shared argument helpers live here so every command spells ``--backend`` the same way.
"""

from __future__ import annotations

import argparse

from labkit.config import BACKENDS


def add_backend_args(parser: argparse.ArgumentParser, *, context: bool = True) -> None:
    """``--backend`` (default: LABKIT_BACKEND, else sandbox) and optionally ``--context``."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="sandbox (embedded cluster) or kubeconfig (a real cluster); default LABKIT_BACKEND or sandbox",
    )
    if context:
        parser.add_argument(
            "--context",
            default=None,
            help="kubeconfig context (must be in LABKIT_ALLOWED_CONTEXTS); default current-context",
        )
