"""What the tests that drive the real kubectl share: the wasm workloads they apply, and waiting for kubectl to
print what is expected."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def wasm_workload(kind: str, name: str, **spec: object) -> str:
    """The manifest of an apps/v1 *kind* named *name* whose pods (labelled and selected ``app: name``) run the
    wasi-demo image under the ``wasmedge`` RuntimeClass; *spec* adds fields before the selector (replicas,
    serviceName). Join several with ``---``."""
    fields = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    return f"""apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}}}
spec:
{fields}  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      runtimeClassName: wasmedge
      containers: [{{name: demo, image: docker.io/labkit/wasi-demo:latest, imagePullPolicy: IfNotPresent}}]
"""


def eventually(check: Callable[[], str], expected: str, timeout: float = 30.0) -> str:
    """*check()*'s output once it contains *expected*; fails with the last output after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        out = check()
        if expected in out or time.monotonic() > deadline:
            assert expected in out, out
            return out
        time.sleep(0.3)
