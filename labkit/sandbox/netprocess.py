"""The daemon's side of the network process (:mod:`labkit.sandbox.network`): its identity and its process.

**Identity.** k3s runs CoreDNS as ServiceAccount ``kube-system/coredns`` bound to ClusterRole
``system:coredns`` (list/watch endpoints, services, pods, namespaces; list/watch endpointslices;
k3s ``manifests/coredns.yaml``), and kube-proxy as user ``system:kube-proxy`` (ClusterRole
``system:node-proxier``). The sandbox runs both in one process [labkit's choice: one Python process
less], under CoreDNS's account: its rules cover every read kube-proxy's Service forwarding needs
(Services and EndpointSlices), and nothing more is granted.

**Process.** Started by argv like a node (it never is imported here), restarted by ``labkit sandbox up``
when it died (the supervisor's policy for nodes, for the same reason: a crash should be seen), stopped
with the daemon.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.fsutil import write_atomic
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.network.config import NetworkConfig, network_dir
from labkit.sandbox.processes import stop_process

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.auth import TokenAuthority

log = logging.getLogger("labkit.sandbox.netprocess")

NAMESPACE, ACCOUNT, ROLE = "kube-system", "coredns", "system:coredns"
ROLE_RULES = [
    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
]
STOP_TIMEOUT_S = 5.0


def _ensure(core: ApiCore, group: str, plural: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
    res = RESOURCES.served(group, plural)
    try:
        return core.get(res, namespace, body["metadata"]["name"])
    except StatusError as err:
        if err.code != 404:
            raise
    return core.create(res, namespace, body)[0]


def network_token(core: ApiCore, tokens: TokenAuthority) -> str:
    """The ServiceAccount, ClusterRole and binding CoreDNS has on k3s (created when missing), and a token for it."""
    account = _ensure(core, "", "serviceaccounts", NAMESPACE, {"metadata": {"name": ACCOUNT, "namespace": NAMESPACE}})
    _ensure(
        core,
        "rbac.authorization.k8s.io",
        "clusterroles",
        None,
        {"metadata": {"name": ROLE, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "rules": ROLE_RULES},
    )
    _ensure(
        core,
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        None,
        {
            "metadata": {"name": ROLE, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        },
    )
    uid = str(account["metadata"]["uid"])
    return tokens.issue(NAMESPACE, ACCOUNT, uid)[0]


class NetworkProcess:
    """Starts, tracks and stops the one network process of a sandbox."""

    def __init__(self, root: Path, ca: Path, slot: int = 0) -> None:
        self.root, self.ca, self.slot = root, ca, slot
        self.directory = network_dir(root)
        self._process: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def ensure(self, server: str, token: str) -> bool:
        """Start the process unless it runs; True when it was started."""
        if self.pid() is not None:
            return False
        if self._process is not None:
            log.warning("the network process had exited (code %s); starting it again", self._process.returncode)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        config = NetworkConfig(self.root, server, self.directory / "token", self.ca, self.slot)
        write_atomic(config.token_file, token, mode=0o600)
        with open(self.directory / "network.log", "ab") as out:
            self._process = subprocess.Popen(
                config.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, close_fds=True
            )
        return True

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process, STOP_TIMEOUT_S)
