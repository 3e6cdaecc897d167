"""Shared fixtures for the wasm tests: the module under test, a wasmtime runner, a real containerd."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import wasmtime

from labkit.wasm.apps import build_apps, module_path


@pytest.fixture(scope="session")
def rebuilt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The apps rebuilt from source with clang (skips where clang/wasi-libc are absent)."""
    if shutil.which(os.environ.get("CC") or "clang") is None:
        pytest.skip("clang not installed: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32")
    out = tmp_path_factory.mktemp("rebuilt")
    build_apps(out_dir=out)
    return out


@pytest.fixture(scope="session")
def demo_module(rebuilt_dir: Path) -> bytes:
    """wasi-demo as rebuilt from the current sources (what CI runs)."""
    return (rebuilt_dir / "wasi-demo.wasm").read_bytes()


@pytest.fixture(scope="session")
def shipped_demo() -> bytes:
    return module_path("wasi-demo").read_bytes()


@dataclass
class Run:
    """Result of one wasm run: exit code (None when interrupted), output, and stdout chunk times."""

    code: int | None
    stdout: str
    stderr: str
    chunk_times: list[float] = field(default_factory=list)


def run_wasm(
    module: bytes, args: list[str], *, preopen: tuple[Path, str] | None = None, stop_after: float | None = None
) -> Run:
    """Run a WASI p1 command module with wasmtime; optionally interrupt it via the epoch after *stop_after* s."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    out: list[bytes] = []
    err: list[bytes] = []
    started = time.monotonic()
    times: list[float] = []
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["wasi-demo.wasm", *args]

    def on_stdout(chunk: bytes) -> None:
        times.append(time.monotonic() - started)
        out.append(bytes(chunk))

    wasi.stdout_custom = on_stdout
    wasi.stderr_custom = lambda chunk: err.append(bytes(chunk))
    if preopen:
        wasi.preopen_dir(str(preopen[0]), preopen[1])
    store.set_wasi(wasi)
    instance = linker.instantiate(store, wasmtime.Module(engine, module))
    timer = threading.Timer(stop_after, engine.increment_epoch) if stop_after else None
    if timer:
        timer.start()
    code: int | None = 0
    try:
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func), "a WASI command exports _start as a function"
        start(store)
    except wasmtime.ExitTrap as exc:
        code = exc.code
    except wasmtime.Trap as exc:
        if exc.trap_code != wasmtime.TrapCode.INTERRUPT:
            raise
        code = None
    finally:
        if timer:
            timer.cancel()
    return Run(code, b"".join(out).decode(), b"".join(err).decode(), times)


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real Debian containerd with a private config; yields its gRPC socket path."""
    if os.geteuid() != 0:
        pytest.skip("starting containerd needs root")
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd/ctr not installed (apt-get install containerd)")
    # Short path: unix socket paths are limited to 108 bytes.
    base = Path(subprocess.check_output(["mktemp", "-d", "/tmp/lkctrd.XXXX"], text=True).strip())
    sock = base / "c.sock"
    (base / "config.toml").write_text(
        "version = 2\n"
        f'root = "{base}/root"\nstate = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n[debug]\n  address = "{base}/debug.sock"\n'
    )
    log = (base / "containerd.log").open("w")
    proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while (
            subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True, check=False).returncode != 0
        ):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip(f"containerd did not start: {(base / 'containerd.log').read_text()[-500:]}")
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)
