"""Saying so, once per object, where the sandbox stores a kind but does not act on it.

The API server serves every built-in kind, but the sandbox runs only some of k3s's controllers.
For an object whose effect a real cluster would carry out (bind a claim, route an Ingress, enforce a
NetworkPolicy, scale by an HPA, call a webhook) and the sandbox does not, this loop records one
Warning Event with reason ``NotSimulated`` that names what k3s would do; ``kubectl describe`` shows
it beside the object. Each object is noted once (by uid), also across daemon restarts.

>>> message_for(("", "persistentvolumeclaims"), {"spec": {"storageClassName": "local-path"}})[:60]
"k3s's local-path provisioner would create a hostPath volume "
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.controllers.base import Controller, Key

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

REASON = "NotSimulated"
#: the component the Events name: the sandbox itself, not a k3s component
COMPONENT = "labkit-sandbox"
EVENTS = RESOURCES.served("", "events")
_SANDBOX = "the labkit sandbox"


_WEBHOOKS = ("the API server would call these webhooks on matching requests", "calls no admission webhooks")
#: k3s ships the local-path StorageClass (manifests/local-storage.yaml), WaitForFirstConsumer: the provisioner
#: makes a hostPath volume under /var/lib/rancher/k3s/storage once a pod uses the claim.
_LOCAL_PATH_CLAIM = (
    (
        "k3s's local-path provisioner would create a hostPath volume under /var/lib/rancher/k3s/storage on "
        "the node of the first pod that uses this claim, then bind it"
    ),
    "provisions and binds no volumes, so the claim stays Pending",
)
#: Per kind: what a real cluster would do, and (after "the labkit sandbox") what the sandbox does instead.
_MESSAGES: dict[tuple[str, str], tuple[str, str]] = {
    ("", "persistentvolumeclaims"): (
        (
            "a real cluster's PersistentVolume controller would bind this claim to a matching PersistentVolume, or "
            "its StorageClass's provisioner would create one"
        ),
        "binds no volumes, so the claim stays Pending",
    ),
    ("", "persistentvolumes"): (
        (
            "a real cluster's PersistentVolume controller would mark this volume Available and bind it to a "
            "matching claim"
        ),
        "binds no volumes",
    ),
    ("networking.k8s.io", "ingresses"): (
        (
            "on k3s, Traefik (the bundled ingress controller) would route HTTP to these rules and publish its "
            "address in status.loadBalancer"
        ),
        "runs no ingress controller, so nothing serves them",
    ),
    ("networking.k8s.io", "networkpolicies"): (
        "on k3s, the embedded network policy controller (kube-router) would enforce this policy on each node",
        "does not filter pod traffic, so all traffic is still allowed",
    ),
    ("autoscaling", "horizontalpodautoscalers"): (
        "kube-controller-manager's horizontal pod autoscaler would scale the target from the metrics API",
        "runs no autoscaler, so the replicas stay as set",
    ),
    ("", "resourcequotas"): (
        (
            "the API server's ResourceQuota admission would refuse requests over these limits and the resource "
            "quota controller would report usage in status"
        ),
        "enforces no quota",
    ),
    ("", "limitranges"): (
        "the API server's LimitRanger admission would apply these defaults and limits to new pods",
        "does not apply them",
    ),
    ("", "replicationcontrollers"): (
        "kube-controller-manager's replication manager would create the pods",
        "runs no ReplicationController controller: use a Deployment",
    ),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _WEBHOOKS,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _WEBHOOKS,
    ("admissionregistration.k8s.io", "validatingadmissionpolicies"): (
        "the API server would evaluate these CEL validations on matching requests once bound",
        "evaluates no admission policies",
    ),
}


def message_for(kind: tuple[str, str], obj: dict[str, Any]) -> str:
    """What a real cluster would do with *obj* of kind ``(group, plural)``, and what the sandbox does."""
    local_path = kind == ("", "persistentvolumeclaims") and obj.get("spec", {}).get("storageClassName") == "local-path"
    real, sandbox = _LOCAL_PATH_CLAIM if local_path else _MESSAGES[kind]
    return f"{real}; {_SANDBOX} {sandbox}"


class _Notices(Controller):
    """Notes each object of one kind once."""

    name = COMPONENT
    resync: ClassVar[float | None] = None

    def __init__(self, core: ApiCore, noted: set[str]) -> None:
        super().__init__(core)
        self.noted = noted

    def sync(self, key: Key) -> float | None:
        obj = self.get(self.primary, key[0] or None, key[1])
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        uid = obj["metadata"]["uid"]
        if uid not in self.noted:
            self.noted.add(uid)
            self.recorder.event(obj, "Warning", REASON, message_for((self.primary.group, self.primary.plural), obj))
        return None


async def run_not_simulated_notices(core: ApiCore) -> None:
    """One informer per kind the sandbox does not act on; objects already noted (an Event says so) are skipped."""
    noted = {
        e["involvedObject"].get("uid", "")
        for e in core.list(EVENTS, None)["items"]
        if e.get("reason") == REASON and e.get("source", {}).get("component") == COMPONENT
    }
    loops = []
    for group, plural in _MESSAGES:
        notices = type(f"Notices_{plural}", (_Notices,), {"primary": RESOURCES.served(group, plural)})
        loops.append(notices(core, noted).run())
    await asyncio.gather(*loops)
