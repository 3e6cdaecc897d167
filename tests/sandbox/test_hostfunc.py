"""Host functions on wasmtime's unchecked calling convention (kubelet/hostfunc.py): arguments, results and
exceptions as wasmtime-py's own define_func gives them, on the fast path and on the fallback."""

from __future__ import annotations

import pytest
import wasmtime

from labkit.sandbox.kubelet import hostfunc

WAT = """(module
  (import "env" "mix" (func $mix (param i32 i64 i32) (result i32)))
  (func (export "run") (param i32 i64 i32) (result i32) (call $mix (local.get 0) (local.get 1) (local.get 2))))"""


class Boom(Exception):
    pass


@pytest.fixture(params=["fast", "fallback"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setattr(hostfunc, "_BOUND", None)
    return str(request.param)


def run(func: hostfunc.HostFunction, *args: int) -> int:
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    hostfunc.define(linker, "env", "mix", [hostfunc.I32, hostfunc.I64, hostfunc.I32], func)
    store = wasmtime.Store(engine)
    entry = linker.instantiate(store, wasmtime.Module(engine, WAT)).exports(store)["run"]
    assert isinstance(entry, wasmtime.Func)
    return int(entry(store, *args))


def test_this_wasmtime_has_the_fast_path() -> None:
    # wasmtime-py 50 exposes what the fast path needs; a release that drops it falls back (slower, same results)
    assert hostfunc._BOUND is not None


def test_arguments_and_the_result_pass_as_signed_integers(path: str) -> None:
    seen: list[tuple[int, ...]] = []

    def mix(caller: wasmtime.Caller, a: int, b: int, c: int) -> int:
        seen.append((a, b, c))
        assert isinstance(caller, wasmtime.Caller)
        return a + c

    assert run(mix, -4, 1 << 40, 7) == 3
    assert seen == [(-4, 1 << 40, 7)]


def test_an_exception_unwinds_the_guest_and_reaches_its_caller(path: str) -> None:
    def mix(caller: wasmtime.Caller, a: int, b: int, c: int) -> int:
        raise Boom(a)

    with pytest.raises(Boom):
        run(mix, 1, 2, 3)
    assert run(lambda caller, a, b, c: 5, 0, 0, 0) == 5  # and the next call is clean
