r"""A guest's stdout and stderr as complete lines: the pipe wasmtime writes to, and the line splitter behind it.

>>> lines = []
>>> buffer = LineBuffer(lines.append)
>>> buffer.feed(b"hello\nwor")
>>> buffer.feed(b"ld\n")
>>> lines
['hello', 'world']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

MAX_LINE = 16 * 1024  # the kubelet splits longer log lines too

LineCallback = Callable[[str], None]


class LineBuffer:
    """Turns output chunks into complete lines (a chunk per guest ``fd_write``)."""

    def __init__(self, emit: LineCallback | None) -> None:
        self._emit = emit
        self._pending = b""
        self._lock = threading.Lock()  # the pipe reader and the runner's own messages share it

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        while len(self._pending) > MAX_LINE:
            lines.append(self._pending[:MAX_LINE])
            self._pending = self._pending[MAX_LINE:]
        for line in lines:
            for start in range(0, max(len(line), 1), MAX_LINE):
                self.line(line[start : start + MAX_LINE].decode("utf-8", "replace"))

    def line(self, text: str) -> None:
        if self._emit is not None:
            self._emit(text)

    def close(self) -> None:
        """Emit a last line that had no newline."""
        with self._lock:
            rest, self._pending = self._pending, b""
        if rest:
            self.line(rest.decode("utf-8", "replace"))


class OutputPipe:
    """A pipe the guest writes to as a file, drained into a :class:`LineBuffer` by a reader thread.

    Why not ``WasiConfig.stdout_custom``: wasmtime invokes those callbacks on
    its own tokio worker threads, and at interpreter exit those threads abort
    the whole process (``panic in a function that cannot unwind``).
    """

    def __init__(self, buffer: LineBuffer) -> None:
        self._buffer = buffer
        self._read, self._write = os.pipe()
        self.path = f"/dev/fd/{self._write}"  # wasmtime opens its own descriptor from this path
        self._thread = threading.Thread(target=self._pump, name="wasm-output", daemon=True)

    def attached(self) -> None:
        """wasmtime holds its own write end now: drop ours so EOF comes when the store goes."""
        os.close(self._write)
        self._write = -1
        self._thread.start()

    def _pump(self) -> None:
        with os.fdopen(self._read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                self._buffer.feed(chunk)

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the guest's last bytes (after its store is gone) and release the pipe."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(timeout)
        else:
            os.close(self._read)
