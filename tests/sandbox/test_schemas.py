"""Field validation against the official schemas, the semantic rules, and the OpenAPI v3 documents.

The last test points the real kubectl 1.32 at a tiny HTTP server that serves only discovery and
these OpenAPI documents, and runs ``kubectl explain``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.schemas import MergeInfo, schemas
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.validation import validate
from tests.sandbox.conftest import KUBECTL

DEPLOYMENTS = RESOURCES.served("apps", "deployments")
PODS = RESOURCES.served("", "pods")
SERVICES = RESOURCES.served("", "services")
JOBS = RESOURCES.served("batch", "jobs")
RUNTIME_CLASSES = RESOURCES.served("node.k8s.io", "runtimeclasses")
NAMESPACES = RESOURCES.served("", "namespaces")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "wasi-demo", "labels": {"app": "wasi-demo"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "wasi-demo"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "wasi-demo"}},
                "spec": {
                    "runtimeClassName": "wasmedge",
                    "containers": [
                        {
                            "name": "demo",
                            "image": "ghcr.io/containerd/runwasi/wasi-demo-app:latest",
                            "args": ["/wasi-demo-app.wasm", "daemon"],
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "RUST_LOG", "value": "info"}],
                            "resources": {"limits": {"cpu": "500m", "memory": 128}},
                            "volumeMounts": [{"name": "plugins", "mountPath": "/plugins", "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "plugins", "hostPath": {"path": "/opt/wasmedge/plugin"}}],
                },
            },
        },
    }


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": spec or {"containers": [{"name": "c", "image": "busybox"}]},
    }


def error_of(resource, obj, mode: str = "Strict") -> StatusError:
    with pytest.raises(StatusError) as caught:
        validate(resource, obj, mode)
    return caught.value


# -- unknown fields ----------------------------------------------------------------------------


def test_valid_deployment_passes_strict_unchanged():
    obj = deployment()
    assert validate(DEPLOYMENTS, obj, "Strict") == []
    assert obj == deployment()


def test_strict_rejects_unknown_fields_with_the_servers_wording():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    obj["spec"]["replicaz"] = 3
    error = error_of(DEPLOYMENTS, obj)
    assert (error.code, error.reason) == (400, "BadRequest")
    # in document order, as Go's decoder meets them
    assert error.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagee", unknown field "spec.replicaz"'
    )


def test_warn_prunes_unknown_fields_and_returns_warnings():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    obj["metadata"]["labelz"] = {"a": "b"}
    warnings = validate(DEPLOYMENTS, obj, "Warn")
    assert sorted(warnings) == [
        'unknown field "metadata.labelz"',
        'unknown field "spec.template.spec.containers[0].imagee"',
    ]
    assert obj == deployment()


def test_ignore_prunes_silently():
    obj = pod()
    obj["spec"]["containers"][0]["imagee"] = "typo"
    assert validate(PODS, obj, "Ignore") == []
    assert obj == pod()


def test_free_form_fields_accept_anything():
    obj = deployment()
    obj["metadata"]["managedFields"] = [
        {"manager": "m", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:anything": {}}}}
    ]
    assert validate(DEPLOYMENTS, obj, "Strict") == []


def test_null_fields_are_dropped_like_go_zero_values():
    obj = deployment()
    obj["spec"]["paused"] = None
    validate(DEPLOYMENTS, obj, "Strict")
    assert "paused" not in obj["spec"]


def test_unsupported_field_validation_mode_is_a_bad_request():
    error = error_of(PODS, pod(), "strict-ish")
    assert error.code == 400 and '"strict-ish"' in error.message


# -- type errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (
            lambda d: d["spec"].__setitem__("replicas", "2"),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].__setitem__("containerPort", "80"),
            (
                "json: cannot unmarshal string into Go struct field ContainerPort.spec.template.spec.containers.ports"
                ".containerPort of type int32"
            ),
        ),
        (
            lambda d: d["metadata"]["labels"].__setitem__("tier", 3),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels.tier of type string",
        ),
        (
            lambda d: d["spec"].__setitem__("selector", "app=wasi-demo"),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.selector of type v1.LabelSelector",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].__setitem__("containers", {"name": "demo"}),
            (
                "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers "
                "of type []v1.Container"
            ),
        ),
        (
            lambda d: d["spec"].__setitem__("paused", "yes"),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool",
        ),
        (
            lambda d: d["spec"].__setitem__("replicas", 2**31),
            "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].__setitem__("maxSurge", True),
            "json: cannot unmarshal bool into Go value of type int32",
        ),
    ],
)
def test_wrong_json_types_are_400_in_every_mode(mutate, detail):
    for mode in ("Strict", "Warn", "Ignore"):
        obj = deployment()
        mutate(obj)
        error = error_of(DEPLOYMENTS, obj, mode)
        assert error.code == 400
        assert error.message == f'Deployment in version "v1" cannot be handled as a Deployment: {detail}'


def test_int_or_string_and_quantities_take_both_forms():
    obj = deployment()
    obj["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1, "maxUnavailable": "10%"}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": 0.5, "memory": "64Mi"}}
    assert validate(DEPLOYMENTS, obj, "Strict") == []


# -- semantic rules ----------------------------------------------------------------------------


def causes_of(resource, obj) -> list[dict[str, str]]:
    error = error_of(resource, obj)
    assert (error.code, error.reason) == (422, "Invalid"), error.message
    return error.details["causes"]


def test_pod_needs_containers():
    error = error_of(PODS, pod(containers=[]))
    assert error.message == 'Pod "p" is invalid: spec.containers: Required value'
    assert error.details["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]


def test_container_name_and_image_rules():
    causes = causes_of(PODS, pod(containers=[{"name": "Web_1"}, {"image": "busybox"}]))
    fields = [(c["field"], c["message"].split(":")[0]) for c in causes]
    assert ("spec.containers[0].name", "Invalid value") in fields
    assert ("spec.containers[0].image", "Required value") in fields
    assert ("spec.containers[1].name", "Required value") in fields
    label = next(c for c in causes if c["field"] == "spec.containers[0].name")
    assert label["message"] == (
        'Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters '
        "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
        "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )


def test_duplicate_container_names_and_missing_volume():
    causes = causes_of(
        PODS,
        pod(
            containers=[
                {"name": "c", "image": "a", "volumeMounts": [{"name": "plugins", "mountPath": "/p"}]},
                {"name": "c", "image": "b", "ports": [{"containerPort": 70000, "protocol": "HTTP"}]},
            ]
        ),
    )
    messages = {c["field"]: c["message"] for c in causes}
    assert messages["spec.containers[1].name"] == 'Duplicate value: "c"'
    assert messages["spec.containers[0].volumeMounts[0].name"] == 'Not found: "plugins"'
    assert (
        messages["spec.containers[1].ports[0].containerPort"]
        == "Invalid value: 70000: must be between 1 and 65535, inclusive"
    )
    assert (
        messages["spec.containers[1].ports[0].protocol"]
        == 'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'
    )


def test_paths_that_would_leave_the_node_are_invalid_with_upstreams_wording():
    # pkg/apis/core/validation/validation.go: validateHostPathVolumeSource (validatePathNoBacksteps),
    # validateVolumeMounts (validateLocalDescendingPath) and validateKeyToPath (validateLocalNonReservedPath)
    mounts = [
        {"name": "host", "mountPath": "/a", "subPath": "/etc"},
        {"name": "host", "mountPath": "/b", "subPath": "x/../../.."},
        {"name": "host", "mountPath": "/c", "subPath": "fine/sub"},
    ]
    causes = causes_of(
        PODS,
        pod(
            containers=[{"name": "c", "image": "a", "volumeMounts": mounts}],
            volumes=[
                {"name": "host", "hostPath": {"path": "/var/../../etc"}},
                {"name": "cm", "configMap": {"name": "x", "items": [{"key": "k", "path": "..data"}]}},
                {"name": "s", "secret": {"secretName": "x", "items": [{"key": "k", "path": "../k"}]}},
            ],
        ),
    )
    assert {c["field"]: c["message"] for c in causes} == {
        "spec.volumes[0].hostPath.path": "Invalid value: \"/var/../../etc\": must not contain '..'",
        "spec.volumes[1].configMap.items[0].path": "Invalid value: \"..data\": must not start with '..'",
        "spec.volumes[2].secret.items[0].path": "Invalid value: \"../k\": must not contain '..'",
        "spec.containers[0].volumeMounts[0].subPath": 'Invalid value: "/etc": must be a relative path',
        "spec.containers[0].volumeMounts[1].subPath": "Invalid value: \"x/../../..\": must not contain '..'",
    }
    # ".." inside a name is not a backstep, as upstream splits on "/"
    ok = pod(containers=[{"name": "c", "image": "a"}], volumes=[{"name": "h", "hostPath": {"path": "/srv/a..b"}}])
    assert validate(PODS, ok, "Strict") == []


def test_selector_must_match_template_labels():
    obj = deployment()
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "other", "tier": "web"}
    error = error_of(DEPLOYMENTS, obj)
    assert error.message == (
        'Deployment.apps "wasi-demo" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"other", "tier":"web"}: `selector` does not match template `labels`'
    )


def test_a_pod_template_may_not_hold_ephemeral_containers():
    obj = deployment()
    obj["spec"]["template"]["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox"}]
    assert error_of(DEPLOYMENTS, obj).message == (
        'Deployment.apps "wasi-demo" is invalid: spec.template.spec.ephemeralContainers: '
        "Forbidden: ephemeral containers not allowed in pod template"
    )


def test_selector_expressions_are_evaluated():
    obj = deployment()
    obj["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["wasi-demo"]}]}
    assert validate(DEPLOYMENTS, obj, "Strict") == []
    obj["spec"]["selector"]["matchExpressions"][0]["operator"] = "NotIn"
    assert causes_of(DEPLOYMENTS, obj)[0]["field"] == "spec.template.metadata.labels"


def test_deployment_selector_required_and_not_empty():
    obj = deployment()
    del obj["spec"]["selector"]
    assert causes_of(DEPLOYMENTS, obj) == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}
    ]
    obj["spec"]["selector"] = {}
    assert causes_of(DEPLOYMENTS, obj)[0]["message"] == (
        "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
    )


def test_deployment_template_must_restart_always():
    obj = deployment()
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert causes_of(DEPLOYMENTS, obj)[0] == {
        "reason": "FieldValueNotSupported",
        "field": "spec.template.spec.restartPolicy",
        "message": 'Unsupported value: "Never": supported values: "Always"',
    }


def test_job_restart_policy():
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }
    assert causes_of(JOBS, job) == [
        {
            "reason": "FieldValueRequired",
            "field": "spec.template.spec.restartPolicy",
            "message": 'Required value: valid values: "OnFailure", "Never"',
        }
    ]
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert validate(JOBS, job, "Strict") == []


def test_service_ports():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llama"}, "spec": {"selector": {"app": "x"}}}
    assert causes_of(SERVICES, svc) == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.ports"}
    ]
    svc["spec"]["ports"] = [{"port": 80}, {"port": 0, "name": "admin"}]
    messages = {c["field"]: c["message"] for c in causes_of(SERVICES, svc)}
    assert messages == {
        "spec.ports[0].name": "Required value",
        "spec.ports[1].port": "Invalid value: 0: must be between 1 and 65535, inclusive",
    }
    svc["spec"] = {"clusterIP": "None", "selector": {"app": "x"}}
    assert validate(SERVICES, svc, "Strict") == []


def test_service_names_are_dns1035_labels():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1llama"}, "spec": {"ports": [{"port": 80}]}}
    assert causes_of(SERVICES, svc)[0]["message"].startswith(
        'Invalid value: "1llama": a DNS-1035 label must consist of lower case alphanumeric characters'
    )


def test_runtime_class_handler():
    rc = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasmedge"}}
    error = error_of(RUNTIME_CLASSES, rc)
    assert error.message == 'RuntimeClass.node.k8s.io "wasmedge" is invalid: handler: Required value'
    rc["handler"] = "WasmEdge"
    assert causes_of(RUNTIME_CLASSES, rc)[0]["message"].startswith(
        'Invalid value: "WasmEdge": a lowercase RFC 1123 label'
    )
    rc["handler"] = "wasmedge"
    assert validate(RUNTIME_CLASSES, rc, "Strict") == []


def test_object_names_and_labels():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wasm.lab", "labels": {"bad key": "x y"}}}
    causes = causes_of(NAMESPACES, ns)
    assert [c["field"] for c in causes] == ["metadata.name", "metadata.labels", "metadata.labels"]
    assert causes[1]["message"].startswith('Invalid value: "bad key": name part must consist of alphanumeric')
    assert causes[2]["message"].startswith('Invalid value: "x y": a valid label must be an empty string')
    nameless = pod()
    del nameless["metadata"]["name"]
    assert causes_of(PODS, nameless) == [
        {
            "reason": "FieldValueRequired",
            "field": "metadata.name",
            "message": "Required value: name or generateName is required",
        }
    ]
    nameless["metadata"]["generateName"] = "p-"
    assert validate(PODS, nameless, "Strict") == []
    long = pod()
    long["metadata"]["name"] = "a" * 254
    assert causes_of(PODS, long)[0]["message"] == f'Invalid value: "{"a" * 254}": must be no more than 253 characters'


# -- patch metadata ----------------------------------------------------------------------------


def test_merge_info_reads_the_schema_extensions():
    info = schemas().merge_info
    assert info(DEPLOYMENTS, ("spec", "template", "spec", "containers")) == MergeInfo("merge", "name", "map", ("name",))
    assert info(DEPLOYMENTS, ("spec", "template", "spec", "containers", "ports")) == MergeInfo(
        "merge", "containerPort", "map", ("containerPort", "protocol")
    )
    assert info(PODS, ("spec", "volumes")).strategy == "merge,retainKeys"
    assert info(DEPLOYMENTS, ("spec", "strategy")).strategy == "retainKeys"
    assert info(PODS, ("spec", "containers", "args")) == MergeInfo(None, None, "atomic", ())
    assert info(PODS, ("metadata", "finalizers")) == MergeInfo("merge", None, "set", ())
    assert info(PODS, ("spec", "nosuch")) == MergeInfo(None, None, None, ())


# -- OpenAPI v3 --------------------------------------------------------------------------------


def test_openapi_index_lists_every_group_version_with_its_hash():
    index = schemas().openapi_index()
    expected = {r.group_version_path for r in RESOURCES.every_version() if r.schema}
    assert set(index["paths"]) == expected
    for gv, entry in index["paths"].items():
        digest = hashlib.sha512(schemas().openapi_document(gv)).hexdigest().upper()
        assert entry == {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}


def _all_refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "$ref" in value:
            yield value["$ref"]
        for item in value.values():
            yield from _all_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_refs(item)


def test_openapi_document_structure():
    document = json.loads(schemas().openapi_document("apis/apps/v1"))
    assert document["openapi"] == "3.0.0"
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "application/apply-patch+yaml" in patch["requestBody"]["content"]
    collection = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert set(collection) >= {"get", "post"}
    components = document["components"]["schemas"]
    assert components["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    replicas = components["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]
    assert replicas["type"] == "integer" and replicas["nullable"] is True
    assert components["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    refs = set(_all_refs(document))
    assert refs and all(r.startswith("#/components/schemas/") for r in refs)
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(components)  # every reference resolves
    assert "io.k8s.api.core.v1.Pod" not in components  # only what this group-version reaches


def test_openapi_documents_are_rendered_once():
    assert schemas().openapi_document("api/v1") is schemas().openapi_document("api/v1")
    with pytest.raises(KeyError):
        schemas().openapi_document("apis/nosuch/v1")


# -- the real kubectl ----------------------------------------------------------------------------


def _discovery_app():
    """A server with only legacy discovery, /version and the OpenAPI v3 endpoints."""
    from aiohttp import web

    groups: dict[str, list] = {}
    for r in RESOURCES:
        groups.setdefault(r.group, []).append(r)

    def resource_list(gv: str, members) -> dict[str, Any]:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.singular,
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": list(r.verbs),
                    "shortNames": list(r.short_names),
                }
                for r in members
            ],
        }

    async def handle(request: web.Request) -> web.Response:
        path = request.path.strip("/")
        if path == "version":
            return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path == "apis":
            return web.json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                            "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                        }
                        for g in groups
                        if g
                    ],
                }
            )
        if path == "api/v1":
            return web.json_response(resource_list("v1", groups[""]))
        if path.startswith("apis/") and path.count("/") == 2:
            _, group, version = path.split("/")
            return web.json_response(resource_list(f"{group}/{version}", groups.get(group, [])))
        if path == "openapi/v3":
            return web.json_response(schemas().openapi_index())
        if path.startswith("openapi/v3/"):
            try:
                body = schemas().openapi_document(path[len("openapi/v3/") :])
            except KeyError:
                raise web.HTTPNotFound() from None
            return web.Response(body=body, content_type="application/json")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


@pytest.fixture
def openapi_server() -> Iterator[str]:
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_discovery_app())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # the port the OS picked
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pod.spec.runtimeClassName"], ["KIND:       Pod", "FIELD: runtimeClassName <string>", "RuntimeClass"]),
        (["runtimeclass"], ["KIND:       RuntimeClass", "handler\t<string> -required-"]),
        (
            ["deployment.spec.strategy", "--recursive"],
            ["FIELD: strategy <DeploymentStrategy>", "maxSurge\t<IntOrString>"],
        ),
        (["pod.spec.containers.resources"], ["limits\t<map[string]Quantity>"]),
    ],
)
def test_kubectl_explain_reads_the_documents(openapi_server, tmp_path, args, expected):
    kubectl = KUBECTL or "kubectl"
    (tmp_path / "config").write_text("apiVersion: v1\nkind: Config\n")
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "config")}
    result = subprocess.run(
        [kubectl, "--server", openapi_server, "explain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, result.stdout
