"""Builders for the lab's objects: plain dicts, the same YAML a learner would write by hand.

>>> d = wasm_deployment("wasi-demo", "docker.io/labkit/wasi-demo:latest", command=["/wasi-demo-app.wasm"])
>>> d["spec"]["template"]["spec"]["runtimeClassName"], d["spec"]["selector"]
('wasmedge', {'matchLabels': {'app': 'wasi-demo'}})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labkit.errors import InvalidManifest
from labkit.manifests.checks import dns_label, env_list, string_list
from labkit.manifests.checks import labels as string_map
from labkit.manifests.volumes import Mount, volumes_and_mounts

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def runtime_class(name: str = "wasmedge", handler: str | None = None) -> dict[str, Any]:
    """A RuntimeClass mapping *name* to the containerd runtime *handler* (default: the same name).

    The handler must equal a runtime table name in the node's containerd config, else pods fail with
    ``no runtime for "<handler>" is configured``.

    >>> runtime_class("wasm", handler="wasmedge")["handler"]
    'wasmedge'
    """
    handler = handler or name
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": dns_label(name, "RuntimeClass name")},
        "handler": dns_label(handler, "runtime handler"),
    }


def _metadata(name: str, labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": dns_label(name)}
    if labels:
        meta["labels"] = string_map(labels)
    if annotations:
        meta["annotations"] = string_map(annotations, "annotations")
    return meta


def _ports(ports: Iterable[int | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for p in ports or ():
        spec = dict(p) if isinstance(p, Mapping) else {"containerPort": p}
        number = spec.get("containerPort")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            raise InvalidManifest(f"container port {number!r} is not a port number", "use an int from 1 to 65535")
        out.append(spec)
    return out


def _pod_spec(
    name: str,
    image: str,
    *,
    runtime_class: str | None,
    command: Any,
    args: Any,
    env: Mapping[str, Any] | None,
    volumes: Iterable[Mount] | None,
    image_pull_policy: str | None,
    ports: Any = None,
    restart_policy: str | None = None,
) -> dict[str, Any]:
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise InvalidManifest(
            f"image {image!r} is not an image reference", "use e.g. 'ghcr.io/containerd/runwasi/wasi-demo-app:latest'"
        )
    if image_pull_policy is not None and image_pull_policy not in PULL_POLICIES:
        raise InvalidManifest(f"imagePullPolicy {image_pull_policy!r} is not valid", f"use one of {PULL_POLICIES}")
    container: dict[str, Any] = {"name": name, "image": image}
    for key, value in (("command", string_list(command, "command")), ("args", string_list(args, "args"))):
        if value is not None:
            container[key] = value
    if image_pull_policy:
        container["imagePullPolicy"] = image_pull_policy
    if env:
        container["env"] = env_list(env)
    if ports:
        container["ports"] = _ports(ports)
    pod_volumes, mounts = volumes_and_mounts(volumes)
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {}
    if runtime_class:
        spec["runtimeClassName"] = dns_label(runtime_class, "runtimeClassName")
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    spec["containers"] = [container]
    if pod_volumes:
        spec["volumes"] = pod_volumes
    return spec


def _template(
    labels: dict[str, str], pod_annotations: Mapping[str, str] | None, spec: dict[str, Any]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels}
    if pod_annotations:
        meta["annotations"] = string_map(pod_annotations, "pod_annotations")
    return {"metadata": meta, "spec": spec}


def wasm_deployment(
    name: str,
    image: str,
    *,
    runtime_class: str | None = "wasmedge",
    command: list[str] | None = None,
    args: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Iterable[Mount] | None = None,
    replicas: int = 1,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod_annotations: Mapping[str, str] | None = None,
    image_pull_policy: str | None = None,
    ports: Iterable[int | Mapping[str, Any]] | None = None,
    ready_on_port: int | None = None,
    node_loss_toleration_s: int | None = None,
) -> dict[str, Any]:
    """A Deployment of *replicas* wasm pods (selector ``app=<name>``) running *image* under *runtime_class*.

    *runtime_class* ``None`` leaves ``runtimeClassName`` out (the node's default runtime runs it, e.g. crun);
    *pod_annotations* go on the pods (crun reads ``module.wasm.image/variant`` there). *ready_on_port* adds a
    ``tcpSocket`` readiness probe: a pod is Ready (and the Deployment Available) only once it accepts connections
    there, so a server that loads a model first is not sent traffic early. *node_loss_toleration_s* replaces the
    300 s that the DefaultTolerationSeconds admission plugin gives a pod on a ``not-ready`` or ``unreachable`` node
    before it is evicted (and its replacement scheduled elsewhere).

    >>> wasm_deployment("web", "img", ready_on_port=8080)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    {'tcpSocket': {'port': 8080}, 'periodSeconds': 2}
    >>> wasm_deployment("web", "img", node_loss_toleration_s=10)["spec"]["template"]["spec"]["tolerations"][1]
    {'key': 'node.kubernetes.io/unreachable', 'operator': 'Exists', 'effect': 'NoExecute', 'tolerationSeconds': 10}
    """
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise InvalidManifest(f"replicas must be a whole number >= 0, got {replicas!r}", "e.g. replicas=2")
    pod_labels = {"app": dns_label(name), **string_map(labels)}
    spec = _pod_spec(
        name,
        image,
        runtime_class=runtime_class,
        command=command,
        args=args,
        env=env,
        volumes=volumes,
        image_pull_policy=image_pull_policy,
        ports=ports,
    )
    if ready_on_port is not None:
        _ports([ready_on_port])
        # a pod starts unready and turns Ready at the first success; every 2 s (upstream default: 10 s)
        probe = {"tcpSocket": {"port": ready_on_port}, "periodSeconds": 2}
        spec["containers"][0]["readinessProbe"] = probe
    if node_loss_toleration_s is not None:
        if not isinstance(node_loss_toleration_s, int) or isinstance(node_loss_toleration_s, bool):
            raise InvalidManifest(
                f"node_loss_toleration_s must be whole seconds, got {node_loss_toleration_s!r}",
                "e.g. node_loss_toleration_s=10",
            )
        if node_loss_toleration_s < 0:
            raise InvalidManifest(
                f"node_loss_toleration_s must be >= 0, got {node_loss_toleration_s}", "e.g. node_loss_toleration_s=10"
            )
        spec["tolerations"] = [
            {
                "key": f"node.kubernetes.io/{taint}",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": node_loss_toleration_s,
            }
            for taint in ("not-ready", "unreachable")
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, labels, annotations),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(pod_labels, pod_annotations, spec),
        },
    }


def wasm_job(
    name: str,
    image: str,
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    runtime_class: str | None = "wasmedge",
    backoff_limit: int = 0,
    env: Mapping[str, str] | None = None,
    volumes: Iterable[Mount] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod_annotations: Mapping[str, str] | None = None,
    image_pull_policy: str | None = None,
) -> dict[str, Any]:
    """A Job running *image* once to completion (``restartPolicy: Never``; *backoff_limit* retries, default none).

    >>> wasm_job("echo", "docker.io/labkit/wasi-demo:latest", args=["echo", "hi"])["spec"]["backoffLimit"]
    0
    """
    if not isinstance(backoff_limit, int) or isinstance(backoff_limit, bool) or backoff_limit < 0:
        raise InvalidManifest(
            f"backoff_limit must be a whole number >= 0, got {backoff_limit!r}", "e.g. backoff_limit=0"
        )
    pod_labels = {"app": dns_label(name), **string_map(labels)}
    spec = _pod_spec(
        name,
        image,
        runtime_class=runtime_class,
        command=command,
        args=args,
        env=env,
        volumes=volumes,
        image_pull_policy=image_pull_policy,
        restart_policy="Never",
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, labels, annotations),
        "spec": {"backoffLimit": backoff_limit, "template": _template(pod_labels, pod_annotations, spec)},
    }


def service(
    name: str,
    selector: str | Mapping[str, str],
    port: int,
    target_port: int | str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service on *port* for the pods *selector* picks (a name means ``app=<name>``).

    >>> service("web", "wasi-demo", 80, 8080)["spec"]["ports"]
    [{'port': 80, 'targetPort': 8080, 'protocol': 'TCP'}]
    """
    chosen = (
        {"app": dns_label(selector, "selector app name")}
        if isinstance(selector, str)
        else string_map(selector, "selector")
    )
    if not chosen:
        raise InvalidManifest("a Service needs a non-empty selector", "pass the Deployment's name or {'app': '<name>'}")
    _ports([port])
    if target_port is not None and not isinstance(target_port, str):
        _ports([target_port])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, labels, annotations),
        "spec": {
            "selector": chosen,
            "ports": [
                {"port": port, "targetPort": target_port if target_port is not None else port, "protocol": "TCP"}
            ],
        },
    }
