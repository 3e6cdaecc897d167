"""The daemon's child processes (the kubelets, the network process): their command line and how they stop.

The daemon starts each process by argv (it never imports them); the process parses the same flags into the same
config dataclass. One ``--flag value`` per field, named after it; ``Path`` and ``int`` fields come
back as such.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Example:
...     node_name: str
...     home: Path
...     slot: int = 0
>>> argv = config_argv("labkit.example", Example("n0", Path("/tmp/h"), 2))
>>> argv[1:]
['-m', 'labkit.example', '--node-name', 'n0', '--home', '/tmp/h', '--slot', '2']
>>> parse_config(Example, "labkit.example", "an example", argv[3:])
Example(node_name='n0', home=PosixPath('/tmp/h'), slot=2)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_argv(module: str, config: Any) -> list[str]:
    """``python -m <module> --<field> <value> …`` for every field of *config*."""
    argv = [sys.executable, "-m", module]
    for field in fields(config):
        argv += [_flag(field.name), str(getattr(config, field.name))]
    return argv


def parse_config(cls: type[C], module: str, description: str, argv: list[str] | None = None) -> C:
    """The *cls* that :func:`config_argv` wrote into *argv* (``sys.argv[1:]`` when None)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
    for field in fields(cls):  # type: ignore[arg-type]
        kind = Path if field.type in ("Path", Path) else int if field.type in ("int", int) else str
        parser.add_argument(_flag(field.name), dest=field.name, type=kind, required=True)
    args = parser.parse_args(argv)
    return cls(**{name: getattr(args, name) for name in names})


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM *process*, then SIGKILL it if it has not exited within *timeout* seconds; reap it either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
