"""Runtime planning: what the node's containerd runtime would do with a container, in its own words.

The WasmEdge shim runs arg0's wasm module; runc cannot exec a ``\\0asm`` file (``exec format error``);
crun built with WasmEdge runs it only when the pod's ``module.wasm.image/variant`` annotation reaches
it through the runtime's ``pod_annotations``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import wasmtime

from labkit.sandbox.kubelet.failures import ContainerFailure
from labkit.sandbox.kubelet.native import NativeLaunch, NotInImage, plan_native
from labkit.sandbox.kubelet.wasmrun import SHIM_CANT_HANDLE, CantHandleSpec, check_arg0

if TYPE_CHECKING:
    from labkit.containerd import RuntimeSpec
    from labkit.sandbox.kubelet.images import ImageContent

WASMEDGE_TYPE = "io.containerd.wasmedge.v1"
RUNC_TYPE = "io.containerd.runc.v2"
VARIANT_ANNOTATION = "module.wasm.image/variant"

log = logging.getLogger("labkit.sandbox.kubelet.runtime")


def _glob_passes(annotation: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(annotation, p) for p in patterns)


def task_error(detail: str) -> str:
    return f"failed to create containerd task: failed to create shim task: {detail}: unknown"


def exec_format_error(binary: str, arg0: str) -> str:
    """containerd 2 + runc's (or crun's) message for exec'ing a file the kernel cannot run."""
    if binary == "crun":
        return task_error(f"OCI runtime create failed: exec container process `{arg0}`: Exec format error")
    return task_error(
        f"OCI runtime create failed: runc create failed: unable to start container process: "
        f'error during container init: exec: "{arg0}": exec format error'
    )


def not_found_error(binary: str, arg0: str) -> str:
    if binary == "crun":
        return task_error(
            f"OCI runtime create failed: executable file `{arg0}` not found in $PATH: No such file or directory"
        )
    return task_error(
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
) -> Launch | NativeLaunch:
    """Decide, like the node's runtime would, whether and how the container's wasm module runs.

    A Python program labkit ships (the ``python`` image layout) runs natively under every handler, as runc,
    crun and runwasi's shim run a Linux image (:mod:`labkit.sandbox.kubelet.native`); with any other program
    such an image is an unknown Linux image.

    Raises :class:`ContainerFailure` with the runtime's own message otherwise.
    """
    arg0 = argv[0] if argv else ""
    if image.layout == "python":
        try:
            native = plan_native(image.entrypoint, image.module, argv, env, working_dir)
        except NotInImage as err:
            binary = "runc" if runtime.runtime_type == WASMEDGE_TYPE else runtime.binary_name or "runc"
            raise ContainerFailure(not_found_error(PurePosixPath(binary).name, err.arg0)) from None
        if native is not None:
            return native
        image = replace(image, layout="native", module=None)
    if runtime.runtime_type == WASMEDGE_TYPE:
        if image.layout == "native":
            raise ContainerFailure(
                task_error(
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
            task_error(f"the labkit sandbox cannot start Linux (non-wasm) image {image.ref}"), fix=NATIVE_FIX
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
