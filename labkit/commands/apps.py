"""``labkit apps build``: compile the kit's wasm apps from ``wasm-apps/`` with clang."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.wasm.apps import build_apps


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apps = subparsers.add_parser("apps", help="the kit's own wasm apps")
    sub = apps.add_subparsers(dest="apps_command", required=True)
    cmd = sub.add_parser("build", help="compile every app under wasm-apps/ for wasm32-wasi")
    cmd.add_argument("--src", type=Path, default=None, help="apps directory (default: wasm-apps/ of the checkout)")
    cmd.add_argument(
        "--out", type=Path, default=None, help="output directory (default: the shipped labkit/wasm/modules)"
    )
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for app in build_apps(args.src, args.out):
        print(f"built {app.name}: {app.path} ({app.size:,} bytes, sha256 {app.sha256[:12]}…, {app.seconds:.2f} s)")
    return 0
