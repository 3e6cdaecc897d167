"""Running a real node's tools (``k3s ctr``, ``crictl``, ``systemctl``, ``ldd``, ``crun``) through ``sh``.

One place runs every command of the Host door, so each one is captured the same way:
its exit status is returned, never raised, and the caller turns a failure into a
:class:`~labkit.errors.LabkitError` with the fix that fits it.

>>> result = run(["ldd", "--version"])
>>> result.ok, "ldd" in result.stdout.lower()
(True, True)
>>> run(["no-such-tool-on-this-machine"]).exit_code
127
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sh

#: The exit status a shell gives a command it cannot find (what the caller reports).
NOT_FOUND = 127


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its argv, exit status and both outputs (text)."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def message(self) -> str:
        """What the command said about a failure: stderr, else stdout, else its status."""
        return (self.stderr or self.stdout).strip() or f"exit status {self.exit_code}"


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run *argv* (no shell), feed it *stdin*, and return its result whatever the exit status.

    *env* adds variables to this process's environment for the command (e.g. ``LD_LIBRARY_PATH`` for ``ldd``).

    A command that is not installed gives exit status 127, as a shell would; a command
    that outlives *timeout* seconds is killed and gives -9.
    """
    program, *args = argv
    try:
        command = sh.Command(program)
    except sh.CommandNotFound:
        return CommandResult(tuple(argv), NOT_FOUND, "", f"{program}: command not found")
    try:
        finished = command(
            *args,
            _in=stdin,
            _ok_code=tuple(range(256)),
            _return_cmd=True,
            _timeout=timeout,
            _tty_out=False,
            _decode_errors="replace",
            _env={**os.environ, **env} if env else None,
        )
    except sh.TimeoutException:
        return CommandResult(tuple(argv), -9, "", f"{program} did not finish within {timeout} s")
    except sh.SignalException as e:  # killed by a signal: sh raises for those even with _ok_code
        return CommandResult(tuple(argv), e.exit_code, _text(e.stdout), _text(e.stderr))
    return CommandResult(tuple(argv), int(finished.exit_code), _text(finished.stdout), _text(finished.stderr))


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
