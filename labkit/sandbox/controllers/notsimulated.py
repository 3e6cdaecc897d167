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
from collections.abc import Callable
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


def _claim(obj: dict[str, Any]) -> str:
    # k3s ships the local-path StorageClass (manifests/local-storage.yaml), WaitForFirstConsumer: the
    # provisioner makes a hostPath volume under /var/lib/rancher/k3s/storage once a pod uses the claim.
    if obj.get("spec", {}).get("storageClassName") == "local-path":
        return (
            "k3s's local-path provisioner would create a hostPath volume under /var/lib/rancher/k3s/storage on "
            "the node of the first pod that uses this claim, then bind it; "
            f"{_SANDBOX} provisions and binds no volumes, so the claim stays Pending"
        )
    return (
        "a real cluster's PersistentVolume controller would bind this claim to a matching PersistentVolume, or "
        f"its StorageClass's provisioner would create one; {_SANDBOX} binds no volumes, so the claim stays Pending"
    )


_MESSAGES: dict[tuple[str, str], Callable[[dict[str, Any]], str]] = {
    ("", "persistentvolumeclaims"): _claim,
    ("", "persistentvolumes"): lambda _: (
        "a real cluster's PersistentVolume controller would mark this volume Available and bind it to a "
        f"matching claim; {_SANDBOX} binds no volumes"
    ),
    ("networking.k8s.io", "ingresses"): lambda _: (
        "on k3s, Traefik (the bundled ingress controller) would route HTTP to these rules and publish its "
        f"address in status.loadBalancer; {_SANDBOX} runs no ingress controller, so nothing serves them"
    ),
    ("networking.k8s.io", "networkpolicies"): lambda _: (
        "on k3s, the embedded network policy controller (kube-router) would enforce this policy on each node; "
        f"{_SANDBOX} does not filter pod traffic, so all traffic is still allowed"
    ),
    ("autoscaling", "horizontalpodautoscalers"): lambda _: (
        "kube-controller-manager's horizontal pod autoscaler would scale the target from the metrics API; "
        f"{_SANDBOX} runs no autoscaler, so the replicas stay as set"
    ),
    ("", "resourcequotas"): lambda _: (
        "the API server's ResourceQuota admission would refuse requests over these limits and the resource "
        f"quota controller would report usage in status; {_SANDBOX} enforces no quota"
    ),
    ("", "limitranges"): lambda _: (
        "the API server's LimitRanger admission would apply these defaults and limits to new pods; "
        f"{_SANDBOX} does not apply them"
    ),
    ("", "replicationcontrollers"): lambda _: (
        "kube-controller-manager's replication manager would create the pods; "
        f"{_SANDBOX} runs no ReplicationController controller: use a Deployment"
    ),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): lambda _: (
        f"the API server would call these webhooks on matching requests; {_SANDBOX} calls no admission webhooks"
    ),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): lambda _: (
        f"the API server would call these webhooks on matching requests; {_SANDBOX} calls no admission webhooks"
    ),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies"): lambda _: (
        "the API server would evaluate these CEL validations on matching requests once bound; "
        f"{_SANDBOX} evaluates no admission policies"
    ),
}


def message_for(kind: tuple[str, str], obj: dict[str, Any]) -> str:
    """What a real cluster would do with *obj* of kind ``(group, plural)``, and what the sandbox does."""
    return _MESSAGES[kind](obj)


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
