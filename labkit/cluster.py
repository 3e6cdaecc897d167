"""Connect to a lab cluster: the embedded sandbox or a kubeconfig context.

Every cluster action goes through the official ``kubernetes`` client, on both
backends; the only difference is where the kubeconfig comes from.

>>> cluster = connect()                          # doctest: +SKIP
>>> [n["name"] for n in cluster.nodes()]         # doctest: +SKIP
['sandbox-node-1']
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import kubernetes.client
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException

from labkit import config
from labkit.config import KUBECTL_INSTALL_FIX, LAB_LABEL, PART_OF_LABEL, PART_OF_VALUE
from labkit.errors import (
    ApiError,
    ClusterUnreachable,
    ContextNotAllowed,
    LabkitError,
    PrerequisiteMissing,
    SandboxError,
)
from labkit.profiles import Profile, profile_for
from labkit.sandbox import client

#: Seconds to wait for the API server in health calls: a dead cluster must fail fast.
PING_TIMEOUT_S = 5.0

T = TypeVar("T")

_SANDBOX_FIX = "start it with `labkit sandbox up`; if it does not come up, read `labkit sandbox logs`"


def api_call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Call a kubernetes client method, turning its failures into labkit errors.

    An ``ApiException`` becomes :class:`ApiError` carrying the server's Status;
    a connection failure becomes :class:`ClusterUnreachable`.

    >>> api_call(cluster.core.read_namespace, "default")   # doctest: +SKIP
    """
    try:
        return fn(*args, **kw)
    except ApiException as e:
        raise ApiError(_status_of(e)) from e
    except urllib3.exceptions.HTTPError as e:
        pool = getattr(e, "pool", None)
        where = f" at {pool.scheme}://{pool.host}:{pool.port}" if pool is not None else ""
        # MaxRetryError wraps the real cause, whose text starts with the connection's repr: keep the words after it.
        reason = re.sub(r"^(<[^>]*>|\w+\([^)]*\)): ", "", str(getattr(e, "reason", None) or e))
        raise ClusterUnreachable(
            f"the Kubernetes API server{where} did not answer: {reason}",
            "check that the cluster is running and that the kubeconfig's server URL is right (`labkit doctor`)",
        ) from e


def _status_of(e: ApiException) -> dict[str, Any]:
    """The Status object in an ApiException's body, or one built from its HTTP status line."""
    try:
        body = json.loads(e.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return body
    message = e.body if isinstance(e.body, str) and e.body.strip() else e.reason
    return {"kind": "Status", "status": "Failure", "code": e.status, "reason": e.reason or "", "message": message}


@dataclass(frozen=True)
class ObjectRef:
    """One object found by :meth:`Cluster.labelled_objects`."""

    kind: str
    name: str
    namespace: str | None
    path: str  # the object's API path, used to delete it

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}" + (f" (namespace {self.namespace})" if self.namespace else "")


# (kind, API group/version path, plural, namespaced) in deletion order: namespaces first
# (deleting one removes its contents), then namespaced leftovers elsewhere, then cluster-wide kinds.
_CLEANABLE = (
    ("Namespace", "api/v1", "namespaces", False),
    ("Deployment", "apis/apps/v1", "deployments", True),
    ("Job", "apis/batch/v1", "jobs", True),
    ("Service", "api/v1", "services", True),
    ("Pod", "api/v1", "pods", True),
    ("ConfigMap", "api/v1", "configmaps", True),
    ("Secret", "api/v1", "secrets", True),
    ("ServiceAccount", "api/v1", "serviceaccounts", True),
    ("RoleBinding", "apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("Role", "apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("ClusterRoleBinding", "apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    ("ClusterRole", "apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("RuntimeClass", "apis/node.k8s.io/v1", "runtimeclasses", False),
)


@dataclass(frozen=True)
class NodeKill:
    """What :meth:`Cluster.kill_node` did: whether node *name* was killed, and a sentence saying so."""

    name: str
    killed: bool
    message: str

    def __str__(self) -> str:
        return self.message


class Cluster:
    """A connected lab cluster: typed API groups plus the kubeconfig for ``kubectl``.

    Build it with :func:`connect`, not directly.
    """

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, backend: str, context: str, kubeconfig: Path
    ) -> None:
        self.api_client = api_client
        self.backend = backend
        self.context = context
        self.kubeconfig = kubeconfig
        self.profile: Profile = profile_for(backend)

    def __repr__(self) -> str:
        return f"<Cluster backend={self.backend} context={self.context} server={self.server}>"

    @property
    def server(self) -> str:
        """The API server URL, e.g. ``https://127.0.0.1:6443``."""
        return str(self.api_client.configuration.host)

    @cached_property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.api_client)

    @cached_property
    def batch(self) -> kubernetes.client.BatchV1Api:
        return kubernetes.client.BatchV1Api(self.api_client)

    @cached_property
    def node(self) -> kubernetes.client.NodeV1Api:
        return kubernetes.client.NodeV1Api(self.api_client)

    @cached_property
    def rbac(self) -> kubernetes.client.RbacAuthorizationV1Api:
        return kubernetes.client.RbacAuthorizationV1Api(self.api_client)

    def _unreachable_fix(self) -> str:
        if self.backend == "sandbox":
            return _SANDBOX_FIX
        return (
            f"start the cluster (k3s: `sudo systemctl start k3s`) or fix the server URL of context "
            f"{self.context!r} in {self.kubeconfig}"
        )

    def version(self) -> dict[str, str]:
        """The server's version info, e.g. ``{"gitVersion": "v1.32.0+k3s1", "major": "1", ...}``."""
        try:
            info = api_call(kubernetes.client.VersionApi(self.api_client).get_code, _request_timeout=PING_TIMEOUT_S)
        except ClusterUnreachable as e:  # same problem, with the fix for this backend
            raise ClusterUnreachable(e.problem, self._unreachable_fix()) from e
        version: dict[str, str] = self.api_client.sanitize_for_serialization(info)  # type: ignore[no-untyped-call]
        return {k: v for k, v in version.items() if v}

    def ping(self) -> str:
        """Raise :class:`ClusterUnreachable` unless the API server answers within 5 s; return its version."""
        return self.version()["gitVersion"]

    def nodes(self) -> list[dict[str, Any]]:
        """One dict per node: ``name``, ``ready`` (bool), ``roles``, ``version`` (kubelet), ``runtime``."""
        items = api_call(self.core.list_node, _request_timeout=PING_TIMEOUT_S).items
        return [_node_summary(n) for n in items]

    def labelled_objects(self, lab: str | None = None) -> list[ObjectRef]:
        """Every object labelled ``app.kubernetes.io/part-of=labkit`` (and ``labkit.io/lab=<lab>``).

        Objects inside a labelled namespace are left out: deleting the namespace removes them.
        """
        selector = f"{PART_OF_LABEL}={PART_OF_VALUE}" + (f",{LAB_LABEL}={lab}" if lab else "")
        found: list[ObjectRef] = []
        for kind, gv, plural, namespaced in _CLEANABLE:
            listing = self._get(f"/{gv}/{plural}", labelSelector=selector)
            for item in listing.get("items") or []:
                meta = item["metadata"]
                ns = meta.get("namespace") if namespaced else None
                if ns and any(o.kind == "Namespace" and o.name == ns for o in found):
                    continue
                prefix = f"/{gv}/namespaces/{ns}" if ns else f"/{gv}"
                found.append(ObjectRef(kind, meta["name"], ns, f"{prefix}/{plural}/{meta['name']}"))
        return found

    def delete_object(self, ref: ObjectRef) -> None:
        """Delete one object found by :meth:`labelled_objects` (its dependents go in the background)."""
        try:
            self._raw("DELETE", ref.path, propagationPolicy="Background")
        except ApiError as e:
            if e.code != 404:  # already gone is what we wanted
                raise

    def _get(self, path: str, **query: str) -> dict[str, Any]:
        return self._raw("GET", path, **query)

    def _raw(self, method: str, path: str, **query: str) -> dict[str, Any]:
        """One request by API path, answered as plain JSON (for kinds picked at run time)."""
        request = self.api_client.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )

        def send() -> dict[str, Any]:
            response = self.api_client.call_api(*request, _request_timeout=30)
            response.read()  # type: ignore[no-untyped-call]
            # the client annotates .data by the first type it might be; the "object" type makes it a dict
            return cast("dict[str, Any]", self.api_client.response_deserialize(response, {"2XX": "object"}).data)

        return api_call(send)

    def kill_node(self, name: str) -> NodeKill:
        """Take node *name* down abruptly, as a power cut would; what was done (``killed``, and a message).

        On the sandbox its node process is SIGKILLed and its pods die with it (``connect(..., nodes=N)`` or
        ``labkit sandbox up`` starts it again). labkit reaches other clusters only through their API, so there it
        kills nothing and says how: on a k3s node, stopping the service leaves its containers running
        (k3s-io/k3s docs/upgrades/killall.md), so only ``k3s-killall.sh`` or a power-off takes the pods too.

        >>> print(cluster.kill_node("labkit-agent-1"))   # doctest: +SKIP
        node labkit-agent-1: its process (pid 4242) was killed with SIGKILL, and its pods with it
        """
        if self.backend != "sandbox":
            return NodeKill(
                name,
                False,
                f"node {name}: not killed (labkit reaches this cluster only through its API); to lose it, power it "
                "off or run `sudo /usr/local/bin/k3s-killall.sh` on it",
            )
        pid = client.kill_node(name)
        return NodeKill(
            name, True, f"node {name}: its process (pid {pid}) was killed with SIGKILL, and its pods with it"
        )

    def kubectl_env(self) -> dict[str, str]:
        """The environment for a subprocess that should talk to this cluster (``KUBECONFIG`` set).

        kubectl has no variable for the context, so ``LABKIT_CONTEXT``/``LABKIT_BACKEND``
        tell labkit subprocesses; pass ``--context`` to kubectl (``kubectl()`` does).
        """
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LABKIT_CONTEXT": self.context,
            "LABKIT_BACKEND": self.backend,
        }

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the real ``kubectl --context <ctx> ARGS`` against this cluster; text output captured.

        >>> print(cluster.kubectl("get", "nodes").stdout)   # doctest: +SKIP
        """
        exe = shutil.which("kubectl")
        if exe is None:
            raise PrerequisiteMissing("kubectl is not installed (not found on PATH)", KUBECTL_INSTALL_FIX)
        cmd = [exe, "--context", self.context, *args]
        try:
            done = subprocess.run(
                cmd, check=False, env=self.kubectl_env(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            raise LabkitError(
                f"`kubectl {' '.join(args)}` did not finish within {timeout:g} s",
                "check that the cluster answers (`labkit doctor`), or pass a longer timeout=...",
            ) from e
        if check and done.returncode != 0:
            raise LabkitError(
                f"`kubectl {' '.join(args)}` failed (exit {done.returncode}): {done.stderr.strip()}",
                "read the message above; `labkit doctor` checks the cluster and kubectl",
            )
        return done


def _node_summary(node: Any) -> dict[str, Any]:
    labels = node.metadata.labels or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
    ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
    info = node.status.node_info
    return {
        "name": node.metadata.name,
        "ready": ready,
        "roles": roles,
        "version": info.kubelet_version if info else "",
        "runtime": info.container_runtime_version if info else "",
    }


def connect(
    backend: str | None = None,
    context: str | None = None,
    *,
    allowed_contexts: list[str] | tuple[str, ...] | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    nodes: int | None = None,
) -> Cluster:
    """Connect to the lab cluster.

    *backend*: ``sandbox`` (the embedded cluster, started on demand) or ``kubeconfig``;
    default ``LABKIT_BACKEND``, else ``sandbox``. For ``kubeconfig``, *context* (default: the
    kubeconfig's current-context) must be on the allow-list (``LABKIT_ALLOWED_CONTEXTS`` plus
    *allowed_contexts*), checked before any network call.

    *nodes* (sandbox only) makes the sandbox have exactly that many nodes (``labkit sandbox up --nodes``);
    on a kubeconfig cluster the nodes are what they are, and *nodes* is ignored (``cluster.nodes()`` says).

    >>> connect("kubeconfig", "prod")        # doctest: +SKIP
    Traceback (most recent call last):
    labkit.errors.ContextNotAllowed: kubeconfig context 'prod' is not on labkit's allow-list ...
    """
    name = config.resolve_backend(backend)
    cluster_dns = None
    if name == "sandbox":
        path, context, cluster_dns = _sandbox_kubeconfig(nodes)
    else:
        path, context = _checked_kubeconfig(context, allowed_contexts, kubeconfig)
    configuration = kubernetes.client.Configuration()
    try:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=context, client_configuration=configuration, persist_config=False
        )
    except ConfigException as e:  # e.g. a context naming a cluster or user the file does not define
        raise LabkitError(
            f"kubeconfig {path}, context {context!r}, cannot be used: {e}",
            "fix that entry of the kubeconfig (`kubectl config view`), or pass another context=...",
        ) from e
    # One retry: a refused connection or a blackholed address must surface within seconds, not minutes.
    configuration.retries = 1
    cluster = Cluster(kubernetes.client.ApiClient(configuration), backend=name, context=context, kubeconfig=path)
    if cluster_dns:  # the running sandbox's own, from its address slot (another sandbox may hold the first)
        cluster.profile = dataclasses.replace(cluster.profile, cluster_dns=cluster_dns)
    return cluster


def _sandbox_kubeconfig(nodes: int | None = None) -> tuple[Path, str, str]:
    """Start the sandbox daemon if needed (with *nodes* nodes, else as many as it has); its kubeconfig, context
    and cluster DNS address."""
    try:
        info = client.ensure_running(nodes=nodes)
    except SandboxError as e:
        raise ClusterUnreachable(f"no cluster reachable: the sandbox did not start: {e.problem}", _SANDBOX_FIX) from e
    return Path(info.kubeconfig), info.context, info.cluster_dns


def default_kubeconfig() -> Path:
    """The kubeconfig kubectl would use: the first entry of ``KUBECONFIG``, else ``~/.kube/config``."""
    first = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    return Path(first or Path.home() / ".kube" / "config").expanduser()


def _checked_kubeconfig(
    context: str | None, extra_allowed: list[str] | tuple[str, ...] | None, kubeconfig: str | os.PathLike[str] | None
) -> tuple[Path, str]:
    allowed = config.allowed_contexts(extra_allowed)
    # An explicit context is judged before the file is even read: refusing "prod" needs no kubeconfig.
    if context is not None and context not in allowed:
        raise ContextNotAllowed(context, allowed)
    path = Path(kubeconfig).expanduser() if kubeconfig else default_kubeconfig()
    if not path.is_file():
        raise PrerequisiteMissing(
            f"kubeconfig file {path} does not exist",
            "pass kubeconfig=... or set KUBECONFIG; for k3s: start it with --write-kubeconfig-mode 644 and "
            "export KUBECONFIG=/etc/rancher/k3s/k3s.yaml",
        )
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        names = [c["name"] for c in doc.get("contexts") or []]
    except (OSError, yaml.YAMLError, TypeError, KeyError, AttributeError) as e:
        raise LabkitError(f"kubeconfig {path} could not be read: {e}", "check the file is a valid kubeconfig") from e
    if context is None:
        context = doc.get("current-context")
        if not context:
            raise LabkitError(
                f"kubeconfig {path} has no current-context", f"pass context=... (one of: {', '.join(names) or 'none'})"
            )
        if context not in allowed:
            raise ContextNotAllowed(context, allowed)
    if context not in names:
        raise LabkitError(
            f"context {context!r} is not in kubeconfig {path} (it has: {', '.join(names) or 'none'})",
            "pass one of those names as context=..., or point kubeconfig=/KUBECONFIG at the right file",
        )
    return path, context
