"""``labkit doctor``: check the machine and the cluster, print the fixes."""

from __future__ import annotations

import argparse
import json

from labkit.commands import add_backend_args
from labkit.preflight import doctor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check packages, cluster, nodes, runtimes, shim, plugin and tools",
        description="Check that this machine and cluster are ready for the labs. Exits 1 when a required check fails.",
    )
    add_backend_args(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = doctor(args.backend, args.context)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0 if report.ok else 1
