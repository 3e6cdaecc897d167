"""The sandbox API server as the real kubectl 1.32 sees it (the requests kubectl 1.32.5 sends)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

from tests.sandboxes import is_service_ip

MANIFEST = textwrap.dedent("""\
    apiVersion: node.k8s.io/v1
    kind: RuntimeClass
    metadata:
      name: wasmedge-{ns}
    handler: wasmedge
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: wasi-demo
      namespace: {ns}
    spec:
      replicas: {replicas}
      selector:
        matchLabels: {{app: wasi-demo}}
      template:
        metadata:
          labels: {{app: wasi-demo}}
        spec:
          runtimeClassName: wasmedge
          containers:
          - name: demo
            image: ghcr.io/containerd/runwasi/wasi-demo-app:latest
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: demo
      namespace: {ns}
    spec:
      selector: {{app: wasi-demo}}
      ports:
      - port: 8080
    """)


def test_get_nodes_shows_k3s_like_table(kubectl):
    out = kubectl("get", "nodes").stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert "labkit-server-0" in out and "Ready" in out and "control-plane" in out
    wide = kubectl("get", "nodes", "-o", "wide").stdout
    assert "CONTAINER-RUNTIME" in wide and "labkit-sandbox" in wide  # honesty: the runtime says it is simulated


def test_version_and_api_resources(kubectl):
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].endswith("+labkit.sandbox")
    resources = kubectl("api-resources").stdout
    for line in ("runtimeclasses", "deployments", "deploy", "rbac.authorization.k8s.io"):
        assert line in resources


def test_typed_create_commands_send_protobuf_and_work(kubectl, namespace):
    kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2", "-n", namespace)
    kubectl("create", "configmap", "cfg", "--from-literal=a=b", "-n", namespace)
    kubectl("create", "secret", "generic", "s", "--from-literal=k=v", "-n", namespace)
    kubectl("create", "serviceaccount", "robot", "-n", namespace)
    deploy = json.loads(kubectl("get", "deploy", "web", "-n", namespace, "-o", "json").stdout)
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert deploy["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    cm = json.loads(kubectl("get", "cm", "cfg", "-n", namespace, "-o", "json").stdout)
    assert cm["data"] == {"a": "b"}
    assert "default" in kubectl("get", "sa", "-n", namespace).stdout  # the serviceaccount controller's default account


def test_apply_create_unchanged_configured(kubectl, namespace):
    manifest = MANIFEST.format(ns=namespace, replicas=1)
    first = kubectl("apply", "-f", "-", input=manifest).stdout
    assert f"runtimeclass.node.k8s.io/wasmedge-{namespace} created" in first
    assert "deployment.apps/wasi-demo created" in first and "service/demo created" in first
    again = kubectl("apply", "-f", "-", input=manifest).stdout
    assert "deployment.apps/wasi-demo unchanged" in again
    changed = kubectl("apply", "-f", "-", input=MANIFEST.format(ns=namespace, replicas=3)).stdout
    assert "deployment.apps/wasi-demo configured" in changed
    deploy = json.loads(kubectl("get", "deploy", "wasi-demo", "-n", namespace, "-o", "json").stdout)
    assert deploy["spec"]["replicas"] == 3
    assert deploy["metadata"]["generation"] == 2
    svc = json.loads(kubectl("get", "svc", "demo", "-n", namespace, "-o", "json").stdout)
    assert is_service_ip(svc["spec"]["clusterIP"])
    kubectl("delete", "runtimeclass", f"wasmedge-{namespace}")


def test_server_side_apply_and_conflict(kubectl, namespace):
    manifest = MANIFEST.format(ns=namespace, replicas=1).split("---\n")[1]
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", "-", input=manifest).stdout
    kubectl("scale", "deployment", "wasi-demo", "--replicas=4", "-n", namespace)
    conflict = kubectl("apply", "--server-side", "-f", "-", input=manifest, check=False)
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower() and ".spec.replicas" in conflict.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)
    assert kubectl("get", "deploy", "wasi-demo", "-n", namespace, "-o", "jsonpath={.spec.replicas}").stdout == "1"


def test_label_annotate_patch_scale(kubectl, namespace):
    kubectl("create", "-f", "-", input=MANIFEST.format(ns=namespace, replicas=1).split("---\n")[1])
    kubectl("label", "deploy", "wasi-demo", "tier=demo", "-n", namespace)
    kubectl("annotate", "deploy", "wasi-demo", "labkit.io/note=hello", "-n", namespace)
    kubectl(
        "patch",
        "deploy",
        "wasi-demo",
        "-n",
        namespace,
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"demo","env":[{"name":"A","value":"1"}]}]}}}}',
    )
    kubectl("patch", "deploy", "wasi-demo", "-n", namespace, "--type=merge", "-p", '{"metadata":{"labels":{"m":"x"}}}')
    kubectl(
        "patch",
        "deploy",
        "wasi-demo",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]',
    )
    out = kubectl("scale", "deployment", "wasi-demo", "--replicas=5", "-n", namespace).stdout
    assert "scaled" in out
    deploy = json.loads(kubectl("get", "deploy", "wasi-demo", "-n", namespace, "-o", "json").stdout)
    assert deploy["metadata"]["labels"] == {"tier": "demo", "m": "x"}
    assert deploy["metadata"]["annotations"]["labkit.io/note"] == "hello"
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("wasi-demo-app:latest")  # strategic merge kept the other fields
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert deploy["spec"]["revisionHistoryLimit"] == 3 and deploy["spec"]["replicas"] == 5


def test_errors_have_kubectl_wording(kubectl, namespace):
    missing = kubectl("get", "pod", "nosuch", "-n", namespace, check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): pods "nosuch" not found' in missing.stderr
    kubectl("create", "configmap", "dup", "-n", namespace)
    dup = kubectl("create", "configmap", "dup", "-n", namespace, check=False)
    assert 'error: failed to create configmap: configmaps "dup" already exists' in dup.stderr  # kubectl's own words
    dup_file = kubectl(
        "create",
        "-f",
        "-",
        check=False,
        input=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: dup, namespace: {namespace}}}\n",
    )
    assert (
        'Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" already exists'
        in dup_file.stderr
    )
    typo = kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: p, namespace: {namespace}}}
        spec:
          containers:
          - name: c
            imagee: x
        """),
    )
    assert typo.returncode != 0 and 'unknown field "spec.containers[0].imagee"' in typo.stderr
    no_ns = kubectl("get", "pods", "-n", "no-such-namespace", check=False)
    assert "No resources found in no-such-namespace namespace." in no_ns.stderr


def test_pods_are_scheduled_over_nodes(kubectl, namespace):
    for i in range(4):
        kubectl("run", f"p{i}", "--image=ghcr.io/containerd/runwasi/wasi-demo-app:latest", "-n", namespace)
    kubectl("wait", "--for=condition=PodScheduled", "pod", "--all", "-n", namespace, "--timeout=20s")
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert nodes == {"labkit-server-0", "labkit-agent-0"}  # spread over both nodes
    events = kubectl("get", "events", "-n", namespace).stdout
    assert "Scheduled" in events and "Successfully assigned" in events
    described = kubectl("describe", "pod", "p0", "-n", namespace).stdout
    assert "Successfully assigned" in described


def test_get_watch_streams_changes(kubectl, namespace):
    kubectl("create", "configmap", "w0", "-n", namespace)
    proc = subprocess.Popen(
        [kubectl.binary, "get", "cm", "-w", "-n", namespace, "--request-timeout=3s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env,
    )
    time.sleep(1.0)
    kubectl("create", "configmap", "w1", "-n", namespace)
    out, err = proc.communicate(timeout=30)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "DATA"], out + err
    assert any(line.startswith("w0 ") for line in lines) and any(line.startswith("w1 ") for line in lines)


def test_explain_uses_openapi_v3(kubectl):
    out = kubectl("explain", "pod.spec.runtimeClassName").stdout
    assert "RuntimeClass" in out and "FIELD: runtimeClassName" in out


def test_auth_can_i_for_admin_and_service_account(kubectl, namespace):
    assert kubectl("auth", "can-i", "create", "pods", "-n", namespace).stdout.strip() == "yes"
    kubectl("create", "serviceaccount", "watcher", "-n", namespace)
    token = kubectl("create", "token", "watcher", "-n", namespace).stdout.strip()
    as_sa = kubectl("--token", token, "get", "services", "-n", namespace, check=False)
    assert "Error from server (Forbidden)" in as_sa.stderr
    assert f'User "system:serviceaccount:{namespace}:watcher" cannot list resource "services"' in as_sa.stderr
    kubectl("create", "role", "svc-reader", "--verb=get,list,watch", "--resource=services", "-n", namespace)
    kubectl(
        "create",
        "rolebinding",
        "svc-reader",
        "--role=svc-reader",
        f"--serviceaccount={namespace}:watcher",
        "-n",
        namespace,
    )
    assert kubectl("--token", token, "get", "services", "-n", namespace, check=False).returncode == 0
    assert kubectl("--token", token, "auth", "can-i", "list", "services", "-n", namespace).stdout.strip() == "yes"
    assert (
        kubectl("--token", token, "auth", "can-i", "delete", "services", "-n", namespace, check=False).stdout.strip()
        == "no"
    )


def test_delete_waits_until_gone(kubectl, namespace):
    kubectl("create", "configmap", "bye", "-n", namespace)
    assert 'configmap "bye" deleted' in kubectl("delete", "configmap", "bye", "-n", namespace).stdout
    assert kubectl("get", "configmap", "bye", "-n", namespace, check=False).returncode == 1


def test_unschedulable_pod_gets_the_schedulers_reason(kubectl, namespace):
    kubectl(
        "run",
        "nowhere",
        "--image=docker.io/labkit/wasi-demo:latest",
        "-n",
        namespace,
        "--overrides",
        '{"spec": {"nodeSelector": {"disktype": "ssd"}}}',
    )
    deadline, events = time.monotonic() + 10, ""
    while time.monotonic() < deadline:
        events = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=FailedScheduling").stdout
        if "FailedScheduling" in events:
            break
        time.sleep(0.2)
    assert "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector." in events
    assert kubectl("get", "pod", "nowhere", "-n", namespace, "-o", "jsonpath={.status.phase}").stdout == "Pending"
