"""A pod's in-cluster files, as the kubelet and containerd write them on a node: the ServiceAccount's
``kube-api-access`` volume, ``resolv.conf``, ``hosts`` and ``hostname``.

**kube-api-access.** Upstream's ServiceAccount admission plugin gives every pod (unless
``automountServiceAccountToken: false``) a projected volume mounted at :data:`SA_MOUNT_PATH`
(plugin/pkg/admission/serviceaccount/admission.go: ``DefaultAPITokenMountPath``) with three files: ``token``, a
bound token the kubelet requests with a TokenRequest (``expirationSeconds: 3607``, bound to the pod) and replaces
once 80 % of its life is gone (pkg/kubelet/token/token_manager.go ``requiresRefresh``), ``ca.crt`` from the
``kube-root-ca.crt`` ConfigMap and ``namespace``. Here the kubelet writes the same three files under the pod's
directory (``var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~projected/kube-api-access``): the token is a real
TokenRequest answer from the API server (the node may ask: upstream's ``system:node`` role has ``create`` on
``serviceaccounts/token``); ``ca.crt`` is the cluster CA the node itself trusts [mapped: the sandbox publishes no
``kube-root-ca.crt`` ConfigMap]. The sandbox's admission adds no such volume to the pod object, so the kubelet
writes it for the containers that use it (native ones; wasm pods do not get it yet), and a ServiceAccount's own
``automountServiceAccountToken`` is not consulted, only the pod's.

**DNS.** For ``dnsPolicy: ClusterFirst`` (the default) the kubelet makes the resolv.conf a pod gets on k3s
(pkg/kubelet/network/dns/dns.go): ``nameserver <cluster DNS>``, ``search <ns>.svc.cluster.local
svc.cluster.local cluster.local`` and ``options ndots:5``; ``Default`` copies the node's resolver (the
machine's ``/etc/resolv.conf``), ``None`` takes only ``dnsConfig``, whose nameservers, searches and options are
added to the others'. containerd keeps the file with the sandbox (``…/io.containerd.grpc.v1.cri/sandboxes/<id>``;
here the id is the pod's uid), the kubelet writes ``etc-hosts`` in the pod's directory.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.fsutil import write_atomic
from labkit.sandbox.kubeclient.https import ApiError, resource_path
from labkit.sandbox.kubelet.failures import ContainerFailure
from labkit.sandbox.netmap import CLUSTER_DNS_IP, CLUSTER_DOMAIN, plan, slot_of

if TYPE_CHECKING:
    from labkit.sandbox.kubeclient.https import KubeClient

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
API_ACCESS_VOLUME = "kube-api-access"
#: the projected token's lifetime the admission plugin sets, and when the kubelet's token manager renews it
TOKEN_SECONDS, REFRESH_AT = 3607, 0.8
CRI_SANDBOXES = "var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri/sandboxes"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
#: glibc's limits, which the kubelet enforces too (pkg/kubelet/network/dns: validation of dnsConfig)
MAX_NAMESERVERS, MAX_SEARCHES = 3, 32


def pod_dir(node_root: Path, uid: str) -> Path:
    return node_root / "var/lib/kubelet/pods" / uid


def resolv_conf(pod: dict[str, Any], host_conf: str = "", dns_ip: str = CLUSTER_DNS_IP) -> str:
    """The pod's resolv.conf text for its ``dnsPolicy`` and ``dnsConfig``; the cluster DNS is at *dns_ip*
    (the kube-dns Service of the pod's address slot).

    >>> print(resolv_conf({"metadata": {"namespace": "lab"}, "spec": {}}), end="")
    search lab.svc.cluster.local svc.cluster.local cluster.local
    nameserver 127.43.0.10
    options ndots:5
    """
    spec = pod["spec"]
    ns = pod["metadata"].get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if spec.get("hostNetwork") and policy == "ClusterFirst":
        policy = "Default"  # dns.go: ClusterFirst with hostNetwork falls back to Default
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        nameservers = [dns_ip]
        searches = [f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]
        options = {"ndots": "5"}
    elif policy == "Default":
        for line in host_conf.splitlines():
            words = line.split()
            if len(words) > 1 and words[0] == "nameserver":
                nameservers.append(words[1])
            elif words and words[0] in ("search", "domain"):
                searches = words[1:]
            elif words and words[0] == "options":
                options.update(_option(w) for w in words[1:])
    config = spec.get("dnsConfig") or {}
    nameservers += [n for n in config.get("nameservers") or () if n not in nameservers]
    searches += [s for s in config.get("searches") or () if s not in searches]
    options.update({o["name"]: o.get("value") for o in config.get("options") or () if o.get("name")})
    lines = []
    if searches:
        lines.append("search " + " ".join(searches[:MAX_SEARCHES]))
    lines += [f"nameserver {n}" for n in nameservers[:MAX_NAMESERVERS]]
    if options:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


def _option(word: str) -> tuple[str, str | None]:
    name, sep, value = word.partition(":")
    return name, value if sep else None


@dataclass(frozen=True)
class PodFiles:
    """Where a pod's in-cluster files are on the node; ``api_access`` is None when the pod opts out."""

    api_access: Path | None
    resolv_conf: Path
    hosts: Path
    hostname: Path

    def mapped_paths(self) -> dict[str, str]:
        """Container path -> node path, for the runtime to show the container these files where a pod has them."""
        paths = {"/etc/resolv.conf": str(self.resolv_conf), "/etc/hosts": str(self.hosts)}
        paths["/etc/hostname"] = str(self.hostname)
        if self.api_access is not None:
            paths[SA_MOUNT_PATH] = str(self.api_access)
            paths[SA_MOUNT_PATH.removeprefix("/var")] = str(self.api_access)  # /var/run is a link to /run
        return paths


class PodFileWriter:
    """Writes and refreshes the in-cluster files of the pods of one node."""

    def __init__(self, client: KubeClient, node_root: Path, ca_file: Path) -> None:
        self.client, self.node_root, self.ca_file = client, node_root, ca_file
        #: pod uid -> (the token's issue time, its expiry), both time.time() seconds
        self._tokens: dict[str, tuple[float, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _paths(self, pod: dict[str, Any]) -> PodFiles:
        uid = pod["metadata"]["uid"]
        base = pod_dir(self.node_root, uid)
        automount = pod["spec"].get("automountServiceAccountToken")
        access = base / "volumes/kubernetes.io~projected" / API_ACCESS_VOLUME
        sandbox = self.node_root / CRI_SANDBOXES / uid
        return PodFiles(
            None if automount is False else access, sandbox / "resolv.conf", base / "etc-hosts", sandbox / "hostname"
        )

    async def ensure(self, pod: dict[str, Any], pod_ip: str) -> PodFiles:
        """Write the pod's files (the token only when missing or due for renewal); they are read-only to the pod."""
        self._loop = asyncio.get_running_loop()
        files = self._paths(pod)
        uid = pod["metadata"]["uid"]
        token: tuple[str, float] | None = None
        if files.api_access is not None and self.due(uid):
            token = await self._request_token(pod)
        await asyncio.to_thread(self._write, files, pod, pod_ip, token[0] if token else None)
        if token is not None:
            self._tokens[uid] = (time.time(), token[1])
        return files

    def _write(self, files: PodFiles, pod: dict[str, Any], pod_ip: str, token: str | None) -> None:
        meta = pod["metadata"]
        name = meta["name"]
        host_conf = HOST_RESOLV_CONF.read_text() if HOST_RESOLV_CONF.is_file() else ""
        dns_ip = plan(slot_of(pod_ip) or 0).cluster_dns_ip  # the kube-dns Service of the pod's address slot
        write_atomic(files.resolv_conf, resolv_conf(pod, host_conf, dns_ip), make_parents=True)
        write_atomic(files.hostname, f"{name}\n", make_parents=True)
        hosts = (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{pod_ip}\t{name}\n"
        )
        write_atomic(files.hosts, hosts, make_parents=True)
        if files.api_access is not None and token is not None:
            write_atomic(files.api_access / "token", token, make_parents=True)
            write_atomic(files.api_access / "ca.crt", self.ca_file.read_bytes())
            write_atomic(files.api_access / "namespace", meta.get("namespace") or "default")

    def refresh_soon(self, pod: dict[str, Any], pod_ip: str) -> None:
        """From any thread: renew the pod's token on the kubelet's loop if it is due (a running container's tick)."""
        if self._loop is not None and self.due(pod["metadata"]["uid"]):
            asyncio.run_coroutine_threadsafe(self.ensure(pod, pod_ip), self._loop)

    def due(self, uid: str) -> bool:
        """Whether the pod's token is missing or has lived 80 % of its life."""
        issued = self._tokens.get(uid)
        return issued is None or time.time() >= issued[0] + (issued[1] - issued[0]) * REFRESH_AT

    def forget(self, uid: str) -> None:
        self._tokens.pop(uid, None)

    async def _request_token(self, pod: dict[str, Any]) -> tuple[str, float]:
        meta = pod["metadata"]
        ns, account = meta.get("namespace") or "default", pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            answer = await self.client.create(resource_path("v1", "serviceaccounts", ns, account, "token"), body)
        except ApiError as err:
            # the kubelet's words when the projected volume cannot get its token (it stays ContainerCreating)
            why = err.status.get("message") or err.problem
            raise ContainerFailure(
                f'MountVolume.SetUp failed for volume "{API_ACCESS_VOLUME}" : failed to fetch token: {why}',
                "CreateContainerConfigError",
            ) from None
        seconds = (answer.get("spec") or {}).get("expirationSeconds") or TOKEN_SECONDS
        return answer["status"]["token"], time.time() + float(seconds)
