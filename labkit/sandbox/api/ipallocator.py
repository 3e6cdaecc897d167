"""Service ClusterIPs, allocated as the API server's service IP allocator does on create.

The addresses are loopback ones the sandbox can really listen on, shaped like k3s's 10.43.0.0/16
service CIDR: ``.1`` is the ``kubernetes`` service and ``.10`` the cluster DNS, as on k3s
(:mod:`labkit.sandbox.netmap`), in the Service range of the sandbox's address slot.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError, invalid

if TYPE_CHECKING:
    from labkit.sandbox.api.store import Store

from labkit.sandbox.netmap import CLUSTER_DNS_IP as CLUSTER_DNS_IP
from labkit.sandbox.netmap import KUBERNETES_SERVICE_IP as KUBERNETES_SERVICE_IP
from labkit.sandbox.netmap import AddressPlan, plan, slot_of

SERVICES = RESOURCES.served("", "services")


def _failed(name: str, wanted: str, why: str) -> StatusError:
    cause = {
        "reason": "FieldValueInvalid",
        "field": "spec.clusterIPs",
        "message": f'Invalid value: []string{{"{wanted}"}}: failed to allocate IP {wanted}: {why}',
    }
    return invalid(SERVICES, name, [cause])


def allocate_cluster_ip(store: Store, service: dict[str, Any], addresses: AddressPlan | None = None) -> None:
    """Give ``service`` its ``spec.clusterIP(s)``: the one it asks for if free and in range, else the next
    free address; a headless service (``clusterIP: None``) gets none."""
    addresses = addresses or plan(0)
    service_cidr = addresses.service_cidr
    reserved = (addresses.kubernetes_service_ip, addresses.cluster_dns_ip)
    spec = service.setdefault("spec", {})
    if spec.get("clusterIP") == "None":
        spec["clusterIPs"] = ["None"]
        return
    used = {s.get("spec", {}).get("clusterIP") for s in store.list(SERVICES, None)[0]}
    wanted = spec.get("clusterIP")
    name = service.get("metadata", {}).get("name", "")
    if wanted:
        if ipaddress.ip_address(wanted) not in service_cidr:
            raise _failed(
                name,
                wanted,
                f"the provided IP ({wanted}) is not in the valid range. The range of valid IPs is {service_cidr}",
            )
        if wanted in used:
            raise _failed(name, wanted, "provided IP is already allocated")
    else:
        for host in service_cidr.hosts():
            ip = str(host)
            if ip not in used and host.packed[-1] not in (0, 255) and ip not in reserved:
                wanted = ip
                break
    spec["clusterIP"], spec["clusterIPs"] = wanted, [wanted]


def move_cluster_ips(store: Store, addresses: AddressPlan) -> int:
    """Move every Service whose ClusterIP lies in another slot's range into *addresses*' range, keeping
    its host part (``127.43.0.7`` -> ``127.45.0.7``): the sandbox restarted in another address slot. Returns
    how many moved. (A real cluster never changes its service CIDR under its Services; the sandbox's slot
    is its machine's choice, not the learner's.)"""
    moved = 0
    prefix = str(addresses.service_cidr.network_address).split(".")[:2]
    for service in store.list(SERVICES, None)[0]:
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or slot_of(ip) in (None, addresses.slot):
            continue
        new = ".".join([*prefix, *ip.split(".")[2:]])
        spec["clusterIP"], spec["clusterIPs"] = new, [new]
        store.update(SERVICES, service, check_rv=False)
        moved += 1
    return moved
