"""Container log files as a node writes them: the CRI format and the ``/var/log/pods`` layout.

``<dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`` with lines
``<RFC3339Nano> <stdout|stderr> F <text>``. The kubelet writes them; the API server reads
them (:mod:`labkit.sandbox.logs`), the shared disk standing in for the kubelet's log endpoint.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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


class LogWriter:
    """Appends CRI-format lines to one container log file; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # 0600 whatever the umask: a container's output may carry its secrets
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8")

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            self._file.write(f"{_timestamp()} {stream} F {text}\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
