"""The exec stream between the sandbox's API server and a kubelet: what both sides agree on, and nothing else.

Upstream, kube-apiserver answers ``pods/exec`` by dialling the pod's kubelet (the Node's InternalIP and
``status.daemonEndpoints.kubeletEndpoint.Port``, :10250) with its kubelet-client certificate, and the kubelet's
``/exec/{namespace}/{pod}/{uid}/{container}`` runs the command through CRI. The sandbox does the same, with two
documented simplifications: the kubelet listens on plain HTTP on its node's loopback address (a port it picks
and posts in its Node's status, so two sandboxes on one machine do not collide), and the API server proves
who it is with a bearer token only the daemon and its kubelets can read (``<home>/kubelet-client-token``,
mode 0600), where k3s uses the ``kube-apiserver-kubelet-client`` certificate. The kubelet checks it on every
request; a pod that reaches the port (wasm pods reach loopback) gets 401.

The stream itself is one WebSocket, smaller than the remotecommand protocol the API server speaks to kubectl
(api/podexec.py translates; upstream proxies the stream unchanged):

- kubelet → API server, first: a text message ``{"started": true}``, or ``{"error": "...", "upgrade": bool}``
  then close (``upgrade``: the kubelet refused before any command ran, as its HTTP error is wrapped
  "unable to upgrade connection: …"; otherwise it is the runtime's exec error);
- then binary messages ``[1|2] + bytes`` (stdout, stderr) and at the end a text ``{"exit": code}``;
- API server → kubelet: binary ``[0] + bytes`` (stdin) and the text ``close-stdin``; closing the WebSocket
  kills the command.
"""

from __future__ import annotations

from pathlib import Path

TOKEN_FILE = "kubelet-client-token"
ROUTE = "/exec/{namespace}/{pod}/{uid}/{container}"
CLOSE_STDIN = "close-stdin"
STDIN, STDOUT, STDERR = 0, 1, 2


def token_file(home: Path) -> Path:
    """Where the API server's credential for the kubelets' exec endpoint is kept in a sandbox home."""
    return Path(home) / TOKEN_FILE


def exec_path(namespace: str, pod: str, uid: str, container: str) -> str:
    return ROUTE.format(namespace=namespace, pod=pod, uid=uid, container=container)
