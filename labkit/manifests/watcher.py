"""The service-watcher's objects (the seed's watcher/yaml/watcher.yaml): a ServiceAccount, a ClusterRole that may only
get, list and watch Services, the ClusterRoleBinding between them, and the Deployment that runs the watcher
(``labkit/apps/service_watcher.py``) under that ServiceAccount. Leave ``rbac=False`` to see the watcher's 403.

>>> objs = service_watcher("labkit.local/service-watcher:0.1.0", namespace="lab-05")
>>> [o["kind"] for o in objs]
['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment']
>>> objs[1]["rules"]
[{'apiGroups': [''], 'resources': ['services'], 'verbs': ['get', 'list', 'watch']}]
>>> objs[2]["subjects"]
[{'kind': 'ServiceAccount', 'name': 'watcher-sa', 'namespace': 'lab-05'}]
"""

from __future__ import annotations

from typing import Any

from labkit.manifests.checks import dns_label
from labkit.manifests.workloads import wasm_deployment

#: the seed's names (watcher/yaml/watcher.yaml)
SERVICE_ACCOUNT, ROLE, BINDING, DEPLOYMENT = "watcher-sa", "watcher-role", "watcher-rb", "service-watcher"


def load_balancer_url(namespace: str, service: str = "load-balancer-service", port: int = 8080) -> str:
    """The load balancer's admin URL by its Service's FQDN, as the seed's watcher calls it."""
    return f"http://{dns_label(service)}.{dns_label(namespace, 'namespace')}.svc.cluster.local:{port}"


def service_watcher(
    image: str,
    *,
    namespace: str = "default",
    lb_url: str | None = None,
    resync_seconds: float = 30,
    rbac: bool = True,
    image_pull_policy: str | None = "IfNotPresent",
) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole (get/list/watch services only), ClusterRoleBinding and Deployment.

    The role is cluster-wide because the watcher watches Services in all namespaces. Names are the seed's;
    the binding names *namespace*'s ServiceAccount, so two labs in two namespaces need distinct role names
    (the ClusterRole and binding are cluster objects): they carry the namespace as a suffix unless it is default.
    """
    ns = dns_label(namespace, "namespace")
    suffix = "" if ns == "default" else f"-{ns}"
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE + suffix},
        "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": BINDING + suffix},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE + suffix},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}],
    }
    deployment = wasm_deployment(
        DEPLOYMENT,
        image,
        runtime_class=None,  # a Linux container (a native pod in the sandbox), not wasm
        args=["--resync", f"{resync_seconds:g}"],
        env={"LB_URL": lb_url or load_balancer_url(ns)},
        image_pull_policy=image_pull_policy,
    )
    deployment["metadata"]["namespace"] = ns
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = SERVICE_ACCOUNT
    return [account, role, binding, deployment] if rbac else [account, deployment]
