"""Host functions on wasmtime's *unchecked* calling convention: the one way every pod's host functions are defined.

wasmtime-py's ``Linker.define_func`` goes through a generic trampoline that wraps
each argument in a ``Val`` and converts the result through freshly made
``ValType`` objects: about ten ctypes calls per call, 40% of the load balancer's
CPU in ``benchmarks/bench_loadbalancer.py``. wasmtime's C API has the fast form
for this (``wasmtime_linker_define_func_unchecked`` in ``wasmtime/linker.h``):
the callback gets one array of raw values, reads its i32/i64 arguments from it
and writes its i32 result to slot 0. :func:`define` uses it, and falls back to
``define_func`` where a wasmtime-py lacks a piece it needs (the same behaviour,
only slower).

An exception raised by a host function unwinds the guest as wasmtime-py's own
trampoline does: a trap, and the exception re-raised where the guest was called.

>>> engine = wasmtime.Engine()
>>> linker = wasmtime.Linker(engine)
>>> define(linker, "env", "add", [I32, I32], lambda caller, a, b: a + b)
>>> store = wasmtime.Store(engine)
>>> module = wasmtime.Module(engine, '''(module (import "env" "add" (func $add (param i32 i32) (result i32)))
...   (func (export "run") (result i32) (call $add (i32.const 2) (i32.const 40))))''')
>>> linker.instantiate(store, module).exports(store)["run"](store)
42
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from typing import Any

import wasmtime

I32 = "i32"
I64 = "i64"
HostFunction = Callable[..., int]  # (caller, *ints) -> the i32 result

_functions: dict[int, tuple[HostFunction, tuple[str, ...]]] = {}  # env id -> the function and its argument kinds
_ids = itertools.count(1)


def _bind() -> tuple[Any, Any, Any, Any] | None:
    """wasmtime-py's ffi pieces the fast path needs, or None (then define_func serves)."""
    try:
        from wasmtime import _ffi as ffi  # private, so optional
        from wasmtime import _func as func_module

        native = ffi.dll.wasmtime_linker_define_func_unchecked
        callback_type = ffi.wasmtime_func_unchecked_callback_t
        finalizer_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
        native.restype = ctypes.POINTER(ffi.wasmtime_error_t)
        native.argtypes = [
            ctypes.POINTER(ffi.wasmtime_linker_t),
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(ffi.wasm_functype_t),
            callback_type,
            ctypes.c_void_p,
            finalizer_type,
        ]
        if not hasattr(func_module, "LAST_EXCEPTION") or not hasattr(wasmtime.Caller, "_invalidate"):
            return None
    except (ImportError, AttributeError):
        return None
    return native, callback_type, finalizer_type, func_module


_BOUND = _bind()


def _trampoline(env: int | None, caller_ptr: Any, values: Any, _count: int) -> int:
    caller = wasmtime.Caller(caller_ptr)
    try:
        func, kinds = _functions[env or 0]
        values[0].i32 = func(caller, *[getattr(values[k], kind) for k, kind in enumerate(kinds)])
        return 0
    except BaseException as err:  # noqa: BLE001 - a trap for the guest, and the exception for whoever called it
        assert _BOUND is not None
        _BOUND[3].LAST_EXCEPTION = err
        trap = wasmtime.Trap("python exception")._consume()
        return ctypes.cast(trap, ctypes.c_void_p).value or 0
    finally:
        caller._invalidate()


def _forget(env: int | None) -> None:
    _functions.pop(env or 0, None)


# one C callback each for the whole process (as wasmtime-py's own trampoline), told apart by the env id
_CALLBACK = _BOUND[1](_trampoline) if _BOUND else None
_FINALIZER = _BOUND[2](_forget) if _BOUND else None


def define(linker: wasmtime.Linker, module: str, name: str, params: list[str], func: HostFunction) -> None:
    """Define *module*.*name* as ``func(caller, *args) -> int``, with i32/i64 *params* and one i32 result."""
    types = {I32: wasmtime.ValType.i32(), I64: wasmtime.ValType.i64()}
    ty = wasmtime.FuncType([types[p] for p in params], [types[I32]])
    if _BOUND is None:
        linker.define_func(module, name, ty, func, access_caller=True)
        return
    env = next(_ids)
    _functions[env] = (func, tuple(params))
    module_bytes, name_bytes = module.encode(), name.encode()
    error = _BOUND[0](
        linker.ptr(),
        module_bytes,
        len(module_bytes),
        name_bytes,
        len(name_bytes),
        ty.ptr(),
        _CALLBACK,
        env,
        _FINALIZER,
    )
    if error:
        _functions.pop(env, None)
        raise wasmtime.WasmtimeError._from_ptr(error)
