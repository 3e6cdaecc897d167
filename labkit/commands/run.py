"""``labkit run``: execute the lab notebooks headless and print a summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.commands import add_backend_args
from labkit.runner import DEFAULT_OUTPUT_DIR, command_name, parse_value, run_notebooks


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="execute notebooks with papermill (all, in order, by default)",
        description="Execute lab notebooks headless, write executed copies and a "
        "summary (summary.json, summary.md). Exits 1 if one fails.",
    )
    parser.add_argument(
        "notebooks",
        nargs="*",
        metavar="NOTEBOOK",
        help="a notebook by number or name prefix: 00, 01-wasi-demo-app, 01-wasi-demo-app.ipynb",
    )
    add_backend_args(parser, context=False)
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="inject a parameter (VALUE parsed as JSON when it can be, e.g. -p timeout_s 300)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where executed copies and the summary go (default {DEFAULT_OUTPUT_DIR})",
    )
    parser.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after a failure")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    parameters = {name: parse_value(value) for name, value in args.parameter}
    summary = run_notebooks(
        args.notebooks,
        backend=args.backend,
        parameters=parameters,
        output_dir=args.output_dir,
        keep_going=args.keep_going,
    )
    print()
    print(summary.table())
    print(f"executed notebooks and summary.md (this run's own: summary-{summary.run_id}.md): {args.output_dir}")
    if summary.backend == "sandbox":
        print(f"the sandbox keeps running: {command_name()} sandbox down stops it")
    failed = [r for r in summary.results if r.status == "failed"]
    if failed:
        raise failed[0].failure()
    return 0
