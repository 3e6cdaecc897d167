"""The ``labkit`` command: one sub-command per module in :mod:`labkit.commands`.

A :class:`~labkit.errors.LabkitError` prints as ``error: <problem + fix>`` and exits 1;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from labkit import __version__
from labkit.errors import LabkitError, RunInterrupted

#: Sub-command modules under labkit.commands, in help order. Each has ``register(subparsers)``.
COMMANDS = ("doctor", "run", "clean", "sandbox", "wasm", "image", "apps", "site")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="WebAssembly on Kubernetes, one notebook at a time.",
        epilog="Start with `labkit doctor`, then `labkit run`. Each sub-command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"labkit.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LabkitError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 130 if isinstance(e, RunInterrupted) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
