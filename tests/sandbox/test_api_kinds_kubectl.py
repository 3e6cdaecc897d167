"""A learner's own manifests with the real kubectl: every kind applies, lists, watches and explains; CRDs,
Secrets' stringData, apply --prune, events.k8s.io, and the features the sandbox does not carry out."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: one object of each kind the issue names, as a learner writes them
MANIFEST = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: demo.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: lock}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota}
spec: {hard: {pods: "10"}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - {type: Container, default: {memory: 256Mi}}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  replicas: 0
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec: {containers: [{name: c, image: demo}]}
"""

CLUSTER_MANIFEST = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: kinds-pv}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv}
  storageClassName: manual
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: kinds-sc}
provisioner: example.com/none
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: kinds-pc}
value: 1000
"""

#: the header kubectl prints for each kind: upstream's 1.32 columns
HEADERS = {
    "pvc": "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE",
    "ingress": "NAME CLASS HOSTS ADDRESS PORTS AGE",
    "networkpolicy": "NAME POD-SELECTOR AGE",
    "hpa": "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
    "lease": "NAME HOLDER AGE",
    "pdb": "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
    "quota": "NAME REQUEST LIMIT AGE",
    "limitrange": "NAME CREATED AT",
    "rc": "NAME DESIRED CURRENT READY AGE",
    "pv": "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE",
    "sc": "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
    "pc": "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY",
}


def _header(output: str) -> str:
    return " ".join(output.splitlines()[0].split())


def _events(kubectl: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def _eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_each_kind_applies_lists_shows_and_explains(kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST)
    kubectl("apply", "-f", "-", input=CLUSTER_MANIFEST)
    try:
        for short, header in HEADERS.items():
            scope = () if short in ("pv", "sc", "pc") else ("-n", namespace)
            listing = kubectl("get", short, *scope)
            assert _header(listing.stdout) == header, short
        lines = kubectl("get", "pvc,hpa", "-n", namespace).stdout.splitlines()
        rows = {line.split()[0]: line.split() for line in lines if line.strip()}
        # the default class of k3s is filled in by the DefaultStorageClass admission
        assert rows["persistentvolumeclaim/data"][1:3] == ["Pending", "local-path"]
        assert rows["horizontalpodautoscaler.autoscaling/web"][1:4] == ["Deployment/web", "cpu:", "<unknown>/50%"]
        lease = json.loads(kubectl("get", "lease", "lock", "-n", namespace, "-o", "json").stdout)
        assert lease["spec"]["holderIdentity"] == "me" and lease["apiVersion"] == "coordination.k8s.io/v1"
        assert "minAvailable: 1" in kubectl("get", "pdb", "web", "-n", namespace, "-o", "yaml").stdout
        for field, kind in (("pvc.spec.accessModes", "<[]string>"), ("ingress.spec.rules", "<[]IngressRule>"),
                            ("networkpolicy.spec.podSelector", "<LabelSelector>"),
                            ("hpa.spec.metrics", "<[]MetricSpec>"), ("priorityclass.value", "<integer>")):  # fmt: skip
            explained = kubectl("explain", field).stdout
            assert f"FIELD: {field.split('.')[-1]} {kind}" in explained, explained
    finally:
        kubectl("delete", "-f", "-", "--wait=false", input=CLUSTER_MANIFEST, check=False)


def test_a_new_kind_is_watched(kubectl, namespace) -> None:
    watch = subprocess.Popen(
        [kubectl.binary, "get", "leases", "-n", namespace, "-w", "--output-watch-events"],
        env=kubectl.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the watch is open before the object exists
        kubectl("create", "-n", namespace, "-f", "-", input='{"apiVersion": "coordination.k8s.io/v1", '
                '"kind": "Lease", "metadata": {"name": "watched"}, "spec": {}}')  # fmt: skip
        assert watch.stdout is not None
        assert watch.stdout.readline().split() == ["EVENT", "NAME", "HOLDER", "AGE"]
        assert watch.stdout.readline().split()[:2] == ["ADDED", "watched"]
    finally:
        watch.kill()
        watch.wait()


def test_what_the_sandbox_does_not_carry_out_is_said_once(kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST)
    for name, kind, words in (("data", "PersistentVolumeClaim", "local-path provisioner"),
                              ("web", "Ingress", "Traefik"), ("deny", "NetworkPolicy", "kube-router"),
                              ("web", "HorizontalPodAutoscaler", "horizontal pod autoscaler")):  # fmt: skip

        def noted(name: str = name, kind: str = kind) -> list[dict[str, Any]]:
            return [e for e in _events(kubectl, namespace, name)
                    if e["reason"] == "NotSimulated" and e["involvedObject"]["kind"] == kind]  # fmt: skip

        events = _eventually(noted)
        assert len(events) == 1 and words in events[0]["message"], events
        assert events[0]["type"] == "Warning" and events[0]["source"]["component"] == "labkit-sandbox"
    kubectl("label", "pvc", "data", "-n", namespace, "touched=yes")  # an update is no new object
    time.sleep(1.0)
    events = [e for e in _events(kubectl, namespace, "data") if e["reason"] == "NotSimulated"]
    assert len(events) == 1 and events[0]["count"] == 1
    described = kubectl("describe", "pvc", "data", "-n", namespace).stdout
    assert "NotSimulated" in described and "stays Pending" in described


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.kinds.example.com}
spec:
  group: kinds.example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, description: How big the widget is.}
              color: {type: string, enum: [red, blue]}
"""


def test_a_crd_makes_its_kind_served_validated_and_gone_with_it(kubectl, namespace) -> None:
    kubectl("apply", "-f", "-", input=CRD)
    try:
        kubectl("wait", "--for", "condition=established", "crd/widgets.kinds.example.com", "--timeout=20s")
        resources = kubectl("api-resources", "--api-group", "kinds.example.com").stdout
        assert "widgets" in resources and "wg" in resources
        widget = json.dumps({"apiVersion": "kinds.example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
                             "spec": {"size": 3, "color": "red"}})  # fmt: skip
        assert kubectl("apply", "-n", namespace, "-f", "-", input=widget).stdout.strip() == (
            "widget.kinds.example.com/w1 created"
        )
        assert kubectl("get", "wg", "-n", namespace).stdout.split() == ["NAME", "SIZE", "w1", "3"]
        assert "size: 3" in kubectl("get", "widget", "w1", "-n", namespace, "-o", "yaml").stdout
        assert "How big the widget is." in kubectl("explain", "widgets.spec.size").stdout
        kubectl("patch", "widget", "w1", "-n", namespace, "--type=merge", "-p", '{"spec": {"size": 4}}')
        wrong = kubectl("create", "-n", namespace, "-f", "-", check=False, input=(
            '{"apiVersion": "kinds.example.com/v1", "kind": "Widget", "metadata": {"name": "w2"}, '
            '"spec": {"size": "big", "color": "green"}}'))  # fmt: skip
        assert wrong.returncode == 1
        assert 'The Widget "w2" is invalid' in wrong.stderr
        assert 'spec.size: Invalid value: "big": spec.size in body must be of type integer: "string"' in wrong.stderr
        assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in wrong.stderr
    finally:
        kubectl("delete", "crd", "widgets.kinds.example.com", check=False)
    gone = kubectl("get", "widgets.kinds.example.com", "-n", namespace, check=False)
    assert gone.returncode == 1 and "the server doesn't have a resource type" in gone.stderr


def test_a_crd_cannot_shadow_a_built_in_kind(kubectl) -> None:
    hostile = CRD.replace("widgets.kinds.example.com", "deployments.apps").replace("kinds.example.com", "apps")
    hostile = hostile.replace("plural: widgets, kind: Widget", "plural: deployments, kind: Deployment")
    result = kubectl("apply", "-f", "-", input=hostile, check=False)
    assert result.returncode == 1 and "spec.group" in result.stderr and "spec.names.kind" in result.stderr
    assert "deployments.apps" in kubectl("api-resources", "--api-group", "apps", "-o", "name").stdout.split()


def test_secret_string_data_is_merged_into_data(kubectl, namespace) -> None:
    secret = """
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {user: b2xk, keep: a2VlcA==}
stringData: {user: admin, password: s3cr3t}
"""
    kubectl("apply", "-n", namespace, "-f", "-", input=secret)
    stored = json.loads(kubectl("get", "secret", "creds", "-n", namespace, "-o", "json").stdout)
    assert stored["data"] == {"user": "YWRtaW4=", "keep": "a2VlcA==", "password": "czNjcjN0"}
    assert "stringData" not in stored and stored["type"] == "Opaque"
    assert kubectl("apply", "-n", namespace, "-f", "-", input=secret).stdout.strip() == "secret/creds configured"


def test_apply_prune_without_an_allowlist(kubectl, namespace, tmp_path) -> None:
    both = tmp_path / "both.yaml"
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, labels: {{app: prune}}}}"
    both.write_text("\n---\n".join(config_map.format(n) for n in ("a", "b")))
    one = tmp_path / "one.yaml"
    one.write_text(config_map.format("a"))
    kubectl("apply", "-n", namespace, "-f", str(both), "-l", "app=prune", "--prune")
    pruned = kubectl("apply", "-n", namespace, "-f", str(one), "-l", "app=prune", "--prune")
    assert "configmap/b pruned" in pruned.stdout, pruned.stderr
    assert kubectl("get", "cm", "-n", namespace, "-l", "app=prune", "-o", "name").stdout.split() == ["configmap/a"]


def test_events_v1_need_an_event_time_and_lists_take_a_limit(kubectl, namespace) -> None:
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"}, "type": "Normal",
             "reason": "Tried", "action": "Trying", "note": "first", "reportingController": "learner/test",
             "reportingInstance": "laptop", "regarding": {"kind": "Namespace", "name": namespace}}  # fmt: skip
    refused = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(event), check=False)
    assert refused.returncode == 1 and "eventTime: Required value" in refused.stderr
    for name in ("e1", "e2"):
        body = {**event, "metadata": {"name": name}, "eventTime": "2025-06-01T10:00:00.123456Z"}
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    stored = json.loads(kubectl("get", "events.v1.events.k8s.io", "e1", "-n", namespace, "-o", "json").stdout)
    assert stored["eventTime"] == "2025-06-01T10:00:00.123456Z" and stored["note"] == "first"
    page = json.loads(kubectl("get", "--raw", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events?limit=1").stdout)
    assert len(page["items"]) == 1 and page["metadata"]["continue"]


def test_kubectl_debug_and_exec_answer_cleanly(kubectl, namespace) -> None:
    # a running wasm container (the demo's daemon mode), so exec reaches the runtime's answer
    kubectl("run", "p1", "-n", namespace, "--image=docker.io/labkit/wasi-demo:latest", "--restart=Never",
            "--overrides", '{"apiVersion": "v1", "spec": {"runtimeClassName": "wasmedge"}}')  # fmt: skip
    kubectl("wait", "--for=condition=Ready", "pod/p1", "-n", namespace, "--timeout=60s")
    # served since issue 11 (test_ephemeral_kubectl.py): kubectl adds the container and returns
    debug = kubectl("debug", "p1", "-n", namespace, "--image=busybox", "--profile=general", check=False)
    assert debug.returncode == 0 and "panic" not in debug.stderr
    assert "disabled for this cluster" not in debug.stderr
    missing = kubectl("debug", "nope", "-n", namespace, "--image=busybox", "--profile=general", check=False)
    assert 'pods "nope" not found' in missing.stderr
    exec_ = kubectl("exec", "p1", "-n", namespace, "--", "ls", check=False)
    assert exec_.returncode == 1 and "error executing command in container" in exec_.stderr
    assert "Exec is not supported" in exec_.stderr  # runwasi's shim implements no Exec (api/podexec.py)


def test_an_autoscaling_v1_hpa_is_stored_as_v2_and_read_in_both(kubectl, namespace) -> None:
    """Older manifests use autoscaling/v1; kubectl and the v2 API see the same object (upstream's conversion)."""
    hpa = """
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: old}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 4
  targetCPUUtilizationPercentage: 70
"""
    assert "created" in kubectl("apply", "-n", namespace, "-f", "-", input=hpa).stdout
    as_v1 = json.loads(
        kubectl("get", "--raw", f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers/old").stdout
    )
    assert as_v1["apiVersion"] == "autoscaling/v1"
    assert as_v1["spec"]["targetCPUUtilizationPercentage"] == 70 and as_v1["spec"]["minReplicas"] == 1
    as_v2 = json.loads(kubectl("get", "hpa", "old", "-n", namespace, "-o", "json").stdout)
    assert as_v2["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    assert "configured" in kubectl("apply", "-n", namespace, "-f", "-", input=hpa.replace("70", "75")).stdout
    assert "cpu: <unknown>/75%" in kubectl("get", "hpa", "old", "-n", namespace).stdout
    assert "targetCPUUtilizationPercentage" in kubectl("explain", "hpa.spec", "--api-version=autoscaling/v1").stdout


def test_a_crd_serves_its_other_versions_too(kubectl, namespace) -> None:
    two = CRD.replace("widgets.kinds.example.com", "gadgets.kinds.example.com").replace(
        "plural: widgets, kind: Widget, shortNames: [wg]", "plural: gadgets, kind: Gadget"
    )
    two = two.replace("  - name: v1\n    served: true\n    storage: true\n",
                      "  - name: v1beta1\n    served: true\n    storage: false\n    schema:\n      openAPIV3Schema:"
                      "\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"
                      "  - name: v1\n    served: true\n    storage: true\n")  # fmt: skip
    kubectl("apply", "-f", "-", input=two)
    try:
        kubectl("wait", "--for", "condition=established", "crd/gadgets.kinds.example.com", "--timeout=20s")
        old = {"apiVersion": "kinds.example.com/v1beta1", "kind": "Gadget", "metadata": {"name": "g"},
               "spec": {"size": 1}}  # fmt: skip
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(old))
        path = f"/apis/kinds.example.com/{{}}/namespaces/{namespace}/gadgets/g"
        for version in ("v1", "v1beta1"):
            got = json.loads(kubectl("get", "--raw", path.format(version)).stdout)
            assert got["apiVersion"] == f"kinds.example.com/{version}" and got["spec"] == {"size": 1}
        versions = kubectl("api-versions").stdout.split()
        assert "kinds.example.com/v1" in versions and "kinds.example.com/v1beta1" in versions
    finally:
        kubectl("delete", "crd", "gadgets.kinds.example.com", check=False)


def test_the_python_client_reads_the_new_kinds_and_custom_objects(kubectl, api_client, namespace) -> None:
    """The official client's typed APIs and CustomObjectsApi work on what kubectl applied."""
    from kubernetes import client

    kubectl("apply", "-n", namespace, "-f", "-", input=MANIFEST)
    claim = client.CoreV1Api(api_client).read_namespaced_persistent_volume_claim("data", namespace)
    assert claim.status.phase == "Pending" and claim.spec.storage_class_name == "local-path"
    ingress = client.NetworkingV1Api(api_client).read_namespaced_ingress("web", namespace)
    assert ingress.spec.rules[0].host == "demo.local"
    budgets = client.PolicyV1Api(api_client).list_namespaced_pod_disruption_budget(namespace)
    assert [b.metadata.name for b in budgets.items] == ["web"]
    kubectl("apply", "-f", "-", input=CRD)
    try:
        kubectl("wait", "--for", "condition=established", "crd/widgets.kinds.example.com", "--timeout=20s")
        custom = client.CustomObjectsApi(api_client)
        body = {"apiVersion": "kinds.example.com/v1", "kind": "Widget", "metadata": {"name": "py"}, "spec": {"size": 2}}
        custom.create_namespaced_custom_object("kinds.example.com", "v1", namespace, "widgets", body)
        listed = custom.list_namespaced_custom_object("kinds.example.com", "v1", namespace, "widgets")
        assert [w["spec"]["size"] for w in listed["items"]] == [2]
        # the CRD's schema has no status: a status write is pruned to nothing, as apiextensions prunes it
        custom.patch_namespaced_custom_object_status(
            "kinds.example.com", "v1", namespace, "widgets", "py", {"status": {"ready": True}}
        )
        got = custom.get_namespaced_custom_object("kinds.example.com", "v1", namespace, "widgets", "py")
        assert isinstance(got, dict) and not got.get("status") and got["spec"] == {"size": 2}
    finally:
        kubectl("delete", "crd", "widgets.kinds.example.com", check=False)
