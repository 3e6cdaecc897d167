"""Address slots: which sandbox on this machine uses which cluster ranges (:func:`labkit.sandbox.netmap.plan`).

Loopback addresses are machine-wide, so two sandbox daemons on one machine (two users' ``LABKIT_HOME``, or
a test suite's sandbox next to a module's own) must not both serve pods on ``127.42.0.2`` or DNS on
``127.43.0.10``. At start a daemon takes the first free slot k and holds it as long as it runs: slot k is
free when nobody holds an exclusive ``flock`` on ``<lock dir>/slot-<k>.lock``. The lock belongs to the
daemon's open file, so it goes when the daemon does, however it ends (a killed daemon leaves a file whose
lock is already gone; the next daemon takes it). The file is not inherited by the daemon's children.

The lock directory is machine-wide too: ``$LABKIT_NETSLOT_DIR``, else ``<tmp>/labkit-netslots`` (mode 1777,
shared by every user; each lock file is readable by all, as ``flock`` needs an open file and nothing more).
A slot whose cluster DNS address is already bound is passed over as well: a process that takes no lock (a
sandbox of a labkit from before slots) holds it. A daemon prefers the slot it had last time (kept in its state
directory), so its Services keep their addresses across restarts when it can.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     first, second = acquire_slot(directory=Path(d)), acquire_slot(directory=Path(d))
...     taken = slot_taken(first.slot, Path(d))
...     first.release()
...     third = acquire_slot(directory=Path(d))
...     (first.slot < second.slot, taken, third.slot == first.slot, slot_taken(third.slot, Path(d)))
(True, True, True, True)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from pathlib import Path

from labkit.errors import LabkitError
from labkit.sandbox.netmap import SLOTS, host_port, plan

LOCK_DIR_ENV = "LABKIT_NETSLOT_DIR"


def lock_dir() -> Path:
    """The machine-wide directory of slot locks, created (mode 1777, like /tmp) when missing."""
    path = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "labkit-netslots")
    try:
        path.mkdir(mode=0o777)
        os.chmod(path, 0o1777)  # noqa: S103 (every user's daemon locks here; the sticky bit keeps each one's files its own)
    except FileExistsError:
        pass
    return path


def _open(path: Path) -> int | None:
    """A read-only descriptor on *path*, created (mode 0644) when missing; None when it cannot be opened."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            pass
        except OSError:
            return None
        try:  # not O_CREAT on an existing file: fs.protected_regular refuses that on another user's file
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        except OSError:
            return None
        os.fchmod(fd, 0o644)  # whatever the umask: another user's daemon must be able to open it
        return fd
    return None


class SlotLease:
    """Slot *slot*, held while the lock file *fd* is open."""

    def __init__(self, slot: int, fd: int) -> None:
        self.slot, self.fd = slot, fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the file drops its flock
            self.fd = -1

    def __repr__(self) -> str:
        return f"SlotLease(slot={self.slot})"


def _try(slot: int, directory: Path) -> SlotLease | None:
    fd = _open(directory / f"slot-{slot}.lock")
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    if _dns_bound(slot):
        os.close(fd)
        return None
    return SlotLease(slot, fd)


def _dns_bound(slot: int) -> bool:
    """Whether another process listens on the slot's cluster DNS address (TCP ``<kube-dns IP>:host_port(53)``)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed listener's TIME_WAIT is no owner
        try:
            probe.bind((plan(slot).cluster_dns_ip, host_port(53)))
        except OSError:
            return True
    return False


def acquire_slot(preferred: int | None = None, directory: Path | None = None) -> SlotLease:
    """Take *preferred* when it is free, else the first free slot; :class:`LabkitError` when all are taken."""
    directory = directory or lock_dir()
    order = list(range(SLOTS))
    if preferred is not None and 0 <= preferred < SLOTS:
        order.remove(preferred)
        order.insert(0, preferred)
    for slot in order:
        lease = _try(slot, directory)
        if lease is not None:
            return lease
    raise LabkitError(
        f"all {SLOTS} sandbox address slots on this machine are taken (locks in {directory}): "
        f"{SLOTS} sandboxes run already; stop one (labkit sandbox down) and start this one again"
    )


def slot_taken(slot: int, directory: Path | None = None) -> bool:
    """Whether a live process holds slot *slot* (a lock left by a dead one does not count)."""
    fd = _open((directory or lock_dir()) / f"slot-{slot}.lock")
    if fd is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False


def remembered_slot(path: Path) -> int | None:
    """The slot a sandbox had last time (written by :func:`remember_slot`), or None."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def remember_slot(path: Path, slot: int) -> None:
    path.write_text(f"{slot}\n")
