"""The service report: each Service's type, ClusterIP and ports, and its ready and not-ready endpoint addresses
from the EndpointSlices the endpoint controller keeps for it (``kubernetes.io/service-name=<service>``).

>>> report = service_report(cluster, namespace="lab-06")        # doctest: +SKIP
>>> report.service("demo").ready                                 # doctest: +SKIP
['10.42.0.7']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.reports import render, sources
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.cluster import Cluster

#: The label an EndpointSlice carries naming its Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def describe_port(port: dict[str, Any]) -> str:
    """A Service port as ``[name: ]port[:nodePort]→targetPort/protocol``.

    >>> describe_port({"port": 80, "targetPort": 8080, "protocol": "TCP"})
    '80→8080/TCP'
    >>> describe_port({"name": "http", "port": 80, "nodePort": 30080, "targetPort": "web"})
    'http: 80:30080→web/TCP'
    """
    text = f"{port.get('port')}" + (f":{port['nodePort']}" if port.get("nodePort") else "")
    text += f"→{port.get('targetPort', port.get('port'))}/{port.get('protocol') or 'TCP'}"
    return f"{port['name']}: {text}" if port.get("name") else text


@dataclass
class Endpoint:
    """One endpoint address of a Service: the pod behind it, its node, conditions and the slice's ports."""

    service: str
    address: str
    pod: str
    node: str
    ready: bool
    serving: bool
    terminating: bool
    ports: str


@dataclass
class ServiceInfo:
    """One Service: ``ports`` as :func:`describe_port` words them; ``endpoints`` from its EndpointSlices."""

    name: str
    type: str
    cluster_ip: str
    ports: list[str]
    selector: str
    endpoints: list[Endpoint]

    @property
    def ready(self) -> list[str]:
        """The addresses that receive traffic."""
        return [e.address for e in self.endpoints if e.ready]

    @property
    def not_ready(self) -> list[str]:
        return [e.address for e in self.endpoints if not e.ready]


@dataclass
class ServiceReport(render.Rendered):
    """The Services of a namespace (or those a label selector picks), at one moment (``taken_at``)."""

    namespace: str
    selector: str | None
    taken_at: str
    services: list[ServiceInfo]

    def service(self, name: str) -> ServiceInfo:
        """The Service called *name* (``KeyError`` naming the Services there are)."""
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"no Service {name!r} in this report (it has: {', '.join(s.name for s in self.services)})")

    def problems(self) -> list[str]:
        """Services with a selector but no ready endpoint: traffic to them fails."""
        return [
            f"service {s.name}: no ready endpoint ({len(s.not_ready)} not ready)"
            for s in self.services
            if s.selector and s.type != "ExternalName" and not s.ready
        ]

    def document(self) -> render.Document:
        where = self.namespace + (f", {self.selector}" if self.selector else "")
        ready = sum(len(s.ready) for s in self.services)
        not_ready = sum(len(s.not_ready) for s in self.services)
        facts = (
            ("namespace", self.namespace),
            ("services", self.selector or "all"),
            ("taken at", self.taken_at),
            ("summary", f"{len(self.services)} services, {ready} ready endpoints, {not_ready} not ready"),
        )
        services = render.Table(
            "Services",
            ("service", "type", "cluster IP", "ports", "selector", "ready endpoints", "not-ready endpoints"),
            tuple(
                (
                    s.name,
                    s.type,
                    s.cluster_ip,
                    ", ".join(s.ports) or "-",
                    s.selector or "<none>",
                    ", ".join(s.ready) or "-",
                    ", ".join(s.not_ready) or "-",
                )
                for s in self.services
            ),
            empty=f"no Services in {where}",
        )
        endpoints = render.Table(
            "Endpoints (EndpointSlices)",
            ("service", "address", "pod", "node", "ready", "serving", "terminating", "ports"),
            tuple(
                (e.service, e.address, e.pod, e.node, _yes(e.ready), _yes(e.serving), _yes(e.terminating), e.ports)
                for s in self.services
                for e in s.endpoints
            ),
            empty="no endpoints",
        )
        return render.Document(f"Services: {where}", facts, (services, endpoints))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _endpoints(service: str, slices: list[dict[str, Any]]) -> list[Endpoint]:
    out = []
    for piece in slices:
        ports = ", ".join(
            (f"{p['name']}: " if p.get("name") else "") + f"{p.get('port')}/{p.get('protocol') or 'TCP'}"
            for p in piece.get("ports") or []
        )
        for ep in piece.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ref = ep.get("targetRef") or {}
            ready = cond.get("ready") is not False  # EndpointConditions: an unset ready means ready
            for address in ep.get("addresses") or []:
                out.append(
                    Endpoint(
                        service,
                        address,
                        ref.get("name") or "-",
                        ep.get("nodeName") or "-",
                        ready,
                        cond.get("serving", ready) is not False,
                        bool(cond.get("terminating")),
                        ports or "-",
                    )
                )
    return sorted(out, key=lambda e: (not e.ready, e.address))


def build(
    namespace: str,
    selector: str | None,
    services: list[dict[str, Any]],
    slices: list[dict[str, Any]],
    taken_at: str | None = None,
) -> ServiceReport:
    """The report from the Services and EndpointSlices the API returned (dicts); pure."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for piece in slices:
        name = ((piece.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            by_service.setdefault(name, []).append(piece)
    out = []
    for svc in services:
        spec, name = svc.get("spec") or {}, svc["metadata"]["name"]
        kind = spec.get("type") or "ClusterIP"
        out.append(
            ServiceInfo(
                name=name,
                type=kind,
                cluster_ip=(spec.get("externalName") or "-")
                if kind == "ExternalName"
                else spec.get("clusterIP") or "-",
                ports=[describe_port(p) for p in spec.get("ports") or []],
                selector=",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())),
                endpoints=_endpoints(name, by_service.get(name, [])),
            )
        )
    return ServiceReport(namespace, selector, taken_at or format_rfc3339(), out)


def service_report(cluster: Cluster, selector: str | None = None, *, namespace: str) -> ServiceReport:
    """Each Service in *namespace* (or those labelled *selector*): type, ClusterIP (the external name of an
    ExternalName Service), ports (``port→targetPort/protocol``) and its ready / not-ready endpoint addresses
    from EndpointSlices. An unknown namespace raises :class:`~labkit.errors.LabkitError` naming the fix.

    >>> print(service_report(cluster, namespace="lab-06").to_markdown())    # doctest: +SKIP
    ### Services: lab-06
    ...
    """
    sources.require_namespace(cluster, namespace)
    found = sources.services(cluster, namespace, selector)
    slices = sources.endpoint_slices(cluster, namespace) if found else []
    return build(namespace, selector, found, slices)
