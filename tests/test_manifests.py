"""Manifest builders: the dicts are what a learner would write, valid against the Kubernetes schema, and bad
input is refused before any cluster sees it."""

from __future__ import annotations

import kubernetes_validate
import pytest

from labkit.errors import InvalidManifest, LabkitError
from labkit.manifests import (
    Mount,
    host_path,
    runtime_class,
    service,
    wasm_deployment,
    wasm_job,
)

IMAGE = "ghcr.io/containerd/runwasi/wasi-demo-app:latest"
#: The Kubernetes schema the builders are checked against (k3s 1.32 in the live CI).
K8S_VERSION = "1.32"


def valid(obj):
    """Raise unless *obj* validates strictly (no unknown fields) against the Kubernetes OpenAPI schema."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return obj


def test_runtime_class_defaults_and_handler():
    assert valid(runtime_class()) == {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "wasmedge"},
        "handler": "wasmedge",
    }
    assert runtime_class("wasm", handler="wasmedge")["handler"] == "wasmedge"
    with pytest.raises(InvalidManifest, match="'Wasm_Edge' is not a valid RuntimeClass name") as e:
        runtime_class("Wasm_Edge")
    assert "'wasm-edge'" in str(e.value.fix)


def test_wasm_deployment_is_the_yaml_a_learner_writes():
    models = host_path("/home/runner/models", type="Directory")
    d = valid(
        wasm_deployment(
            "llama",
            "ghcr.io/second-state/llama-api-server:latest",
            command=["llama-api-server.wasm"],
            args=["--port", "8080"],
            env={"WASMEDGE_PLUGIN_PATH": "/home/runner/.wasmedge/plugin"},
            volumes=[models, host_path("/lib/x86_64-linux-gnu/libc.so.6", type="File")],
            replicas=2,
            labels={"tier": "backend"},
            annotations={"note": "x"},
            pod_annotations={"module.wasm.image/variant": "compat-smart"},
            image_pull_policy="Never",
            ports=[8080],
        )
    )
    assert d["metadata"] == {"name": "llama", "labels": {"tier": "backend"}, "annotations": {"note": "x"}}
    assert d["spec"]["replicas"] == 2 and d["spec"]["selector"] == {"matchLabels": {"app": "llama"}}
    template = d["spec"]["template"]
    assert template["metadata"] == {
        "labels": {"app": "llama", "tier": "backend"},
        "annotations": {"module.wasm.image/variant": "compat-smart"},
    }
    assert template["spec"]["runtimeClassName"] == "wasmedge"
    [c] = template["spec"]["containers"]
    assert c["command"] == ["llama-api-server.wasm"] and c["args"] == ["--port", "8080"]
    assert c["env"] == [{"name": "WASMEDGE_PLUGIN_PATH", "value": "/home/runner/.wasmedge/plugin"}]
    assert c["ports"] == [{"containerPort": 8080}] and c["imagePullPolicy"] == "Never"
    assert c["volumeMounts"] == [
        {"name": "home-runner-models", "mountPath": "/home/runner/models", "readOnly": True},
        {"name": "lib-x86-64-linux-gnu-libc-so-6", "mountPath": "/lib/x86_64-linux-gnu/libc.so.6", "readOnly": True},
    ]
    assert template["spec"]["volumes"][0] == {
        "name": "home-runner-models",
        "hostPath": {"path": "/home/runner/models", "type": "Directory"},
    }


def test_minimal_deployment_has_no_empty_fields_and_crun_needs_no_runtime_class():
    d = valid(wasm_deployment("demo", IMAGE, runtime_class=None))
    spec = d["spec"]["template"]["spec"]
    assert spec == {"containers": [{"name": "demo", "image": IMAGE}]}


def test_wasm_job_runs_once():
    job = valid(wasm_job("exit3", IMAGE, args=["exit", "3"]))
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["containers"][0]["args"] == ["exit", "3"]
    assert "selector" not in spec  # the Job controller makes its own
    assert wasm_job("retry", IMAGE, backoff_limit=2)["spec"]["backoffLimit"] == 2


def test_service_selects_by_app_name_or_labels():
    svc = valid(service("llama", "llama", 80, 8080, labels={"labkit.io/backend": "cheap"}))
    assert svc["spec"] == {"selector": {"app": "llama"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    assert svc["metadata"]["labels"] == {"labkit.io/backend": "cheap"}
    assert service("s", {"tier": "backend"}, 8080)["spec"]["ports"][0]["targetPort"] == 8080
    assert valid(service("s", "web", 80, "http"))["spec"]["ports"][0]["targetPort"] == "http"


def test_mounts_are_read_only_unless_asked_and_same_path_by_default():
    m = host_path("/home/runner/.wasmedge/plugin/libwasmedgePluginWasiNN.so", type="File")
    assert m.mount()["mountPath"] == m.path and m.mount()["readOnly"] is True
    writable = host_path("/tmp/out", "/out", read_only=False, name="out")
    assert writable.mount() == {"name": "out", "mountPath": "/out", "readOnly": False}
    assert writable.volume() == {"name": "out", "hostPath": {"path": "/tmp/out"}}
    long = host_path("/" + "/".join(["directory"] * 10) + "/libwasmedge.so.0")
    assert len(long.volume_name) <= 63 and long.volume_name.endswith("libwasmedge-so-0")


@pytest.mark.parametrize(
    ("call", "message", "fix"),
    [
        (lambda: wasm_deployment("demo", IMAGE, env={"PORT": 8080}), "has the int value 8080", "'8080'"),  # type: ignore[dict-item]
        (
            lambda: wasm_deployment("demo", IMAGE, env={"1BAD": "x"}),
            "name '1BAD' is not valid",
            "not starting with a digit",
        ),
        (lambda: wasm_deployment("demo", IMAGE, command="/app.wasm"), "command must be a list", "['/app.wasm']"),
        (lambda: wasm_deployment("demo", IMAGE, args=["--port", 8080]), "only strings", "'8080'"),  # type: ignore[list-item]
        (lambda: wasm_deployment("Demo", IMAGE), "'Demo' is not a valid name", "'demo'"),
        (lambda: wasm_deployment("demo", "my image"), "is not an image reference", "wasi-demo-app"),
        (lambda: wasm_deployment("demo", IMAGE, replicas=-1), "replicas must be", "replicas=2"),
        (lambda: wasm_deployment("demo", IMAGE, image_pull_policy="never"), "imagePullPolicy 'never'", "Never"),
        (lambda: wasm_deployment("demo", IMAGE, ports=[70000]), "70000 is not a port", "1 to 65535"),
        (lambda: wasm_deployment("demo", IMAGE, labels={"tier": 1}), "map strings to strings", "'1'"),  # type: ignore[dict-item]
        (lambda: wasm_deployment("demo", IMAGE, volumes=["/models"]), "must be Mount objects", "host_path"),  # type: ignore[list-item]
        (
            lambda: wasm_deployment("demo", IMAGE, volumes=[host_path("/a/b"), host_path("/a-b")]),
            "share the volume name",
            "name=",
        ),
        (lambda: wasm_job("j", IMAGE, backoff_limit=True), "backoff_limit must be", "backoff_limit=0"),
        (lambda: host_path("models"), "'models' is not absolute", "'/models'"),
        (lambda: host_path("/models", type="Dir"), "type 'Dir'", "Directory"),
        (lambda: service("s", {}, 80), "non-empty selector", "Deployment's name"),
    ],
)
def test_bad_input_is_refused_with_a_fix(call, message, fix):
    with pytest.raises(InvalidManifest) as e:
        call()
    assert message in e.value.problem and fix in str(e.value.fix)
    assert isinstance(e.value, LabkitError)


def test_mount_is_a_value():
    assert host_path("/a") == Mount("/a")


@pytest.mark.parametrize(
    "module", ["labkit.manifests", "labkit.manifests.checks", "labkit.manifests.volumes", "labkit.manifests.workloads"]
)
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("seconds", [-1, 2.5, "10", True])
def test_node_loss_toleration_must_be_whole_seconds_from_zero(seconds: object) -> None:
    with pytest.raises(InvalidManifest, match="node_loss_toleration_s must be"):
        wasm_deployment("web", "img", node_loss_toleration_s=seconds)


def test_node_loss_toleration_replaces_both_node_lost_defaults() -> None:
    spec = wasm_deployment("web", "img", node_loss_toleration_s=0)["spec"]["template"]["spec"]
    assert [(t["key"], t["tolerationSeconds"]) for t in spec["tolerations"]] == [
        ("node.kubernetes.io/not-ready", 0),
        ("node.kubernetes.io/unreachable", 0),
    ]
    assert "tolerations" not in wasm_deployment("web", "img")["spec"]["template"]["spec"]
