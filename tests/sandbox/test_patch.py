"""The four patch types and managedFields, on Kubernetes-shaped objects."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from labkit.sandbox.api.managedfields import (
    fields_v1,
    format_field_path,
    parse_fields_v1,
    record_update,
    server_side_apply,
)
from labkit.sandbox.api.patch import json_merge_patch, json_patch, strategic_merge_patch
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError

DEPLOYMENTS = RESOURCES.served("apps", "deployments")
PODS = RESOURCES.served("", "pods")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "wasm", "labels": {"app": "web"}, "finalizers": ["a", "b", "c"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "server:1",
                            "args": ["--port", "8080"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080}],
                            "volumeMounts": [{"name": "plugins", "mountPath": "/plugins"}],
                        },
                        {"name": "sidecar", "image": "sidecar:1"},
                    ],
                    "volumes": [{"name": "plugins", "hostPath": {"path": "/opt/plugins"}}],
                },
            },
        },
    }


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)


# -- JSON merge patch --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # the examples of RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_json_merge_patch_rfc7386_examples(target, patch, expected):
    assert json_merge_patch(target, patch) == expected


def test_merge_patch_as_kubectl_label_and_scale_send_it():
    obj = deployment()
    result = json_merge_patch(obj, {"metadata": {"labels": {"tier": "backend"}}, "spec": {"replicas": 4}})
    assert result["metadata"]["labels"] == {"app": "web", "tier": "backend"}
    assert result["spec"]["replicas"] == 4
    assert obj == deployment()  # the input is untouched
    result["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    assert obj == deployment()  # and shares nothing with the result


# -- JSON patch --------------------------------------------------------------------------------


def test_json_patch_operations():
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--verbose"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/0", "value": "serve"},
        {"op": "add", "path": "/metadata/annotations", "value": {"example.com/x": "1"}},
        {"op": "copy", "from": "/metadata/annotations/example.com~1x", "path": "/metadata/labels/copied"},
        {"op": "move", "from": "/metadata/labels/copied", "path": "/metadata/labels/moved"},
        {"op": "remove", "path": "/spec/template/spec/containers/1"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/args/1", "value": "9090"},
        {"op": "add", "path": "/metadata/labels/a~1b", "value": "slash"},
    ]
    obj = deployment()
    result = json_patch(obj, ops)
    assert result["spec"]["replicas"] == 3
    assert next(iter(result["spec"])) == "replicas"  # replaced in place, not moved
    assert result["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve", "9090", "8080", "--verbose"]
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["server"]
    assert result["metadata"]["labels"] == {"app": "web", "moved": "1", "a/b": "slash"}
    assert obj == deployment()


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "test", "path": "/spec/replicas", "value": 5}], "testing value /spec/replicas failed: test failed"),
        (
            [{"op": "remove", "path": "/spec/nosuch"}],
            'remove operation does not apply: doc is missing path: "/spec/nosuch"',
        ),
        (
            [{"op": "replace", "path": "/spec/nosuch/x", "value": 1}],
            "replace operation does not apply: doc is missing path",
        ),
        ([{"op": "add", "path": "/spec/template/spec/containers/9", "value": {}}], "index out of range"),
        ([{"op": "jump", "path": "/spec"}], "Unexpected kind: jump"),
    ],
)
def test_json_patch_that_does_not_apply_is_the_servers_422(ops, message):
    with pytest.raises(StatusError) as caught:
        json_patch(deployment(), ops)
    error = caught.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == "the server rejected our request due to an error in our request"
    assert message in error.details["causes"][0]["message"]


def test_json_patch_must_be_a_list():
    with pytest.raises(StatusError) as caught:
        json_patch(deployment(), {"op": "add"})
    assert caught.value.code == 400


# -- strategic merge patch ---------------------------------------------------------------------


def test_smp_merges_containers_by_name_and_replaces_atomic_lists():
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "server:2",
                            "args": ["--port", "9090"],
                            "env": [{"name": "C", "value": "3"}],
                        },
                        {"name": "new", "image": "new:1"},
                    ]
                }
            }
        }
    }
    obj = deployment()
    result = strategic_merge_patch(DEPLOYMENTS, obj, patch)
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["server", "sidecar", "new"]
    server = container(result, "server")
    assert server["image"] == "server:2"
    assert server["args"] == ["--port", "9090"]  # args has no merge strategy: replaced
    assert server["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]
    assert server["ports"] == [{"containerPort": 8080}]
    assert obj == deployment()


def test_smp_null_deletes_and_patch_delete_removes_list_items():
    patch = {
        "metadata": {"labels": {"app": None}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "server", "env": [{"name": "A", "$patch": "delete"}], "volumeMounts": None},
                        {"name": "sidecar", "$patch": "delete"},
                    ]
                }
            }
        },
    }
    result = strategic_merge_patch(DEPLOYMENTS, deployment(), patch)
    assert result["metadata"]["labels"] == {}
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["server"]
    assert containers[0]["env"] == [{"name": "B", "value": "2"}]
    assert "volumeMounts" not in containers[0]


def test_smp_patch_replace_on_a_map_and_on_a_list():
    result = strategic_merge_patch(
        DEPLOYMENTS, deployment(), {"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "web2"}}}}
    )
    assert result["spec"]["selector"] == {"matchLabels": {"app": "web2"}}
    result = strategic_merge_patch(
        DEPLOYMENTS,
        deployment(),
        {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "only:1"}]}}}},
    )
    assert result["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "only:1"}]


def test_smp_patch_delete_on_a_map():
    result = strategic_merge_patch(DEPLOYMENTS, deployment(), {"spec": {"strategy": {"$patch": "delete"}}})
    assert "strategy" not in result["spec"]


def test_smp_retain_keys_switches_a_union():
    # what kubectl apply sends when a Deployment goes from RollingUpdate to Recreate
    patch: dict[str, Any] = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    result = strategic_merge_patch(DEPLOYMENTS, deployment(), patch)
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [{"$retainKeys": ["configMap", "name"], "name": "plugins", "configMap": {"name": "cm"}}]
                }
            }
        }
    }
    result = strategic_merge_patch(DEPLOYMENTS, deployment(), patch)
    assert result["spec"]["template"]["spec"]["volumes"] == [{"name": "plugins", "configMap": {"name": "cm"}}]


def test_smp_set_element_order_and_delete_from_primitive_list():
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"]},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "server"}],
                    "containers": [{"name": "server", "image": "server:3"}],
                }
            }
        },
    }
    result = strategic_merge_patch(DEPLOYMENTS, deployment(), patch)
    assert result["metadata"]["finalizers"] == ["a", "c", "d"]  # finalizers merge as a set
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["sidecar", "server"]
    assert container(result, "server")["image"] == "server:3"


def test_smp_merges_ports_by_container_port():
    patch = {
        "spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090}]}]
        }
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
    }
    result = strategic_merge_patch(PODS, pod, patch)
    assert result["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "http"}, {"containerPort": 9090}]


def test_smp_rollout_restart_patch():
    stamp = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T22:00:00Z"}}}
        }
    }
    result = strategic_merge_patch(DEPLOYMENTS, deployment(), stamp)
    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T22:00:00Z"},
    }


def test_smp_item_without_merge_key_is_a_bad_request():
    with pytest.raises(StatusError) as caught:
        strategic_merge_patch(
            DEPLOYMENTS, deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
        )
    assert caught.value.code == 400
    assert "does not contain declared merge key: name" in caught.value.message


# -- managed fields ----------------------------------------------------------------------------


def test_fields_v1_round_trip_and_paths():
    paths = {
        ("f:spec", "f:replicas"),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"server"}'),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"server"}', "f:image"),
    }
    trie = fields_v1(paths)
    assert trie == {
        "f:spec": {
            "f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {'k:{"name":"server"}': {".": {}, "f:image": {}}}}},
        }
    }
    assert parse_fields_v1(trie) == paths
    assert (
        format_field_path(("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"server"}', "f:image"))
        == '.spec.template.spec.containers[name="server"].image'
    )


def test_apply_creates_with_an_apply_entry():
    applied = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "wasm"},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {"containers": [{"name": "server", "image": "server:1", "ports": [{"containerPort": 8080}]}]}
            },
        },
    }
    result = server_side_apply(DEPLOYMENTS, None, applied, "kubectl", force=False)
    [entry] = result["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply" and entry["apiVersion"] == "apps/v1"
    assert entry["fieldsType"] == "FieldsV1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["time"])
    assert entry["fieldsV1"] == {
        "f:spec": {
            "f:replicas": {},
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"server"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                        }
                    }
                }
            },
        }
    }
    assert result["spec"]["replicas"] == 1 and "managedFields" not in applied["metadata"]


def test_apply_conflicts_with_client_side_apply_owner():
    live = record_update(DEPLOYMENTS, None, deployment(), "kubectl-client-side-apply")
    applied = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    with pytest.raises(StatusError) as caught:
        server_side_apply(DEPLOYMENTS, live, applied, "kubectl", force=False)
    error = caught.value
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert error.details["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "field": ".spec.replicas",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        }
    ]


def test_apply_same_value_shares_ownership_and_force_takes_it():
    live = record_update(DEPLOYMENTS, None, deployment(), "kubectl-client-side-apply")
    same = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}
    shared = server_side_apply(DEPLOYMENTS, live, same, "kubectl", force=False)
    owners = {
        e["manager"] for e in shared["metadata"]["managedFields"] if "f:replicas" in e["fieldsV1"].get("f:spec", {})
    }
    assert owners == {"kubectl", "kubectl-client-side-apply"}
    forced = server_side_apply(DEPLOYMENTS, live, {**same, "spec": {"replicas": 7}}, "kubectl", force=True)
    assert forced["spec"]["replicas"] == 7
    owners = {
        e["manager"] for e in forced["metadata"]["managedFields"] if "f:replicas" in e["fieldsV1"].get("f:spec", {})
    }
    assert owners == {"kubectl"}
    assert forced["spec"]["template"] == deployment()["spec"]["template"]  # the rest is untouched


def test_several_conflicts_are_listed_per_manager():
    live = record_update(DEPLOYMENTS, None, deployment(), "kubectl-client-side-apply")
    live = record_update(
        DEPLOYMENTS, live, json_merge_patch(live, {"spec": {"replicas": 3}}), "kubectl-scale", subresource="scale"
    )
    applied = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "server", "image": "server:9"}]}}},
    }
    with pytest.raises(StatusError) as caught:
        server_side_apply(DEPLOYMENTS, live, applied, "kubectl", force=False)
    assert caught.value.message == (
        "Apply failed with 2 conflicts: "
        'conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        '- .spec.template.spec.containers[name="server"].image\n'
        'conflicts with "kubectl-scale" with subresource "scale" using apps/v1:\n'
        "- .spec.replicas"
    )


def test_apply_removes_fields_the_manager_stopped_applying():
    first = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "one", "image": "one:1"}, {"name": "two", "image": "two:1"}]}}
        },
    }
    live = server_side_apply(DEPLOYMENTS, None, first, "kubectl", force=False)
    # another manager adds its own container; the applier must not remove it
    live = record_update(
        DEPLOYMENTS,
        live,
        strategic_merge_patch(
            DEPLOYMENTS,
            live,
            {"spec": {"template": {"spec": {"containers": [{"name": "injected", "image": "proxy:1"}]}}}},
        ),
        "injector",
    )
    second = copy.deepcopy(first)
    del second["metadata"]["labels"]["b"]
    second["spec"]["template"]["spec"]["containers"] = [{"name": "one", "image": "one:2"}]
    result = server_side_apply(DEPLOYMENTS, live, second, "kubectl", force=False)
    assert result["metadata"]["labels"] == {"a": "1"}
    assert [(c["name"], c["image"]) for c in result["spec"]["template"]["spec"]["containers"]] == [
        ("one", "one:2"),
        ("injected", "proxy:1"),
    ]


def test_apply_keeps_fields_another_manager_also_owns():
    live = server_side_apply(
        DEPLOYMENTS,
        None,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}},
        "kubectl",
        force=False,
    )
    live = server_side_apply(
        DEPLOYMENTS,
        live,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}},
        "other-tool",
        force=False,
    )
    result = server_side_apply(
        DEPLOYMENTS,
        live,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
        "kubectl",
        force=False,
    )
    assert result["spec"]["replicas"] == 2
    assert [e["manager"] for e in result["metadata"]["managedFields"]] == ["other-tool"]


def test_record_update_takes_ownership_from_others():
    live = server_side_apply(DEPLOYMENTS, None, deployment(), "kubectl", force=False)
    scaled = record_update(
        DEPLOYMENTS, live, json_merge_patch(live, {"spec": {"replicas": 9}}), "kubectl-scale", subresource="scale"
    )
    entries = {e["manager"]: e for e in scaled["metadata"]["managedFields"]}
    assert entries["kubectl-scale"]["operation"] == "Update"
    assert entries["kubectl-scale"]["subresource"] == "scale"
    assert entries["kubectl-scale"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entries["kubectl"]["fieldsV1"]["f:spec"]
    # and the next apply of a different count now conflicts with the scaler
    with pytest.raises(StatusError) as caught:
        server_side_apply(DEPLOYMENTS, scaled, deployment(), "kubectl", force=False)
    assert (
        'conflict with "kubectl-scale" with subresource "scale" using apps/v1: .spec.replicas' in caught.value.message
    )


def test_managed_fields_skip_server_set_metadata():
    obj = deployment()
    obj["metadata"].update({"uid": "u", "resourceVersion": "5", "generation": 1, "creationTimestamp": "t"})
    obj["status"] = {"replicas": 2}
    [entry] = record_update(DEPLOYMENTS, None, obj, "kubectl-create")["metadata"]["managedFields"]
    assert set(entry["fieldsV1"]) == {"f:metadata", "f:spec"}
    assert set(entry["fieldsV1"]["f:metadata"]) == {"f:labels", "f:finalizers"}
    assert entry["fieldsV1"]["f:metadata"]["f:finalizers"] == {'v:"a"': {}, 'v:"b"': {}, 'v:"c"': {}}


def test_status_writes_are_owned_through_the_status_subresource():
    live = record_update(DEPLOYMENTS, None, deployment(), "kubectl-create")
    observed = json_merge_patch(live, {"status": {"replicas": 2, "readyReplicas": 1}})
    result = record_update(DEPLOYMENTS, live, observed, "labkit-controller", subresource="status")
    entries = {e["manager"]: e for e in result["metadata"]["managedFields"]}
    assert entries["labkit-controller"]["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    assert entries["labkit-controller"]["subresource"] == "status"
    assert "f:status" not in entries["kubectl-create"]["fieldsV1"]
