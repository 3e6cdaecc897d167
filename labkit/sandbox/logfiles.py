"""Container log files as a node writes them: the CRI format and the ``/var/log/pods`` layout.

``<dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`` with lines
``<RFC3339Nano> <stdout|stderr> F <text>``. The kubelet writes them; the API server reads
them (:mod:`labkit.sandbox.logs`), the shared disk standing in for the kubelet's log endpoint.
"""

from __future__ import annotations

import gzip
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO


def _timestamp(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class LogDirectory:
    """Pod logs under one directory (a node's ``/var/log/pods``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def directory(self, pod: dict[str, Any], container: str) -> Path:
        meta = pod["metadata"]
        return self.root / f"{meta.get('namespace')}_{meta['name']}_{meta['uid']}" / container

    def writer(self, pod: dict[str, Any], container: str, restart_count: int) -> LogWriter:
        path = self.directory(pod, container) / f"{restart_count}.log"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return LogWriter(path)


#: The kubelet's defaults (KubeletConfiguration containerLogMaxSize "10Mi", containerLogMaxFiles 5).
MAX_SIZE, MAX_FILES = 10 * 1024 * 1024, 5
#: Rotated logs are named ``<log>.<timestamp>`` (Go layout "20060102-150405"), older ones gzipped.
_ROTATED_STAMP, _COMPRESSED = "%Y%m%d-%H%M%S", ".gz"


class LogWriter:
    """Appends CRI-format lines to one container log file, rotating it past *max_size*; thread-safe.

    Rotation follows the kubelet's container log manager (pkg/kubelet/logs/container_log_manager.go): drop
    the oldest rotated files so at most ``max_files - 2`` remain, gzip all but the latest of them, rename the
    log to ``<log>.<timestamp>`` and reopen it, so the log and its rotations are at most *max_files* files.
    The kubelet checks every 10 s; this writer checks at each line, so a file never grows far past the size.
    """

    def __init__(self, path: Path, max_size: int = MAX_SIZE, max_files: int = MAX_FILES) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max_files
        self._lock = threading.Lock()
        self._file = _open_private(path)
        self._size = self._file.tell()

    def write(self, stream: str, text: str) -> None:
        line = f"{_timestamp()} {stream} F {text}\n".encode()
        with self._lock:
            self._file.write(line)
            self._file.flush()
            self._size += len(line)
            if self._size > self.max_size:
                self._rotate()

    def _rotate(self) -> None:
        rotated = self.path.with_name(f"{self.path.name}.{datetime.now(UTC).strftime(_ROTATED_STAMP)}")
        if rotated.exists() or rotated.with_name(rotated.name + _COMPRESSED).exists():
            return  # rotated once this second already: the name would clash, the next line tries again
        older = []
        for found in sorted(self.path.parent.glob(f"{self.path.name}.*")):
            if found.suffix == ".tmp":  # a compression cut short (the kubelet's cleanupUnusedLogs)
                found.unlink(missing_ok=True)
            else:
                older.append(found)
        excess = max(len(older) - max(self.max_files - 2, 0), 0)
        for old in older[:excess]:
            old.unlink(missing_ok=True)
        for old in older[excess:-1]:
            if old.suffix != _COMPRESSED:
                _compress(old)
        os.rename(self.path, rotated)
        self._file.close()
        self._file = _open_private(self.path)
        self._size = 0

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _open_private(path: Path) -> BinaryIO:
    """*path* opened to append, created 0600 whatever the umask: a container's output may carry its secrets."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def _compress(log: Path) -> None:
    """gzip *log* next to itself, then remove it (written aside and renamed, as the kubelet's compressLog)."""
    tmp = log.with_name(log.name + ".tmp")
    with log.open("rb") as src, _open_private(tmp) as raw, gzip.GzipFile(fileobj=raw, mode="wb") as dst:
        shutil.copyfileobj(src, dst)
    os.rename(tmp, log.with_name(log.name + _COMPRESSED))
    log.unlink()
