"""Container logs on disk, in the CRI format kubelet uses, and their reading rules.

A node writes ``<dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``
(:mod:`labkit.sandbox.logfiles`, the layout of ``/var/log/pods`` on k3s); the API
server reads them back for ``kubectl logs`` with the same options and the same errors.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labkit.sandbox.api.status import bad_request
from labkit.sandbox.logfiles import LogDirectory
from labkit.timefmt import parse_rfc3339

_FOLLOW_POLL_S = 0.05


@dataclass
class LogOptions:
    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: str | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> LogOptions:
        def number(key: str) -> int | None:
            if q.get(key) in (None, ""):
                return None
            try:
                return int(q[key])
            except ValueError as e:
                raise bad_request(f'{key}: Invalid value: "{q[key]}": must be an integer') from e

        def flag(key: str) -> bool:
            return q.get(key, "").lower() in ("1", "true")

        return cls(
            q.get("container", ""),
            flag("follow"),
            flag("previous"),
            flag("timestamps"),
            number("tailLines"),
            number("sinceSeconds"),
            q.get("sinceTime") or None,
            number("limitBytes"),
        )

    def cutoff(self) -> datetime | None:
        if self.since_seconds is not None:
            return datetime.now(UTC) - timedelta(seconds=self.since_seconds)
        if self.since_time:
            return parse_rfc3339(self.since_time)
        return None


def _containers(pod: dict[str, Any]) -> list[str]:
    return [c["name"] for c in pod.get("spec", {}).get("containers") or ()]


def _status_of(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or ():
        if status.get("name") == container:
            return dict(status)
    return None


def container_running(pod: dict[str, Any], container: str) -> bool:
    status = _status_of(pod, container)
    return bool(status and "running" in (status.get("state") or {}))


class PodLogs(LogDirectory):
    """Reads and writes pod logs under one directory (a node's ``/var/log/pods``), with ``kubectl logs``' rules."""

    def locate(self, pod: dict[str, Any], options: LogOptions) -> tuple[str, Path]:
        """The container and log file ``kubectl logs`` means, or the API server's 400 explaining why there is none."""
        name = pod["metadata"]["name"]
        containers = _containers(pod)
        container = options.container
        if not container:
            if len(containers) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        status = _status_of(pod, container)
        restarts = int(status.get("restartCount", 0)) if status else 0
        if options.previous:
            path = self.directory(pod, container) / f"{restarts - 1}.log"
            if restarts < 1 or not path.exists():
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return container, path
        path = self.directory(pod, container) / f"{restarts}.log"
        if not path.exists():
            # the kubelet's validateContainerLogStatus: a container that was ever created has a log (a
            # StartError one an empty log); else the last terminated one's; else what it is waiting for
            last = self.directory(pod, container) / f"{restarts - 1}.log"
            if restarts >= 1 and last.exists():
                return container, last
            waiting = ((status or {}).get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason") or "ContainerCreating"
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: '
                + {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}.get(
                    reason, reason
                )
            )
        return container, path

    @staticmethod
    def _render(line: str, options: LogOptions, cutoff: datetime | None) -> str | None:
        stamp, _, rest = line.partition(" ")
        _stream, _, rest = rest.partition(" ")
        _tag, _, text = rest.partition(" ")
        if cutoff is not None and parse_rfc3339(stamp) < cutoff:
            return None
        return f"{stamp} {text}" if options.timestamps else text

    def read(self, path: Path, options: LogOptions) -> bytes:
        cutoff = options.cutoff()
        lines: deque[str] | list[str]
        with path.open("r", encoding="utf-8", errors="replace") as f:
            rendered = (self._render(line.rstrip("\n"), options, cutoff) for line in f)
            kept = (r for r in rendered if r is not None)
            lines = deque(kept, maxlen=options.tail_lines) if options.tail_lines is not None else list(kept)
        data = "".join(f"{line}\n" for line in lines).encode()
        return data[: options.limit_bytes] if options.limit_bytes is not None else data

    async def follow(self, path: Path, options: LogOptions, still_running: Callable[[], bool]) -> AsyncIterator[bytes]:
        """What is there (honouring tail/since), then new lines as they arrive, until the container stops."""
        initial = self.read(path, options)
        if initial:
            yield initial
        sent = len(initial) if options.limit_bytes is not None else 0
        cutoff = options.cutoff()
        with path.open("r", encoding="utf-8", errors="replace") as f:
            f.seek(0, 2)
            pending = ""
            while True:
                chunk = f.read()
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split("\n")
                    out = "".join(
                        f"{r}\n" for r in (self._render(line, options, cutoff) for line in complete) if r is not None
                    )
                    if out:
                        data = out.encode()
                        if options.limit_bytes is not None:
                            data = data[: max(options.limit_bytes - sent, 0)]
                            sent += len(data)
                        if data:
                            yield data
                        if options.limit_bytes is not None and sent >= options.limit_bytes:
                            return
                    continue
                if not still_running():
                    return
                await asyncio.sleep(_FOLLOW_POLL_S)
