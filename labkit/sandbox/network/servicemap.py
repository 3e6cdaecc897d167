"""What the cluster's Services and EndpointSlices say, as the service proxy and the cluster DNS read them.

Both upstream readers build on EndpointSlices: kube-proxy's ``EndpointSliceCache``
(``pkg/proxy/endpointslicecache.go``) and CoreDNS's kubernetes plugin, which watches
EndpointSlices from Kubernetes 1.19 on (``plugin/kubernetes/kubernetes.go``: "DNS results should
be built from the same source data that the proxy uses"). An endpoint counts when its
``conditions.ready`` is true or unset (the EndpointSlice API: "nil ... should be interpreted as
ready"); kube-proxy sends new connections only to ready endpoints, and CoreDNS puts only ready
addresses in ``Addresses`` (``plugin/kubernetes/object/endpoint.go``).

A Service port meets its endpoints' port by **name** (and protocol), as kube-proxy matches
``ServicePortName``; the EndpointSlice port already carries the resolved ``targetPort`` (the
endpoint slice controller resolves a named one in each pod), so nothing here resolves names.

>>> m = ServiceMap()
>>> m.set_service({"metadata": {"namespace": "default", "name": "web"},
...     "spec": {"clusterIP": "127.43.0.5", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
>>> m.set_slice({"metadata": {"namespace": "default", "name": "web-abc",
...     "labels": {"kubernetes.io/service-name": "web"}},
...     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
...     "endpoints": [{"addresses": ["127.42.0.2"], "conditions": {"ready": True}},
...                   {"addresses": ["127.42.0.3"], "conditions": {"ready": False}}]})
>>> [(f.ip, f.port, f.protocol, f.backends) for f in m.frontends()]
[('127.43.0.5', 80, 'TCP', (('127.42.0.2', 8080),))]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: kube-proxy's default ``sessionAffinityConfig.clientIP.timeoutSeconds`` (API default, 3 hours)
DEFAULT_AFFINITY_S = 10800
PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class Frontend:
    """One ``clusterIP:port/protocol`` and the ready endpoints behind it."""

    service: str  # "namespace/name"
    port_name: str
    ip: str
    port: int
    protocol: str
    backends: tuple[tuple[str, int], ...]
    affinity_s: int = 0  # sessionAffinity ClientIP timeout; 0: none

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.ip, self.port, self.protocol)


@dataclass(frozen=True)
class Endpoint:
    """One ready address of a Service, with the hostname CoreDNS names it by and its ports (name, port, protocol)."""

    ip: str
    hostname: str
    ports: tuple[tuple[str, int, str], ...]


@dataclass
class ServiceMap:
    """Services (by ``namespace/name``), their EndpointSlices, and the namespaces that exist."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    slices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # service key -> slice name -> slice
    namespaces: set[str] = field(default_factory=set)

    # -- updates, from the informers -------------------------------------------------------------

    def set_service(self, service: dict[str, Any]) -> None:
        meta = service["metadata"]
        self.services[f"{meta.get('namespace', '')}/{meta['name']}"] = service

    def drop_service(self, service: dict[str, Any]) -> None:
        meta = service["metadata"]
        self.services.pop(f"{meta.get('namespace', '')}/{meta['name']}", None)

    @staticmethod
    def _slice_owner(slice_: dict[str, Any]) -> str | None:
        meta = slice_["metadata"]
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        return f"{meta.get('namespace', '')}/{name}" if name else None

    def set_slice(self, slice_: dict[str, Any]) -> None:
        owner = self._slice_owner(slice_)
        if owner is not None:
            self.slices.setdefault(owner, {})[slice_["metadata"]["name"]] = slice_

    def drop_slice(self, slice_: dict[str, Any]) -> None:
        owner = self._slice_owner(slice_)
        if owner is not None:
            self.slices.get(owner, {}).pop(slice_["metadata"]["name"], None)

    # -- reads -----------------------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.services.get(f"{namespace}/{name}")

    def endpoints(self, key: str) -> list[Endpoint]:
        """The ready endpoints of Service *key*, each address once, in a stable order."""
        found: dict[str, Endpoint] = {}
        for slice_ in sorted(self.slices.get(key, {}).values(), key=lambda s: s["metadata"]["name"]):
            if slice_.get("addressType", "IPv4") != "IPv4":
                continue
            ports = tuple(
                (p.get("name") or "", int(p["port"]), p.get("protocol") or "TCP")
                for p in slice_.get("ports") or ()
                if isinstance(p.get("port"), int)
            )
            for endpoint in slice_.get("endpoints") or ():
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                for ip in endpoint.get("addresses") or ():
                    previous = found.get(ip)
                    merged = (previous.ports if previous else ()) + ports
                    found[ip] = Endpoint(ip, endpoint.get("hostname") or "", merged)
        return list(found.values())

    def frontends(self) -> Iterator[Frontend]:
        """Every ``clusterIP:port/protocol`` with its ready backends (those without any too: they refuse)."""
        for key, service in sorted(self.services.items()):
            spec = service.get("spec") or {}
            ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
            if not ips or spec.get("type") == "ExternalName":
                continue
            affinity = 0
            if spec.get("sessionAffinity") == "ClientIP":
                config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP")) or {}
                affinity = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_S)
            endpoints = self.endpoints(key)
            for port in spec.get("ports") or ():
                number, protocol, name = port.get("port"), port.get("protocol") or "TCP", port.get("name") or ""
                if not isinstance(number, int) or protocol not in PROTOCOLS:
                    continue  # SCTP: the sandbox carries TCP and UDP only
                backends = tuple(
                    sorted(
                        (e.ip, p)
                        for e in endpoints
                        for pname, p, pproto in e.ports
                        if pname == name and pproto == protocol
                    )
                )
                for ip in ips:
                    yield Frontend(key, name, ip, number, protocol, backends, affinity)
