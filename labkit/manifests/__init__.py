"""Builders for the lab's Kubernetes objects. Each returns a plain dict: print it, edit it, apply it.

>>> from labkit.manifests import runtime_class, wasm_deployment, host_path
>>> runtime_class()["handler"]
'wasmedge'
"""

from labkit.manifests.volumes import Mount, host_path
from labkit.manifests.workloads import runtime_class, service, wasm_deployment, wasm_job

__all__ = ["Mount", "host_path", "runtime_class", "service", "wasm_deployment", "wasm_job"]
