"""WASI-NN as WasmEdge's plugin exposes it: numbers, layouts, and ``WASMEDGE_WASINN_PRELOAD`` (see wasinn.py).

Sources (read at the commits named): the guest side, ``second-state/wasmedge-wasi-nn`` 0.8.0
(``rust/src/generated.rs``, ``rust/src/graph.rs``, ``rust/src/error.rs``; ggml branch 337f0d8); the host side,
WasmEdge ``plugins/wasi_nn/wasinnfunc.cpp``, ``wasinntypes.h``, ``wasinnenv.cpp`` (d516c5d); the shim's
parsing of the env var, runwasi ``crates/containerd-shim-wasmedge/src/instance.rs`` (eb9967a) calling
wasmedge-sdk's ``NNPreload::from_str`` (``WasmEdge/wasmedge-rust-sdk`` ``src/plugin.rs``, f85291d).

>>> parse_preload("default:GGML:CPU:/models/m.gguf")
Preload(alias='default', encoding='GGML', target='CPU', path='/models/m.gguf')
>>> parse_preload("default:GGML:NPU:/m.gguf")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
labkit.sandbox.kubelet.wasinn_abi.PreloadError: Failed to convert to ExecutionTarget value. Unknown Execu...
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

MODULE = "wasi_ephemeral_nn"
ENV_PRELOAD = "WASMEDGE_WASINN_PRELOAD"


class NnErr(IntEnum):
    """``WASINN::ErrNo`` (wasinntypes.h), as wasmedge-wasi-nn's ``BackendError::from`` reads them."""

    SUCCESS = 0
    INVALID_ARGUMENT = 1
    INVALID_ENCODING = 2
    MISSING_MEMORY = 3
    BUSY = 4
    RUNTIME_ERROR = 5
    UNSUPPORTED_OPERATION = 6
    TOO_LARGE = 7
    NOT_FOUND = 8
    END_OF_SEQUENCE = 100
    CONTEXT_FULL = 101
    PROMPT_TOO_LONG = 102
    MODEL_NOT_FOUND = 103


#: GraphEncoding (generated.rs): GGML is 6; the plugin built with the GGML backend knows no other.
ENCODING_GGML = 6
#: Device (wasinntypes.h): CPU 0, GPU 1, TPU 2, AUTO 3; ``load`` accepts only the first three (wasinnfunc.cpp).
LOAD_DEVICES = (0, 1, 2)
#: ``| dim buf | dim buf len | rtype | data buf | data buf len |`` as five u32 (WasiTensorData, wasinnfunc.cpp).
TENSOR = struct.Struct("<IIIII")
#: a graph builder: ``| ptr | len |`` (WasiBuilderPair)
BUILDER = struct.Struct("<II")
#: tensor types set_input accepts: F16, F32, U8, I32 (wasinnfunc.cpp)
TENSOR_TYPES = (0, 1, 3, 4)
U32 = struct.Struct("<I")

#: The functions and their i32 arity, as generated.rs imports them (all return an i32 errno).
FUNCTIONS = {
    "load": 5,
    "load_by_name": 3,
    "load_by_name_with_config": 5,
    "init_execution_context": 2,
    "set_input": 3,
    "get_output": 5,
    "get_output_single": 5,
    "compute": 1,
    "compute_single": 1,
    "fini_single": 1,
    "unload": 1,
    "finalize_execution_context": 1,
}


class StartFailed(Exception):
    """A host extension refusing to start the container: its lines go to the pod's stderr, the run exits 137
    (as the shim's start function failing, runwasi ``containerd-shim-wasm`` ``executor.rs``)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class PreloadError(ValueError):
    """wasmedge-sdk's ``WasmEdgeError::Operation`` text for a malformed preload string."""


class Preload(NamedTuple):
    alias: str
    encoding: str
    target: str
    path: str


def parse_preload(value: str) -> Preload:
    """``alias:backend:target:path`` exactly as ``NNPreload::from_str``: four ``:``-separated parts, the
    backend matched case-insensitively against the SDK's list, the target against CPU/GPU/TPU/AUTO."""
    parts = value.split(":")
    if len(parts) != 4:
        raise PreloadError(
            f"Failed to convert to NNPreload value. Invalid preload string: {value}. "
            "The correct format is: 'alias:backend:target:path'"
        )
    alias, backend, target, path = parts
    if backend.lower() not in ("openvino", "onnx", "tensorflow", "pytorch", "tensorflowlite", "autodetect", "ggml"):
        raise PreloadError(f"Failed to convert to NNBackend value. Unknown NNBackend type: {backend}")
    if target.upper() not in ("CPU", "GPU", "TPU", "AUTO"):
        raise PreloadError(f"Failed to convert to ExecutionTarget value. Unknown ExecutionTarget type: {target}")
    return Preload(alias, backend, target, path)
