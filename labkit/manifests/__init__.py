"""Builders for the lab's Kubernetes objects. Each returns a plain dict: print it, edit it, apply it.

>>> from labkit.manifests import runtime_class, wasm_deployment, host_path
>>> runtime_class()["handler"]
'wasmedge'
"""

from labkit.manifests.volumes import Mount, host_path
from labkit.manifests.watcher import load_balancer_url, service_watcher
from labkit.manifests.workloads import runtime_class, service, wasm_deployment, wasm_job

__all__ = [
    "Mount",
    "host_path",
    "load_balancer_url",
    "runtime_class",
    "service",
    "service_watcher",
    "wasm_deployment",
    "wasm_job",
]
