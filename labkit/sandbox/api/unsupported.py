"""Answers for features the API serves but the sandbox's nodes do not carry out.

They fail as a Status kubectl prints cleanly, never as a missing path or a hang.

- ``pods/exec``: a real API server proxies the stream to the node's kubelet, which asks the
  runtime through CRI; the kubelet's streaming server reports a runtime's failure as an
  InternalError Status ``error executing command in container: ...`` on the stream's error channel
  (``k8s.io/kubelet/pkg/cri/streaming/remotecommand/exec.go``), which kubectl prints as
  ``error: Internal error occurred: error executing command in container: ...``. The sandbox answers
  the same Status before any upgrade, so kubectl prefixes it ``Error from server (InternalError)``.
  What runwasi's shim would answer for a wasm container could not be checked here [inferred], so
  the reason after that prefix is labkit's own and says so.
- ``pods/ephemeralcontainers`` is not served: the 404 for a path the server does not serve makes
  ``kubectl debug`` say "ephemeral containers are disabled for this cluster", as on a cluster
  without the feature.
"""

from __future__ import annotations

from typing import Any

from labkit.sandbox.api.status import StatusError


def exec_refused(pod: dict[str, Any]) -> StatusError:
    """The 500 for ``kubectl exec`` into a pod of the sandbox."""
    name = pod["metadata"]["name"]
    return StatusError(
        500,
        "InternalError",
        "Internal error occurred: error executing command in container: labkit sandbox: exec is not simulated "
        f'for pod "{name}": its containers run wasm modules in wasmtime, which have no shell or second process '
        "to start; read the container's output with kubectl logs instead",
    )
