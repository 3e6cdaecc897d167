"""The ``scale`` and ``binding`` subresources' rules: the Scale view of a workload, and a pod bound to a node.

:class:`~labkit.sandbox.api.apicore.ApiCore` reads and writes; these functions decide what is written
(pkg/registry/apps/deployment/storage's ScaleREST and pkg/registry/core/pod/storage's BindingREST).

>>> scale_of({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
...           "status": {"replicas": 2}})["status"]
{'replicas': 2, 'selector': 'app=web'}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import label_selector_from_match
from labkit.sandbox.api.status import StatusError, invalid
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource

PODS = RESOURCES.served("", "pods")


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale a workload answers ``GET …/scale`` with."""
    selector = obj.get("spec", {}).get("selector") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: obj["metadata"][k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in obj["metadata"]
        },
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": label_selector_from_match(selector).to_string() if selector else "",
        },
    }


def check_replicas(res: Resource, name: str, replicas: Any) -> None:
    """Refuse a Scale whose ``spec.replicas`` is no count, in ValidateScale's words."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        message = f"Invalid value: {replicas}: must be greater than or equal to 0"
        raise invalid(res, name, [{"reason": "FieldValueInvalid", "field": "spec.replicas", "message": message}])


def bound(pod: dict[str, Any], binding: dict[str, Any]) -> dict[str, Any]:
    """*pod* (changed in place) assigned to the Binding's node, PodScheduled; 409 when it cannot be."""
    name = pod["metadata"]["name"]
    node = (binding.get("target") or {}).get("name")
    if not node:
        raise invalid(
            PODS, name, [{"reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}]
        )
    if pod["spec"].get("nodeName"):
        raise conflict_bound(name, pod["spec"]["nodeName"])
    if pod["metadata"].get("deletionTimestamp"):
        raise _binding_conflict(name, f"pod {name} is being deleted, cannot be assigned to a host")
    pod["spec"]["nodeName"] = node
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
    conditions.append(
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": format_rfc3339()}
    )
    return pod


def conflict_bound(name: str, node: str) -> StatusError:
    """The 409 for binding a pod that already has a node."""
    return _binding_conflict(name, f'pod {name} is already assigned to node "{node}"')


def _binding_conflict(name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": {why}')
