"""The Service environment variables the kubelet gives every container, wasm or native.

As upstream's kubelet (pkg/kubelet/kubelet_pods.go ``getServiceEnvVarMap``, pkg/kubelet/envvars/envvars.go
``FromServices``): the ``kubernetes`` Service of the ``default`` namespace always, and, when the pod's
``enableServiceLinks`` is true (the default), every Service of the pod's namespace, a Service there of the same
name winning. Services without a cluster IP (headless, ExternalName) are left out. For each Service
``my-svc`` with ports ``[{name: http, port: 80}]`` at ``10.43.0.5``::

    MY_SVC_SERVICE_HOST=10.43.0.5   MY_SVC_SERVICE_PORT=80   MY_SVC_SERVICE_PORT_HTTP=80
    MY_SVC_PORT=tcp://10.43.0.5:80  MY_SVC_PORT_80_TCP=tcp://10.43.0.5:80
    MY_SVC_PORT_80_TCP_PROTO=tcp    MY_SVC_PORT_80_TCP_PORT=80   MY_SVC_PORT_80_TCP_ADDR=10.43.0.5

The ports are the Service's own (443, 53): a sandbox client translates them on the wire (``netmap.host_port``).

>>> svc = {"metadata": {"name": "my-svc", "namespace": "lab"},
...        "spec": {"clusterIP": "127.43.0.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
>>> service_env([svc], "lab", True)["MY_SVC_PORT_80_TCP"]
'tcp://127.43.0.5:80'
>>> service_env([svc], "other", True)
{}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: the Services every pod sees whatever its namespace (upstream's ``masterServices``)
MASTER_SERVICES = ("kubernetes",)


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()  # envvars.go makeEnvVariableName


def _ip_set(service: dict[str, Any]) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _join(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"  # net.JoinHostPort


def from_services(services: Iterable[dict[str, Any]]) -> dict[str, str]:
    """``FromServices``: the variables of each Service that has a cluster IP."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ports = spec.get("ports") or []
        if not _ip_set(service) or not ports:
            continue
        ip, prefix = spec["clusterIP"], _env_name(service["metadata"]["name"])
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
        for i, port in enumerate(ports):  # makeLinkVariables: Docker's link variables
            protocol = port.get("protocol") or "TCP"
            url = f"{protocol.lower()}://{_join(ip, port['port'])}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = protocol.lower()
            env[f"{port_prefix}_PORT"] = str(port["port"])
            env[f"{port_prefix}_ADDR"] = ip
    return env


def service_env(services: Iterable[dict[str, Any]], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """``getServiceEnvVarMap`` for a pod in *namespace*."""
    chosen: dict[str, dict[str, Any]] = {}
    for service in services:
        if not _ip_set(service):
            continue
        meta = service["metadata"]
        name = meta["name"]
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = service
    return from_services(chosen[name] for name in sorted(chosen))
