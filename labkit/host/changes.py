"""Reversible host changes: preview as a diff, back up, write atomically, restore.

This module is the file half of every host change (docs/architecture.md, "Safety"): it knows
nothing about k3s. A :class:`~labkit.host.base.Host` plans a
:class:`HostChange` (node files and their new text), validates it, and hands it
to :func:`execute` — in-process, or as root through
``sudo -n python -m labkit.host.changes <op>`` (JSON on stdin and stdout) when
the notebook does not run as root — so exactly the same code writes a sandbox
node's files and a real k3s node's.

Guarantees of :func:`apply_files`:

- every touched file is copied first into a timestamped backup directory
  (``<node root>/var/lib/labkit/backups/<timestamp>/``, mode 0700, as k3s's
  config may hold its join token); files and directories that did not exist
  are recorded, so :func:`restore_backup` removes them again;
- each file is written atomically (temporary file in the same directory, then
  ``rename``) with the original mode and owner; new files get mode 0600:
  permissions are never widened;
- :func:`restore_backup` makes every file byte-identical to the backup.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> (root / "etc").mkdir()
>>> _ = (root / "etc" / "a.conf").write_text("old\\n")
>>> backup = apply_files(root, {root / "etc/a.conf": "new\\n"}, "demo")
>>> (root / "etc/a.conf").read_text(), [f.path for f in backup.files]
('new\\n', ['/etc/a.conf'])
>>> restore_backup(backup)
>>> (root / "etc/a.conf").read_text()
'old\\n'
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from labkit.errors import LabkitError
from labkit.fsutil import stage, write_atomic

#: Where backups live, relative to the node root.
BACKUP_DIR = Path("var/lib/labkit/backups")
MANIFEST = "manifest.json"
#: A backup directory's name: the UTC time it was made (``_timestamp``).
_TIMESTAMP = re.compile(r"\d{8}T\d{12}Z")
#: Mode of files a change creates: owner-only, since k3s config files may hold secrets.
NEW_FILE_MODE = 0o600
NEW_DIR_MODE = 0o755


class HostChangeError(LabkitError):
    """A host change that could not be applied, restored or verified."""


@dataclass(frozen=True)
class HostChange:
    """Files to write on a node: local path (under *node_root*) → new text.

    *default_runtime* is the default runtime the node should report once the
    change is applied and k3s restarted (``None`` if the change does not set one).
    """

    node_root: Path
    files: dict[Path, str]
    description: str
    version: int
    default_runtime: str | None = None

    def node_path(self, local: Path) -> str:
        """*local* as the node sees it, e.g. ``/etc/rancher/k3s/config.yaml``."""
        return node_path(self.node_root, local)


@dataclass(frozen=True)
class BackedUpFile:
    """One file as it was before a change (``existed=False``: restore deletes it)."""

    path: str
    existed: bool
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Backup:
    """A timestamped backup directory holding the originals of one change."""

    dir: Path
    node_root: Path
    created: str
    description: str
    files: list[BackedUpFile]
    created_dirs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "dir": str(self.dir), "node_root": str(self.node_root)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backup:
        return cls(
            dir=Path(data["dir"]),
            node_root=Path(data["node_root"]),
            created=data["created"],
            description=data["description"],
            files=[BackedUpFile(**f) for f in data["files"]],
            created_dirs=list(data.get("created_dirs") or ()),
        )

    def __str__(self) -> str:
        names = ", ".join(f.path for f in self.files)
        return f"backup {self.created} ({self.description}): {names} in {self.dir}"


def node_path(node_root: Path, local: Path) -> str:
    """The node path of *local*, a path under *node_root*.

    >>> node_path(Path("/tmp/node"), Path("/tmp/node/etc/x"))
    '/etc/x'
    """
    return "/" + Path(local).relative_to(node_root).as_posix()


def _local(node_root: Path, path: str) -> Path:
    """*path* (a node path from a manifest) under *node_root*; refuses one that climbs out with ``..``."""
    parts = PurePosixPath(path).parts
    if ".." in parts or not path.startswith("/"):
        raise HostChangeError(
            f"the backup names the path {path!r}, which is not an absolute path inside the node",
            "restore from a backup labkit made (labkit never records such a path); nothing was written",
        )
    return node_root / path.lstrip("/")


def _check_confined(backup: Backup) -> None:
    """Refuse a backup (perhaps an edited manifest) that would read or write outside its node root."""
    expected_parent = backup.node_root / BACKUP_DIR
    if backup.dir.parent != expected_parent or not _TIMESTAMP.fullmatch(backup.dir.name):
        raise HostChangeError(
            f"the backup directory {backup.dir} is not a labkit backup of the node {backup.node_root} "
            f"(backups live in {expected_parent}/<timestamp>)",
            "pick a backup from host.backups(); nothing was written",
        )
    for path in [*(f.path for f in backup.files), *backup.created_dirs]:
        _local(backup.node_root, path)


def unified_diff(path: str, old: str | None, new: str) -> str:
    """A ``git diff``-style unified diff of one file; a new file (*old* ``None``) is shown whole.

    >>> print(unified_diff("/etc/x", "a\\n", "b\\n"), end="")
    --- a/etc/x
    +++ b/etc/x
    @@ -1 +1 @@
    -a
    +b
    """
    if old == new:
        return f"(unchanged) {path}\n"
    before = "/dev/null" if old is None else f"a{path}"
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True), new.splitlines(keepends=True), before, f"b{path}", n=3
    )
    # a last line without a newline would glue onto the next hunk header
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def read_files(paths: list[Path]) -> dict[str, str | None]:
    """Each path's text, ``None`` for a file that does not exist (keys are ``str(path)``)."""
    out: dict[str, str | None] = {}
    for path in paths:
        try:
            out[str(path)] = Path(path).read_text()
        except FileNotFoundError:
            out[str(path)] = None
    return out


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _new_backup_dir(node_root: Path) -> tuple[Path, str]:
    parent = node_root / BACKUP_DIR
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        created = _timestamp()
        try:
            (parent / created).mkdir(mode=0o700)  # exclusive: two changes never share a directory
            return parent / created, created
        except FileExistsError:
            continue


def _make_parents(node_root: Path, path: Path) -> list[str]:
    """Create *path*'s missing parent directories; return them (node paths, outermost first)."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    for directory in missing:
        directory.mkdir(mode=NEW_DIR_MODE)
    return [node_path(node_root, d) for d in missing]


def apply_files(node_root: Path, files: dict[Path, str], description: str) -> Backup:
    """Back up every file of *files*, then write each new text atomically; returns the backup.

    If a write fails, what was written so far is restored before the error is raised.
    """
    node_root = Path(node_root)
    outside = [str(p) for p in files if not Path(p).is_relative_to(node_root)]
    if outside:
        raise HostChangeError(
            f"{', '.join(outside)} is not under the node root {node_root}",
            "plan changes with the host's containerd_paths(); nothing was written",
        )
    backup_dir, created = _new_backup_dir(node_root)
    try:
        backup = _back_up(node_root, backup_dir, created, files, description)
    except BaseException:
        shutil.rmtree(backup_dir, ignore_errors=True)  # a half-made backup restores nothing: remove it
        raise
    created_dirs: list[str] = []
    try:
        for record, local in zip(backup.files, files, strict=True):
            created_dirs += _make_parents(node_root, Path(local))
            mode = record.mode if record.mode is not None else NEW_FILE_MODE
            write_atomic(Path(local), files[local].encode(), mode=mode, uid=record.uid, gid=record.gid)
    except BaseException:
        restore_backup(replace(backup, created_dirs=created_dirs))  # nothing half-applied
        shutil.rmtree(backup_dir, ignore_errors=True)  # and no backup of a change that never happened
        raise
    backup = replace(backup, created_dirs=created_dirs)
    _write_manifest(backup)
    return backup


def _back_up(node_root: Path, backup_dir: Path, created: str, files: dict[Path, str], description: str) -> Backup:
    """Copy the current version of every file of *files* into *backup_dir* and write its manifest."""
    records: list[BackedUpFile] = []
    for local in files:
        rel = node_path(node_root, Path(local))
        try:
            st = os.stat(local)
        except FileNotFoundError:
            records.append(BackedUpFile(rel, existed=False))
            continue
        data = Path(local).read_bytes()
        copy = backup_dir / "files" / rel.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(copy, data, mode=NEW_FILE_MODE)
        records.append(
            BackedUpFile(rel, True, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, hashlib.sha256(data).hexdigest())
        )
    backup = Backup(backup_dir, node_root, created, description, records)
    _write_manifest(backup)
    return backup


def _write_manifest(backup: Backup) -> None:
    write_atomic(backup.dir / MANIFEST, (json.dumps(backup.to_json(), indent=2) + "\n").encode(), mode=NEW_FILE_MODE)


def restore_backup(backup: Backup) -> None:
    """Put every file of *backup* back byte-identical (mode, owner); delete files and directories it created.

    All or nothing: every backup copy is checked, then every original is staged beside its
    file, and only then are they switched in (one rename each). A damaged backup or a failed
    staging changes nothing; a rename that fails midway (rare: the disk went away) raises an
    error that names which files are restored and which are not.
    """
    _check_confined(backup)
    originals: dict[str, bytes] = {}
    for record in backup.files:
        if not record.existed:
            continue
        data = (backup.dir / "files" / record.path.lstrip("/")).read_bytes()
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise HostChangeError(
                f"the backup copy of {record.path} in {backup.dir} is damaged (checksum mismatch)",
                f"restore {record.path} by hand from another backup; nothing was written",
            )
        originals[record.path] = data
    staged: list[tuple[str, Path]] = []
    current = ""  # the file being staged, for the error
    try:
        for record in backup.files:
            if record.existed:
                current = record.path
                local = _local(backup.node_root, record.path)
                local.parent.mkdir(parents=True, exist_ok=True, mode=NEW_DIR_MODE)
                mode = record.mode if record.mode is not None else NEW_FILE_MODE  # 0o000 is a mode: never widen it
                staged.append(
                    (record.path, stage(local, originals[record.path], mode=mode, uid=record.uid, gid=record.gid))
                )
    except BaseException as err:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, PermissionError) and current:
            # a PermissionError keeps its own answer (the host says which file and how to get the right)
            raise HostChangeError(
                f"the restore from {backup.dir} could not stage {current} ({err.strerror or err}): "
                "nothing was written, the node's files are as they were before the restore",
                f"fix the cause (is {err.filename or current} where a directory or file should be?) "
                "and run the restore again",
            ) from err
        raise
    _switch(backup, staged)
    for directory in reversed(backup.created_dirs):
        with contextlib.suppress(OSError):  # not empty (someone added a file since) or already gone: leave it
            _local(backup.node_root, directory).rmdir()


def _switch(backup: Backup, staged: list[tuple[str, Path]]) -> None:
    """Rename every staged original over its file and delete the files the change created."""
    done: list[str] = []
    pending = [path for path, _ in staged] + [f.path for f in backup.files if not f.existed]
    try:
        for path, tmp in staged:
            os.replace(tmp, _local(backup.node_root, path))
            done.append(path)
            pending.remove(path)
        for record in backup.files:
            if not record.existed:
                _local(backup.node_root, record.path).unlink(missing_ok=True)
                done.append(record.path)
                pending.remove(record.path)
    except OSError as err:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise HostChangeError(
            f"the restore from {backup.dir} stopped at {pending[0]} ({err.strerror or err}): "
            f"restored {', '.join(done) or 'nothing'}; not restored {', '.join(pending)}",
            "fix the cause (disk full? read-only?) and run the restore again: it is safe to repeat",
        ) from err


def list_backups(node_root: Path) -> list[Backup]:
    """The backups on the node, oldest first."""
    parent = Path(node_root) / BACKUP_DIR
    if not parent.is_dir():
        return []
    found = []
    for manifest in sorted(parent.glob(f"*/{MANIFEST}")):
        try:
            backup = Backup.from_json(json.loads(manifest.read_text()))
        except (ValueError, KeyError, TypeError) as err:
            raise HostChangeError(
                f"the backup manifest {manifest} is corrupt ({type(err).__name__}: {err})",
                f"move that backup directory aside ({manifest.parent}) or repair the file; other backups are intact",
            ) from err
        _check_confined(backup)
        found.append(backup)
    return found


def execute(op: str, payload: dict[str, Any]) -> Any:
    """Run one file operation from JSON-able input to JSON-able output (what ``main`` runs as root).

    *op*: ``read`` {paths}, ``apply`` {node_root, files, description}, ``restore`` {backup}, ``backups`` {node_root}.
    """
    if op == "read":
        return read_files([Path(p) for p in payload["paths"]])
    if op == "apply":
        files = {Path(p): text for p, text in payload["files"].items()}
        return apply_files(Path(payload["node_root"]), files, payload["description"]).to_json()
    if op == "restore":
        restore_backup(Backup.from_json(payload["backup"]))
        return None
    if op == "backups":
        return [b.to_json() for b in list_backups(Path(payload["node_root"]))]
    raise HostChangeError(f"unknown host file operation {op!r}", "use read, apply, restore or backups")


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.host.changes <op>``: payload JSON on stdin, ``{"result": ...}`` or ``{"error": ...}`` out."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = execute(args[0] if args else "", json.load(sys.stdin))
    except LabkitError as err:
        json.dump({"error": {"problem": err.problem, "fix": err.fix}}, sys.stdout)
        return 1
    except OSError as err:
        json.dump(
            {
                "error": {
                    "problem": f"{err.strerror or err}: {err.filename}",
                    "fix": "check that path on the node (does it exist, is it a file, is the disk full?)",
                }
            },
            sys.stdout,
        )
        return 1
    json.dump({"result": result}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
