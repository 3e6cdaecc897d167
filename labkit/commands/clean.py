"""``labkit clean``: delete exactly the objects labkit's labs created."""

from __future__ import annotations

import argparse
import sys

from labkit.commands import add_backend_args
from labkit.config import LAB_LABEL, PART_OF_LABEL, PART_OF_VALUE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "clean",
        help=f"delete objects labelled {PART_OF_LABEL}={PART_OF_VALUE}",
        description=f"Delete exactly the objects labelled {PART_OF_LABEL}={PART_OF_VALUE} (optionally only one "
        f"lab's, {LAB_LABEL}=NAME), namespaces first. Nothing else is touched.",
    )
    add_backend_args(parser)
    parser.add_argument("--lab", default=None, help="only this lab's objects (e.g. 01-wasi-demo-app)")
    parser.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from labkit.cluster import connect  # the kubernetes client is slow to import: only when cleaning

    cluster = connect(args.backend, args.context)
    found = cluster.labelled_objects(args.lab)
    if not found:
        print("nothing to clean: no labkit objects" + (f" of lab {args.lab}" if args.lab else ""))
        return 0
    print(f"labkit objects on {cluster.context}:")
    for ref in found:
        print(f"  {ref}")
    if not args.yes:
        if not sys.stdin.isatty():
            print("not deleting without confirmation: re-run with --yes")
            return 1
        if input(f"delete these {len(found)} objects? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for ref in found:
        cluster.delete_object(ref)
        print(f"removed {ref}")
    return 0
