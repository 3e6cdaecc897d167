"""``componentstatuses``: the deprecated, read-only view of the control plane's health (``kubectl get cs``).

Upstream (pkg/registry/core/componentstatus/rest.go) probes each server it knows on every GET and LIST: the
scheduler, the controller-manager and each etcd backend (``etcd-0``…), with one ``Healthy`` condition each.
The sandbox has no such processes: its API server is its control plane, so it answers what a healthy k3s server
shows (k3s embeds the scheduler, the controller-manager and etcd or kine in one process, and 1.28+ probes report
``ok`` as the message of each). Every answer carries the deprecation warning kube-apiserver adds to each request
of a deprecated kind (apiserver's ``deprecation.WarningMessage``: "v1 ComponentStatus is deprecated in v1.19+").
"""

from __future__ import annotations

from typing import Any

from labkit.sandbox.api import tables
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import not_found

COMPONENT_STATUSES = RESOURCES.served("", "componentstatuses")
DEPRECATED = "v1 ComponentStatus is deprecated in v1.19+"
#: the components a k3s server lists (the order of upstream's list is its probes' finishing order)
COMPONENTS = ("scheduler", "controller-manager", "etcd-0")


def component_status(name: str) -> dict[str, Any]:
    """One component, healthy; 404 for another name (upstream answers a plain error, hence a 500, there)."""
    if name not in COMPONENTS:
        raise not_found(COMPONENT_STATUSES, name)
    return {
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name, "creationTimestamp": None},
        "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}],
    }


def component_status_list() -> dict[str, Any]:
    """Every component (upstream ignores label and field selectors here)."""
    items = [component_status(name) for name in COMPONENTS]
    return {"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items}


def answer(name: str | None, as_table: bool, include_object: str = "Metadata") -> dict[str, Any]:
    """``GET componentstatuses[/name]``, as the objects or as the Table ``kubectl get cs`` asks for."""
    found = component_status(name) if name is not None else component_status_list()
    if not as_table:
        return found
    return tables.to_table(COMPONENT_STATUSES, found.get("items", [found]), include_object=include_object)
