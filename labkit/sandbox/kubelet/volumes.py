"""Pod volumes and container environments on the node: hostPath, emptyDir, configMap, secret, env and envFrom.

The ConfigMaps and Secrets a pod refers to are fetched from the API server first
(:meth:`ProjectedSources.fetch`, one GET each); the rest is blocking file work done off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path
from labkit.sandbox.kubelet.failures import ContainerFailure, SandboxFailure
from labkit.sandbox.kubelet.wasmrun import Mount


class ProjectedSources:
    """The ConfigMaps and Secrets one pod refers to, keyed ``(kind, name)`` with kind ``configmap`` or ``secret``;
    None for those that do not exist."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any] | None]) -> None:
        self.objects = objects

    @staticmethod
    def references(pod: dict[str, Any]) -> set[tuple[str, str]]:
        """Every ``(kind, name)`` the pod's volumes, envFrom and env valueFrom name."""
        found: set[tuple[str, str]] = set()
        for volume in pod["spec"].get("volumes") or ():
            if "configMap" in volume:
                found.add(("configmap", volume["configMap"].get("name") or ""))
            elif "secret" in volume:
                found.add(("secret", volume["secret"].get("secretName") or ""))
        for container in pod["spec"].get("containers") or ():
            for source in container.get("envFrom") or ():
                if "configMapRef" in source:
                    found.add(("configmap", source["configMapRef"].get("name", "")))
                elif "secretRef" in source:
                    found.add(("secret", source["secretRef"].get("name", "")))
            for item in container.get("env") or ():
                value_from = item.get("valueFrom") or {}
                if "configMapKeyRef" in value_from:
                    found.add(("configmap", value_from["configMapKeyRef"].get("name", "")))
                elif "secretKeyRef" in value_from:
                    found.add(("secret", value_from["secretKeyRef"].get("name", "")))
        return found

    @classmethod
    async def fetch(cls, client: KubeClient, pod: dict[str, Any]) -> ProjectedSources:
        """GET what the pod refers to (in parallel); most wasm pods refer to nothing and cost no request."""
        ns = pod["metadata"].get("namespace") or "default"
        wanted = sorted(cls.references(pod))

        async def one(kind: str, name: str) -> dict[str, Any] | None:
            plural = "configmaps" if kind == "configmap" else "secrets"
            try:
                return await client.get(resource_path("v1", plural, ns, name)) if name else None
            except ApiError as err:
                if err.code == 404:
                    return None
                raise

        found = await asyncio.gather(*(one(kind, name) for kind, name in wanted))
        return cls(dict(zip(wanted, found, strict=True)))

    def data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """The object's keys as bytes; None when optional and absent, else a FailedMount for an absent one."""
        obj = self.objects.get((kind, name))
        if obj is None:
            if optional:
                return None
            raise SandboxFailure(
                f'MountVolume.SetUp failed for volume "{{volume}}" : {kind} "{name}" not found', "FailedMount"
            )
        if kind == "configmap":
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            return data
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


class PathEscape(ValueError):
    """A path that, once ``..`` and symlinks are resolved, leaves the directory it must stay in."""


def confined(root: Path, path: Path, create: bool = False) -> Path:
    """*path* with every symlink and ``..`` resolved, refused unless it stays inside *root* (itself resolved).

    The node's root is the node's ``/``: a symlink there (made by the learner, or by a pod through a hostPath
    or emptyDir it can write) must not lead a later mount out of it. With *create*, the resolved path is made a
    directory and checked again, so a symlink swapped in while the parents are created is caught too (inferred
    hardening: the kubelet's SafeMakeDir opens each component with O_NOFOLLOW instead).
    """
    top = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != top and top not in real.parents:
        raise PathEscape(str(path))
    if create:
        real.mkdir(parents=True, exist_ok=True)
        return confined(root, real)
    return real


def _write_projection(target: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None) -> None:
    """configMap/secret keys as files (``items`` maps keys to paths), replacing what was there.

    Written into a fresh directory and renamed into place, like the kubelet's atomic writer, so a
    container (or a second writer for the same pod) never sees a half-written volume.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    chosen = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, rel in chosen:
        if key in data:
            try:  # validation refuses these paths; an object stored before it did must not write outside either
                path = confined(staging, staging / rel)
            except PathEscape:
                shutil.rmtree(staging, ignore_errors=True)
                # the kubelet's atomic writer (pkg/volume/util/atomic_writer.go validatePath)
                raise SandboxFailure(
                    f"MountVolume.SetUp failed for volume \"{{volume}}\" : invalid path: must not contain '..': {rel}",
                    "FailedMount",
                ) from None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[key])
    while True:
        try:
            os.rename(staging, target)
            return
        except OSError:  # the target exists (an earlier projection): move it aside, then retry
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            with contextlib.suppress(FileNotFoundError):  # another writer moved it meanwhile
                os.rename(target, retired / "volume")
            shutil.rmtree(retired, ignore_errors=True)


def prepare_volumes(sources: ProjectedSources, pod: dict[str, Any], node_root: Path) -> dict[str, Path]:
    """Set up the pod's volumes on the node; returns volume name → host path.

    hostPath is relative to the NODE ROOT (the sandbox node's ``/``); emptyDir,
    configMap and secret volumes live under the node's
    ``var/lib/kubelet/pods/<uid>/volumes/``, as on a real node.
    """
    uid = pod["metadata"]["uid"]
    pod_dir = node_root / "var/lib/kubelet/pods" / uid / "volumes"
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or ():
        name = volume["name"]
        try:
            if "hostPath" in volume:
                paths[name] = _host_path(node_root, volume["hostPath"])
            elif "emptyDir" in volume:
                paths[name] = _pod_volume_dir(node_root, pod_dir / "kubernetes.io~empty-dir" / name)
            elif "configMap" in volume or "secret" in volume:
                kind = "configmap" if "configMap" in volume else "secret"
                source = volume.get("configMap") or volume.get("secret") or {}
                ref = source.get("name") if kind == "configmap" else source.get("secretName")
                data = sources.data(kind, ref or "", bool(source.get("optional")))
                parent = _pod_volume_dir(node_root, pod_dir / f"kubernetes.io~{kind}")
                paths[name] = parent / name
                _write_projection(paths[name], data or {}, source.get("items"))
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise SandboxFailure(
                    f'MountVolume.SetUp failed for volume "{name}" : the labkit sandbox does not '
                    f"support volume type {', '.join(kinds) or '(none)'} yet "
                    "(it supports hostPath, emptyDir, configMap and secret)",
                    "FailedMount",
                )
        except SandboxFailure as err:
            raise SandboxFailure(err.problem.replace("{volume}", name), err.event_reason) from None
    return paths


def _outside(what: str) -> SandboxFailure:
    # labkit's words: on a real node a hostPath may name any host path; a sandbox node's host is its root directory
    return SandboxFailure(
        f'MountVolume.SetUp failed for volume "{{volume}}" : {what} resolves outside the node\'s root '
        "(a sandbox node's / is its own directory; '..' and symlinks may not leave it)",
        "FailedMount",
    )


def _pod_volume_dir(node_root: Path, path: Path) -> Path:
    """A directory of the pod under ``var/lib/kubelet/pods``, which a hostPath pod could have replaced by a symlink."""
    try:
        return confined(node_root, path, create=True)
    except PathEscape:
        raise _outside(f"the pod volume directory {path.relative_to(node_root)}") from None


def _host_path(node_root: Path, source: dict[str, Any]) -> Path:
    guest = source.get("path") or "/"
    kind = source.get("type") or ""
    try:
        host = confined(node_root, node_root / guest.lstrip("/"))
        if kind in ("", "DirectoryOrCreate") and not host.exists():
            host = confined(node_root, host, create=True)  # the kubelet (or runc) creates it as a directory
        elif kind == "FileOrCreate" and not host.exists():
            confined(node_root, host.parent, create=True)
            host.touch()
            host = confined(node_root, host)
    except PathEscape:
        raise _outside(f"hostPath {guest}") from None
    if kind == "Directory" and not host.is_dir():
        raise SandboxFailure(
            f'MountVolume.SetUp failed for volume "{{volume}}" : hostPath type check failed: '
            f"{guest} is not a directory",
            "FailedMount",
        )
    elif kind == "File" and not host.is_file():
        raise SandboxFailure(
            f'MountVolume.SetUp failed for volume "{{volume}}" : hostPath type check failed: {guest} is not a file',
            "FailedMount",
        )
    return host


def container_mounts(container: dict[str, Any], volumes: dict[str, Path], read_only_volumes: set[str]) -> list[Mount]:
    """The container's volumeMounts as wasm mounts (subPath honoured; configMap/secret always read-only)."""
    mounts = []
    for vm in container.get("volumeMounts") or ():
        host = volumes.get(vm["name"])
        if host is None:
            raise ContainerFailure(
                f'volume "{vm["name"]}" mounted by container "{container["name"]}" is not a volume of the pod',
                "CreateContainerConfigError",
            )
        if vm.get("subPath"):
            host = _sub_path(host, vm["subPath"], vm["name"], container["name"])
        mounts.append(Mount(host, vm["mountPath"], bool(vm.get("readOnly")) or vm["name"] in read_only_volumes))
    return mounts


def _sub_path(volume: Path, sub_path: str, mount: str, container: str) -> Path:
    """The subPath inside its volume, made a directory when missing, as the kubelet's makeMounts does
    (pkg/kubelet/kubelet_pods.go): the same checks and error words, a symlink out of the volume included."""
    if sub_path.startswith("/"):
        raise ContainerFailure(f"error SubPath `{sub_path}` must not be an absolute path", "CreateContainerConfigError")
    if ".." in sub_path.split("/"):
        raise ContainerFailure(
            f"unable to provision SubPath `{sub_path}`: must not contain '..'", "CreateContainerConfigError"
        )
    target = volume / sub_path
    exists = os.path.lexists(target)
    try:
        return confined(volume, target, create=not exists)
    except PathEscape:
        step = "prepare" if exists else "create"  # PrepareSafeSubpath or SafeMakeDir refused it
        what = "subPath" if exists else "subPath directory"
        raise ContainerFailure(
            f'failed to {step} {what} for volumeMount "{mount}" of container "{container}"',
            "CreateContainerConfigError",
        ) from None


def _field_value(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    if path in simple:
        return str(simple[path])
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    raise ContainerFailure(f"unsupported fieldRef {path!r}", "CreateContainerConfigError")


def _key_value(sources: ProjectedSources, ns: str, kind: str, ref: dict[str, Any]) -> str | None:
    data = sources.data(kind, ref.get("name", ""), True)
    if data is None or ref.get("key") not in data:
        if ref.get("optional"):
            return None
        what = "configmap" if kind == "configmap" else "secret"
        raise ContainerFailure(
            f'{what} "{ref.get("name")}" not found'
            if data is None
            else f"couldn't find key {ref.get('key')} in {'ConfigMap' if kind == 'configmap' else 'Secret'} "
            f"{ns}/{ref.get('name')}",
            "CreateContainerConfigError",
        )
    return data[ref["key"]].decode("utf-8", "replace")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of env values, command and args (third_party/forked/golang/expansion):
    a defined name is replaced, ``$$`` is a literal ``$``, anything else stays as written.

    >>> expand("http://$(HOST):$(PORT)/ $(NOPE) $$(HOST) $(open", {"HOST": "h", "PORT": "80"})
    'http://h:80/ $(NOPE) $(HOST) $(open'
    """
    return re.sub(r"\$(\$|\(([^)]*)\))", lambda m: "$" if m.group(1) == "$" else env.get(m.group(2), m.group(0)), text)


def container_env(
    sources: ProjectedSources,
    pod: dict[str, Any],
    container: dict[str, Any],
    image_env: list[str],
    pod_ip: str,
    host_ip: str,
    service_vars: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment: image env, the Service variables (kubelet/service_env.py), then envFrom, then
    env (valueFrom resolved), as the kubelet orders it."""
    ns = pod["metadata"].get("namespace") or "default"
    env: dict[str, str] = {"HOSTNAME": pod["metadata"]["name"]}
    env.update(dict(e.split("=", 1) for e in image_env if "=" in e))
    env.update(service_vars or {})
    for source in container.get("envFrom") or ():
        kind = "configmap" if "configMapRef" in source else "secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        data = sources.data(kind, ref.get("name", ""), True)
        if data is None and not ref.get("optional"):
            raise ContainerFailure(f'{kind} "{ref.get("name")}" not found', "CreateContainerConfigError")
        env.update({source.get("prefix", "") + k: v.decode("utf-8", "replace") for k, v in (data or {}).items()})
    for item in container.get("env") or ():
        source = item.get("valueFrom")
        if not source:
            env[item["name"]] = expand(item.get("value", ""), env)
            continue
        value: str | None
        if "fieldRef" in source:
            value = _field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "configMapKeyRef" in source:
            value = _key_value(sources, ns, "configmap", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = _key_value(sources, ns, "secret", source["secretKeyRef"])
        else:
            raise ContainerFailure(
                f"env {item['name']}: the labkit sandbox supports fieldRef, configMapKeyRef and secretKeyRef",
                "CreateContainerConfigError",
            )
        if value is not None:
            env[item["name"]] = value
    return env
