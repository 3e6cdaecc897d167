"""Deleting objects and waiting until they are gone (their pods too)."""

from __future__ import annotations

import time

from kubernetes import watch

from labkit import resources
from labkit.cluster import Cluster, api_call
from labkit.errors import ApiError, LabkitError, WaitFailed


def wait_gone(cluster: Cluster, kind: str, name: str, namespace: str | None, timeout: float) -> None:
    """Wait, watching, until the object is gone; after *timeout* raise :class:`WaitFailed` naming its finalizers."""
    res = resources.resource(cluster, kind)
    ns = namespace if res.namespaced else None
    deadline = time.monotonic() + timeout
    while True:
        items, rv = resources.list_objects(cluster, kind, ns, field_selector=f"metadata.name={name}")
        if not items:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            finalizers = (items[0].get("metadata") or {}).get("finalizers") or []
            raise WaitFailed(
                f"{kind.lower()}/{name} was still there {timeout:g} s after deletion"
                + (f" (finalizers: {', '.join(finalizers)})" if finalizers else ""),
                "look at its events and finalizers (`kubectl describe`); a node that is down "
                "cannot confirm that its pods stopped",
            )
        try:
            for event in resources.watch_events(
                res,
                watch.Watch(),  # type: ignore[no-untyped-call]
                namespace=ns,
                field_selector=f"metadata.name={name}",
                resource_version=rv,
                timeout=max(1, min(resources.WATCH_WINDOW_S * 5, int(remaining + 0.999))),
            ):
                if event["type"] == "DELETED":
                    return
        except ApiError as e:
            if e.code != 410:  # 410 Gone: the next round lists again
                raise


def delete(
    cluster: Cluster, kind: str, name: str, *, namespace: str | None = None, wait: bool = True, timeout: float = 120.0
) -> bool:
    """Delete an object (its pods too: foreground propagation) and wait until it is gone.

    Returns ``False`` when it did not exist.
    """
    res = resources.resource(cluster, kind)
    ns = namespace if res.namespaced else None
    if res.namespaced and not namespace:
        raise LabkitError(f"{res.kind} is namespaced: say which namespace", "pass namespace=...")
    try:
        api_call(res.delete, name=name, namespace=ns, body={"propagationPolicy": "Foreground"})
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    if wait:
        wait_gone(cluster, res.kind, name, ns, timeout)
    return True
