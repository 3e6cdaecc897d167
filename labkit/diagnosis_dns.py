"""The DNS rows of :mod:`labkit.diagnosis`: name resolution inside wasm pods (wasmedge_wasi_socket's
``nslookup`` and ``DNS_SERVER``; WasmEdge #1987, #4155).

A wasm guest resolves through wasmedge_wasi_socket: without ``DNS_SERVER`` the runtime's ``getaddrinfo`` (the
node's resolver, which knows no cluster names); with it, one A query over TCP to that server for the name as
given (no search domains). The rows tell apart: no ``DNS_SERVER``, a short name, an unreachable server, and an
old ``tokio_wasi`` that never reads ``DNS_SERVER``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from labkit.errors import Diagnosis

if TYPE_CHECKING:
    from labkit.podfacts import Facts


#: Resolver failures as wasm guests print them: wasmedge_wasi_socket's AINODATA (83) and AISYSTEM (85) codes,
#: the Rust std and reqwest wordings, and the kit's apps (wasm-apps/nslookup, http-get: "nslookup: <name>: …").
_KIT_APP = r"(?:nslookup|http-get): "
_DNS_FAILED = rf"os error 8[35]|code: 8[35]\b|failed to lookup address|dns error|{_KIT_APP}\S+: .*os error 8\d"
#: The DNS server itself not answering: nothing listening, a wrong address, UDP-only, or a malformed value.
_DNS_UNREACHABLE = rf"DNS_SERVER=\S*: invalid socket address|{_KIT_APP}\S+: (Connection refused|.*timed out)"
_CLUSTER_SUFFIX = ".svc.cluster.local"


def _dns_server(f: Facts) -> str | None:
    """The ``DNS_SERVER`` a container of the pod sets, if any (wasmedge_wasi_socket reads only this)."""
    for c in f.containers:
        for env in c.get("env") or ():
            if env.get("name") == "DNS_SERVER":
                return str(env.get("value") or "")
    return None


def _looked_up(hits: list[str]) -> str | None:
    """The name a failed lookup asked for, where the guest printed it (the kit's nslookup does)."""
    for line in hits:
        found = re.search(_KIT_APP + r"([^:\s]+):", line)
        if found:
            return found.group(1)
    return None


_FQDN_FIX = "call Services by their FQDN <service>.<namespace>.svc.cluster.local"


def server_unreachable(f: Facts) -> Diagnosis | None:
    server, hits = _dns_server(f), f.find(_DNS_UNREACHABLE)
    if server is None or not hits:
        return None
    return Diagnosis(
        f"the wasm pod cannot reach its DNS server DNS_SERVER={server}",
        "with DNS_SERVER set, wasmedge_wasi_socket's resolver opens a TCP connection to that ip:port and "
        "asks there only; nothing answered (a wrong address or port, or a server without TCP)",
        "set DNS_SERVER to the cluster DNS Service's ClusterIP and port 53 (kubectl get svc -n kube-system "
        "kube-dns -o jsonpath='{.spec.clusterIP}'; k3s: 10.43.0.10:53); CoreDNS serves TCP 53 as well as UDP",
        hits[:3],
        "dns-server-unreachable",
    )


def short_name(f: Facts) -> Diagnosis | None:
    server, hits = _dns_server(f), f.find(_DNS_FAILED)
    name = _looked_up(hits)
    if not server or not hits or name is None or "." in name:
        return None
    return Diagnosis(
        f"the wasm pod looked up the short name {name!r}, which no search domain completes",
        "wasmedge_wasi_socket sends the name to DNS_SERVER as it is: it reads no resolv.conf, so there are no "
        "search domains (a native pod's resolver would try <name>.<namespace>.svc.cluster.local first)",
        f"{_FQDN_FIX}, e.g. {name}.<namespace>{_CLUSTER_SUFFIX}",
        hits[:3],
        "dns-short-name",
    )


def server_ignored(f: Facts) -> Diagnosis | None:
    server, hits = _dns_server(f), f.find(r"os error 85|dns error")
    if not server or not hits:
        return None
    return Diagnosis(
        "name resolution fails although DNS_SERVER is set",
        "an older tokio_wasi (and the reqwest built on it) resolves through the host's getaddrinfo and never reads "
        "DNS_SERVER (second-state/microservice-rust-mysql #23; the seed's fix, WasmEdge #4155)",
        "build against a recent tokio_wasi (git WasmEdge/tokio, branch master, features full) and keep DNS_SERVER "
        "and the FQDN; or skip DNS: the <SERVICE>_SERVICE_HOST/_PORT env vars of Services older than the pod",
        hits[:3],
        "dns-server-ignored",
    )


def failure(f: Facts) -> Diagnosis | None:
    hits = f.find(_DNS_FAILED)
    if not hits:
        return None
    return Diagnosis(
        "name resolution fails inside the wasm pod",
        "the guest's resolver uses the runtime's getaddrinfo (the host's view), not the pod's resolv.conf; "
        "with DNS_SERVER it queries that server over TCP but knows no search domains",
        "set env DNS_SERVER=<cluster DNS IP>:53 (k3s: 10.43.0.10:53; labkit: cluster.profile.cluster_dns) and "
        + _FQDN_FIX,
        [*hits[:3]],
        "dns-failure",
    )
