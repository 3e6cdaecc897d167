"""Diagnosis: every known failure signature from realistic pod/event/log fixtures, then against a real sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.diagnosis import diagnose, diagnose_pod
from labkit.errors import Diagnosis

IMAGE = "ghcr.io/containerd/runwasi/wasi-demo-app:latest"


def pod(
    name: str = "demo-7d9c5b6f4-x2x9k",
    *,
    phase: str = "Pending",
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    restarts: int = 0,
    command: list[str] | None = None,
    node: str | None = "k3s-node",
    conditions: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod as the API returns it, with one container in *state*."""
    container: dict[str, Any] = {"name": "demo", "image": IMAGE}
    if command:
        container["command"] = command
    spec: dict[str, Any] = {"runtimeClassName": "wasmedge", "containers": [container]}
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [
            {
                "name": "demo",
                "image": IMAGE,
                "ready": False,
                "restartCount": restarts,
                "state": state,
                "lastState": last_state or {},
            }
        ]
    meta: dict[str, Any] = {"name": name, "namespace": "lab-01", "uid": "0b7c3c3e-1d2f-4f6e-9a4b-3c2d1e0f9a8b"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def event(
    reason: str, message: str, type_: str = "Warning", kind: str = "Pod", name: str = "demo-7d9c5b6f4-x2x9k"
) -> dict[str, Any]:
    return {
        "type": type_,
        "reason": reason,
        "message": message,
        "count": 3,
        "involvedObject": {"kind": kind, "name": name, "namespace": "lab-01"},
        "lastTimestamp": "2026-01-01T10:00:00Z",
    }


CREATING = {"waiting": {"reason": "ContainerCreating"}}


def crash(exit_code: int, restarts: int = 4) -> dict[str, Any]:
    return {
        "state": {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container=demo"}
        },
        "last_state": {"terminated": {"reason": "Error", "exitCode": exit_code}},
        "restarts": restarts,
        "phase": "Running",
    }


def test_handler_not_configured_names_the_handler_and_the_node_side_fix():
    d = diagnose_pod(
        pod(state=CREATING),
        [
            event("Scheduled", "Successfully assigned lab-01/demo-7d9c5b6f4-x2x9k to k3s-node", "Normal"),
            event(
                "FailedCreatePodSandBox",
                "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to "
                'get sandbox runtime: no runtime for "wasm" is configured',
            ),
        ],
        "",
    )
    assert d.signature == "runtime-handler-missing"
    assert "'wasm'" in d.summary and "handler" in d.fix and "crictl info" in d.fix
    assert any('no runtime for "wasm"' in e for e in d.evidence)


def test_runtime_class_not_found_from_the_replicaset_event_without_any_pod():
    d = diagnose_pod(
        None,
        [
            event(
                "FailedCreate",
                'Error creating: pods "demo-7d9c5b6f4-" is forbidden: pod rejected: RuntimeClass "wasmedge" not found',
                kind="ReplicaSet",
                name="demo-7d9c5b6f4",
            )
        ],
    )
    assert d.signature == "runtimeclass-not-found"
    assert "runtime_class('wasmedge'" in d.fix


@pytest.mark.parametrize("arg0", ["/wasi-demo-app", "/wasi-demo.wasm"])
def test_cant_handle_spec_points_at_the_module_the_image_holds_without_guessing(arg0):
    """A compat image holding /wasi-compat.wasm, run with command ["/wasi-demo.wasm"]: appending .wasm to
    arg0 would send the learner to /wasi-demo.wasm.wasm, so the fix names the image's entrypoint instead."""
    p = pod(command=[arg0], **crash(128, 2))
    message = (  # runwasi's words, as k3s's kubelet shows them (no labkit hint inside)
        "failed to create containerd task: failed to create shim task: failed to create container: exec process "
        "failed with error error in executing process : wasmedge executor can't handle spec"
    )
    p["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"] = message
    d = diagnose_pod(p, [event("Failed", f"Error: {message}")], "")
    assert d.signature == "cant-handle-spec" and arg0 in d.cause
    assert f"{arg0}.wasm" not in d.fix and "entrypoint" in d.fix
    assert d.evidence and all(message in e for e in d.evidence)  # the evidence is k3s's words, unchanged


@pytest.mark.parametrize(
    ("reason", "words"),
    [("ErrImageNeverPull", "import"), ("ImagePullBackOff", "image name"), ("ErrImagePull", "image name")],
)
def test_image_not_there(reason, words):
    message = (
        f'Container image "{IMAGE}" is not present with pull policy of Never'
        if reason == "ErrImageNeverPull"
        else f'Back-off pulling image "{IMAGE}"'
    )
    d = diagnose_pod(pod(state={"waiting": {"reason": reason, "message": message}}), [event(reason, message)], "")
    assert d.signature == "image-not-imported"
    assert reason in d.summary and IMAGE in d.summary and words in d.fix
    if reason == "ErrImageNeverPull":
        assert "k3s ctr images import --all-platforms" in d.fix


WASI_NN_LOG = """[2025-03-01 10:00:00.000] [error] instantiation failed: unknown import, Code: 0x302
[2025-03-01 10:00:00.000] [error]     When linking module: "wasi_ephemeral_nn" , function name: "compute"
[2025-03-01 10:00:00.000] [error]     At AST node: import description
"""


def test_unknown_import_wasi_nn_asks_for_the_plugin_mounts_and_env():
    d = diagnose_pod(pod(**crash(137)), [event("BackOff", "Back-off restarting failed container demo")], WASI_NN_LOG)
    assert d.signature == "unknown-import-wasi-nn"
    assert "wasi_ephemeral_nn::compute" in d.summary and "137" in d.cause
    assert "WASMEDGE_PLUGIN_PATH" in d.fix and "ldd" in d.fix and "WASMEDGE_WASINN_PRELOAD" in d.fix
    assert "labkit.wasinn_mounts" in d.fix and "gnu build" in d.fix


def test_unknown_import_wasi_nn_under_crun_asks_for_crun_1_15():
    """Reference §11: the same failure under crun/podman, where crun before 1.15 loads no WasmEdge plugin."""
    p = pod(**crash(137))
    p["metadata"]["annotations"] = {"module.wasm.image/variant": "compat-smart"}
    d = diagnose_pod(p, [], WASI_NN_LOG)
    assert d.signature == "unknown-import-wasi-nn"
    assert "crun 1.15" in d.fix and "WASMEDGE_PLUGIN_PATH" in d.fix and "gnu build" not in d.fix


def with_env(p: dict[str, Any], **env: str) -> dict[str, Any]:
    p["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return p


#: WasmEdge 0.14.1 when the plugin is mounted but libwasmedge.so.0 is not (the plugin loader's two lines, then
#: the link error); the sandbox prints the same lines (tests/sandbox/test_wasinn_mounts.py).
LIBRARY_MISSING_LOG = """[2025-03-01 10:00:00.000] [error] loading failed: invalid path, Code: 0x100
[2025-03-01 10:00:00.000] [error]     load library failed:libwasmedge.so.0: cannot open shared object file: \
No such file or directory
[2025-03-01 10:00:00.000] [error] instantiation failed: unknown import, Code: 0x302
[2025-03-01 10:00:00.000] [error]     When linking module: "wasi_ephemeral_nn" , function name: "load_by_name"
"""


def test_the_plugin_without_libwasmedge_asks_for_the_lib_dir_not_the_plugin():
    d = diagnose_pod(pod(**crash(137)), [], LIBRARY_MISSING_LOG)
    assert d.signature == "wasi-nn-library-missing"
    assert "libwasmedge.so.0 is not in the pod" in d.summary
    assert "~/.wasmedge/lib" in d.fix and "Directory" in d.fix and "wasinn_mounts" in d.fix
    assert any("load library failed:libwasmedge.so.0" in e for e in d.evidence)


def test_a_missing_system_library_is_named_from_the_evidence():
    log = (
        "[error] loading failed: invalid path, Code: 0x100\n"
        "[error]     load library failed:libstdc++.so.6: cannot open shared object file: No such file or directory\n"
        "[error] instantiation failed: unknown import, Code: 0x302\n"
        '[error]     When linking module: "wasi_ephemeral_nn" , function name: "compute"\n'
    )
    d = diagnose_pod(pod(**crash(137)), [], log)
    assert d.signature == "wasi-nn-library-missing" and "libstdc++.so.6" in d.summary
    assert "`ldd <plugin>` shows for libstdc++.so.6" in d.fix and "same path" in d.fix


@pytest.mark.parametrize(
    ("value", "message", "words"),
    [  # the texts the sandbox prints (kubelet/wasinn_abi.py), wasmedge-sdk NNPreload::from_str's
        (
            "default:GGML:CPU",
            (
                "Failed to convert to NNPreload value. Invalid preload string: default:GGML:CPU. "
                "The correct format is: 'alias:backend:target:path'"
            ),
            "exactly four",
        ),
        ("default:CPU:GGML:/m.gguf", "Failed to convert to NNBackend value. Unknown NNBackend type: CPU", "backend"),
        (
            "default:GGML:NPU:/m.gguf",
            "Failed to convert to ExecutionTarget value. Unknown ExecutionTarget type: NPU",
            "CPU, GPU, TPU or AUTO",
        ),
    ],
)
def test_a_malformed_preload_names_the_value_and_the_part(value, message, words):
    p = with_env(
        pod(phase="Failed", state={"terminated": {"reason": "Error", "exitCode": 137}}), WASMEDGE_WASINN_PRELOAD=value
    )
    d = diagnose_pod(p, [], f"error running start function: {message}\n")
    assert d.signature == "wasi-nn-preload-malformed"
    assert repr(value) in d.summary and words in d.cause and "alias:backend:target:path" in d.fix


def test_the_cli_without_the_plugin_does_not_know_nn_preload():
    d = diagnose_pod(pod(**crash(1)), [], "unknown option: nn-preload\n")
    assert d.signature == "wasi-nn-plugin-not-installed" and "--plugins wasi_nn-ggml" in d.fix


def test_wasi_nn_plugin_not_installed_points_at_the_plugin_path():
    p = with_env(pod(**crash(1)), WASMEDGE_PLUGIN_PATH="/home/runner/.wasmedge/lib")
    d = diagnose_pod(p, [], "[error] WASI-NN plugin not installed\n")
    assert d.signature == "wasi-nn-plugin-path"
    assert "'/home/runner/.wasmedge/lib'" in d.cause and "directory holding libwasmedgePluginWasiNN.so" in d.fix


def test_wasi_logging_on_one_line_and_the_patch_it_needs():
    log = '[error] instantiation failed: unknown import "wasi:logging/logging" "log", Code: 0x302\n'
    d = diagnose_pod(pod(**crash(137)), [], log)
    assert d.signature == "unknown-import-wasi-logging"
    assert "#4003" in d.cause and "disable_wasi_logging.patch" in d.fix and "main.rs" in d.fix


def test_unknown_import_wasi_logging_variant():
    log = (
        "[error] instantiation failed: unknown import, Code: 0x302\n"
        '[error]     When linking module: "wasi:logging/logging" , function name: "log"\n'
    )
    d = diagnose_pod(pod(**crash(137)), [], log)
    assert d.signature == "unknown-import-wasi-logging" and "disable_wasi_logging" in d.fix


def test_unknown_import_of_another_module_names_it():
    log = (
        "[error] instantiation failed: unknown import, Code: 0x62\n"
        '[error]  When linking module: "env" , function name: "host_add"\n'
    )
    d = diagnose_pod(pod(**crash(1)), [], log)
    assert d.signature == "unknown-import" and "env::host_add" in d.summary


def test_exec_format_error_with_and_without_the_crun_annotation():
    msg = "exec /wasi-demo-app.wasm: exec format error"
    plain = diagnose_pod(pod(**crash(1)), [], msg)
    assert plain.signature == "exec-format-error" and "module.wasm.image/variant: compat-smart" in plain.fix
    annotated = diagnose_pod(pod(annotations={"module.wasm.image/variant": "compat-smart"}, **crash(1)), [], msg)
    assert annotated.signature == "exec-format-error" and "pod_annotations" in annotated.fix
    assert "did not pass it through" in annotated.cause


@pytest.mark.parametrize(
    "line",
    [
        'Error: Os { code: 83, kind: Uncategorized, message: "No data available" }',
        "request failed: error sending request: dns error: Success (os error 85)",
        "thread 'main' panicked: failed to lookup address information: Name or service not known",
    ],
)
def test_dns_failures_in_logs(line):
    d = diagnose_pod(pod(**crash(1)), [], f"connecting to backend\n{line}\n")
    assert d.signature == "dns-failure"
    assert "DNS_SERVER=" in d.fix and "svc.cluster.local" in d.fix
    assert line in d.evidence


def test_crash_loop_shows_exit_code_and_last_log_lines():
    log = "\n".join(f"line {i}" for i in range(20)) + "\nfatal: config file /etc/app.toml not found\n"
    d = diagnose_pod(pod(**crash(2, restarts=5)), [], log)
    assert d.signature == "crash-loop"
    assert "5 restarts" in d.summary and "exit code 2" in d.summary
    assert d.evidence[-1] == "log: fatal: config file /etc/app.toml not found"
    assert "log: line 0" not in d.evidence  # only the tail


def test_unschedulable_quotes_the_scheduler():
    msg = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    p = pod(
        node=None, conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]
    )
    d = diagnose_pod(p, [event("FailedScheduling", msg)], "")
    assert d.signature == "unschedulable" and msg in d.cause and "nodeSelector" in d.fix


def test_old_failed_scheduling_events_do_not_hide_a_later_failure():
    p = pod(**crash(3))
    d = diagnose_pod(p, [event("FailedScheduling", "0/1 nodes are available")], "boom\n")
    assert d.signature == "crash-loop"


def test_job_exit_code_is_explained():
    p = pod(phase="Failed", state={"terminated": {"reason": "Error", "exitCode": 3}})
    d = diagnose_pod(p, [], "exiting with 3\n")
    assert d.signature == "exit-nonzero" and "code 3" in d.summary and "own exit status" in d.cause


def test_healthy_and_unknown_pods_have_no_signature():
    ready = pod(
        phase="Running",
        state={"running": {"startedAt": "2026-01-01T10:00:00Z"}},
        conditions=[{"type": "Ready", "status": "True"}],
    )
    assert diagnose_pod(ready, [], "").signature is None
    assert "nothing is wrong" in diagnose_pod(ready, [], "").summary
    starting = diagnose_pod(pod(state=CREATING), [event("Pulling", "Pulling image", "Normal")], "")
    assert starting.signature is None and "no known failure" in starting.summary
    assert "demo: ContainerCreating" in starting.evidence
    noisy = [event("FailedMount", "volume not ready yet"), *(event("Pulling", f"pull {i}", "Normal") for i in range(4))]
    evidence = diagnose_pod(pod(state=CREATING), noisy, "").evidence
    assert evidence[:2] == ["demo: ContainerCreating", "Warning FailedMount: volume not ready yet"], (
        "an older warning is kept"
    )
    assert evidence[2:] == [f"Normal Pulling: pull {i}" for i in (1, 2, 3)]


def test_diagnosis_renders_as_text_and_html():
    d = Diagnosis("it <broke>", "because", "do this", ["evidence & more"], "crash-loop")
    text = str(d)
    assert text.splitlines() == [
        "it <broke>",
        "  cause: because",
        "  fix:   do this",
        "  evidence:",
        "    evidence & more",
    ]
    page = d._repr_html_()
    assert "it &lt;broke&gt;" in page and "evidence &amp; more" in page and "[crash-loop]" in page


# --------------------------------------------------------------------------------------------- against a sandbox


@pytest.fixture(scope="module")
def cluster(sandbox_cluster):
    return sandbox_cluster


@pytest.fixture(scope="module")
def namespace(cluster):
    from labkit.operations import apply

    apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diag"}})
    return "diag"


def test_diagnose_a_deployment_whose_runtime_class_is_missing(cluster, namespace):
    from labkit.errors import WaitFailed
    from labkit.manifests import wasm_deployment
    from labkit.operations import apply, wait_for

    apply(
        cluster,
        wasm_deployment("norc", "docker.io/labkit/wasi-demo:latest", runtime_class="no-such-class"),
        namespace=namespace,
    )
    # the ReplicaSet's FailedCreate event is what tells; wait_for sees it and stops early with the diagnosis
    with pytest.raises(WaitFailed) as failed:
        wait_for(cluster, "Deployment", "norc", namespace=namespace, timeout=20)
    assert failed.value.diagnosis is not None
    assert failed.value.diagnosis.signature == "runtimeclass-not-found"
    assert 'RuntimeClass "no-such-class" not found' in str(failed.value)
    d = diagnose(cluster, "deployment/norc", namespace=namespace)
    assert d.signature == "runtimeclass-not-found" and "no-such-class" in d.summary


def test_diagnose_a_pod_by_name_from_status_and_events_the_node_wrote(cluster, namespace):
    """Play the kubelet of a node no sandbox agent runs: its status and events are what diagnose reads."""
    from kubernetes import client

    body = pod("played", command=["/wasi-demo-app.wasm"], node="played-node")
    body["metadata"].pop("uid")
    body["metadata"]["namespace"] = namespace
    del body["status"]
    created = cluster.core.create_namespaced_pod(namespace, body)
    cluster.core.patch_namespaced_pod_status(
        "played",
        namespace,
        {
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "demo",
                        "image": IMAGE,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}},
                    }
                ],
            }
        },
    )
    cluster.core.create_namespaced_event(
        namespace,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="played.1"),
            reason="ErrImageNeverPull",
            type="Warning",
            message=f'Container image "{IMAGE}" is not present with pull policy of Never',
            involved_object=client.V1ObjectReference(
                kind="Pod", name="played", namespace=namespace, uid=created.metadata.uid
            ),
        ),
    )
    d = diagnose(cluster, "played", namespace=namespace)
    assert d.signature == "image-not-imported"
    assert any("is not present with pull policy of Never" in e for e in d.evidence)


def test_docstring_examples():
    import doctest

    import labkit.diagnosis

    result = doctest.testmod(labkit.diagnosis, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(
    ("message", "signature", "fix"),
    [
        (
            (
                "failed to create containerd task: failed to start shim: failed to resolve runtime path: "
                'runtime "io.containerd.wasmedge.v1" binary not installed "containerd-shim-wasmedge-v1": '
                "file does not exist: unknown"
            ),
            "shim-not-installed",
            "/usr/local/bin",
        ),
        (
            (
                "failed to create containerd task: failed to stop unit cri-containerd-4f3a.scope: "
                "dbus error: Connection refused"
            ),
            "systemd-cgroup-dbus",
            "dbus",
        ),
        (
            (
                'failed to pull and unpack image "ghcr.io/containerd/runwasi/wasi-demo-app:latest": '
                "mismatched image rootfs and manifest layers"
            ),
            "containerd-too-old",
            "1.6.25",
        ),
    ],
)
def test_node_side_failures_from_events(message, signature, fix):
    d = diagnose_pod(
        pod(state={"waiting": {"reason": "RunContainerError", "message": message}}),
        [event("Failed", f"Error: {message}")],
        "",
    )
    assert d.signature == signature and fix in d.fix
    assert any(message in e for e in d.evidence)


def _with_dns_server(value: str) -> dict[str, Any]:
    spec = pod(**crash(1))
    spec["spec"]["containers"][0]["env"] = [{"name": "DNS_SERVER", "value": value}]
    return spec


def test_a_short_name_with_dns_server_is_told_to_use_the_fqdn():
    d = diagnose_pod(
        _with_dns_server("10.43.0.10:53"), [], "nslookup: web: No address associated with hostname (os error 83)\n"
    )
    assert d.signature == "dns-short-name"
    assert "web.<namespace>.svc.cluster.local" in d.fix and "no search domains" in d.cause


def test_an_fqdn_that_fails_with_dns_server_set_is_not_called_a_short_name():
    line = "nslookup: web.lab.svc.cluster.local: No address associated with hostname (os error 83)"
    assert diagnose_pod(_with_dns_server("10.43.0.10:53"), [], line).signature == "dns-failure"


@pytest.mark.parametrize(
    "line",
    [
        "nslookup: web.lab.svc.cluster.local: Connection refused (os error 14)",
        "nslookup: DNS_SERVER=10.43.0.10: invalid socket address (want ip:port, e.g. 10.43.0.10:53)",
    ],
)
def test_an_unreachable_dns_server_is_named(line):
    d = diagnose_pod(_with_dns_server("10.43.0.99:53"), [], line)
    assert d.signature == "dns-server-unreachable"
    assert "DNS_SERVER=10.43.0.99:53" in d.summary and "kube-dns" in d.fix


def test_dns_server_without_effect_points_at_an_old_tokio_wasi():
    line = "request failed: error sending request: dns error: Success (os error 85)"
    d = diagnose_pod(_with_dns_server("10.43.0.10:53"), [], line)
    assert d.signature == "dns-server-ignored" and "tokio_wasi" in d.cause


def test_without_dns_server_the_fix_is_to_set_it():
    d = diagnose_pod(pod(**crash(1)), [], "nslookup: web: Name or service not known (os error 84)\n")
    assert d.signature == "dns-failure" and "DNS_SERVER=" in d.fix


def test_the_http_client_apps_failures_read_like_nslookups():
    refused = "http-get: greeter.lab-04.svc.cluster.local: Connection refused (os error 14)"
    assert diagnose_pod(_with_dns_server("127.43.0.99:53"), [], refused).signature == "dns-server-unreachable"
    short = "http-get: greeter: No address associated with hostname (os error 83)"
    assert diagnose_pod(_with_dns_server("127.43.0.10:53"), [], short).signature == "dns-short-name"
    assert diagnose_pod(
        pod(**crash(1)), [], "http-get: greeter: Name or service not known (os error 84)"
    ).signature == ("dns-failure")
