"""``port_forward``: reach a pod or Service port from the notebook, the same way on every backend.

It runs the real ``kubectl port-forward`` as a subprocess, as a learner would in a terminal, against the
connected cluster's kubeconfig and context (the sandbox serves kubectl's port-forward protocol too), reads
``Forwarding from 127.0.0.1:N -> M`` to learn the local port, and stops kubectl when the block ends.

>>> with port_forward("svc/echo", 80) as fwd:           # doctest: +SKIP
...     urllib.request.urlopen(fwd.url + "/hello").read()
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from labkit.errors import LabkitError, PrerequisiteMissing

if TYPE_CHECKING:
    from labkit.cluster import Cluster

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")
_TARGET = re.compile(
    r"^(pod|pods|po|svc|service|services|deploy|deployment|deployments|rs|replicaset|sts|statefulset)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
)


@dataclass(frozen=True)
class Forward:
    """A running forward: ``local_port`` on 127.0.0.1 reaches ``remote_port`` of ``target``."""

    target: str
    local_port: int
    remote_port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<local_port>``, for HTTP apps."""
        return f"http://{self.host}:{self.local_port}"


@contextmanager
def port_forward(
    target: str,
    port: int | str,
    *,
    local_port: int = 0,
    namespace: str | None = None,
    cluster: Cluster | None = None,
    timeout: float = 30.0,
) -> Iterator[Forward]:
    """Forward ``127.0.0.1:local_port`` to *port* of *target* (``pod/x``, ``svc/x``, ``deploy/x``) while the block runs.

    *port* is the pod's port, or for ``svc/x`` the Service's port (a number or its name), as kubectl takes it.
    ``local_port=0`` picks a free local port; :attr:`Forward.url` and :attr:`Forward.local_port` say which. It
    waits until kubectl listens, at most *timeout* seconds, and raises :class:`LabkitError` with kubectl's own
    message when it cannot forward (no such pod, pod not running, ...). kubectl is stopped on the way out.
    """
    if not _TARGET.match(target):
        raise LabkitError(
            f"port_forward target {target!r} is not TYPE/NAME",
            "name it like kubectl does: 'pod/web', 'svc/web' or 'deploy/web'",
        )
    if not (isinstance(port, str) and re.fullmatch(r"[a-z0-9-]{1,15}", port)) and not (
        isinstance(port, int) and 0 < port < 65536
    ):
        raise LabkitError(f"port {port!r} is not a port number (1-65535) or a port name", "pass e.g. port=80")
    if not (isinstance(local_port, int) and 0 <= local_port < 65536):
        raise LabkitError(f"local_port {local_port!r} is not 0 (any free port) or 1-65535", "pass e.g. local_port=0")
    exe = shutil.which("kubectl")
    if exe is None:
        raise PrerequisiteMissing(
            "kubectl is not installed (not found on PATH)", "install kubectl 1.32 (`labkit doctor`)"
        )
    if cluster is None:
        from labkit.cluster import connect

        cluster = connect()
    argv = [exe, "--context", cluster.context, "port-forward", "--address", "127.0.0.1", target]
    argv += [f"{local_port or ''}:{port}"]
    if namespace:
        argv += ["--namespace", namespace]
    process = subprocess.Popen(
        argv,
        env=cluster.kubectl_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    output = _Output(process)
    try:
        yield output.wait_ready(target, timeout)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class _Output:
    """kubectl's stdout and stderr, read on threads all along: it prints a line per connection, and a full pipe
    would stop it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.stdout: deque[str] = deque(maxlen=200)
        self.stderr: deque[str] = deque(maxlen=200)
        self.changed = threading.Event()
        for pipe, sink in ((process.stdout, self.stdout), (process.stderr, self.stderr)):
            threading.Thread(target=self._drain, args=(pipe, sink), daemon=True).start()

    def _drain(self, pipe: IO[str] | None, sink: deque[str]) -> None:
        if pipe is None:
            return
        with pipe:
            for line in pipe:
                sink.append(line.rstrip("\n"))
                self.changed.set()
        self.changed.set()

    def wait_ready(self, target: str, timeout: float) -> Forward:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout):
                found = _FORWARDING.search(line)
                if found:
                    return Forward(target, int(found.group(1)), int(found.group(2)))
            if self.process.poll() is not None:
                time.sleep(0.1)  # the last lines of stderr
                message = " ".join(self.stderr).strip() or f"exit code {self.process.returncode}"
                raise LabkitError(
                    f"kubectl port-forward {target} failed: {message}",
                    "check that the target exists and is Running (`kubectl get pods`) and that the port is right",
                )
            self.changed.wait(0.2)
            self.changed.clear()
        raise LabkitError(
            f"kubectl port-forward {target} did not start listening within {timeout:g} s",
            "check the cluster (`labkit doctor`) and the target (`kubectl get pods`), or pass a longer timeout=...",
        )
