"""Known failure signatures of wasm pods → an explanation and a concrete fix.

The signatures are the journey's real failures (README, "The journey"). :func:`diagnose_pod` is
pure (a pod, its events, its logs); :func:`diagnose` fetches those through the API and calls it.

>>> pod = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "containerStatuses": [
...     {"name": "app", "image": "x", "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull"}}}]}}
>>> diagnose_pod(pod, [], "").signature
'image-not-imported'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labkit import diagnosis_dns as dns
from labkit import diagnosis_loadbalancer as lb
from labkit import diagnosis_wasinn as wasinn
from labkit import evidence
from labkit.errors import Diagnosis
from labkit.podfacts import Facts

if TYPE_CHECKING:
    from labkit.cluster import Cluster

#: Container waiting reasons that mean "the image is not there".
IMAGE_REASONS = ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName")
#: Pod annotations crun reads to run a container as wasm (crun src/libcrun/handlers/handler-utils.c).
CRUN_WASM_ANNOTATION = "module.wasm.image/variant"


Signature = Callable[[Facts], "Diagnosis | None"]
_SIGNATURES: list[Signature] = []


def _signature(fn: Signature) -> Signature:
    """Register a matcher; order of definition is order of precedence (most specific first)."""
    _SIGNATURES.append(fn)
    return fn


@_signature
def _runtime_class_not_found(f: Facts) -> Diagnosis | None:
    hits = f.find(r'RuntimeClass "[^"]+" not found')
    if not hits:
        return None
    name = re.search(r'RuntimeClass "([^"]+)" not found', hits[0]).group(1)  # type: ignore[union-attr]
    return Diagnosis(
        f"pods are rejected: RuntimeClass {name!r} does not exist",
        f"the pod template sets runtimeClassName: {name}, and the API server refuses pods whose RuntimeClass is "
        "missing, so the ReplicaSet/Job cannot create any pod",
        f"create it first (labkit.manifests.runtime_class({name!r}, handler=<containerd runtime name>)), "
        "or set runtimeClassName to one that exists (`kubectl get runtimeclass`)",
        hits[:3],
        "runtimeclass-not-found",
    )


@_signature
def _handler_not_configured(f: Facts) -> Diagnosis | None:
    hits = f.find(r'no runtime for "[^"]*" is configured')
    if not hits:
        return None
    handler = re.search(r'no runtime for "([^"]*)"', hits[0]).group(1)  # type: ignore[union-attr]
    return Diagnosis(
        f"the node's containerd has no runtime named {handler!r} (FailedCreatePodSandBox)",
        f"the RuntimeClass handler {handler!r} must equal a runtime table name in the node's containerd config "
        "(…containerd.runtimes.<handler>); none matches, or it is written with config-v2 keys in a v3 config",
        f"set the RuntimeClass handler to the runtime the node has (on k3s the WasmEdge shim is 'wasmedge'; "
        f"`k3s crictl info` lists runtimes), or add a runtime table named {handler!r} for "
        "containerd-shim-wasmedge-v1 (runtime_type io.containerd.wasmedge.v1) and restart k3s",
        hits[:3],
        "runtime-handler-missing",
    )


@_signature
def _shim_not_installed(f: Facts) -> Diagnosis | None:
    hits = f.find(r'binary not installed "containerd-shim-[^"]+"|containerd-shim-[\w-]+: (executable )?file not found')
    if not hits:
        return None
    shim = re.search(r"containerd-shim-[\w-]+", hits[0]).group(0)  # type: ignore[union-attr]
    return Diagnosis(
        f"containerd cannot find the shim binary {shim}",
        "the runtime table names it, but it is not on the PATH containerd (k3s) started with",
        f"install {shim} into /usr/local/bin (runwasi: `make build-wasmedge && sudo make install-wasmedge`), "
        "then restart k3s (`sudo systemctl restart k3s`) so it is detected",
        hits[:3],
        "shim-not-installed",
    )


@_signature
def _systemd_cgroup_without_dbus(f: Facts) -> Diagnosis | None:
    hits = f.find(r"dbus error|cri-containerd-[^ ]*\.scope")
    if not hits:
        return None
    return Diagnosis(
        "the shim cannot manage the container's systemd cgroup (dbus error)",
        "the runtime uses systemd cgroups (SystemdCgroup = true, as k3s does) but the node has no working dbus",
        "install and start dbus on the node (`sudo apt-get install dbus`), and keep SystemdCgroup = true in the "
        "shim's runtime options",
        hits[:3],
        "systemd-cgroup-dbus",
    )


@_signature
def _containerd_too_old(f: Facts) -> Diagnosis | None:
    hits = f.find(r"mismatched image rootfs and manifest layers")
    if not hits:
        return None
    return Diagnosis(
        "containerd is too old for wasm images (mismatched image rootfs and manifest layers)",
        "containerd before 1.6.25 / 1.7.7 cannot unpack images whose layers are wasm modules",
        "upgrade containerd (or k3s, which bundles it) to 1.6.25+ / 1.7.7+",
        hits[:3],
        "containerd-too-old",
    )


@_signature
def _image_not_imported(f: Facts) -> Diagnosis | None:
    found = f.waiting_reason(*IMAGE_REASONS)
    if not found:
        return None
    status, state = found
    image, reason = status.get("image", "?"), state.get("reason")
    if reason == "ErrImageNeverPull":
        summary = f"image {image} is not on the node and imagePullPolicy is Never (ErrImageNeverPull)"
        cause = "the image was never imported into the containerd that runs the pods (namespace k8s.io)"
        fix = (
            f"import it on the node: `sudo k3s ctr images import --all-platforms <image.tar>` (or "
            f"`labkit image import`), then check `k3s crictl images | grep {image.split(':')[0]}`"
        )
    else:
        summary = f"image {image} cannot be pulled ({reason})"
        cause = (
            "the registry does not have that name/tag, or the node cannot reach it; "
            "wasm images built locally exist only where imported"
        )
        fix = (
            "check the image name and tag; for a locally built image import it into the node "
            "(`k3s ctr images import --all-platforms`) and set imagePullPolicy: Never"
        )
    return Diagnosis(
        summary,
        cause,
        fix,
        [
            f"{status.get('name')}: {reason}: {state.get('message', '')}".rstrip(": "),
            *f.event_lines("Failed", "ErrImageNeverPull")[:2],
        ],
        "image-not-imported",
    )


@_signature
def _cant_handle_spec(f: Facts) -> Diagnosis | None:
    hits = f.find(r"can'?t handle spec")
    if not hits:
        return None
    arg0 = f.arg0()
    # the pod does not say which module the image holds (only the image does), so the fix names
    # where to look rather than guessing a path from arg0
    return Diagnosis(
        "the WasmEdge shim cannot run this container: wasmedge executor can't handle spec",
        f"arg0 ({arg0 or 'the entrypoint'}) is not a wasm module file in the image (a .wasm with \\0asm magic, "
        "or a .wat) and the image has no wasm layers, so neither the Linux nor the wasm executor accepts the spec; "
        "the shim's log (containerd.log on k3s) adds: Note: arg0 must be a path to a Wasm file",
        "make arg0 the path of the module the image holds: drop `command` so the image's entrypoint (its "
        "module) is arg0, or write that path; the image's entrypoint names it (wasm.read_image(archive).entrypoint "
        "for an archive, `skopeo inspect --config docker://<image>` for a registry image)",
        hits[:3],
        "cant-handle-spec",
    )


for _nn in (
    wasinn.library_missing,
    wasinn.preload_malformed,
    wasinn.cli_without_plugin,
    wasinn.plugin_path_wrong,
):  # before _unknown_import: a plugin that failed to load also leaves the imports unknown
    _signature(_nn)


@_signature
def _unknown_import(f: Facts) -> Diagnosis | None:
    hits = f.find(r"unknown import")
    if not hits:
        return None
    linking = re.search(r'When linking module: "([^"]+)"\s*,\s*function name: "([^"]+)"', f.logs)
    module, function = (linking.group(1), linking.group(2)) if linking else (None, None)
    if not module:
        logging = re.search(r'"?(wasi:logging/logging)"?', "\n".join(hits))
        module = logging.group(1) if logging else None
    evidence = [*hits[:2], *f.find(r"When linking module")[:1]]
    code = f.exit_code()
    exited = f" and the container exits with code {code}" if code is not None else ""
    if module == "wasi_ephemeral_nn":
        annotations = (f.pod.get("metadata") or {}).get("annotations") or {}
        # the same failure under crun or podman: crun loads WasmEdge plugins from 1.15 on (crun PR #1432;
        # WasmEdge #2383, #3217), with the same mounts and env
        runner = (
            f"crun runs this pod's module ({CRUN_WASM_ANNOTATION} annotation): it loads WasmEdge plugins only from "
            "crun 1.15 on, built with WasmEdge, so upgrade an older crun"
            if CRUN_WASM_ANNOTATION in annotations
            else "the shim must be a gnu build with the plugin feature"
        )
        return Diagnosis(
            f"the module imports WASI-NN ({module}::{function}) but the WasmEdge WASI-NN plugin is not in the pod",
            "the runtime loads plugins from the container's rootfs, not the host; without the plugin the import "
            f"cannot be linked{exited}",
            "mount the plugin and everything `ldd` lists for it read-only at the same paths "
            "(labkit.manifests.host_path), set WASMEDGE_PLUGIN_PATH to the plugin directory and "
            "WASMEDGE_WASINN_PRELOAD=default:GGML:AUTO:<model path>; "
            f"{wasinn.MOUNTS_API}; {runner}",
            evidence,
            "unknown-import-wasi-nn",
        )
    if module and module.startswith("wasi:logging"):
        return Diagnosis(
            "the module imports wasi:logging/logging, which the WasmEdge shim does not provide",
            f"llama-api-server's wasi_logger calls the wasi:logging host interface, which the runwasi path does "
            f"not link (WasmEdge #4003, open){exited}",
            "rebuild the server without wasi_logger: the seed's disable_wasi_logging.patch removes the logger "
            "install and max-level call from main.rs (the server's own info! lines then vanish; the plugin's "
            "and llama.cpp's logs remain)",
            evidence,
            "unknown-import-wasi-logging",
        )
    where = f"{module}::{function}" if module else "a host function"
    return Diagnosis(
        f"the module imports {where}, which the runtime does not provide",
        f"instantiation failed: the import cannot be linked{exited}",
        f"run it on a runtime (or with the plugin) that provides {module or 'that module'}, or rebuild the module "
        "without that import (`labkit wasm inspect` lists a module's imports)",
        evidence,
        "unknown-import",
    )


@_signature
def _exec_format_error(f: Facts) -> Diagnosis | None:
    hits = f.find(r"exec format error")
    if not hits:
        return None
    annotations = (f.pod.get("metadata") or {}).get("annotations") or {}
    annotated = CRUN_WASM_ANNOTATION in annotations
    return Diagnosis(
        "the container ran through runc/crun as a Linux binary: exec format error",
        "a .wasm file is not an ELF executable; the runtime only runs it as wasm when told to"
        + (" (the pod has the annotation, so containerd did not pass it through)" if annotated else ""),
        (
            "whitelist the annotation for the crun runtime in the containerd config (pod_annotations = "
            '["module.wasm.image/*", ...]) and restart k3s'
            if annotated
            else "run it with runtimeClassName: wasmedge, or for crun add the pod annotation "
            "module.wasm.image/variant: compat-smart (and whitelist it with pod_annotations in the containerd config)"
        ),
        hits[:3],
        "exec-format-error",
    )


for _row in (
    dns.server_unreachable,
    dns.short_name,
    dns.server_ignored,
    dns.failure,
    lb.watcher_forbidden,
    lb.backend_unreachable,
    lb.no_backends,
):
    _signature(_row)


@_signature
def _crash_loop(f: Facts) -> Diagnosis | None:
    found = f.waiting_reason("CrashLoopBackOff")
    if not found:
        return None
    status, state = found
    code = f.exit_code()
    return Diagnosis(
        f"container {status.get('name')} keeps crashing (CrashLoopBackOff, {status.get('restartCount', 0)} restarts"
        + (f", last exit code {code})" if code is not None else ")"),
        "the program exits right after it starts; its last log lines usually say why",
        "read the last log lines below (labkit.logs(..., previous=True)); check command/args, env and mounts",
        [f"{status.get('name')}: {state.get('message', 'back-off restarting failed container')}", *f.tail()],
        "crash-loop",
    )


@_signature
def _exited_with_error(f: Facts) -> Diagnosis | None:
    code = f.exit_code()
    if code in (None, 0):
        return None
    return Diagnosis(
        f"the container exited with code {code}",
        "137 means it was killed (the WasmEdge shim also exits 137 when a wasm run fails)"
        if code == 137
        else f"{code} is the program's own exit status (a wasm module's proc_exit code becomes the container's)",
        "read the log lines below; if the exit code is intended (a Job demonstrating failure), nothing is wrong",
        f.tail(),
        "exit-nonzero",
    )


@_signature
def _unschedulable(f: Facts) -> Diagnosis | None:
    if (f.pod.get("spec") or {}).get("nodeName"):  # scheduled after all: old FailedScheduling events are history
        return None
    hits = f.event_lines("FailedScheduling")
    conditions = (f.pod.get("status") or {}).get("conditions") or []
    unschedulable = [c for c in conditions if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"]
    if not hits and not unschedulable:
        return None
    message = (unschedulable[0].get("message") if unschedulable else "") or (hits[-1] if hits else "")
    return Diagnosis(
        "the pod is Pending: no node can take it (FailedScheduling)",
        message or "the scheduler found no node that fits",
        "compare the pod's nodeSelector, tolerations and resource requests with the nodes "
        "(`kubectl get nodes --show-labels`, `kubectl describe node`): remove or fix the selector, "
        "or add a node that matches",
        hits[-3:] or [message],
        "unschedulable",
    )


def diagnose_pod(pod: dict[str, Any] | None, events: list[dict[str, Any]] | None = None, logs: str = "") -> Diagnosis:
    """Match a pod (its status), its events (and its owner's) and its logs against the known failures.

    *pod* may be ``None`` when no pod exists (a Deployment whose pods are rejected): then events alone decide.
    """
    facts = Facts(pod or {}, list(events or []), logs or "")
    for matcher in _SIGNATURES:
        found = matcher(facts)
        if found is not None:
            return found
    return _no_known_failure(facts)


def _no_known_failure(f: Facts) -> Diagnosis:
    if not f.pod:
        return Diagnosis(
            "no pod exists yet and no event explains why",
            fix="look at the owner's events "
            "(labkit.events) and the controllers; the pods may simply not have been created yet",
            evidence=f.event_lines()[-3:],
        )
    status = f.pod.get("status") or {}
    phase = status.get("phase", "Pending")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    if phase == "Succeeded" or (phase == "Running" and ready):
        return Diagnosis(
            f"pod {f.name} is {'Running and Ready' if ready else phase}: nothing is wrong", evidence=f.tail(3)
        )
    waiting = [
        f"{s.get('name')}: {st.get('reason', '')} {st.get('message', '')}".strip()
        for s, n, st in f.states()
        if n == "waiting"
    ]
    # warnings first (event_lines filters by reason, and "Warning" is an event type), then the latest events
    lines = f.event_lines()
    warnings = [line for line in lines if line.startswith("Warning ")][-3:]
    latest = [line for line in lines[-3:] if line not in warnings]
    return Diagnosis(
        f"pod {f.name} is {phase} and no known failure matches",
        "it may still be starting (scheduling, sandbox creation, image unpacking)",
        "wait a little longer; if it stays so, read labkit.describe(...) and labkit.events(...)",
        [*waiting, *warnings, *latest][:6],
    )


def diagnose(cluster: Cluster, pod_or_name: str | dict[str, Any], *, namespace: str) -> Diagnosis:
    """Diagnose a pod, or a Deployment/Job (``"deployment/web"``) by its first unhealthy pod.

    Fetches the pod, its events (plus its owners' events: a rejected pod only shows there) and its logs.

    >>> print(labkit.diagnose(cluster, "deployment/wasi-demo", namespace="lab-01"))   # doctest: +SKIP
    the node's containerd has no runtime named 'wasm' (FailedCreatePodSandBox) ...
    """
    pod, events, logs = evidence.diagnosis_inputs(cluster, pod_or_name, namespace=namespace)
    return diagnose_pod(pod, events, logs)
