"""The wasi-demo app behaves like runwasi's wasi-demo-app, run for real in wasmtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wasm.conftest import run_wasm


def test_echo_prints_words_then_exiting(demo_module: bytes) -> None:
    run = run_wasm(demo_module, ["echo", "hello", "wasm", "world"])
    assert (run.code, run.stdout, run.stderr) == (0, "hello wasm world\n", "exiting\n")


def test_exit_code_is_the_process_status(demo_module: bytes) -> None:
    run = run_wasm(demo_module, ["exit", "3"])
    assert (run.code, run.stdout, run.stderr) == (3, "", "")


def test_unknown_command(demo_module: bytes) -> None:
    run = run_wasm(demo_module, ["dance"])
    assert (run.code, run.stderr) == (1, "unknown command: dance\n")


@pytest.mark.parametrize("arg", ["0.2", ".2"])
def test_sleep_accepts_fractions(demo_module: bytes, arg: str) -> None:
    import time

    started = time.monotonic()
    run = run_wasm(demo_module, ["sleep", arg])
    assert (run.code, run.stderr) == (0, "exiting\n")
    assert time.monotonic() - started >= 0.2


def test_sleep_rejects_garbage(demo_module: bytes) -> None:
    run = run_wasm(demo_module, ["sleep", "soon"])
    assert (run.code, run.stderr) == (1, "invalid seconds: soon\n")


def test_write_to_preopened_dir(demo_module: bytes, tmp_path: Path) -> None:
    run = run_wasm(demo_module, ["write", "/data/out.txt", "written", "by", "wasm"], preopen=(tmp_path, "/data"))
    assert (run.code, run.stderr) == (0, "exiting\n")
    assert (tmp_path / "out.txt").read_text() == "written by wasm"


def test_write_outside_preopens_fails_cleanly(demo_module: bytes) -> None:
    run = run_wasm(demo_module, ["write", "/nowhere/out.txt", "x"])
    assert run.code == 1
    assert run.stderr.startswith("cannot open: /nowhere/out.txt: ")


@pytest.mark.parametrize("args", [[], ["daemon"]])
def test_daemon_prints_live_until_interrupted(demo_module: bytes, args: list[str]) -> None:
    run = run_wasm(demo_module, args, stop_after=1.5)
    assert run.code is None, "the daemon never exits by itself; the epoch bump stopped it"
    lines = run.stdout.splitlines()
    assert lines[0] == "[wasi-demo] heartbeat 1: still running inside a wasm sandbox."
    assert "[wasi-demo] heartbeat 2: still running inside a wasm sandbox." in lines
    assert len(lines) % 3 == 0 and len(lines) >= 6
    assert run.chunk_times[0] < 0.5, "fflush: the first block must appear at once, not at exit"


def test_shipped_module_runs_too(shipped_demo: bytes) -> None:
    run = run_wasm(shipped_demo, ["echo", "shipped"])
    assert (run.code, run.stdout) == (0, "shipped\n")
