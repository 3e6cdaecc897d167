"""Admission: the checks and changes the real API server makes to a write before storing it.

- Defaulting (create and update): ``kubectl get -o yaml`` after an apply shows these fields on k3s,
  so the sandbox fills the same ones with the same values.
- The NamespaceLifecycle plugin: no new content in a missing or terminating namespace.
- The RuntimeClass plugin: a pod's class must exist; its scheduling and overhead apply to the pod.

>>> pod = {"spec": {"containers": [{"name": "c", "image": "demo"}]}}
>>> apply_defaults("Pod", pod)["spec"]["containers"][0]["imagePullPolicy"]
'Always'
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api import crds
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.status import forbidden_because, not_found

if TYPE_CHECKING:
    from labkit.sandbox.api.store import Store

NAMESPACES = RESOURCES.served("", "namespaces")
RUNTIME_CLASSES = RESOURCES.served("node.k8s.io", "runtimeclasses")
PODS = RESOURCES.served("", "pods")
STORAGE_CLASSES = RESOURCES.served("storage.k8s.io", "storageclasses")

_DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def pull_policy_for(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image, else ``IfNotPresent`` (digests too)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _container(c: dict[str, Any]) -> None:
    c.setdefault("imagePullPolicy", pull_policy_for(c.get("image", "")))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or ():
        port.setdefault("protocol", "TCP")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(kind))
    for env in c.get("env") or ():
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if ref is not None:
            ref.setdefault("apiVersion", "v1")


def _probe(probe: Any) -> None:
    """SetDefaults_Probe and SetDefaults_HTTPGetAction (pkg/apis/core/v1/defaults.go): a zero counts as unset."""
    if not isinstance(probe, dict):
        return
    for key, default in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        if not probe.get(key):
            probe[key] = default
    action = probe.get("httpGet")
    if isinstance(action, dict):
        action["path"] = action.get("path") or "/"
        action["scheme"] = action.get("scheme") or "HTTP"


def _pod_spec(spec: dict[str, Any], in_template: bool = False) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or ():
            _container(c)
    for v in spec.get("volumes") or ():
        if "hostPath" in v:
            v["hostPath"].setdefault("type", "")
        for key in ("configMap", "secret"):
            if key in v:
                v[key].setdefault("defaultMode", 420)
        if "emptyDir" in v and v["emptyDir"] is None:
            v["emptyDir"] = {}
    if not in_template:
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = name
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        _default_tolerations(spec)


def _default_tolerations(spec: dict[str, Any]) -> None:
    """DefaultTolerationSeconds: 300 s for each node-lost taint the pod does not already tolerate on NoExecute.

    As ``Admit`` in kubernetes ``plugin/pkg/admission/defaulttolerationseconds/admission.go``: a toleration whose
    key is that taint's or empty, and whose effect is NoExecute or empty, already tolerates it; each missing one
    is added as ``operator: Exists``, ``effect: NoExecute``, ``tolerationSeconds: 300`` (the flags'
    ``--default-not-ready-toleration-seconds`` and ``--default-unreachable-toleration-seconds`` defaults)."""
    tolerations = spec.get("tolerations") or []
    for default in _DEFAULT_TOLERATIONS:
        if not any(
            t.get("key") in (None, "", default["key"]) and t.get("effect") in (None, "", "NoExecute")
            for t in tolerations
        ):
            tolerations.append(dict(default))
    spec["tolerations"] = tolerations


def _template(obj: dict[str, Any]) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _pod_spec(template.setdefault("spec", {}), in_template=True)


def _pod(obj: dict[str, Any]) -> None:
    _pod_spec(obj.setdefault("spec", {}))
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")


def _deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    _template(obj)


def _replicaset(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _template(obj)


def _job(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    if not spec.get("manualSelector"):
        # The job controller owns its pods by a generated uid label, not by user labels.
        uid = (obj.get("metadata") or {}).get("uid") or str(uuid.uuid4())
        obj.setdefault("metadata", {})["uid"] = uid
        name = obj["metadata"].get("name", "")
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
        template_meta.setdefault("labels", {}).update(labels)
    _template(obj)


def _daemonset(obj: dict[str, Any]) -> None:
    # apps/v1 SetDefaults_DaemonSet
    spec = obj.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    _template(obj)


def _statefulset(obj: dict[str, Any]) -> None:
    # apps/v1 SetDefaults_StatefulSet
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    _template(obj)


def _cronjob(obj: dict[str, Any]) -> None:
    # batch/v1 SetDefaults_CronJob; the pod template inside gets the PodSpec defaults
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    _template(spec.setdefault("jobTemplate", {}))


def _service(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or ():
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _namespace(obj: dict[str, Any]) -> None:
    name = obj.get("metadata", {}).get("name", "")
    obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _secret(obj: dict[str, Any]) -> None:
    """``stringData`` entries override ``data`` (base64-encoded) and are never stored, as the v1 to
    internal conversion does (kubernetes ``pkg/apis/core/v1/conversion.go``, Convert_v1_Secret_To_core_Secret)."""
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.get("data") or {}
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()})
        obj["data"] = data


def _claim(obj: dict[str, Any]) -> None:
    """SetDefaults_PersistentVolumeClaim(Spec): a new claim is Pending, a Filesystem volume."""
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _volume(obj: dict[str, Any]) -> None:
    """SetDefaults_PersistentVolume: Pending, Retain, Filesystem."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _autoscaler(obj: dict[str, Any]) -> None:
    """autoscaling/v2 SetDefaults_HorizontalPodAutoscaler: one replica at least, 80% cpu when no metric is set
    (an autoscaling/v1 object without a target, stored as v2, gets it too: the 80% its controller would use)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        target = {"type": "Utilization", "averageUtilization": 80}
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]


_DEFAULTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "Job": _job,
    "DaemonSet": _daemonset,
    "StatefulSet": _statefulset,
    "CronJob": _cronjob,
    "Service": _service,
    "Namespace": _namespace,
    "Secret": _secret,
    "CustomResourceDefinition": crds.default_crd,
    "PersistentVolumeClaim": _claim,
    "PersistentVolume": _volume,
    "HorizontalPodAutoscaler": _autoscaler,
}


def apply_defaults(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields the API server defaults for *kind*; returns *obj* (mutated)."""
    defaulter = _DEFAULTERS.get(kind)
    if defaulter:
        defaulter(obj)
    return obj


def require_namespace(store: Store, resource: Resource, namespace: str | None, name: str) -> None:
    """NamespaceLifecycle: 404 for a missing namespace, 403 for one being terminated."""
    if not resource.namespaced:
        return
    ns_obj = store.peek(NAMESPACES, None, namespace or "")
    if ns_obj is None:
        raise not_found(NAMESPACES, namespace or "")
    if ns_obj.get("metadata", {}).get("deletionTimestamp"):
        cause = {
            "reason": "NamespaceTerminating",
            "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }
        why = f"unable to create new content in namespace {namespace} because it is being terminated"
        raise forbidden_because(resource, name, why, [cause])


def admit(store: Store, resource: Resource, obj: dict[str, Any]) -> None:
    """The mutating admission plugins of a create that read other objects: RuntimeClass, DefaultStorageClass."""
    if resource.custom is not None:
        return
    if resource.kind == "Pod":
        admit_runtime_class(store, obj)
    elif resource.kind == "PersistentVolumeClaim":
        _default_storage_class(store, obj)


def _default_storage_class(store: Store, claim: dict[str, Any]) -> None:
    """DefaultStorageClass (plugin/pkg/admission/storage/storageclass/setdefault): a claim that names no class
    (``storageClassName`` absent, not ``""``) gets the default one, the newest if several are marked."""
    spec = claim.setdefault("spec", {})
    annotations = claim.get("metadata", {}).get("annotations") or {}
    if "storageClassName" in spec or "volume.beta.kubernetes.io/storage-class" in annotations:
        return
    defaults = [
        sc
        for sc in store.list(STORAGE_CLASSES, None)[0]
        if (sc["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
        or (sc["metadata"].get("annotations") or {}).get("storageclass.beta.kubernetes.io/is-default-class") == "true"
    ]
    if defaults:
        newest = max(defaults, key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]))
        spec["storageClassName"] = newest["metadata"]["name"]


def admit_runtime_class(store: Store, pod: dict[str, Any]) -> None:
    """RuntimeClass: the class must exist (else 403); its scheduling and overhead apply to the pod."""
    name = pod["spec"].get("runtimeClassName")
    if not name:
        return
    runtime_class = store.get(RUNTIME_CLASSES, None, name)
    pod_name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
    if runtime_class is None:
        raise forbidden_because(PODS, pod_name, f'pod rejected: RuntimeClass "{name}" not found')
    if runtime_class.get("overhead", {}).get("podFixed"):
        pod["spec"]["overhead"] = runtime_class["overhead"]["podFixed"]
    scheduling = runtime_class.get("scheduling") or {}
    if scheduling.get("nodeSelector"):
        pod["spec"]["nodeSelector"] = {**scheduling["nodeSelector"], **(pod["spec"].get("nodeSelector") or {})}
    if scheduling.get("tolerations"):
        pod["spec"]["tolerations"] = [*(pod["spec"].get("tolerations") or ()), *scheduling["tolerations"]]
