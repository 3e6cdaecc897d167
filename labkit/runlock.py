"""One notebook run per lab namespace at a time: two ``labkit run`` s of notebook 01 would delete each other's objects.

A lock is an ``fcntl.flock`` on ``LABKIT_HOME/locks/<backend>-<namespace>.lock``, held while the run lasts;
the kernel drops it when the holder exits, however it exits, so a crashed run never leaves a stale lock.
The holder writes its pid and notebook into the file, so the refused run can say who holds it.

>>> with namespace_locks([("01-wasi-demo-app", "lab-01")], "sandbox"):   # doctest: +SKIP
...     run_it()
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from labkit import config
from labkit.errors import LabkitError


class LabBusy(LabkitError):
    """Another process runs a notebook in the same lab namespace."""


#: A namespace name is a DNS label (RFC 1123), as the API server validates it; it also names the lock file.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def check_namespace(namespace: str) -> str:
    """*namespace*, refused unless it is a valid namespace name (so it can name a file, too)."""
    if not _DNS_LABEL.fullmatch(namespace):
        raise LabkitError(
            f"{namespace!r} is not a valid namespace name: a lowercase RFC 1123 label "
            "(letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
            "pass a name such as -p namespace lab-01-mine",
        )
    return namespace


def lock_path(backend: str, namespace: str) -> Path:
    return config.labkit_home() / "locks" / f"{backend}-{namespace}.lock"


def _holder(lock: IO[str]) -> tuple[str, str]:
    """(pid, notebook) the holder wrote, or ("unknown", "") when it has not written them yet."""
    lock.seek(0)
    pid, _, notebook = lock.read().strip().partition(" ")
    return (pid if pid.isdigit() else "unknown"), notebook


@contextmanager
def namespace_lock(notebook: str, namespace: str, backend: str) -> Iterator[None]:
    """Hold the lock of *namespace* while running *notebook*; :class:`LabBusy` at once when another run holds it."""
    path = lock_path(backend, check_namespace(namespace))
    config.private_dir(path.parent)
    # opened without truncating: the holder's note stays readable; 0600 like the rest of the home
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = _holder(lock)
            number = notebook.split("-", 1)[0]
            raise LabBusy(
                f"notebook {holder.split('-', 1)[0] or number} is running in another process (pid {pid}) "
                f"in namespace {namespace}; two runs there would delete each other's objects",
                f"wait for it to finish, or pass -p namespace {namespace}-2 to run notebook {number} "
                "in a namespace of its own",
            ) from None
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()} {notebook}\n")
            lock.flush()
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def namespace_locks(runs: list[tuple[str, str]], backend: str) -> Iterator[None]:
    """Hold the lock of every namespace in *runs* (notebook, namespace), or none (the first busy one raises)."""
    first: dict[str, str] = {}
    for notebook, namespace in runs:
        first.setdefault(namespace, notebook)  # a namespace is locked once, even when several notebooks share it
    with ExitStack() as stack:
        for namespace, notebook in first.items():
            stack.enter_context(namespace_lock(notebook, namespace, backend))
        yield
