"""``labkit site build``: the Jupyter Book of the journey and the notebooks, with `labkit run`'s outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.runner import DEFAULT_OUTPUT_DIR, command_name
from labkit.site import DEFAULT_SITE_DIR, build_site


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    site = subparsers.add_parser("site", help="the kit's website (a Jupyter Book of the notebooks)")
    sub = site.add_subparsers(dest="site_command", required=True)
    cmd = sub.add_parser(
        "build",
        help="build the site into OUTPUT/html",
        description="Build the site: the README as the landing page, docs/, and every notebook with the outputs of "
        "`labkit run` when its executed copy is current (executes nothing). Any Sphinx warning fails the build.",
    )
    cmd.add_argument("-o", "--output-dir", type=Path, default=DEFAULT_SITE_DIR, help=f"default {DEFAULT_SITE_DIR}")
    cmd.add_argument(
        "--executed-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where `labkit run` wrote the executed notebooks (default {DEFAULT_OUTPUT_DIR})",
    )
    cmd.add_argument(
        "--repository",
        default=None,
        metavar="OWNER/NAME",
        help="the GitHub repository for the Binder badge and launch links (default GITHUB_REPOSITORY)",
    )
    cmd.add_argument("--branch", default="main", help="the branch Binder launches (default main)")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    built = build_site(args.output_dir, executed_dir=args.executed_dir, repository=args.repository, branch=args.branch)
    print(f"built the site in {built.seconds:.1f} s: {built.index}")
    if built.executed:
        print(f"with the outputs of `{command_name()} run`: {', '.join(built.executed)}")
    if built.sources:
        print(f"without outputs (no current executed copy in {args.executed_dir}): {', '.join(built.sources)}")
    if built.stale:
        stale = ", ".join(built.stale)
        print(f"ignored executed copies whose cells differ from notebooks/ ({command_name()} run): {stale}")
    if built.failed:
        failed = ", ".join(built.failed)
        print(f"ignored executed copies of failed runs (fix them, then {command_name()} run): {failed}")
    print(f"Binder links point at github.com/{built.repository}")
    return 0
