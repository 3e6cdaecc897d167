"""Service → Endpoints and EndpointSlices, as the 1.32 endpoint and endpointslice controllers keep them.

For every Service with a selector: an Endpoints object of the same name (ready pod
IPs in ``addresses``, the others in ``notReadyAddresses``) and EndpointSlices
``<service>-<5 chars>`` labelled ``kubernetes.io/service-name``, owned by the
Service so they go with it. Ports come from each service port's ``targetPort``;
a named one is looked up in the pod's container ports, so pods that name a port
differently land in different subsets/slices, as upstream groups them.

>>> pod = {"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]}}
>>> resolve_target_port({"port": 80, "targetPort": "http", "protocol": "TCP"}, pod)
8080
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import label_selector_from_match
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.controllers.base import Controller, Key, Source
from labkit.sandbox.controllers.podutil import MANAGER, PODS, owner_reference, pod_ready, selected

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.registry import Resource
    from labkit.sandbox.api.store import WatchEvent

SERVICES = RESOURCES.served("", "services")
ENDPOINTS = RESOURCES.served("", "endpoints")
SLICES = RESOURCES.served("discovery.k8s.io", "endpointslices")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"

#: (name, port, protocol) for each service port a pod serves
PortSet = tuple[tuple[str, int, str], ...]


def resolve_target_port(service_port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    """The pod port a service port sends to: a number as is, a name looked up in the pod's containers
    (same protocol); None when the pod has no such named port."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in pod.get("spec", {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def pod_ports(service: dict[str, Any], pod: dict[str, Any]) -> PortSet:
    """The service's ports as this pod serves them (unresolvable named ports left out, as upstream does)."""
    out = []
    for sp in service["spec"].get("ports") or ():
        port = resolve_target_port(sp, pod)
        if port is not None:
            out.append((sp.get("name", ""), port, sp.get("protocol", "TCP")))
    return tuple(out)


def _serving_candidate(pod: dict[str, Any]) -> bool:
    """Pods with an IP that have not finished (upstream's ShouldPodBeInEndpoints, terminating included)."""
    status = pod.get("status") or {}
    return bool(status.get("podIP")) and status.get("phase") not in ("Succeeded", "Failed")


def _target_ref(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}


def _address(pod: dict[str, Any]) -> dict[str, Any]:
    address = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
    if pod["spec"].get("nodeName"):
        address["nodeName"] = pod["spec"]["nodeName"]
    return address


def _headless(service: dict[str, Any]) -> bool:
    return bool(service["spec"].get("clusterIP") == "None")


def _groups(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[PortSet, list[dict[str, Any]]]:
    """Candidate pods grouped by the ports they serve; pods serving none of the ports are left out."""
    groups: dict[PortSet, list[dict[str, Any]]] = {}
    has_ports = bool(service["spec"].get("ports"))
    for pod in sorted(pods, key=lambda p: p["status"]["podIP"]):
        ports = pod_ports(service, pod)
        if ports or (not has_ports and _headless(service)):
            groups.setdefault(ports, []).append(pod)
    return groups


def endpoints_subsets(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Endpoints ``subsets``: one per distinct port set; terminating pods left out unless the service
    publishes not-ready addresses."""
    publish = bool(service["spec"].get("publishNotReadyAddresses"))
    subsets = []
    for ports, members in _groups(
        service, [p for p in pods if publish or not p["metadata"].get("deletionTimestamp")]
    ).items():
        subset: dict[str, Any] = {}
        ready = [_address(p) for p in members if publish or pod_ready(p)]
        not_ready = [_address(p) for p in members if not (publish or pod_ready(p))]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = [{**({"name": n} if n else {}), "port": p, "protocol": proto} for n, p, proto in ports]
        subsets.append(subset)
    return subsets


def slice_endpoint(pod: dict[str, Any], publish: bool) -> dict[str, Any]:
    """One pod as an EndpointSlice endpoint with its ready/serving/terminating conditions: serving is the
    pod's readiness; ready is serving and not terminating, or always with publishNotReadyAddresses (as upstream)."""
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    serving = pod_ready(pod)
    endpoint = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {
            "ready": publish or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": _target_ref(pod),
    }
    if pod["spec"].get("nodeName"):
        endpoint["nodeName"] = pod["spec"]["nodeName"]
    return endpoint


def _labels(service: dict[str, Any]) -> dict[str, str]:
    labels = dict(service["metadata"].get("labels") or {})
    if _headless(service):
        labels[HEADLESS_LABEL] = ""
    return labels


class EndpointsController(Controller):
    """Keeps every selecting Service's Endpoints and EndpointSlices current (the endpoint and endpointslice
    controllers in one loop)."""

    name = "endpoint-controller"
    primary = SERVICES

    def sources(self) -> Sequence[Source]:
        return [
            Source(PODS, self.services_of_pod),
            Source(ENDPOINTS, self.service_of_endpoints),
            Source(SLICES, _service_of_slice),
        ]

    def sync(self, key: Key) -> float | None:
        """Bring the Service's Endpoints and EndpointSlices in line with its pods (removes the Endpoints with it)."""
        ns, name = key
        service = self.get(SERVICES, ns, name)
        if service is None:
            # The slices go with the Service through their ownerReference; Endpoints have none.
            self.delete_quietly(ENDPOINTS, ns, name)
            return None
        selector = service["spec"].get("selector")
        if (
            not selector
            or service["metadata"].get("deletionTimestamp")
            or service["spec"].get("type") == "ExternalName"
        ):
            return None  # without a selector the user manages the Endpoints
        pods = [p for p in selected(self.core, PODS, ns, {"matchLabels": selector}) if _serving_candidate(p)]
        self.sync_endpoints(service, pods)
        self.sync_slices(service, pods)
        return None

    def services_of_pod(self, event: WatchEvent) -> list[Key]:
        """The Services selecting the pod now, and those whose slices still list it (its old labels matched:
        upstream looks at old and new labels, which a stored event no longer has). Slices hold every address
        the Endpoints do, so a relabelled pod leaves both; the other Services are not synced for it."""
        meta = event.object["metadata"]
        ns, labels = meta["namespace"], meta.get("labels") or {}
        keys = {
            (ns, s["metadata"]["name"])
            for s in self.core.list(SERVICES, ns)["items"]
            if s["spec"].get("selector")
            and label_selector_from_match({"matchLabels": s["spec"]["selector"]}).matches(labels)
        }
        for slice_ in self.core.list(SLICES, ns, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}")["items"]:
            service = (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service and any(
                (e.get("targetRef") or {}).get("uid") == meta["uid"] for e in slice_.get("endpoints") or ()
            ):
                keys.add((ns, service))
        return sorted(keys)

    def service_of_endpoints(self, event: WatchEvent) -> list[Key]:
        """Only an existing Service's: hand-made Endpoints of a Service not created yet stay untouched."""
        ns, name = event.object["metadata"]["namespace"], event.object["metadata"]["name"]
        return [(ns, name)] if self.get(SERVICES, ns, name) is not None else []

    def delete_quietly(self, res: Resource, ns: str, name: str) -> None:
        """Delete the object unless it is gone already."""
        try:
            self.core.delete(res, ns, name)
        except StatusError as e:
            if e.code != 404:
                raise

    def sync_endpoints(self, service: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Create or update the Service's Endpoints object of the same name."""
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        wanted: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": _labels(service)},
        }
        subsets = endpoints_subsets(service, pods)
        if subsets:
            wanted["subsets"] = subsets
        live = self.get(ENDPOINTS, ns, name)
        if live is None:
            self.core.create(ENDPOINTS, ns, wanted, manager=MANAGER)
        elif (
            live.get("subsets") != wanted.get("subsets")
            or (live["metadata"].get("labels") or {}) != wanted["metadata"]["labels"]
        ):
            updated = {**live, "metadata": {**live["metadata"], "labels": wanted["metadata"]["labels"]}}
            updated.pop("subsets", None)
            updated.update({k: v for k, v in wanted.items() if k == "subsets"})
            self.core.replace(ENDPOINTS, ns, name, updated, manager=MANAGER)

    def sync_slices(self, service: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Create, update or delete the Service's EndpointSlices, one per port set."""
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        publish = bool(service["spec"].get("publishNotReadyAddresses"))
        labels = {**_labels(service), SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}
        wanted = [
            (ports, [slice_endpoint(p, publish) for p in members]) for ports, members in _groups(service, pods).items()
        ]
        if not wanted:
            wanted = [((), [])]  # a placeholder slice with no endpoints, as upstream keeps for an empty service
        mine = self.core.list(SLICES, ns, label_selector=f"{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}")
        existing = [s for s in mine["items"] if not s["metadata"].get("deletionTimestamp")]

        def ports_of(s: dict[str, Any]) -> PortSet:
            return tuple((p.get("name", ""), p.get("port"), p.get("protocol", "TCP")) for p in s.get("ports") or ())

        # Reuse a slice with the same ports first, then any left over; create the rest; delete the extra.
        unused = list(existing)

        def take(ports: PortSet) -> dict[str, Any] | None:
            match = next((s for s in unused if ports_of(s) == ports), None)
            if match is not None:
                unused.remove(match)
            return match

        plan = [(take(ports), ports, endpoints) for ports, endpoints in wanted]
        plan = [
            (live if live is not None else (unused.pop(0) if unused else None), ports, endpoints)
            for live, ports, endpoints in plan
        ]
        for live, ports, endpoints in plan:
            body: dict[str, Any] = {"addressType": "IPv4", "endpoints": endpoints}
            if ports:
                body["ports"] = [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]
            if live is None:
                self.core.create(
                    SLICES,
                    ns,
                    {
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": {
                            "generateName": f"{name}-",
                            "namespace": ns,
                            "labels": labels,
                            "ownerReferences": [owner_reference(service)],
                        },
                        **body,
                    },
                    manager=MANAGER,
                )
            elif (
                any(live.get(k) != body.get(k) for k in ("addressType", "endpoints", "ports"))
                or live["metadata"].get("labels") != labels
            ):
                updated = {k: v for k, v in live.items() if k not in ("endpoints", "ports")}
                updated["metadata"] = {**live["metadata"], "labels": labels}
                self.core.replace(SLICES, ns, live["metadata"]["name"], {**updated, **body}, manager=MANAGER)
        for extra in unused:
            self.delete_quietly(SLICES, ns, extra["metadata"]["name"])


def _service_of_slice(event: WatchEvent) -> list[Key]:
    labels = event.object["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not labels.get(SERVICE_NAME_LABEL):
        return []
    return [(event.object["metadata"]["namespace"], labels[SERVICE_NAME_LABEL])]


async def run_endpoints_controller(core: ApiCore) -> None:
    """The endpoints controller's loop, as the daemon starts it."""
    await EndpointsController(core).run()
