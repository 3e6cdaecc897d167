"""How long the API server spends validating and patching one object.

Goal: validating a Deployment well under 1 ms (the server validates every write).

    /work/venv/bin/python benchmarks/bench_validation.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from labkit.sandbox.api import managedfields, patch
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.schemas import Schemas
from labkit.sandbox.api.validation import validate

DEPLOYMENTS = RESOURCES.served("apps", "deployments")
PODS = RESOURCES.served("", "pods")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama-api", "namespace": "wasm", "labels": {"app": "llama-api", "tier": "high"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "llama-api"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "llama-api", "tier": "high"}},
                "spec": {
                    "runtimeClassName": "wasmedge",
                    "containers": [
                        {
                            "name": "api",
                            "image": "ghcr.io/second-state/llama-api-server:latest",
                            "args": ["--nn-preload", "default:GGML:AUTO:/models/model.gguf", "--port", "8080"],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [
                                {"name": "WASMEDGE_PLUGIN_PATH", "value": "/plugins"},
                                {"name": "DNS_SERVER", "value": "10.43.0.10:53"},
                            ],
                            "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                            "volumeMounts": [
                                {"name": "plugins", "mountPath": "/plugins", "readOnly": True},
                                {"name": "models", "mountPath": "/models", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "plugins", "hostPath": {"path": "/opt/wasmedge/plugin"}},
                        {"name": "models", "hostPath": {"path": "/var/lib/models"}},
                    ],
                },
            },
        },
    }


def pod() -> dict[str, Any]:
    spec = deployment()["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "llama-api-1", **spec["metadata"]},
        "spec": spec["spec"],
    }


def per_call_us(fn: Callable[[], object], seconds: float = 0.5) -> float:
    """Mean CPU microseconds per call over about ``seconds`` of repetitions.

    CPU time of this process, not wall time, so other work on a shared 2-core machine
    does not inflate the numbers.
    """
    fn()  # warm the lazily compiled schema nodes
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        fn()
        calls += 1
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    start = time.perf_counter()
    loaded = Schemas().definitions
    print(f"load v1.32 definitions ({len(loaded)}) {(time.perf_counter() - start) * 1e3:9.1f} ms (once per process)")
    start = time.perf_counter()
    fresh = Schemas()
    fresh.openapi_document("apis/apps/v1")
    print(f"render OpenAPI v3 apis/apps/v1   {(time.perf_counter() - start) * 1e3:9.1f} ms (once, then cached)")

    base = deployment()
    live = managedfields.record_update(DEPLOYMENTS, None, base, "kubectl-client-side-apply")
    smp = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "api", "image": "api:2", "env": [{"name": "LOG", "value": "debug"}]}]}
            }
        }
    }
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
    ]
    rows = [
        ("copy a Deployment (baseline)", lambda: patch.deep_copy(base)),
        ("validate Deployment (Strict)", lambda: validate(DEPLOYMENTS, patch.deep_copy(base), "Strict")),
        ("validate Pod (Strict)", lambda: validate(PODS, pod(), "Strict")),
        ("json merge patch", lambda: patch.json_merge_patch(base, {"spec": {"replicas": 3}})),
        ("json patch (test + replace)", lambda: patch.json_patch(base, ops)),
        ("strategic merge patch", lambda: patch.strategic_merge_patch(DEPLOYMENTS, base, smp)),
        ("record_update (managedFields)", lambda: managedfields.record_update(DEPLOYMENTS, live, base, "edit")),
        (
            "server-side apply (forced)",
            lambda: managedfields.server_side_apply(DEPLOYMENTS, live, base, "kubectl", True),
        ),
    ]
    for label, fn in rows:
        print(f"{label:32s} {per_call_us(fn):9.1f} µs")


if __name__ == "__main__":
    main()
