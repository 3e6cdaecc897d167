"""The built-in kinds of Kubernetes 1.32, generated from the official schemas the kit ships.

Every definition in kubernetes-validate's ``_definitions.json`` that carries an
``x-kubernetes-group-version-kind`` and ``metadata`` (and no ``items``: not a List) is a kind; the ones a default 1.32
kube-apiserver serves are the GA versions (KEP-3136: beta APIs are off by default, and
1.32's legacy beta list is empty since flowcontrol v1beta3 was removed). What the schemas do
not say (plural, scope, short names, categories, extra subresources) follows upstream:

- plural: ``meta.UnsafeGuessKindToResource`` (apimachinery ``pkg/api/meta/restmapper.go``),
  which every built-in resource name obeys;
- scope, short names and categories: each kind's REST storage (``NamespaceScoped()``,
  ``ShortNames()``, ``Categories()`` in ``pkg/registry/*/*/storage/storage.go``), listed below;
- a ``status`` subresource for every stored kind whose schema has ``status``.

>>> [(s.version, s.storage_version) for s in builtin_kinds() if s.group == "autoscaling"]
[('v2', ''), ('v1', 'v2')]
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, NamedTuple

from labkit.errors import PrerequisiteMissing

SCHEMA_VERSION = "v1.32.0-local-strict"

#: Kinds a 1.32 API server stores with cluster scope (``NamespaceScoped() == false``).
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ComponentStatus", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "CustomResourceDefinition", "APIService", "TokenReview", "SelfSubjectReview", "SelfSubjectAccessReview",
    "SelfSubjectRulesReview", "SubjectAccessReview", "CertificateSigningRequest", "FlowSchema",
    "PriorityLevelConfiguration", "IngressClass", "RuntimeClass", "ClusterRole", "ClusterRoleBinding",
    "PriorityClass", "CSIDriver", "CSINode", "StorageClass", "VolumeAttachment",
})  # fmt: skip

#: ``ShortNames()`` of the REST storages (``kubectl api-resources`` on 1.32).
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "ConfigMap": ("cm",), "Endpoints": ("ep",), "Event": ("ev",), "LimitRange": ("limits",),
    "Namespace": ("ns",), "Node": ("no",), "PersistentVolumeClaim": ("pvc",), "PersistentVolume": ("pv",),
    "Pod": ("po",), "ReplicationController": ("rc",), "ResourceQuota": ("quota",), "ServiceAccount": ("sa",),
    "Service": ("svc",), "CustomResourceDefinition": ("crd", "crds"), "DaemonSet": ("ds",),
    "Deployment": ("deploy",), "ReplicaSet": ("rs",), "StatefulSet": ("sts",), "HorizontalPodAutoscaler": ("hpa",),
    "CronJob": ("cj",), "CertificateSigningRequest": ("csr",), "Ingress": ("ing",), "NetworkPolicy": ("netpol",),
    "PodDisruptionBudget": ("pdb",), "PriorityClass": ("pc",), "StorageClass": ("sc",), "ComponentStatus": ("cs",),
}  # fmt: skip

#: ``Categories()`` of the REST storages: what ``kubectl get all`` lists, and the api-extensions kinds.
CATEGORIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("Pod", "ReplicationController", "Service", "DaemonSet", "Deployment", "ReplicaSet",
                     "StatefulSet", "HorizontalPodAutoscaler", "CronJob", "Job"), ("all",)),
    **dict.fromkeys(("CustomResourceDefinition", "APIService", "MutatingWebhookConfiguration",
                     "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
                     "ValidatingAdmissionPolicyBinding"), ("api-extensions",)),
}  # fmt: skip

#: Subresources beyond ``status``: kind -> {subresource: the kind it answers with}.
EXTRA_SUBRESOURCES: dict[str, dict[str, str]] = {
    "Namespace": {"finalize": "Namespace"},
    "Pod": {
        "log": "",
        "binding": "Binding",
        "eviction": "Eviction",
        "exec": "PodExecOptions",
        "ephemeralcontainers": "Pod",
        "portforward": "PodPortForwardOptions",
        "proxy": "PodProxyOptions",
    },
    "Service": {"proxy": "ServiceProxyOptions"},
    "ServiceAccount": {"token": "TokenRequest"},
    **{key: {"scale": "Scale"} for key in ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController")},
}

#: Kinds the API server answers without storing them: create is their only verb. The reviews are answered by
#: ``authapis.py``; a top-level Binding (``POST …/namespaces/<ns>/bindings``, pkg/registry/core/pod/storage's
#: LegacyBindingREST) binds the pod its ``metadata.name`` names, as ``pods/<name>/binding`` does.
CREATE_ONLY = frozenset({
    "SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectRulesReview",
    "SelfSubjectReview", "TokenReview", "Binding",
})  # fmt: skip

#: Kinds with a definition that are no top-level resource of their own: subresource bodies (Eviction, Scale,
#: TokenRequest; Binding is both) and Status.
NOT_SERVED = frozenset({"Eviction", "Scale", "TokenRequest", "Status"})

#: events.k8s.io Events are a second view of the core Events (``events.py``): updates go through core/v1.
#: ComponentStatus is read only (pkg/registry/core/componentstatus/rest.go: a Getter and Lister, no Watcher).
VERBS: dict[tuple[str, str], tuple[str, ...]] = {
    ("events.k8s.io", "Event"): ("create", "delete", "get", "list", "watch"),
    ("", "ComponentStatus"): ("get", "list"),
}


def definitions_path() -> Path:
    """Where kubernetes-validate keeps the 1.32 definitions (found without importing it: about 2 s saved)."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise PrerequisiteMissing(
            "the official Kubernetes schemas (package kubernetes-validate) are not installed",
            "pip install 'kubernetes-validate>=1.32'",
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "kubernetes-json-schema" / SCHEMA_VERSION / "_definitions.json"


def definitions() -> dict[str, Any]:
    """The ``$defs`` of the 1.32 schemas, parsed anew: the registry reads them once at import and lets them
    go (a kubelet process keeps no 8 MB of schemas); the API server's :class:`~.schemas.Schemas` keeps its own."""
    defs: dict[str, Any] = json.loads(definitions_path().read_bytes())["$defs"]
    return defs


def guess_plural(kind: str) -> str:
    """apimachinery's ``UnsafeGuessKindToResource``: the resource name of a kind.

    >>> [guess_plural(k) for k in ("Pod", "Ingress", "PriorityClass", "NetworkPolicy", "Endpoints")]
    ['pods', 'ingresses', 'priorityclasses', 'networkpolicies', 'endpoints']
    """
    singular = kind.lower()
    if singular == "endpoints":
        return singular
    if singular.endswith("s"):
        return singular + "es"
    if singular.endswith("y"):
        return singular[:-1] + "ies"
    return singular + "s"


def _is_ga(version: str) -> bool:
    return "alpha" not in version and "beta" not in version


#: Kinds served in an older GA version too, converted from the stored one (:mod:`labkit.sandbox.api.versions`).
CONVERTED_VERSIONS: dict[tuple[str, str], tuple[str, ...]] = {("autoscaling", "HorizontalPodAutoscaler"): ("v1",)}


class KindSpec(NamedTuple):
    """One served version of a built-in kind, as the registry needs it."""

    definition: str
    group: str
    version: str
    kind: str
    has_status: bool
    #: the version objects are stored in, when this one is served by conversion; "" for the stored one
    storage_version: str = ""


def builtin_kinds() -> list[KindSpec]:
    """Every served built-in kind: the core group first, then by schema package; the versions served by
    conversion last. A kind with two GA versions (HorizontalPodAutoscaler: autoscaling/v1 and v2) is stored
    in the newest, as upstream stores it."""
    found: dict[tuple[str, str], KindSpec] = {}
    older: list[KindSpec] = []
    for def_name, schema in definitions().items():
        gvks: list[dict[str, str]] = schema.get("x-kubernetes-group-version-kind") or []
        properties = schema.get("properties", {})
        if len(gvks) != 1 or "metadata" not in properties or "items" in properties:
            continue  # not a kind of its own, or a List of one
        group, version, kind = gvks[0]["group"], gvks[0]["version"], gvks[0]["kind"]
        if _is_ga(version) and kind not in NOT_SERVED:
            spec = KindSpec(def_name, group, version, kind, "status" in properties)
            previous = found.get((group, kind))
            if previous is not None and previous.version in CONVERTED_VERSIONS.get((group, kind), ()):
                older.append(previous)
            found[(group, kind)] = spec
    specs = list(found.values())
    views = [s._replace(storage_version=found[(s.group, s.kind)].version) for s in older]
    return [s for s in specs if not s.group] + [s for s in specs if s.group] + views
