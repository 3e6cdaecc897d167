"""Runtime planning: what the node's containerd runtime would do with a container, in its own words.

The WasmEdge shim runs arg0's wasm module; runc cannot exec a ``\\0asm`` file (``exec format error``);
crun built with WasmEdge runs it only when the pod's ``module.wasm.image/variant`` annotation reaches
it through the runtime's ``pod_annotations``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from labkit.sandbox.kubelet.podstate import ContainerFailure
from labkit.sandbox.kubelet.wasmrun import CantHandleSpec, check_arg0

if TYPE_CHECKING:
    from labkit.containerd import RuntimeSpec
    from labkit.sandbox.kubelet.images import ImageContent

WASMEDGE_TYPE = "io.containerd.wasmedge.v1"
RUNC_TYPE = "io.containerd.runc.v2"
VARIANT_ANNOTATION = "module.wasm.image/variant"


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
                task_error(
                    f"{arg0} is a Linux executable: the runwasi shim would run this image "
                    "as an ordinary Linux container, which the labkit sandbox cannot"
                ),
                fix=NATIVE_FIX,
            )
        try:
            entry = check_arg0(argv, image.files(), image.wasm_layers(), env, working_dir)
        except CantHandleSpec as err:
            raise ContainerFailure(
                task_error(f'Others("exec process failed with error error in executing process : {err.problem}")'),
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
        return Launch(files[path], argv, "_start")
    if not image.files() and image.wasm_layers():
        # a runwasi-layout image has no rootfs files: a runc-style runtime finds nothing to exec
        raise ContainerFailure(
            not_found_error(binary, arg0),
            fix="wasm-layer images need the wasmedge runtime: set runtimeClassName: wasmedge",
        )
    raise ContainerFailure(
        exec_format_error(binary, arg0),
        fix="a wasm module needs a wasm runtime: set runtimeClassName: wasmedge, or (crun built with "
        "WasmEdge) annotate the pod module.wasm.image/variant=compat-smart and let the runtime "
        "pass it (pod_annotations)",
    )


def _crun_runs_wasm(runtime: RuntimeSpec, pod: dict[str, Any], arg0: str) -> bool:
    """crun's wasm handler selection, seeing only the pod annotations containerd passes through."""
    variant = (pod["metadata"].get("annotations") or {}).get(VARIANT_ANNOTATION)
    if variant is None or not _glob_passes(VARIANT_ANNOTATION, runtime.pod_annotations):
        return False
    if variant == "compat":
        return True
    return variant == "compat-smart" and arg0.split("#", 1)[0].endswith((".wasm", ".wat"))
