"""Container logs on disk, in the CRI format kubelet uses, and their reading rules.

A node writes ``<dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``
(:mod:`labkit.sandbox.logfiles`, the layout of ``/var/log/pods`` on k3s); the API
server reads them back for ``kubectl logs`` with the same options and the same errors.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from labkit.sandbox.api.status import bad_request
from labkit.sandbox.logfiles import LogDirectory
from labkit.timefmt import parse_rfc3339

_FOLLOW_POLL_S = 0.05
_CHUNK = 64 * 1024
_MAX_PENDING = 1024 * 1024


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


def _all_containers(pod: dict[str, Any]) -> list[str]:
    """Every container ``-c`` may name: regular, init and ephemeral (upstream's podHasContainerWithName)."""
    spec = pod.get("spec", {})
    return [c["name"] for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or ()]


def _status_of(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    pod_status = pod.get("status", {})
    kinds = ("containerStatuses", "ephemeralContainerStatuses")
    for status in [s for kind in kinds for s in pod_status.get(kind) or ()]:
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
        elif container not in _all_containers(pod):
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

    def read(self, path: Path, options: LogOptions) -> bytes:
        """The whole answer at once (for small logs and tests; the API server streams :meth:`stream`)."""
        reader = LogReader(path, options)
        try:
            return b"".join(reader.present())
        finally:
            reader.close()

    async def stream(
        self, path: Path, options: LogOptions, still_running: Callable[[], bool] | None = None
    ) -> AsyncIterator[bytes]:
        """The log as chunks, each read in a worker thread; with *still_running*, new lines follow until the
        container stops (or ``limitBytes`` is reached)."""
        reader = LogReader(path, options)
        try:
            present = reader.present()
            while (chunk := await asyncio.to_thread(next, present, None)) is not None:
                yield chunk
            while still_running is not None and not reader.done:
                new = await asyncio.to_thread(lambda: b"".join(reader.more()))
                if new:
                    yield new
                elif not still_running():
                    return
                else:
                    await asyncio.sleep(_FOLLOW_POLL_S)
        finally:
            reader.close()


class LogReader:
    """One ``GET …/log``: reads a CRI log in blocks, never all of it into memory.

    As the kubelet's ReadLogs (pkg/kubelet/kuberuntime/logs/logs.go): ``tailLines`` finds its start by reading
    backwards from the end; lines before ``sinceSeconds``/``sinceTime`` are skipped after that; ``limitBytes``
    stops the output, mid-line if need be. Following continues from where the first read ended and reopens the
    file when the kubelet rotated it.
    """

    def __init__(self, path: Path, options: LogOptions) -> None:
        self.path, self.options = path, options
        self.cutoff = options.cutoff()
        self.remaining = options.limit_bytes
        self._file = path.open("rb")
        self._pos = _tail_start(self._file, options.tail_lines) if options.tail_lines is not None else 0

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def close(self) -> None:
        self._file.close()

    def present(self) -> Iterator[bytes]:
        """What the file holds now, as chunks of about :data:`_CHUNK` bytes."""
        out = bytearray()
        for line in self._lines():
            out += line
            if len(out) >= _CHUNK:
                yield bytes(out)
                out.clear()
        if out:
            yield bytes(out)

    def more(self) -> Iterator[bytes]:
        """Lines written since the last read; after a rotation, the new file from its start."""
        yield from self._lines()
        if self._rotated():
            self._file.close()
            self._file, self._pos = self.path.open("rb"), 0
            yield from self._lines()

    def _rotated(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False  # renamed and not reopened yet: the next poll looks again

    def _lines(self) -> Iterator[bytes]:
        """Rendered complete lines from the current position, limitBytes applied."""
        f = self._file
        f.seek(self._pos)
        pending = b""
        while not self.done and (block := f.read(_CHUNK)):
            pending += block
            *lines, pending = pending.split(b"\n")
            if len(pending) > _MAX_PENDING:  # no newline for that long: not a log the kubelet wrote
                lines.append(pending)
                self._pos += len(pending)
                pending = b""
            for line in lines:
                self._pos += len(line) + 1
                rendered = self._render(line)
                if rendered is None:
                    continue
                if self.remaining is not None:
                    rendered = rendered[: self.remaining]
                    self.remaining -= len(rendered)
                yield rendered
                if self.remaining == 0:
                    return

    def _render(self, line: bytes) -> bytes | None:
        stamp, _, rest = line.partition(b" ")
        _stream, _, rest = rest.partition(b" ")
        _tag, _, text = rest.partition(b" ")
        if self.cutoff is not None and parse_rfc3339(stamp.decode("ascii", "replace")) < self.cutoff:
            return None
        return (stamp + b" " + text if self.options.timestamps else text) + b"\n"


def _tail_start(f: BinaryIO, lines: int) -> int:
    """The offset where the last *lines* complete lines begin, found by reading backwards block by block."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    pos, found = end, 0
    limit = end - 1  # the newline that ends the last line does not start one
    while pos > 0:
        size = min(_CHUNK, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        at = min(len(block), limit - pos)
        while (at := block.rfind(b"\n", 0, at)) >= 0:
            found += 1
            if found == lines:
                return pos + at + 1
    return 0
