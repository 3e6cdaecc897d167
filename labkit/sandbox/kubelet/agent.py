"""The sandbox kubelet: nodes that run real wasm pods the way k3s with the runwasi WasmEdge shim does.

:class:`NodeAgents` (the daemon's controller) runs one :class:`Kubelet` per
sandbox Node. A Kubelet watches the pods bound to its node and gives each a
:class:`PodWorker` that goes through a real kubelet's steps, with its phases,
conditions, container states, reasons, events and back-offs:

1. **sandbox**: the pod's RuntimeClass → handler → a runtime in the node's
   containerd config (read at node start from the rendered ``config.toml``,
   see :mod:`labkit.sandbox.kubelet.noderoot`); volumes are set up. A handler the node
   lacks fails with containerd's ``no runtime for "X" is configured``.
2. **image**: resolved in the sandbox image store, honouring
   ``imagePullPolicy``; a "pull" only reaches the simulated registry of
   :mod:`labkit.sandbox.kubelet.registry_mirror`.
3. **container**: what the runtime would do with the image. The WasmEdge
   shim runs arg0's wasm module with wasmtime (:mod:`labkit.sandbox.kubelet.wasmrun`);
   runc cannot run a ``\\0asm`` file (``exec format error``); crun built with
   WasmEdge runs it only when the pod's ``module.wasm.image/variant``
   annotation reaches it through the runtime's ``pod_annotations``.
4. **restarts** with the kubelet's back-off (10 s doubling to 300 s, reset
   after 10 min of running), and **termination** on delete.

Blocking work (image store, files, wasm) runs in threads; pod state lives on
the API server's event loop, which is where status and events are written.

Not yet: init containers (such a pod stays initializing, and an event says
so), probes (a running container is ready), Linux images (a clear StartError).
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import wasmtime

from labkit.containerd import ContainerdConfigError, RuntimeInfo, RuntimeSpec
from labkit.errors import LabkitError, WasmError
from labkit.imagestore import ImageStore
from labkit.sandbox.api.apicore import ApiCore, now_rfc3339
from labkit.sandbox.api.events import record_event
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import parse_field_selector, parse_label_selector
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.kubelet import registry_mirror
from labkit.sandbox.kubelet.extensions import PodContext, extensions_for
from labkit.sandbox.kubelet.noderoot import prepare_node_root, runtime_class_objects, start_containerd
from labkit.sandbox.kubelet.wasmrun import (
    SHIM_CANT_HANDLE,
    CantHandleSpec,
    ContainerSpec,
    ModuleCache,
    Mount,
    WasmContainer,
    check_arg0,
)
from labkit.sandbox.logs import LogWriter, PodLogs
from labkit.sandbox.nodes import NODES, PODS, SANDBOX_NODE_LABEL, node_ip, ready_status

if TYPE_CHECKING:
    from labkit.sandbox.api.store import Watcher

log = logging.getLogger("labkit.sandbox.kubelet.agent")

RUNTIMECLASSES = RESOURCES.served("node.k8s.io", "runtimeclasses")
CONFIGMAPS = RESOURCES.served("", "configmaps")
SECRETS = RESOURCES.served("", "secrets")
COMPONENT = "kubelet"

#: kubelet's container restart back-off (pkg/kubelet/kubelet.go: backOffPeriod, MaxContainerBackOff).
BACKOFF_INITIAL_S, BACKOFF_MAX_S, BACKOFF_RESET_S = 10.0, 300.0, 600.0
#: Pod-sandbox and volume retries (the pod worker's sync back-off).
SANDBOX_RETRY_INITIAL_S, SANDBOX_RETRY_MAX_S = 2.0, 60.0
#: How long ErrImagePull shows before the pull back-off (ImagePullBackOff) takes over.
ERR_IMAGE_PULL_SHOWN_S = 1.0
EXIT_START_ERROR = 128
WASMEDGE_TYPE = "io.containerd.wasmedge.v1"
RUNC_TYPE = "io.containerd.runc.v2"
VARIANT_ANNOTATION = "module.wasm.image/variant"
POD_IP_PREFIX = "127.42"
ENDED_MEMORY = 4096

T = TypeVar("T")


class ContainerFailure(LabkitError):
    """A container the runtime could not create or start; ``problem`` is the runtime's message."""

    def __init__(self, problem: str, reason: str = "StartError", fix: str | None = None) -> None:
        super().__init__(problem, fix)
        self.reason = reason


class SandboxFailure(LabkitError):
    """A pod whose sandbox or volumes cannot be set up; ``event_reason`` is the Warning event's reason."""

    def __init__(self, problem: str, event_reason: str = "FailedCreatePodSandBox") -> None:
        super().__init__(problem)
        self.event_reason = event_reason


# ------------------------------------------------------------------------------------ small helpers


def node_index(name: str) -> int:
    """``labkit-server-0`` → 0, ``labkit-agent-N`` → N + 1 (see :func:`labkit.sandbox.nodes.node_name`)."""
    if name.startswith("labkit-agent-"):
        return int(name.rsplit("-", 1)[1]) + 1
    return 0


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, truncated to milliseconds as the kubelet's pull event does.

    >>> go_duration(0.0123), go_duration(1.5), go_duration(0.0004)
    ('12ms', '1.5s', '0s')
    """
    ms = int(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"


def pod_key(pod: dict[str, Any]) -> str:
    """``name_namespace(uid)``, the kubelet's pod name in messages."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace')}({meta.get('uid')})"


def pod_phase(restart_policy: str, statuses: list[dict[str, Any]]) -> str:
    """The kubelet's pod phase from container statuses (pkg/kubelet/kubelet_pods.go getPhase)."""
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif (status.get("lastState") or {}).get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


def qos_class(pod: dict[str, Any]) -> str:
    """BestEffort, Guaranteed or Burstable, from the containers' requests and limits."""
    resources = [c.get("resources") or {} for c in pod["spec"].get("containers") or ()]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits")
        and all(k in r["limits"] for k in ("cpu", "memory"))
        and all(r["limits"].get(k) == v for k, v in (r.get("requests") or {}).items())
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _glob_passes(annotation: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(annotation, p) for p in patterns)


# ------------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class ImageContent:
    """What a node knows of an image once it is in the store."""

    ref: str
    digest: str
    layout: str  # runwasi | compat | artifact | native
    entrypoint: list[str]
    env: list[str]
    module: bytes | None

    def files(self) -> dict[str, bytes]:
        """The image rootfs files a runtime can see (a compat image's module sits at its entrypoint)."""
        if self.layout == "compat" and self.module is not None and self.entrypoint:
            return {str(PurePosixPath("/") / self.entrypoint[0].split("#", 1)[0]): self.module}
        return {}

    def wasm_layers(self) -> dict[str, bytes]:
        """runwasi's OCI wasm layers, by module name."""
        if self.layout in ("runwasi", "artifact") and self.module is not None:
            name = PurePosixPath(self.entrypoint[0]).name if self.entrypoint else "module.wasm"
            return {name: self.module}
        return {}


class NodeImages:
    """The node's view of the image store: lookups cached by digest, pulls through the simulated registry."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._by_digest: dict[str, ImageContent] = {}
        self._lock = threading.Lock()

    def present(self, ref: str) -> ImageContent | None:
        record = self.store.resolve(ref)
        if record is None:
            return None
        with self._lock:
            cached = self._by_digest.get(record.digest)
        if cached is not None and cached.ref == record.ref:
            return cached
        module = self.store.module_bytes(ref) if record.layout != "native" else None
        content = ImageContent(
            record.ref, record.digest, record.layout, self.store.entrypoint(ref), self.store.env(ref), module
        )
        with self._lock:
            self._by_digest[record.digest] = content
        return content

    def pull(self, ref: str) -> tuple[ImageContent, registry_mirror.Pulled]:
        pulled = registry_mirror.pull(ref, self.store)
        content = self.present(pulled.ref)
        assert content is not None  # just imported
        return content, pulled


# ------------------------------------------------------------------------------------ volumes and env


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
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[key])
    while True:
        try:
            os.rename(staging, target)
            return
        except OSError:  # the target exists (an earlier projection): move it aside, then retry
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            try:
                os.rename(target, retired / "volume")
            except FileNotFoundError:
                pass  # another writer moved it meanwhile
            shutil.rmtree(retired, ignore_errors=True)


def _projected_data(core: ApiCore, ns: str, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
    res = CONFIGMAPS if kind == "configmap" else SECRETS
    obj = core.store.get(res, ns, name)
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


def prepare_volumes(core: ApiCore, pod: dict[str, Any], node_root: Path) -> dict[str, Path]:
    """Set up the pod's volumes on the node; returns volume name → host path.

    hostPath is relative to the NODE ROOT (the sandbox node's ``/``); emptyDir,
    configMap and secret volumes live under the node's
    ``var/lib/kubelet/pods/<uid>/volumes/``, as on a real node.
    """
    ns, uid = pod["metadata"].get("namespace") or "default", pod["metadata"]["uid"]
    pod_dir = node_root / "var/lib/kubelet/pods" / uid / "volumes"
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or ():
        name = volume["name"]
        try:
            if "hostPath" in volume:
                paths[name] = _host_path(node_root, volume["hostPath"])
            elif "emptyDir" in volume:
                paths[name] = pod_dir / "kubernetes.io~empty-dir" / name
                paths[name].mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume or "secret" in volume:
                kind = "configmap" if "configMap" in volume else "secret"
                source = volume.get("configMap") or volume.get("secret") or {}
                ref = source.get("name") if kind == "configmap" else source.get("secretName")
                data = _projected_data(core, ns, kind, ref or "", bool(source.get("optional")))
                paths[name] = pod_dir / f"kubernetes.io~{kind}" / name
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


def _host_path(node_root: Path, source: dict[str, Any]) -> Path:
    guest = source.get("path") or "/"
    host = node_root / guest.lstrip("/")
    kind = source.get("type") or ""
    if kind in ("", "DirectoryOrCreate") and not host.exists():
        host.mkdir(parents=True, exist_ok=True)  # kubelet (or runc) creates a missing hostPath as a directory
    elif kind == "FileOrCreate" and not host.exists():
        host.parent.mkdir(parents=True, exist_ok=True)
        host.touch()
    elif kind == "Directory" and not host.is_dir():
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
            host = host / vm["subPath"]
            host.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(host, vm["mountPath"], bool(vm.get("readOnly")) or vm["name"] in read_only_volumes))
    return mounts


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
        return simple[path]
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return (meta.get(found.group(1)) or {}).get(found.group(2), "")
    raise ContainerFailure(f"unsupported fieldRef {path!r}", "CreateContainerConfigError")


def _key_value(core: ApiCore, ns: str, kind: str, ref: dict[str, Any]) -> str | None:
    data = _projected_data(core, ns, kind, ref.get("name", ""), True)
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


def container_env(
    core: ApiCore, pod: dict[str, Any], container: dict[str, Any], image_env: list[str], pod_ip: str, host_ip: str
) -> dict[str, str]:
    """The container's environment: image env, then envFrom, then env (valueFrom resolved), as the kubelet orders it."""
    ns = pod["metadata"].get("namespace") or "default"
    env: dict[str, str] = {"HOSTNAME": pod["metadata"]["name"]}
    env.update(dict(e.split("=", 1) for e in image_env if "=" in e))
    for source in container.get("envFrom") or ():
        kind = "configmap" if "configMapRef" in source else "secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        data = _projected_data(core, ns, kind, ref.get("name", ""), True)
        if data is None and not ref.get("optional"):
            raise ContainerFailure(f'{kind} "{ref.get("name")}" not found', "CreateContainerConfigError")
        env.update({source.get("prefix", "") + k: v.decode("utf-8", "replace") for k, v in (data or {}).items()})
    for item in container.get("env") or ():
        source = item.get("valueFrom")
        if not source:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), item.get("value", "")
            )
            continue
        value: str | None
        if "fieldRef" in source:
            value = _field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "configMapKeyRef" in source:
            value = _key_value(core, ns, "configmap", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = _key_value(core, ns, "secret", source["secretKeyRef"])
        else:
            raise ContainerFailure(
                f"env {item['name']}: the labkit sandbox supports fieldRef, configMapKeyRef and secretKeyRef",
                "CreateContainerConfigError",
            )
        if value is not None:
            env[item["name"]] = value
    return env


# ------------------------------------------------------------------------------------ the runtime


def _task_error(detail: str) -> str:
    return f"failed to create containerd task: failed to create shim task: {detail}: unknown"


def exec_format_error(binary: str, arg0: str) -> str:
    """containerd 2 + runc's (or crun's) message for exec'ing a file the kernel cannot run."""
    if binary == "crun":
        return _task_error(f"OCI runtime create failed: exec container process `{arg0}`: Exec format error")
    return _task_error(
        f"OCI runtime create failed: runc create failed: unable to start container process: "
        f'error during container init: exec: "{arg0}": exec format error'
    )


def not_found_error(binary: str, arg0: str) -> str:
    if binary == "crun":
        return _task_error(
            f"OCI runtime create failed: executable file `{arg0}` not found in $PATH: No such file or directory"
        )
    return _task_error(
        f"OCI runtime create failed: runc create failed: unable to start container process: "
        f'error during container init: exec: "{arg0}": executable file not found in $PATH'
    )


NATIVE_FIX = (
    "the labkit sandbox runs only wasm images yet: build a wasm image (labkit image build) "
    "or use a real k3s cluster for Linux images"
)


@dataclass(frozen=True)
class Launch:
    """What the runtime decided to run: a wasm module with its argv and entry function."""

    module: bytes
    argv: list[str]
    entry: str
    crun_exit_status: bool = False


def plan_launch(
    runtime: RuntimeSpec,
    pod: dict[str, Any],
    image: ImageContent,
    argv: list[str],
    env: dict[str, str],
    working_dir: str,
) -> Launch:
    """Decide, like the node's runtime would, whether and how the container's wasm module runs.

    Raises :class:`ContainerFailure` with the runtime's own message otherwise.
    """
    arg0 = argv[0] if argv else ""
    if runtime.runtime_type == WASMEDGE_TYPE:
        if image.layout == "native":
            raise ContainerFailure(
                _task_error(
                    f"{arg0} is a Linux executable: the runwasi shim would run this image "
                    "as an ordinary Linux container, which the labkit sandbox cannot"
                ),
                fix=NATIVE_FIX,
            )
        try:
            entry = check_arg0(argv, image.files(), image.wasm_layers(), env, working_dir)
        except CantHandleSpec as err:
            # the shim logs why (with "Note: arg0 must be a path to a Wasm file", runwasi executor.rs)
            # to containerd's log; the task error names only the executor
            log.error("error checking if wasm container: %s", err.problem)
            raise ContainerFailure(
                "failed to create containerd task: failed to create shim task: failed to create container: "
                f"exec process failed with error error in executing process : {SHIM_CANT_HANDLE}",
                fix=err.fix,
            ) from None
        return Launch(entry.module, [arg0.split("#", 1)[0], *argv[1:]], entry.func)
    binary = PurePosixPath(runtime.binary_name or "runc").name
    if image.layout == "native":
        raise ContainerFailure(
            _task_error(f"the labkit sandbox cannot start Linux (non-wasm) image {image.ref}"), fix=NATIVE_FIX
        )
    if binary == "crun" and _crun_runs_wasm(runtime, pod, arg0):
        files = image.files()
        path = str(PurePosixPath("/") / arg0) if not arg0.startswith("/") else arg0
        if path not in files:
            raise ContainerFailure(not_found_error(binary, arg0))
        return Launch(files[path], argv, "_start", crun_exit_status=True)
    if not image.files() and image.wasm_layers():
        # a runwasi-layout image has no rootfs files: a runc-style runtime finds nothing to exec
        raise ContainerFailure(
            not_found_error(binary, arg0),
            fix="wasm-layer images need the wasmedge runtime: set runtimeClassName: wasmedge",
        )
    if binary == "crun":
        return Launch(crun_exec_failure(arg0), argv, "_start")
    raise ContainerFailure(
        exec_format_error(binary, arg0),
        fix="a wasm module needs a wasm runtime: set runtimeClassName: wasmedge, or (crun built with "
        "WasmEdge) annotate the pod module.wasm.image/variant=compat-smart and let the runtime "
        "pass it (pod_annotations)",
    )


def crun_exec_failure(arg0: str) -> bytes:
    """What crun does when ``execv`` of *arg0* fails: a module writing crun's error, then exiting 1.

    crun execs the process only after ``crun start`` (container.c: container_init, after the exec
    fifo), with its log handler switched to stderr, so the error goes to the container's log as one
    JSON line (``--log-format json``, which containerd passes) and the container exits EXIT_FAILURE
    (linux.c: libcrun_fail_with_error). Seen on k8s: WasmEdge issues #1844, #2638.
    """
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    line = json.dumps(
        {"msg": f"exec container process `{arg0}`: Exec format error", "level": "error", "time": stamp},
        separators=(",", ":"),
    )
    data = (line + "\n").encode()
    wat_bytes = "".join(f"\\{b:02x}" for b in data)
    return bytes(
        wasmtime.wat2wasm(
            '(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))'
            ' (import "wasi_snapshot_preview1" "proc_exit" (func $x (param i32)))'
            f' (memory (export "memory") {(16 + len(data)) // 65536 + 1}) (data (i32.const 16) "{wat_bytes}")'
            ' (func (export "_start") (i32.store (i32.const 0) (i32.const 16))'
            f" (i32.store (i32.const 4) (i32.const {len(data)}))"
            " (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))) (call $x (i32.const 1))))"
        )
    )


def _crun_runs_wasm(runtime: RuntimeSpec, pod: dict[str, Any], arg0: str) -> bool:
    """crun's wasm handler selection, seeing only the pod annotations containerd passes through."""
    variant = (pod["metadata"].get("annotations") or {}).get(VARIANT_ANNOTATION)
    if variant is None or not _glob_passes(VARIANT_ANNOTATION, runtime.pod_annotations):
        return False
    if variant == "compat":
        return True
    return variant == "compat-smart" and arg0.split("#", 1)[0].endswith((".wasm", ".wat"))


# ------------------------------------------------------------------------------------ pod workers


@dataclass
class ContainerRun:
    """One container of a pod as the kubelet tracks it."""

    spec: dict[str, Any]
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""
    image: str = ""
    image_id: str = ""
    process: WasmContainer | None = None
    writer: LogWriter | None = None
    backoff_s: float = 0.0  # the next restart's delay (0: restart at once)
    pull_backoff_s: float = 0.0

    @property
    def name(self) -> str:
        return self.spec["name"]

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        status: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": running,
            "restartCount": self.restart_count,
            "image": self.image or self.spec.get("image", ""),
            "imageID": self.image_id,
            "started": running,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


class PodWorker:
    """Runs one pod on its node from sandbox creation to deletion."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta.get("namespace") or "default", meta["name"], meta["uid"]
        self.containers = [ContainerRun(c) for c in pod["spec"].get("containers") or ()]
        #: init containers are not run yet: such a pod stays initializing, and an event says why
        self.init_names = [c["name"] for c in pod["spec"].get("initContainers") or ()]
        if self.init_names:
            for c in self.containers:
                c.state = {"waiting": {"reason": "PodInitializing"}}
        self.sandbox_ready = False
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.runtime: RuntimeSpec | None = None
        self.volumes: dict[str, Path] = {}
        self.read_only_volumes = {
            v["name"] for v in pod["spec"].get("volumes") or () if "configMap" in v or "secret" in v
        }
        self.transitions: dict[str, tuple[str, str]] = {}
        status = pod.get("status") or {}
        self.start_time = status.get("startTime") or now_rfc3339()
        self.pod_ip = kubelet.ips.allocate(self.uid, status.get("podIP"))
        self.finished = status.get("phase") in ("Succeeded", "Failed")
        self._recover(status)
        self.task: asyncio.Task[None] | None = None

    def _recover(self, status: dict[str, Any]) -> None:
        """After a daemon restart (a node reboot): keep counts; containers that had started start again."""
        previous = {s["name"]: s for s in status.get("containerStatuses") or ()}
        for c in self.containers:
            old = previous.get(c.name)
            if not old:
                continue
            c.image, c.image_id = old.get("image", ""), old.get("imageID", "")
            if self.finished:
                c.state, c.last_state = old.get("state") or {}, old.get("lastState") or {}
                c.restart_count, c.container_id = int(old.get("restartCount", 0)), old.get("containerID", "")
                continue
            if old.get("containerID"):
                c.restart_count = int(old.get("restartCount", 0)) + 1
                state = old.get("state") or {}
                c.last_state = (
                    {"terminated": state["terminated"]}
                    if "terminated" in state
                    else {
                        "terminated": {
                            "exitCode": 255,
                            "reason": "Unknown",
                            "startedAt": (state.get("running") or {}).get("startedAt"),
                            "finishedAt": now_rfc3339(),
                            "containerID": old["containerID"],
                        }
                    }
                )
                c.container_id = old["containerID"]

    # ---------------------------------------------------------------- plumbing

    def event(self, type_: str, reason: str, message: str, container: ContainerRun | None = None) -> None:
        field_path = f"spec.containers{{{container.name}}}" if container else None
        try:
            record_event(self.kubelet.core, self.pod, type_, reason, message, COMPONENT, self.kubelet.name, field_path)
        except StatusError as err:  # the namespace is going away: events are best effort, as in client-go
            log.debug("event %s for %s/%s not recorded: %s", reason, self.ns, self.name, err)

    async def sleep(self, seconds: float) -> bool:
        """Wait *seconds* unless woken; True when the pod is stopping."""
        self.wake.clear()
        waiters = [asyncio.ensure_future(self.stopping.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        return self.stopping.is_set()

    def _condition(self, type_: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self.transitions.get(type_)
        if previous is None or previous[0] != status:
            previous = self.transitions[type_] = (status, now_rfc3339())
        cond: dict[str, Any] = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": previous[1],
        }
        if not ok and reason:
            cond.update(reason=reason, message=message)
        return cond

    def phase(self) -> str:
        return pod_phase(self.pod["spec"].get("restartPolicy", "Always"), [c.status() for c in self.containers])

    def status(self, live: dict[str, Any]) -> dict[str, Any]:
        phase = self.phase()
        statuses = [c.status() for c in self.containers]
        if phase in ("Succeeded", "Failed"):
            for s in statuses:
                s["ready"] = s["started"] = False
        unready = [s["name"] for s in statuses if not s["ready"]]
        terminal = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
        scheduled = next(
            (c for c in (live.get("status") or {}).get("conditions") or () if c["type"] == "PodScheduled"),
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": self.start_time},
        )
        host_ip = self.kubelet.host_ip
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                self._condition("PodReadyToStartContainers", self.sandbox_ready and not terminal),
                self._condition(
                    "Initialized",
                    not self.init_names,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(self.init_names)}]",
                ),
                self._condition("Ready", not unready, reason, message),
                self._condition("ContainersReady", not unready, reason, message),
                scheduled,
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
            "qosClass": qos_class(self.pod),
        }
        if self.sandbox_ready or self.finished:
            status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        return status

    def publish(self) -> None:
        """Write the pod's status (the status subresource, as the kubelet's status manager does)."""
        core = self.kubelet.core
        live = core.store.get(PODS, self.ns, self.name)
        if live is None or live["metadata"].get("uid") != self.uid:
            return
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.ns},
            "status": self.status(live),
        }
        try:
            core.replace(PODS, self.ns, self.name, body, subresource="status")
        except StatusError as err:
            if err.code != 404:
                raise

    # ---------------------------------------------------------------- the pod's life

    async def run(self) -> None:
        try:
            if not self.finished:
                if any(c.container_id for c in self.containers):
                    self.event("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
                self.publish()
                if self.init_names:
                    self.event(
                        "Warning",
                        "Failed",
                        "the labkit sandbox does not run initContainers yet "
                        f"({', '.join(self.init_names)}): do the init step in the main "
                        "container, or use a real k3s cluster",
                    )
                elif await self.create_sandbox():
                    self.publish()
                    await asyncio.gather(*(self.run_container(c) for c in self.containers))
                self.finished = self.sandbox_ready and not self.stopping.is_set()
                self.publish()
            await self.stopping.wait()
            await self.kill_all()
        finally:
            for c in self.containers:
                if c.process is not None:
                    c.process.kill()
        self.publish()
        self.kubelet.core.finish_pod_deletion(self.ns, self.name)

    def terminate(self) -> None:
        """The pod was deleted gracefully: stop its containers, then the object goes."""
        self.stopping.set()

    async def kill_all(self) -> None:
        """Stop running containers; the grace period bounds the wait (a wasm kill is prompt)."""
        running = [c for c in self.containers if c.process is not None]
        grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds") or 30)
        for c in running:
            self.event("Normal", "Killing", f"Stopping container {c.name}", c)
            assert c.process is not None
            c.process.kill()
        deadline = time.monotonic() + grace
        for c in running:
            assert c.process is not None
            await self.kubelet.blocking(c.process.wait, max(deadline - time.monotonic(), 0.0))
            self._terminated(c, c.process)
            c.process = None

    async def create_sandbox(self) -> bool:
        delay = SANDBOX_RETRY_INITIAL_S
        while not self.stopping.is_set():
            try:
                self.runtime = self.kubelet.runtime_for(self.pod)
                self.volumes = await self.kubelet.blocking(
                    prepare_volumes, self.kubelet.core, self.pod, self.kubelet.root
                )
            except SandboxFailure as err:
                message = (
                    err.problem if err.event_reason == "FailedMount" else f"Failed to create pod sandbox: {err.problem}"
                )
                self.event("Warning", err.event_reason, message)
                if await self.sleep(delay):
                    return False
                delay = min(delay * 2, SANDBOX_RETRY_MAX_S)
                continue
            self.sandbox_ready = True
            return True
        return False

    async def ensure_image(self, c: ContainerRun) -> ImageContent | None:
        """The container's image, present or pulled; None when the pod stops while it waits."""
        ref = c.spec.get("image", "")
        policy = c.spec.get("imagePullPolicy", "IfNotPresent")
        images = self.kubelet.images
        if not registry_mirror.valid_ref(ref):
            message = f'Failed to apply default image tag "{ref}": couldn\'t parse image name "{ref}": invalid reference format'
            self.event("Warning", "InspectFailed", message, c)
            self.event("Warning", "Failed", "Error: InvalidImageName", c)
            c.state = {"waiting": {"reason": "InvalidImageName", "message": message}}
            self.publish()
            await self.stopping.wait()  # nothing changes a pod's image but a new pod
            return None
        while not self.stopping.is_set():
            image = await self.kubelet.blocking(images.present, ref)
            wants_pull = policy == "Always" and registry_mirror.mirror_source(ref) is not None
            if image is not None and not wants_pull:
                self.event("Normal", "Pulled", f'Container image "{ref}" already present on machine', c)
                return image
            if policy == "Never":
                message = f'Container image "{ref}" is not present with pull policy of Never'
                self.event("Warning", "ErrImageNeverPull", message, c)
                self.event("Warning", "Failed", "Error: ErrImageNeverPull", c)
                c.state = {"waiting": {"reason": "ErrImageNeverPull", "message": message}}
                self.publish()
                if await self.sleep(self._pull_delay(c)):
                    return None
                continue
            self.event("Normal", "Pulling", f'Pulling image "{ref}"', c)
            try:
                image, pulled = await self.kubelet.blocking(images.pull, ref)
            except registry_mirror.PullFailed as err:
                if await self._pull_failed(c, ref, err):
                    return None
                continue
            took = go_duration(pulled.seconds)
            self.event(
                "Normal",
                "Pulled",
                f'Successfully pulled image "{ref}" in {took} ({took} including waiting). '
                f"Image size: {pulled.size} bytes. ({registry_mirror.SIMULATED_NOTE})",
                c,
            )
            c.pull_backoff_s = 0.0
            return image
        return None

    def _pull_delay(self, c: ContainerRun) -> float:
        c.pull_backoff_s = min(c.pull_backoff_s * 2, BACKOFF_MAX_S) if c.pull_backoff_s else BACKOFF_INITIAL_S
        return c.pull_backoff_s

    async def _pull_failed(self, c: ContainerRun, ref: str, err: registry_mirror.PullFailed) -> bool:
        """ErrImagePull, then ImagePullBackOff until the next try; True when the pod stops meanwhile."""
        message = err.containerd_message  # containerd's words only; labkit's hint goes to the kubelet log
        log.info("%s: pull of %s failed (hint: %s)", pod_key(self.pod), ref, err.fix)
        self.event("Warning", "Failed", f'Failed to pull image "{ref}": {message}', c)
        self.event("Warning", "Failed", "Error: ErrImagePull", c)
        c.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
        self.publish()
        delay = self._pull_delay(c)
        if await self.sleep(ERR_IMAGE_PULL_SHOWN_S):
            return True
        # events first: whoever sees the new state finds its events already recorded
        self.event("Normal", "BackOff", f'Back-off pulling image "{ref}"', c)
        self.event("Warning", "Failed", "Error: ImagePullBackOff", c)
        c.state = {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{ref}": ErrImagePull: {message}',
            }
        }
        self.publish()
        return await self.sleep(max(delay - ERR_IMAGE_PULL_SHOWN_S, 0.0))

    async def run_container(self, c: ContainerRun) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.stopping.is_set():
            image = await self.ensure_image(c)
            if image is None:
                return
            c.image, c.image_id = image.ref, image.digest
            ran_for = 0.0
            exit_code: int | None
            try:
                process = await self.kubelet.blocking(self._start, c, image)
            except ContainerFailure as err:
                self._start_failed(c, err)
                exit_code = EXIT_START_ERROR
            else:
                exit_code = await self._wait(process)
                if exit_code is None:  # stopping: kill_all finishes it
                    return
                self._terminated(c, process)
                c.process = None
                ran_for = (process.finished_at or 0.0) - (process.started_at or 0.0)
            stays_terminated = policy == "Never" or (policy == "OnFailure" and exit_code == 0)
            if "terminated" in c.state and stays_terminated:
                self.publish()
                return
            if await self.restart_after_backoff(c, ran_for):
                return

    def _start(self, c: ContainerRun, image: ImageContent) -> WasmContainer:
        """Create and start the container (in a thread): the runtime's decision, then wasmtime."""
        kubelet = self.kubelet
        spec = c.spec
        env = container_env(kubelet.core, self.pod, spec, image.env, self.pod_ip, kubelet.host_ip)
        argv = [*(spec.get("command") or image.entrypoint), *(spec.get("args") or ())]
        working_dir = spec.get("workingDir") or "/"
        mounts = container_mounts(spec, self.volumes, self.read_only_volumes)
        # the CRI container exists from here on; what follows is the task start, where runtimes fail
        c.container_id = f"containerd://{secrets.token_hex(32)}"
        assert self.runtime is not None
        writer = kubelet.logs.writer(self.pod, c.name, c.restart_count)  # containerd creates the log with the container
        try:
            launch = plan_launch(self.runtime, self.pod, image, argv, env, working_dir)
        except ContainerFailure:
            writer.close()
            raise
        context = PodContext(
            name=self.name,
            namespace=self.ns,
            env=env,
            mounts={m.guest_path: str(m.host_dir) for m in mounts},
            annotations=self.pod["metadata"].get("annotations") or {},
            pod_ip=self.pod_ip,
        )
        try:
            process = WasmContainer(
                ContainerSpec(
                    launch.module, launch.argv, env, working_dir, mounts, launch.entry, c.name, launch.crun_exit_status
                ),
                kubelet.cache,
                _log_to(writer, "stdout"),
                _log_to(writer, "stderr"),
                extensions_for(context),
                context,
            )
        except WasmError as err:
            writer.close()
            raise ContainerFailure(_task_error(f"OCI runtime create failed: {err.problem}"), fix=err.fix) from None
        process.start()
        c.process = process
        c.writer = writer
        return process

    async def _wait(self, process: WasmContainer) -> int | None:
        """The started container's exit code, or None when the pod is stopping first."""
        c = self._run_of(process)
        self.event("Normal", "Created", f"Created container: {c.name}", c)
        self.event("Normal", "Started", f"Started container {c.name}", c)
        c.state = {"running": {"startedAt": now_rfc3339()}}
        self.publish()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int | None] = loop.create_future()

        def settle(code: int | None) -> None:
            if not done.done():
                done.set_result(code)

        writer = c.writer

        def report() -> None:  # one thread per container waits for its end, then closes its log
            code = process.wait()
            if writer is not None:
                writer.close()
            loop.call_soon_threadsafe(settle, code)

        threading.Thread(target=report, name=f"wait-{process.spec.name}", daemon=True).start()
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([done, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        return done.result() if done.done() and not self.stopping.is_set() else None

    def _run_of(self, process: WasmContainer) -> ContainerRun:
        return next(c for c in self.containers if c.process is process)

    def _terminated(self, c: ContainerRun, process: WasmContainer) -> None:
        code = process.exit_code if process.exit_code is not None else 137
        started = (c.state.get("running") or {}).get("startedAt") or now_rfc3339()
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now_rfc3339(),
                "containerID": c.container_id,
            }
        }

    def _start_failed(self, c: ContainerRun, err: ContainerFailure) -> None:
        message = err.problem  # the runtime's words only; labkit's hint goes to the kubelet log
        if err.fix:
            log.info("%s/%s: %s (hint: %s)", pod_key(self.pod), c.name, err.problem, err.fix)
        if err.reason == "CreateContainerConfigError":
            self.event("Warning", "Failed", f"Error: {message}", c)
            c.state = {"waiting": {"reason": err.reason, "message": message}}
            return
        self.event(
            "Normal", "Created", f"Created container: {c.name}", c
        )  # created, as the kubelet records it; the start failed
        self.event("Warning", "Failed", f"Error: {message}", c)
        now = now_rfc3339()
        c.state = {
            "terminated": {
                "exitCode": EXIT_START_ERROR,
                "reason": "StartError",
                "message": message,
                "startedAt": "1970-01-01T00:00:00Z",
                "finishedAt": now,
                "containerID": c.container_id,
            }
        }

    async def restart_after_backoff(self, c: ContainerRun, ran_for: float) -> bool:
        """The kubelet's restart back-off; True when the pod stops meanwhile."""
        finished = c.state.get("terminated")
        if finished:
            c.last_state = {"terminated": finished}
        if ran_for >= BACKOFF_RESET_S:
            c.backoff_s = 0.0
        delay = c.backoff_s
        c.backoff_s = min(delay * 2, BACKOFF_MAX_S) if delay else BACKOFF_INITIAL_S
        if finished and finished.get("reason") == "StartError":
            c.state = {"waiting": {"reason": "RunContainerError", "message": finished.get("message", "")}}
            self.publish()
        if delay:
            self.event(
                "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {pod_key(self.pod)}", c
            )
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(delay)}s restarting failed container={c.name} pod={pod_key(self.pod)}",
                }
            }
            self.publish()
            if await self.sleep(delay):
                return True
        elif "waiting" not in c.state:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        if finished:
            c.restart_count += 1
        return self.stopping.is_set()


def _log_to(writer: LogWriter, stream: str) -> Callable[[str], None]:
    return lambda line: writer.write(stream, line)


# ------------------------------------------------------------------------------------ the node


class PodIPs:
    """Per-pod loopback addresses ``127.42.<node index>.<n>``: unique on the node, released on delete.

    Loopback, so a pod can really listen there later; .1 is left out like k3s's cni0 gateway.
    """

    def __init__(self, index: int) -> None:
        self.prefix = f"{POD_IP_PREFIX}.{index}."
        self.by_uid: dict[str, str] = {}

    def allocate(self, uid: str, previous: str | None = None) -> str:
        if uid in self.by_uid:
            return self.by_uid[uid]
        used = set(self.by_uid.values())
        if previous and previous.startswith(self.prefix) and previous not in used:
            self.by_uid[uid] = previous
            return previous
        for n in range(2, 255):
            ip = f"{self.prefix}{n}"
            if ip not in used:
                self.by_uid[uid] = ip
                return ip
        raise SandboxFailure(
            f"failed to allocate for range 0: no IP addresses available in range set: {self.prefix}2-{self.prefix}254"
        )

    def release(self, uid: str) -> None:
        self.by_uid.pop(uid, None)


class Kubelet:
    """One sandbox node's kubelet and container runtime."""

    def __init__(
        self,
        core: ApiCore,
        name: str,
        root: Path,
        images: NodeImages,
        logs: PodLogs,
        cache: ModuleCache,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.core, self.name, self.root = core, name, Path(root)
        self.images, self.logs, self.cache = images, logs, cache
        self.index = node_index(name)
        self.host_ip = node_ip(self.index)
        self.ips = PodIPs(self.index)
        self.runtime_info: RuntimeInfo | None = None
        self.runtime_error = ""
        self.workers: dict[str, PodWorker] = {}
        #: uids of pods whose worker ended -> whether it crashed (then only a deletion is still handled)
        self.ended: OrderedDict[str, bool] = OrderedDict()
        self._executor = executor
        self._watcher: Watcher | None = None
        self._stopped = False

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run *fn* in the kubelets' thread pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---------------------------------------------------------------- the container runtime

    def start_runtime(self) -> RuntimeInfo | None:
        """k3s's start: prepare the node root, render and read the containerd config (blocking)."""
        prepare_node_root(self.root)
        try:
            self.runtime_info, self.runtime_error = start_containerd(self.root), ""
        except ContainerdConfigError as err:
            self.runtime_info, self.runtime_error = None, str(err)
            log.error("node %s: containerd cannot load its config: %s", self.name, err)
        return self.runtime_info

    def ensure_runtime_classes(self) -> list[str]:
        """Create the RuntimeClasses the k3s server ships, installed or not (existing ones are kept)."""
        created = []
        for obj in runtime_class_objects():
            if self.core.store.get(RUNTIMECLASSES, None, obj["metadata"]["name"]) is None:
                try:
                    self.core.create(RUNTIMECLASSES, None, obj)
                    created.append(obj["metadata"]["name"])
                except StatusError as err:
                    if err.code != 409:
                        raise
        return created

    def runtime_for(self, pod: dict[str, Any]) -> RuntimeSpec:
        """The containerd runtime for the pod: RuntimeClass → handler → runtime table (or the default)."""
        if self.runtime_info is None:
            raise SandboxFailure(
                f"rpc error: code = Unavailable desc = containerd on {self.name} is not running: {self.runtime_error}"
            )
        class_name = pod["spec"].get("runtimeClassName")
        handler = self.runtime_info.default_runtime
        if class_name:
            runtime_class = self.core.store.get(RUNTIMECLASSES, None, class_name)
            if runtime_class is None:
                raise SandboxFailure(f'runtimeclass.node.k8s.io "{class_name}" not found')
            handler = runtime_class.get("handler", "")
        spec = self.runtime_info.runtimes.get(handler)
        if spec is None:
            raise SandboxFailure(
                f"rpc error: code = Unknown desc = failed to get sandbox runtime: "
                f'no runtime for "{handler}" is configured'
            )
        if spec.runtime_type not in (WASMEDGE_TYPE, RUNC_TYPE):
            shim = "containerd-shim-" + spec.runtime_type.removeprefix("io.containerd.").replace(".", "-")
            raise SandboxFailure(
                f"rpc error: code = Unknown desc = failed to start sandbox: failed to start shim: "
                f'start failed: {spec.runtime_type}: binary not installed "{shim}": file does not exist '
                "(the labkit sandbox simulates the runwasi wasmedge shim, runc and crun only)"
            )
        return spec

    async def restart(self) -> RuntimeInfo | None:
        """A k3s restart: re-render and re-read the containerd config; running pods keep running."""
        info = await self.blocking(self.start_runtime)
        self.ensure_runtime_classes()
        self.post_node_status()
        for worker in self.workers.values():
            worker.wake.set()  # a restarted kubelet retries its pods at once
        return info

    def post_node_status(self) -> None:
        """What a (re)started kubelet does first: post the node's status, with fresh heartbeats.

        Ready says whether containerd runs (it does not when its config was rejected).
        """
        node = self.core.store.get(NODES, None, self.name)
        if node is None:
            return
        status = ready_status(self.index)
        previous = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or ()}
        for cond in status["conditions"]:
            if cond["type"] == "Ready" and self.runtime_info is None:
                cond.update(
                    status="False", reason="KubeletNotReady", message=f"container runtime is down: {self.runtime_error}"
                )
            old = previous.get(cond["type"])
            if old is not None and old.get("status") == cond["status"]:
                cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name}, "status": status}
        self.core.replace(NODES, None, self.name, body, subresource="status")

    # ---------------------------------------------------------------- pods

    async def run(self) -> None:
        await self.restart()
        selector = parse_field_selector(f"spec.nodeName={self.name}")
        for pod in self.core.store.list(PODS, None, field_selector=selector)[0]:
            if (pod.get("status") or {}).get("podIP"):
                self.ips.allocate(pod["metadata"]["uid"], pod["status"]["podIP"])  # keep addresses across restarts
        try:
            while not self._stopped:
                # the store also ends a watch this node fell behind on: then watch again (the node lives on)
                watcher = self._watcher = self.core.store.watch(PODS, None, since_rv=None, field_selector=selector)
                try:
                    # pods deleted while no watch was open sent no DELETED: the list says which are gone
                    present = {
                        p["metadata"]["uid"] for p in self.core.store.list(PODS, None, field_selector=selector)[0]
                    }
                    for uid, worker in list(self.workers.items()):
                        if uid not in present:
                            worker.terminate()
                    while not watcher.closed:
                        event = await watcher.next(None)
                        if event is not None:
                            self.observe(event.type, event.object)
                finally:
                    watcher.close()
        finally:
            for worker in self.workers.values():
                if worker.task:
                    worker.task.cancel()

    def stop(self) -> None:
        """The node is gone: stop watching (its run() then ends and cancels the pod workers)."""
        self._stopped = True
        if self._watcher is not None:
            self._watcher.close()

    def observe(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            self.ended.pop(uid, None)
            if worker is not None:
                worker.terminate()
            return
        if uid in self.ended:  # late events of a pod whose worker is done
            if self.ended[uid] and meta.get("deletionTimestamp"):
                self.core.finish_pod_deletion(meta.get("namespace") or "default", meta["name"])
            return
        if worker is None:
            try:
                worker = self.workers[uid] = PodWorker(self, pod)
            except SandboxFailure as err:  # no pod address left on this node
                record_event(
                    self.core,
                    pod,
                    "Warning",
                    "FailedCreatePodSandBox",
                    f"Failed to create pod sandbox: {err.problem}",
                    COMPONENT,
                    self.name,
                )
                return
            worker.task = asyncio.ensure_future(self._run_worker(worker))
        else:
            worker.pod = pod
        if meta.get("deletionTimestamp"):
            worker.terminate()

    async def _run_worker(self, worker: PodWorker) -> None:
        crashed = False
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # one pod's bug must not stop the node; the log and an event say what happened
            log.exception("pod worker %s/%s failed", worker.ns, worker.name)
            crashed = True
            for c in worker.containers:
                if c.process is not None:
                    c.process.kill()
            worker.event(
                "Warning",
                "FailedSync",
                f"labkit sandbox kubelet error: {type(err).__name__}: {err} "
                f"(the pod is no longer run; delete it: kubectl delete pod {worker.name})",
            )
        finally:
            self.workers.pop(worker.uid, None)
            self.ips.release(worker.uid)
        self.ended[worker.uid] = crashed
        while len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)


class NodeAgents:
    """The daemon's node agents: one :class:`Kubelet` per sandbox Node, started and stopped as Nodes come and go.

    >>> agents = NodeAgents.for_sandbox(core, sandbox_root)      # doctest: +SKIP
    >>> asyncio.ensure_future(agents.run())                      # doctest: +SKIP
    """

    def __init__(self, core: ApiCore, nodes_dir: Path, images: ImageStore, logs: PodLogs, cache: ModuleCache) -> None:
        self.core = core
        self.nodes_dir = Path(nodes_dir)
        self.images = NodeImages(images)
        self.logs, self.cache = logs, cache
        self.kubelets: dict[str, Kubelet] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kubelet")

    @classmethod
    def for_sandbox(cls, core: ApiCore, root: Path) -> NodeAgents:
        """Agents using a sandbox directory's layout: ``nodes/``, ``images/``, ``pod-logs/``, ``module-cache/``."""
        return cls(
            core,
            root / "nodes",
            ImageStore(root / "images"),
            PodLogs(root / "pod-logs"),
            ModuleCache(root / "module-cache"),
        )

    def node_root(self, name: str) -> Path:
        return self.nodes_dir / name

    async def run(self) -> None:
        selector = parse_label_selector(f"{SANDBOX_NODE_LABEL}=true")
        try:
            while True:
                # A watch the store ended (this consumer fell behind) is opened again, as an informer re-lists:
                # waiting on a closed watcher would spin without ever yielding the loop.
                watcher = self.core.store.watch(NODES, None, since_rv=None, label_selector=selector)
                try:
                    # nodes deleted while no watch was open sent no DELETED: the list says which are gone
                    present = {n["metadata"]["name"] for n in self.core.store.list(NODES, None, selector)[0]}
                    for name in [n for n in self.kubelets if n not in present]:
                        self._stop_kubelet(name)
                    while not watcher.closed:
                        event = await watcher.next(None)
                        if event is not None:
                            self._observe(event.type, event.object["metadata"]["name"])
                finally:
                    watcher.close()
        finally:
            for task in self._tasks.values():
                task.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _observe(self, event_type: str, name: str) -> None:
        if event_type == "DELETED":
            self._stop_kubelet(name)
        elif name not in self.kubelets:
            kubelet = Kubelet(self.core, name, self.node_root(name), self.images, self.logs, self.cache, self._executor)
            self.kubelets[name] = kubelet
            self._tasks[name] = asyncio.ensure_future(kubelet.run())

    def _stop_kubelet(self, name: str) -> None:
        self._tasks.pop(name, None)
        gone = self.kubelets.pop(name, None)
        if gone:
            gone.stop()

    async def restart(self, name: str) -> RuntimeInfo | None:
        """Restart node *name*'s k3s (containerd config re-read); None when its config does not load."""
        kubelet = self.kubelets.get(name)
        if kubelet is None:
            raise KeyError(name)
        return await kubelet.restart()
