"""``labkit wasm inspect FILE [--json]``: what a wasm module imports and exports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit.wasm.inspection import ModuleInfo, inspect


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wasm = subparsers.add_parser("wasm", help="inspect wasm modules")
    sub = wasm.add_subparsers(dest="wasm_command", required=True)
    cmd = sub.add_parser("inspect", help="list a module's imports, exports, memories and custom sections")
    cmd.add_argument("file", type=Path, help="a .wasm binary")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(func=run)


def format_info(name: str, info: ModuleInfo) -> str:
    """The human report printed by ``labkit wasm inspect``."""
    if info.kind != "core":
        lines = [f"{name}: {info.kind} (version {info.version}, layer {info.layer}), {info.size:,} bytes"]
    else:
        imported = sum(1 for i in info.imports if i.kind == "func")
        lines = [
            f"{name}: core module (version {info.version}), {info.size:,} bytes",
            (
                f"types {len(info.types)}, functions {info.function_count} defined + {imported} imported, "
                f"memories: {', '.join(map(str, info.memories)) or 'none'}, start: "
                f"{'none' if info.start is None else f'func[{info.start}]'}"
            ),
            f"imports ({len(info.imports)}):",
            *(f"  {i}" for i in info.imports),
            f"exports ({len(info.exports)}):",
            *(f"  {e.kind:<6} {e.name} [{e.index}]" for e in info.exports),
        ]
    lines.append(f"custom sections: {', '.join(info.custom_sections) or 'none'}")
    for field, values in info.producers.items():
        lines.append(f"producers {field}: " + ", ".join(f"{k} {v}".strip() for k, v in values.items()))
    if info.module_name:
        lines.append(f"module name: {info.module_name}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = inspect(args.file)
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_info(args.file.name, info))
    return 0
