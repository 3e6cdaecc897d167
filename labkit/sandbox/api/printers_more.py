"""``kubectl get`` columns of the kinds beyond the workloads: storage, networking, policy, scheduling,
admission, and custom resources.

The columns and cells follow Kubernetes 1.32's ``pkg/printers/internalversion/printers.go`` as the
API server runs it (``GenerateOptions{Wide: true}``: every cell is filled, kubectl hides the
priority-1 columns). A built-in kind without a printer there gets the default convertor's NAME and
CREATED AT; a custom resource gets its CRD's ``additionalPrinterColumns``, by default NAME and AGE
(apiextensions-apiserver's tableconvertor).

>>> from datetime import datetime, timezone
>>> from labkit.sandbox.api.registry import RESOURCES
>>> pvc = {"metadata": {"name": "data", "creationTimestamp": "2025-01-01T00:00:00Z"},
...        "spec": {"storageClassName": "local-path"}, "status": {"phase": "Pending"}}
>>> printer_for(RESOURCES.served("", "persistentvolumeclaims")).row(pvc, datetime(2025, 1, 1, 0, 0, 9,
...                                                                  tzinfo=timezone.utc))
['data', 'Pending', '', '', '', 'local-path', '<unset>', '9s', '<unset>']
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.printers import (
    _CREATED_AT,
    AGE,
    CONTAINERS,
    DEFAULT,
    IMAGES,
    NAME,
    PRINTERS,
    SELECTOR,
    Column,
    Obj,
    Printer,
    _age,
    _col,
    _containers,
    _name,
    _simple,
    _since,
    _template_spec,
    format_labels,
    format_selector,
    human_duration,
)
from labkit.timefmt import parse_optional

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource

_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")  # fmt: skip


def _access_modes(modes: list[str] | None) -> str:
    """``helper.GetAccessModesAsString``: RWO, ROX, RWX, RWOP in that order, once each."""
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
    return ",".join(v for k, v in short.items() if k in (modes or ()))


def _class(obj: Obj) -> str:
    """``GetPersistentVolume(Claim)Class``: the beta annotation wins over ``spec.storageClassName``."""
    annotated = (obj["metadata"].get("annotations") or {}).get(_STORAGE_CLASS_ANNOTATION)
    return str(annotated if annotated is not None else obj.get("spec", {}).get("storageClassName") or "")


def _or(value: Any, empty: str) -> Any:
    return empty if value is None or value == "" else value


def _pvc_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase", "")
    bound = bool(spec.get("volumeName"))
    return [_name(obj), phase, spec.get("volumeName", ""),
            str((status.get("capacity") or {}).get("storage", "")) if bound else "",
            _access_modes(status.get("accessModes")) if bound else "", _class(obj),
            _or(spec.get("volumeAttributesClassName"), "<unset>"), _age(obj, now),
            _or(spec.get("volumeMode"), "<unset>")]  # fmt: skip


def _pv_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase", "")
    return [_name(obj), str((spec.get("capacity") or {}).get("storage", "")), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", ""), phase, claim, _class(obj),
            _or(spec.get("volumeAttributesClassName"), "<unset>"), status.get("reason", ""), _age(obj, now),
            _or(spec.get("volumeMode"), "<unset>")]  # fmt: skip


def _storage_class_row(obj: Obj, now: datetime) -> list[Any]:
    annotations = obj["metadata"].get("annotations") or {}
    default = any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS)
    return [_name(obj) + (" (default)" if default else ""), obj.get("provisioner", ""),
            obj.get("reclaimPolicy") or "Delete", obj.get("volumeBindingMode") or "Immediate",
            bool(obj.get("allowVolumeExpansion")), _age(obj, now)]  # fmt: skip


def _load_balancer(status: Obj) -> str:
    seen = {i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or ()}
    return ",".join(sorted(a for a in seen if a))


def _ingress_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    rules = spec.get("rules") or []
    hosts = [r["host"] for r in rules if r.get("host")][:3]
    text = ",".join(hosts) or "*"
    if len(rules) > 3 and hosts:
        text = f"{text} + {len(rules) - 3} more..."
    return [_name(obj), spec.get("ingressClassName") or "<none>", text, _load_balancer(obj.get("status", {})),
            "80, 443" if spec.get("tls") else "80", _age(obj, now)]  # fmt: skip


def _ingress_class_row(obj: Obj, now: datetime) -> list[Any]:
    params = obj.get("spec", {}).get("parameters")
    text = "<none>"
    if params:
        text = params.get("kind", "") + (f".{params['apiGroup']}" if params.get("apiGroup") else "")
        text += "/" + params.get("name", "")
    return [_name(obj), obj.get("spec", {}).get("controller", ""), text, _age(obj, now)]


def _hpa_metric(spec: Obj, status: Obj | None) -> str:
    """One entry of ``formatHPAMetrics`` (autoscaling/v2 shapes)."""
    kind = spec.get("type", "")
    key = {"External": "external", "Pods": "pods", "Object": "object", "Resource": "resource",
           "ContainerResource": "containerResource"}.get(kind)  # fmt: skip
    if key is None:
        return "<unknown type>"
    source, current = spec.get(key) or {}, ((status or {}).get(key) or {}).get("current") or {}
    target = source.get("target") or {}
    prefix = f"{source.get('name', '')}: " if kind in ("Resource", "ContainerResource") else ""
    if target.get("averageValue") is not None:
        avg = " (avg)" if kind in ("External", "Object") else ""
        return f"{prefix}{current.get('averageValue', '<unknown>')}/{target['averageValue']}{avg}"
    if kind in ("Resource", "ContainerResource"):
        now = current.get("averageUtilization")
        goal = target.get("averageUtilization")
        return f"{prefix}{'<unknown>' if now is None else f'{now}%'}/{'<auto>' if goal is None else f'{goal}%'}"
    if kind == "Pods":
        return f"{current.get('averageValue', '<unknown>')}/{target.get('averageValue', '')}"
    return f"{current.get('value', '<unknown>')}/{target.get('value', '')}"


def _hpa_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    metrics, statuses = spec.get("metrics") or [], status.get("currentMetrics") or []
    shown = [_hpa_metric(m, statuses[i] if i < len(statuses) else None) for i, m in enumerate(metrics)]
    text = ", ".join(shown[:2]) + (f" + {len(shown) - 2} more..." if len(shown) > 2 else "") or "<none>"
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", text,
            "<unset>" if min_pods is None else str(min_pods), spec.get("maxReplicas", 0),
            status.get("currentReplicas", 0), _age(obj, now)]  # fmt: skip


def _pdb_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    return [_name(obj), str(_or(spec.get("minAvailable"), "N/A")), str(_or(spec.get("maxUnavailable"), "N/A")),
            obj.get("status", {}).get("disruptionsAllowed", 0), _age(obj, now)]  # fmt: skip


def _quota_row(obj: Obj, now: datetime) -> list[Any]:
    """Used/hard from ``status`` (the resource quota controller's), requests and limits apart."""
    status = obj.get("status", {})
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        (limits if name.startswith("limits.") else requests).append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [_name(obj), ", ".join(requests), ", ".join(limits), _age(obj, now)]


def _controller_revision_row(obj: Obj, now: datetime) -> list[Any]:
    ref = next((r for r in obj["metadata"].get("ownerReferences") or () if r.get("controller")), None)
    owner = "<none>"
    if ref:
        group = ref.get("apiVersion", "").rpartition("/")[0]
        owner = f"{ref.get('kind', '')}.{group}".rstrip(".").lower() + "/" + ref.get("name", "")
    return [_name(obj), owner, obj.get("revision", 0), _age(obj, now)]


def _csr_row(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    types = {c.get("type") for c in status.get("conditions") or ()}
    state = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    state += ",Failed" if "Failed" in types else ""
    state += ",Issued" if status.get("certificate") else ""
    seconds = spec.get("expirationSeconds")
    return [_name(obj), _age(obj, now), spec.get("signerName") or "<none>", spec.get("username", ""),
            "<none>" if seconds is None else human_duration(seconds), state]  # fmt: skip


def _component_status_row(obj: Obj, now: datetime) -> list[Any]:
    """printComponentStatus: the Healthy condition's state, message and error."""
    healthy = next((c for c in obj.get("conditions") or () if c.get("type") == "Healthy"), None)
    if healthy is None:
        return [_name(obj), "Unknown", "", ""]
    state = "Healthy" if healthy.get("status") == "True" else "Unhealthy"
    return [_name(obj), state, healthy.get("message", ""), healthy.get("error", "")]


def _csi_driver_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    tokens = spec.get("tokenRequests")
    return [_name(obj), spec.get("attachRequired", True), bool(spec.get("podInfoOnMount")),
            bool(spec.get("storageCapacity")),
            "<unset>" if tokens is None else ",".join(t.get("audience", "") for t in tokens),
            bool(spec.get("requiresRepublish")), ",".join(spec.get("volumeLifecycleModes") or ()) or "<none>",
            _age(obj, now)]  # fmt: skip


def _param_ref(ref: Obj | None) -> str:
    if not ref:
        return "<unset>"
    if ref.get("name"):
        return f"{ref.get('namespace') or '*'}/{ref['name']}"
    return format_selector(ref.get("selector"), "") if ref.get("selector") is not None else "<unset>"


def _vap_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    kind = spec.get("paramKind")
    return [_name(obj), len(spec.get("validations") or ()),
            f"{kind.get('apiVersion', '')}/{kind.get('kind', '')}" if kind else "<unset>", _age(obj, now)]  # fmt: skip


def _ready_of(obj: Obj) -> str:
    return f"{obj.get('status', {}).get('readyReplicas', 0)}/{obj.get('spec', {}).get('replicas', 1)}"


def _flow_schema_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    dangling = next((c.get("status") for c in obj.get("status", {}).get("conditions") or ()
                     if c.get("type") == "Dangling"), "?")  # fmt: skip
    method = (spec.get("distinguisherMethod") or {}).get("type") or "<none>"
    return [_name(obj), (spec.get("priorityLevelConfiguration") or {}).get("name", ""),
            spec.get("matchingPrecedence", 0), method, _age(obj, now), dangling]  # fmt: skip


def _priority_level_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec", {})
    limited = spec.get("limited")
    queuing = ((limited or {}).get("limitResponse") or {}).get("queuing") or {}
    cells: list[Any] = ["<none>"] * 4
    if limited is not None:
        cells[0] = limited.get("nominalConcurrencyShares", 0)
        if queuing:
            cells[1:] = [queuing.get("queues", 0), queuing.get("handSize", 0), queuing.get("queueLengthLimit", 0)]
    return [_name(obj), spec.get("type", ""), *cells, _age(obj, now)]


_WIDE = (CONTAINERS, IMAGES, SELECTOR)

MORE_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "persistentvolumeclaims"): Printer((NAME, _col("Status", "The claim's phase."),
        _col("Volume", "The bound volume."), _col("Capacity", "The bound volume's capacity."),
        _col("Access Modes", "The bound volume's access modes."), _col("StorageClass", "StorageClass of the pvc"),
        _col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"), AGE,
        _col("VolumeMode", "Block or Filesystem.", priority=1)), _pvc_row),
    ("", "persistentvolumes"): Printer((NAME, _col("Capacity", "The volume's size."),
        _col("Access Modes", "How the volume can be mounted."), _col("Reclaim Policy", "What happens on release."),
        _col("Status", "The volume's phase."), _col("Claim", "The bound claim."),
        _col("StorageClass", "StorageClass of the pv"),
        _col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
        _col("Reason", "Why the volume is in its phase."), AGE,
        _col("VolumeMode", "Block or Filesystem.", priority=1)), _pv_row),
    ("storage.k8s.io", "storageclasses"): Printer((NAME, _col("Provisioner", "The provisioner of volumes."),
        _col("ReclaimPolicy", "Reclaim policy of provisioned volumes."),
        _col("VolumeBindingMode", "When volumes are bound."),
        _col("AllowVolumeExpansion", "Whether claims may grow."), AGE), _storage_class_row),
    ("networking.k8s.io", "ingresses"): Printer((NAME, _col("Class", "The IngressClass."),
        _col("Hosts", "Hosts the rules match."), _col("Address", "Ingress points of the load-balancer."),
        _col("Ports", "Ports of TLS configurations that open."), AGE), _ingress_row),
    ("networking.k8s.io", "ingressclasses"): Printer((NAME, _col("Controller", "The controller of this class."),
        _col("Parameters", "A reference to more parameters."), AGE), _ingress_class_row),
    ("networking.k8s.io", "networkpolicies"): Printer((NAME, _col("Pod-Selector", "Pods the policy applies to."),
        AGE), _simple(lambda o: format_selector(o.get("spec", {}).get("podSelector"), ""))),
    ("autoscaling", "horizontalpodautoscalers"): Printer((NAME, _col("Reference", "The scaled object."),
        _col("Targets", "Current and target metrics."), _col("MinPods", "Lower replica limit."),
        _col("MaxPods", "Upper replica limit."), _col("Replicas", "Current replicas."), AGE), _hpa_row),
    ("coordination.k8s.io", "leases"): Printer((NAME, _col("Holder", "The lease holder's identity."), AGE),
        _simple(lambda o: o.get("spec", {}).get("holderIdentity") or "")),
    ("policy", "poddisruptionbudgets"): Printer((NAME, _col("Min Available", "Pods that must be available."),
        _col("Max Unavailable", "Pods that may be unavailable."),
        _col("Allowed Disruptions", "Pods that may be disrupted now.", "integer"), AGE), _pdb_row),
    ("", "resourcequotas"): Printer((NAME, _col("Request", "Used/hard of the request resources."),
        _col("Limit", "Used/hard of the limits resources."), AGE), _quota_row),
    ("scheduling.k8s.io", "priorityclasses"): Printer((NAME, _col("Value", "The priority.", "integer"),
        _col("Global-Default", "Whether pods without a class get this one.", "boolean"), AGE,
        _col("PreemptionPolicy", "Whether pods of this class preempt others.")),
        lambda o, now: [_name(o), o.get("value", 0), bool(o.get("globalDefault")), _age(o, now),
                        o.get("preemptionPolicy", "")]),
    ("", "replicationcontrollers"): Printer((NAME, _col("Desired", "Desired pods.", "integer"),
        _col("Current", "Current pods.", "integer"), _col("Ready", "Ready pods.", "integer"), AGE, *_WIDE),
        lambda o, now: [_name(o), o.get("spec", {}).get("replicas", 1), o.get("status", {}).get("replicas", 0),
                        o.get("status", {}).get("readyReplicas", 0), _age(o, now), *_containers(_template_spec(o)),
                        format_labels(o.get("spec", {}).get("selector"), "")]),
    ("", "podtemplates"): Printer((NAME, _col("Containers", "Names of each container in the template."),
        _col("Images", "Images referenced by each container in the template."),
        _col("Pod Labels", "The labels for the pod template.")),
        lambda o, now: [_name(o), *_containers(o.get("template", {}).get("spec", {})),
                        format_labels(o.get("template", {}).get("metadata", {}).get("labels"), "")]),
    ("apps", "controllerrevisions"): Printer((NAME, _col("Controller", "Controller of the object"),
        _col("Revision", "The revision."), AGE), _controller_revision_row),
    ("apps", "daemonsets"): Printer((NAME, *(_col(n, d, "integer") for n, d in (
        ("Desired", "Nodes that should run the pod."), ("Current", "Nodes running the pod."),
        ("Ready", "Nodes with the pod ready."), ("Up-to-date", "Nodes running the latest template."),
        ("Available", "Nodes with the pod available."))), _col("Node Selector", "The pods' node selector."), AGE,
        *_WIDE), lambda o, now: [_name(o), *(o.get("status", {}).get(k, 0) for k in (
            "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
            "numberAvailable")), format_labels(_template_spec(o).get("nodeSelector"), ""), _age(o, now),
            *_containers(_template_spec(o)), format_selector(o.get("spec", {}).get("selector"))]),
    ("apps", "statefulsets"): Printer((NAME, _col("Ready", "Number of the pod with ready state"), AGE,
        CONTAINERS, IMAGES), lambda o, now: [_name(o), _ready_of(o), _age(o, now), *_containers(_template_spec(o))]),
    ("certificates.k8s.io", "certificatesigningrequests"): Printer((NAME, AGE,
        _col("SignerName", "The signer."), _col("Requestor", "Who asked."),
        _col("RequestedDuration", "Requested validity."), _col("Condition", "Approval state.")), _csr_row),
    ("storage.k8s.io", "csidrivers"): Printer((NAME, *(_col(n, d, "boolean") for n, d in (
        ("AttachRequired", "Whether volumes are attached."), ("PodInfoOnMount", "Whether pod info is passed."),
        ("StorageCapacity", "Whether capacity is tracked."))), _col("TokenRequests", "Token audiences."),
        _col("RequiresRepublish", "Whether volumes are republished.", "boolean"), _col("Modes", "Lifecycle modes."),
        AGE), _csi_driver_row),
    ("storage.k8s.io", "csinodes"): Printer((NAME, _col("Drivers", "CSI drivers on the node.", "integer"), AGE),
        _simple(lambda o: len(o.get("spec", {}).get("drivers") or ()))),
    ("storage.k8s.io", "csistoragecapacities"): Printer((NAME, _col("StorageClassName", "The class."),
        _col("Capacity", "Available capacity.")),
        lambda o, now: [_name(o), o.get("storageClassName", ""), str(_or(o.get("capacity"), "<unset>"))]),
    ("storage.k8s.io", "volumeattachments"): Printer((NAME, _col("Attacher", "The attacher."),
        _col("PV", "The volume."), _col("Node", "The node."), _col("Attached", "Whether it is attached.", "boolean"),
        AGE), lambda o, now: [_name(o), o.get("spec", {}).get("attacher", ""),
                              (o.get("spec", {}).get("source") or {}).get("persistentVolumeName") or "",
                              o.get("spec", {}).get("nodeName", ""), bool(o.get("status", {}).get("attached")),
                              _age(o, now)]),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies"): Printer((NAME,
        _col("Validations", "Number of validation rules.", "integer"), _col("ParamKind", "Kind of parameters."),
        AGE), _vap_row),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"): Printer((NAME,
        _col("PolicyName", "The bound policy."), _col("ParamRef", "The parameter resource."), AGE),
        lambda o, now: [_name(o), o.get("spec", {}).get("policyName", ""),
                        _param_ref(o.get("spec", {}).get("paramRef")), _age(o, now)]),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"): Printer((NAME, _col("PriorityLevel", "The priority level."),
        _col("MatchingPrecedence", "Lower matches first."), _col("DistinguisherMethod", "How flows are told apart."),
        AGE, _col("MissingPL", "References a missing priority level.")), _flow_schema_row),
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"): Printer((NAME, _col("Type", "Exempt or Limited."),
        _col("NominalConcurrencyShares", "Shares of the concurrency limit."), _col("Queues", "Queues."),
        _col("HandSize", "Hand size."), _col("QueueLengthLimit", "Queue length limit."), AGE), _priority_level_row),
    ("apiregistration.k8s.io", "apiservices"): Printer((NAME, _col("Service", "The backing service or Local."),
        _col("Available", "Whether the API is available."), AGE),
        lambda o, now: [_name(o), _api_service(o), _available(o), _age(o, now)]),
}  # fmt: skip
_WEBHOOKS = Printer((NAME, _col("Webhooks", "Webhooks registered in this configuration.", "integer"), AGE),
                    _simple(lambda o: len(o.get("webhooks") or ())))  # fmt: skip
MORE_PRINTERS[("", "componentstatuses")] = Printer(
    (NAME, _col("Status", "Status of the component conditions"), _col("Message", "Message of the component conditions"),
     _col("Error", "Error of the component conditions")), _component_status_row)  # fmt: skip
MORE_PRINTERS[("admissionregistration.k8s.io", "mutatingwebhookconfigurations")] = _WEBHOOKS
MORE_PRINTERS[("admissionregistration.k8s.io", "validatingwebhookconfigurations")] = _WEBHOOKS


def _api_service(obj: Obj) -> str:
    """kube-aggregator's SERVICE column: ``namespace/name`` of the backing service, or ``Local``."""
    service = obj.get("spec", {}).get("service")
    return f"{service.get('namespace', '')}/{service.get('name', '')}" if service else "Local"


def _available(obj: Obj) -> str:
    cond = next((c for c in obj.get("status", {}).get("conditions") or () if c.get("type") == "Available"), None)
    if cond is None:
        return "Unknown"
    return "True" if cond.get("status") == "True" else f"{cond.get('status')} ({cond.get('reason', '')})"


# -- custom resources: additionalPrinterColumns ---------------------------------------------------

_JSONPATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _jsonpath(obj: Any, path: str) -> Any:
    """The value at a CRD column's simple JSONPath (``.spec.size``, ``.status.conditions[0].type``)."""
    for match in _JSONPATH_STEP.finditer(path):
        key, index = match.groups()
        if key is not None:
            obj = obj.get(key) if isinstance(obj, dict) else None
        else:
            obj = obj[int(index)] if isinstance(obj, list) and int(index) < len(obj) else None
        if obj is None:
            return None
    return obj


def _custom_printer(resource: Resource) -> Printer:
    columns = (resource.custom or {}).get("additionalPrinterColumns")
    if not columns:
        return DEFAULT
    defs = tuple(Column(c.get("name", ""), type=c.get("type", "string") if c.get("type") != "date" else "date",
                        description=c.get("description", ""), priority=int(c.get("priority", 0)),
                        format=c.get("format", "")) for c in columns)  # fmt: skip

    def row(obj: Obj, now: datetime) -> list[Any]:
        cells: list[Any] = [_name(obj)]
        for c in columns:
            value = _jsonpath(obj, c.get("jsonPath", ""))
            if c.get("type") == "date":
                value = _since(value, now) if value is not None and parse_optional(value) else "<unknown>"
            cells.append("<none>" if value is None else value)
        return cells

    return Printer((NAME, *defs), row)


def printer_for(resource: Resource) -> Printer:
    """The printer of *resource*: its own, else the default of a built-in kind or of a custom resource."""
    if resource.custom is not None:
        return _custom_printer(resource)
    key = (resource.group, resource.plural)
    return PRINTERS.get(key) or MORE_PRINTERS.get(key) or _CREATED_AT
