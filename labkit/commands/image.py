"""``labkit image build|import|list``: OCI images of wasm modules, without Docker."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.commands import add_backend_args
from labkit.errors import ImageError
from labkit.host import host_for_backend
from labkit.wasm.oci import LAYOUTS, build_image


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = subparsers.add_parser("image", help="build, import and list wasm OCI images")
    sub = image.add_subparsers(dest="image_command", required=True)

    build = sub.add_parser("build", help="package a wasm module as a reproducible OCI image archive")
    build.add_argument("--module", type=Path, required=True, help="the .wasm module")
    build.add_argument("--name", required=True, help="repository, e.g. wasi-demo or ghcr.io/me/wasi-demo")
    build.add_argument("--tag", default="latest", help="tag (default: latest)")
    build.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="runwasi",
        help="runwasi: module as a wasm layer; compat: module in a tar layer for crun (default: runwasi)",
    )
    build.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeatable)")
    build.add_argument("-o", "--output", type=Path, required=True, help="archive to write (.tar)")
    build.set_defaults(func=run_build)

    imp = sub.add_parser(
        "import", help="import an image archive into the cluster's node (k3s ctr, or the sandbox store)"
    )
    imp.add_argument("archive", type=Path)
    add_backend_args(imp, context=False)
    imp.set_defaults(func=run_import)

    ls = sub.add_parser("list", help="images the node has")
    add_backend_args(ls, context=False)
    ls.set_defaults(func=run_list)


def _env_pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ImageError(f"--env {item!r} is not KEY=VALUE", "write it like --env RUST_LOG=info")
        pairs[key] = value
    return pairs


def run_build(args: argparse.Namespace) -> int:
    built = build_image(args.module, args.name, args.tag, args.layout, args.output, env=_env_pairs(args.env))
    print(f"built {built.ref} ({built.layout} layout) → {built.path}")
    print(f"  manifest digest {built.digest}, archive {built.size:,} bytes")
    return 0


def run_import(args: argparse.Namespace) -> int:
    for ref in host_for_backend(args.backend).import_image(args.archive):
        print(f"imported {ref}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    records = host_for_backend(args.backend).list_images()
    rows = [("REF", "DIGEST", "PLATFORM", "SIZE", "LAYOUT")]
    rows += [(r.ref, r.digest[:19], r.platform, f"{r.size:,}", r.layout or "-") for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())
    return 0
