"""The generated registry, CRD checks and structural validation, and the new printers, without a daemon."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from labkit.sandbox.api import crds, kinds
from labkit.sandbox.api.admission import apply_defaults
from labkit.sandbox.api.events import to_events_v1, v1_create_causes
from labkit.sandbox.api.registry import RESOURCES, Registry
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.tables import to_table
from labkit.sandbox.api.validation import validate

NOW = datetime(2025, 6, 1, tzinfo=UTC)

#: kubectl api-resources on a vanilla 1.32 API server
UPSTREAM_1_32 = {
    ("", "bindings", True), ("", "componentstatuses", False), ("", "configmaps", True), ("", "endpoints", True),
    ("", "events", True), ("", "limitranges", True),
    ("", "namespaces", False), ("", "nodes", False), ("", "persistentvolumeclaims", True),
    ("", "persistentvolumes", False), ("", "pods", True), ("", "podtemplates", True),
    ("", "replicationcontrollers", True), ("", "resourcequotas", True), ("", "secrets", True),
    ("", "serviceaccounts", True), ("", "services", True),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", False),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies", False),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", False),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", False),
    ("apiextensions.k8s.io", "customresourcedefinitions", False), ("apiregistration.k8s.io", "apiservices", False),
    ("apps", "controllerrevisions", True), ("apps", "daemonsets", True), ("apps", "deployments", True),
    ("apps", "replicasets", True), ("apps", "statefulsets", True),
    ("authorization.k8s.io", "localsubjectaccessreviews", True),
    ("authorization.k8s.io", "selfsubjectaccessreviews", False),
    ("authorization.k8s.io", "selfsubjectrulesreviews", False),
    ("authentication.k8s.io", "selfsubjectreviews", False), ("authentication.k8s.io", "tokenreviews", False),
    ("authorization.k8s.io", "subjectaccessreviews", False),
    ("autoscaling", "horizontalpodautoscalers", True), ("batch", "cronjobs", True), ("batch", "jobs", True),
    ("certificates.k8s.io", "certificatesigningrequests", False), ("coordination.k8s.io", "leases", True),
    ("discovery.k8s.io", "endpointslices", True), ("events.k8s.io", "events", True),
    ("flowcontrol.apiserver.k8s.io", "flowschemas", False),
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations", False),
    ("networking.k8s.io", "ingressclasses", False), ("networking.k8s.io", "ingresses", True),
    ("networking.k8s.io", "networkpolicies", True), ("node.k8s.io", "runtimeclasses", False),
    ("policy", "poddisruptionbudgets", True), ("rbac.authorization.k8s.io", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io", "clusterroles", False), ("rbac.authorization.k8s.io", "rolebindings", True),
    ("rbac.authorization.k8s.io", "roles", True), ("scheduling.k8s.io", "priorityclasses", False),
    ("storage.k8s.io", "csidrivers", False), ("storage.k8s.io", "csinodes", False),
    ("storage.k8s.io", "csistoragecapacities", True), ("storage.k8s.io", "storageclasses", False),
    ("storage.k8s.io", "volumeattachments", False),
}  # fmt: skip


def test_the_registry_is_every_ga_kind_of_1_32_with_upstreams_names_and_scopes() -> None:
    served = {(r.group, r.plural, r.namespaced) for r in RESOURCES if r.custom is None}
    assert served == UPSTREAM_1_32
    assert RESOURCES.served("", "persistentvolumeclaims").short_names == ("pvc",)
    assert RESOURCES.served("apps", "statefulsets").subresources == {"status": "StatefulSet", "scale": "Scale"}
    assert "all" in RESOURCES.served("autoscaling", "horizontalpodautoscalers").categories
    assert RESOURCES.served("autoscaling", "horizontalpodautoscalers").version == "v2"  # v1 is not converted


def test_no_alpha_or_beta_version_is_served() -> None:
    assert all("alpha" not in r.version and "beta" not in r.version for r in RESOURCES)
    assert all(kinds._is_ga(s.version) for s in kinds.builtin_kinds())


# -- CustomResourceDefinitions --------------------------------------------------------------------


def _crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}, "scale": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer"},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            }
                        },
                    }
                },
            }
        ],
    }
    base.update(spec)
    return {"metadata": {"name": f"{base['names']['plural']}.{base['group']}"}, "spec": base}


def _widgets() -> Any:
    return crds.resources_of(_crd())[0]


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        ({"group": "apps"}, "spec.group", "should be a domain with at least one dot"),
        ({"group": "networking.k8s.io"}, "spec.group", "built-in kinds"),
        ({"names": {"plural": "pods", "kind": "Pod"}}, "spec.names.kind", "built-in resource"),
        ({"scope": "Everywhere"}, "spec.scope", "supported values"),
    ],
)
def test_a_crd_cannot_take_a_built_in_group_or_kind(change: dict[str, Any], field: str, why: str) -> None:
    """A CRD that could shadow a built-in kind (and its admission and deletion rules) is refused with a 422."""
    crd = _crd(**change)
    causes = crds.crd_causes(crd)
    assert any(c["field"] == field and why in c["message"] for c in causes), causes
    with pytest.raises(StatusError) as e:
        validate(RESOURCES.served("apiextensions.k8s.io", "customresourcedefinitions"), {**crd, "kind": None}, "Warn")
    assert e.value.code == 422


@pytest.mark.parametrize("plural", ["../pods", "pods/status", "Widgets", ""])
def test_a_crds_plural_is_one_lowercase_path_segment(plural: str) -> None:
    """The plural becomes a URL path segment: one that could climb or split a path is refused."""
    crd = _crd(names={"plural": plural, "kind": "Widget"})
    crd["metadata"]["name"] = "widgets.example.com"
    with pytest.raises(StatusError) as e:
        validate(RESOURCES.served("apiextensions.k8s.io", "customresourcedefinitions"), crd, "Warn")
    assert e.value.code == 422
    assert any(c["field"] == "spec.names.plural" for c in (e.value.details or {})["causes"])


def test_a_crds_name_must_be_plural_dot_group() -> None:
    crd = _crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    assert crds.crd_causes(crd) == [
        {
            "reason": "FieldValueInvalid",
            "field": "metadata.name",
            "message": 'Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group',
        }
    ]
    assert crds.crd_causes(_crd()) == []


def test_crd_defaults_name_the_singular_and_list_kind() -> None:
    crd = apply_defaults("CustomResourceDefinition", _crd())
    assert crd["spec"]["names"]["singular"] == "widget" and crd["spec"]["names"]["listKind"] == "WidgetList"
    assert crd["spec"]["conversion"] == {"strategy": "None"}


def test_a_crd_serves_each_served_version_with_its_subresources() -> None:
    crd = _crd()
    crd["spec"]["versions"].append({**copy.deepcopy(crd["spec"]["versions"][0]), "name": "v2", "served": False})
    (widgets,) = crds.resources_of(crd)
    assert (widgets.api_version, widgets.plural, widgets.namespaced) == ("example.com/v1", "widgets", True)
    assert widgets.subresources == {"status": "Widget", "scale": "Scale"}


def test_custom_objects_are_type_checked_pruned_and_refused_when_strict() -> None:
    widgets = _widgets()
    good = {"metadata": {"name": "w"}, "spec": {"size": 3, "port": "http", "free": {"any": [1]}, "labels": {"a": "b"}}}
    assert validate(widgets, copy.deepcopy(good), "Strict") == []
    extra = {"metadata": {"name": "w"}, "spec": {"size": 3, "extra": 1}}
    assert validate(widgets, extra, "Warn") == ['unknown field "spec.extra"']
    assert "extra" not in extra["spec"]  # pruned, as apiextensions-apiserver prunes
    with pytest.raises(StatusError) as strict:
        validate(widgets, {"metadata": {"name": "w"}, "spec": {"size": 3, "extra": 1}}, "Strict")
    assert strict.value.code == 400
    assert strict.value.message == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.extra"'
    )
    with pytest.raises(StatusError) as bad:
        validate(widgets, {"metadata": {"name": "w"}, "spec": {"color": "green", "labels": {"a": 1}}}, "Warn")
    assert bad.value.code == 422
    assert bad.value.details is not None and bad.value.details["kind"] == "Widget"
    assert [c["field"] for c in bad.value.details["causes"]] == ["spec.color", "spec.labels.a", "spec.size"]
    assert bad.value.message.startswith('Widget.example.com "w" is invalid: [spec.color: Unsupported value: "green"')


def test_a_custom_resource_has_no_strategic_merge_patch() -> None:
    from labkit.sandbox.api.patch import strategic_merge_patch

    with pytest.raises(StatusError) as e:
        strategic_merge_patch(_widgets(), {"spec": {"size": 1}}, {"spec": {"size": 2}})
    assert e.value.code == 415


def test_registering_a_crd_changes_the_registry_and_its_generation() -> None:
    registry = Registry([RESOURCES.served("", "pods")])
    before = registry.generation
    registry.set_custom("widgets.example.com", [_widgets()])
    assert registry.by_path("example.com", "v1", "widgets") is not None and registry.generation == before + 1
    registry.set_custom("widgets.example.com", [])
    assert registry.by_path("example.com", "v1", "widgets") is None and registry.generation == before + 2


def test_custom_printer_columns_follow_their_json_paths() -> None:
    crd = _crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "First", "type": "string", "jsonPath": ".status.conditions[0].type"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    (widgets,) = crds.resources_of(crd)
    obj = {"metadata": {"name": "w", "creationTimestamp": "2025-05-31T23:59:00Z"}, "spec": {"size": 3}}
    table = to_table(widgets, [obj], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "First", "Age"]
    assert table["rows"][0]["cells"] == ["w", 3, "<none>", "60s"]
    plain = to_table(_widgets(), [obj], now=NOW)  # no columns: NAME and AGE, as apiextensions defaults them
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Age"]


# -- Secrets, Events ---------------------------------------------------------------------------------


def test_string_data_overrides_data_and_is_not_kept() -> None:
    secret = {"data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new", "c": "ç"}}
    apply_defaults("Secret", secret)
    assert secret == {"type": "Opaque", "data": {"a": "bmV3", "b": "Yg==", "c": "w6c="}}


def test_events_v1_creation_is_strict_and_a_core_count_is_no_series() -> None:
    causes = v1_create_causes({"type": "Normal", "reason": "R", "action": "A", "reportingController": "c"})
    assert {c["field"] for c in causes} == {"eventTime", "reportingInstance"}
    assert v1_create_causes({"eventTime": "2025-06-01T00:00:00.000000Z", "type": "Warning", "reason": "R",
                             "action": "A", "reportingController": "c", "reportingInstance": "i"}) == []  # fmt: skip
    core = {"metadata": {"name": "e"}, "count": 3, "lastTimestamp": "2025-06-01T00:00:00Z", "eventTime": None}
    v1 = to_events_v1(core)
    assert v1["deprecatedCount"] == 3 and "series" not in v1 and v1["eventTime"] is None


# -- printers --------------------------------------------------------------------------------------


def _row(group: str, plural: str, obj: dict[str, Any]) -> list[Any]:
    obj.setdefault("metadata", {}).setdefault("creationTimestamp", "2025-05-31T23:59:00Z")
    obj["metadata"].setdefault("name", "x")
    cells: list[Any] = to_table(RESOURCES.served(group, plural), [obj], now=NOW)["rows"][0]["cells"]
    return cells


def test_hpa_targets_read_as_kubectl_prints_them() -> None:
    hpa = {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
        {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}}]},
        "status": {"currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 7}}}]}}  # fmt: skip
    assert _row("autoscaling", "horizontalpodautoscalers", hpa) == [
        "x", "Deployment/web", "cpu: 7%/50%, memory: <unknown>/1Gi + 1 more...", "<unset>", 5, 0, "60s"]  # fmt: skip


def test_storage_rows() -> None:
    bound = {"spec": {"volumeName": "pv1", "storageClassName": "local-path"},
             "status": {"phase": "Bound", "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]}}  # fmt: skip
    assert _row("", "persistentvolumeclaims", bound) == [
        "x", "Bound", "pv1", "1Gi", "RWO,RWX", "local-path", "<unset>", "60s", "<unset>"]  # fmt: skip
    marked = {"storageclass.kubernetes.io/is-default-class": "true"}
    default = {"metadata": {"name": "local-path", "annotations": marked}, "provisioner": "rancher.io/local-path"}
    assert _row("storage.k8s.io", "storageclasses", default) == [
        "local-path (default)", "rancher.io/local-path", "Delete", "Immediate", False, "60s"]  # fmt: skip


def test_quota_ingress_and_priority_class_rows() -> None:
    quota = {"status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "1"}}}
    assert _row("", "resourcequotas", quota) == ["x", "pods: 1/10", "limits.cpu: 0/2", "60s"]
    ingress = {"spec": {"rules": [{"host": f"h{i}"} for i in range(5)], "tls": [{}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb"}]}}}  # fmt: skip
    assert _row("networking.k8s.io", "ingresses", ingress) == [
        "x", "<none>", "h0,h1,h2 + 2 more...", "10.0.0.2,lb", "80, 443", "60s"]  # fmt: skip
    assert _row("scheduling.k8s.io", "priorityclasses", {"value": 7, "preemptionPolicy": "Never"}) == [
        "x", 7, False, "60s", "Never"]  # fmt: skip


# -- versions served by conversion ------------------------------------------------------------------


def test_a_v1_write_keeps_what_only_v2_can_say() -> None:
    """An autoscaling/v1 update must not erase the v2 metrics and behavior it cannot show (no silent loss)."""
    from labkit.sandbox.api.versions import hpa_to_v1, hpa_to_v2

    memory = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                                             "averageValue": "1Gi"}}}  # fmt: skip
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
    current = {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 9}}}
    live = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"maxReplicas": 5, "metrics": [cpu, memory], "behavior": {"scaleDown": {"selectPolicy": "Min"}}},
            "status": {"currentReplicas": 2, "conditions": [{"type": "AbleToScale", "status": "True"}],
                       "currentMetrics": [current]}}  # fmt: skip
    v1 = hpa_to_v1(live)
    assert v1["spec"] == {"maxReplicas": 5, "targetCPUUtilizationPercentage": 50}
    assert v1["status"] == {"currentReplicas": 2, "currentCPUUtilizationPercentage": 9}
    v1["spec"]["targetCPUUtilizationPercentage"] = 60
    back = hpa_to_v2(v1, live)
    assert back["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert back["spec"]["metrics"][1] == memory and back["spec"]["behavior"] == live["spec"]["behavior"]
    assert back["status"]["conditions"] == live["status"]["conditions"]
    del v1["spec"]["targetCPUUtilizationPercentage"]  # a v1 object without a target drops the cpu metric only
    assert hpa_to_v2(v1, live)["spec"]["metrics"] == [memory]


def test_hpa_v1_is_served_by_conversion_and_listed_in_discovery() -> None:
    from labkit.sandbox.api.discovery import api_group_list

    v1 = RESOURCES.by_path("autoscaling", "v1", "horizontalpodautoscalers")
    assert v1 is not None and v1.storage_version == "v2" and v1 not in list(RESOURCES)
    (autoscaling,) = [g for g in api_group_list()["groups"] if g["name"] == "autoscaling"]
    assert [v["version"] for v in autoscaling["versions"]] == ["v2", "v1"]
    assert autoscaling["preferredVersion"]["version"] == "v2"


@pytest.mark.parametrize(
    ("own", "added"),
    [
        ([], ["not-ready", "unreachable"]),
        ([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}], ["not-ready", "unreachable"]),
        ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 5}], ["not-ready"]),
        ([{"operator": "Exists"}], []),  # an empty key tolerates every taint
    ],
)
def test_default_toleration_seconds_adds_only_the_node_lost_tolerations_a_pod_lacks(
    own: list[dict[str, Any]], added: list[str]
) -> None:
    pod = apply_defaults(
        "Pod", {"spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": copy.deepcopy(own)}}
    )
    defaults = pod["spec"]["tolerations"][len(own) :]
    assert pod["spec"]["tolerations"][: len(own)] == own
    assert [t["key"].removeprefix("node.kubernetes.io/") for t in defaults] == added
    assert all(t["tolerationSeconds"] == 300 and t["effect"] == "NoExecute" for t in defaults)
