"""Writing files so that a reader never sees half of one: write aside, fsync, rename.

Every file labkit writes for a later reader (kubeconfigs, containerd templates, backups,
OCI archives, image blobs, wasm modules) goes through :func:`write_atomic`.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "config.toml"
>>> write_atomic(target, b"version = 3\\n", mode=0o600)
>>> target.read_bytes(), oct(target.stat().st_mode & 0o777)
(b'version = 3\\n', '0o600')
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The mode of a new file that its owner writes and everyone may read (as `umask 022` gives).
READABLE = 0o644


def write_atomic(
    path: Path,
    data: bytes | str,
    *,
    mode: int = READABLE,
    uid: int | None = None,
    gid: int | None = None,
    make_parents: bool = False,
) -> None:
    """Replace *path* with *data*: written beside it, flushed to disk, renamed over it.

    The temporary file is created 0600 and only then given *mode* (so it is never wider
    than asked, even for a moment), and it is removed when anything fails. *uid*/*gid*
    change the owner when given and different (restoring a root-owned config as root).
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    staged = stage(path, data, mode=mode, uid=uid, gid=gid)
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def stage(
    path: Path, data: bytes | str, *, mode: int = READABLE, uid: int | None = None, gid: int | None = None
) -> Path:
    """Write *data* to a new temporary file beside *path*, ready to be renamed over it; returns its path.

    This is the first half of :func:`write_atomic`, for changes that must switch several
    files only once all of them are written (stage every file, then rename each).
    """
    payload = data.encode() if isinstance(data, str) else data
    # A unique name (mkstemp, mode 0600): two threads writing the same path never share a temporary file.
    fd, tmp_name = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=".labkit-tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fchmod(f.fileno(), mode)
            st = os.fstat(f.fileno())
            if (uid is not None and uid != st.st_uid) or (gid is not None and gid != st.st_gid):
                os.fchown(f.fileno(), st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
