"""The wasm container runner: real modules (C via clang, WAT via wasmtime) run by wasmtime."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import wasmtime

from labkit.errors import LabkitError, WasmError
from labkit.sandbox.kubelet.extensions import ExtensionRegistry, PodContext
from labkit.sandbox.kubelet.output import LineBuffer
from labkit.sandbox.kubelet.wasmrun import (
    SHIM_CANT_HANDLE,
    CantHandleSpec,
    ContainerSpec,
    ModuleCache,
    Mount,
    WasmContainer,
    check_arg0,
)

PROBE_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "daemon";
  if (!strcmp(cmd, "daemon")) {
    for (;;) { printf("This is a song that never ends.\n"); fflush(stdout); sleep(1); }
  }
  if (!strcmp(cmd, "args")) { for (int i = 0; i < argc; i++) printf("%s\n", argv[i]); return 0; }
  if (!strcmp(cmd, "exit")) exit(atoi(argv[2]));
  if (!strcmp(cmd, "env")) { const char *v = getenv(argv[2]); printf("%s\n", v ? v : "<unset>"); return 0; }
  if (!strcmp(cmd, "read")) {
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 2; }
    char buf[256]; size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0; printf("%s\n", buf); return 0;
  }
  if (!strcmp(cmd, "write")) {
    FILE *f = fopen(argv[2], "w");
    if (!f) { perror(argv[2]); return 2; }
    fputs(argv[3], f); fclose(f); return 0;
  }
  if (!strcmp(cmd, "partial")) { printf("par"); fflush(stdout); printf("tial\nno-newline"); return 0; }
  if (!strcmp(cmd, "abssleep")) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += 200000000L; if (t.tv_nsec >= 1000000000L) { t.tv_sec++; t.tv_nsec -= 1000000000L; }
    int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
    printf("slept %d\n", rc); return 0;
  }
  fprintf(stderr, "unknown command: %s\n", cmd);
  return 1;
}
"""

NN_WAT = """(module
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $compute (i32.const 7)))))"""
SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
TRAP_WAT = '(module (memory (export "memory") 1) (func (export "_start") unreachable))'


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang with wasm32-wasi support is not installed")
    out = tmp_path_factory.mktemp("probe")
    (out / "probe.c").write_text(PROBE_C)
    subprocess.run(
        [clang, "--target=wasm32-wasi", "-O2", "-o", str(out / "probe.wasm"), str(out / "probe.c")],
        check=True,
        timeout=120,
    )
    return (out / "probe.wasm").read_bytes()


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    Run.cache = ModuleCache(tmp_path_factory.mktemp("cache"))


class Run:
    """A container plus the lines it printed (sharing one module cache unless told otherwise)."""

    cache: ModuleCache | None = None

    def __init__(self, spec: ContainerSpec, **kwargs: object) -> None:
        kwargs.setdefault("cache", Run.cache)
        self.out: list[str] = []
        self.err: list[str] = []
        self.first_line = threading.Event()

        def on_out(line: str) -> None:
            self.out.append(line)
            self.first_line.set()

        self.container = WasmContainer(spec, on_stdout=on_out, on_stderr=self.err.append, **kwargs)
        self.container.start()

    def wait(self, timeout: float = 10) -> int | None:
        return self.container.wait(timeout)


def run(module: bytes, *args: str, **spec: object) -> Run:
    r = Run(ContainerSpec(module, ["/probe.wasm", *args], **spec))
    assert r.wait() is not None, "container did not finish"
    return r


def test_args_with_command_path_as_argv0(probe: bytes) -> None:
    r = run(probe, "args", "a b", "c")
    assert (r.container.exit_code, r.out) == (0, ["/probe.wasm", "args", "a b", "c"])


def test_env(probe: bytes) -> None:
    assert run(probe, "env", "GREETING", env={"GREETING": "hi there"}).out == ["hi there"]
    assert run(probe, "env", "HOME").out == ["<unset>"]  # nothing leaks from the host


def test_exit_codes(probe: bytes) -> None:
    assert run(probe, "exit", "3").container.exit_code == 3
    assert run(probe, "args").container.exit_code == 0
    bad = run(probe, "dance")
    assert (bad.container.exit_code, bad.err, bad.container.outcome) == (1, ["unknown command: dance"], "exited")


def test_trap_is_137_with_message() -> None:
    r = run(bytes(wasmtime.wat2wasm(TRAP_WAT)))
    assert (r.container.exit_code, r.container.outcome) == (137, "trapped")
    assert any("unreachable" in line for line in r.err)


def test_partial_writes_become_complete_lines(probe: bytes) -> None:
    assert run(probe, "partial").out == ["partial", "no-newline"]


def test_line_buffer_splits_overlong_lines() -> None:
    lines: list[str] = []
    buf = LineBuffer(lines.append)
    buf.feed(b"x" * 20000 + b"\ny")
    buf.close()
    assert [len(line) for line in lines] == [16384, 20000 - 16384, 1]


def test_mounts_read_write_and_read_only(probe: bytes, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "hello.txt").write_text("from the host")
    mounts = [Mount(ro, "/config", True), (rw, "/data", False)]
    assert run(probe, "read", "/config/hello.txt", mounts=mounts).out == ["from the host"]
    assert run(probe, "write", "/data/out.txt", "written", mounts=mounts).container.exit_code == 0
    assert (rw / "out.txt").read_text() == "written"
    denied = run(probe, "write", "/config/new.txt", "x", mounts=mounts)
    assert denied.container.exit_code == 2 and not (ro / "new.txt").exists()


def test_no_host_filesystem_outside_mounts(probe: bytes, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "secret.txt").write_text("host secret")
    mounts = [(tmp_path / "data", "/data", False)]
    for path in ("/etc/hostname", "/data/../secret.txt", str(tmp_path / "secret.txt")):
        r = run(probe, "read", path, mounts=mounts)
        assert r.container.exit_code == 2 and "host secret" not in r.out, path


def test_working_dir_resolves_relative_paths(probe: bytes, tmp_path: Path) -> None:
    (tmp_path / "app" / "conf").mkdir(parents=True)
    (tmp_path / "app" / "conf" / "x.txt").write_text("relative")
    r = run(probe, "read", "x.txt", mounts=[(tmp_path / "app", "/srv", True)], working_dir="/srv/conf")
    assert r.out == ["relative"]


def test_missing_mount_source_is_an_error(probe: bytes, tmp_path: Path) -> None:
    with pytest.raises(WasmError, match="does not exist"):
        WasmContainer(ContainerSpec(probe, ["/p.wasm"], mounts=[(tmp_path / "nope", "/x", True)]))


def test_absolute_sleep_uses_the_guest_clock(probe: bytes) -> None:
    r = run(probe, "abssleep")
    assert r.out == ["slept 0"]


def test_kill_wakes_the_sleeping_daemon(probe: bytes) -> None:
    r = Run(ContainerSpec(probe, ["/wasi-demo-app.wasm"]))
    assert r.first_line.wait(10)
    r.container.kill()
    # the daemon sleeps 1 s between lines: finishing well inside that proves the sleep was cut short
    assert r.container.wait(0.9) == 137
    assert r.container.outcome == "killed" and r.out[0] == "This is a song that never ends."


def test_kill_interrupts_a_busy_loop() -> None:
    r = Run(ContainerSpec(bytes(wasmtime.wat2wasm(SPIN_WAT)), ["/spin.wasm"]))
    assert r.wait(0.2) is None  # really spinning
    r.container.kill()
    assert r.container.wait(5) == 137 and r.container.outcome == "killed"


def test_kill_before_start_and_wait_before_start() -> None:
    container = WasmContainer(ContainerSpec(bytes(wasmtime.wat2wasm(SPIN_WAT)), ["/spin.wasm"]))
    with pytest.raises(WasmError, match="never started"):
        container.wait(1)
    container.kill()
    container.start()
    assert container.wait(5) == 137 and container.outcome == "killed"


def test_unknown_import_fails_with_wasmedge_wording() -> None:
    r = run(bytes(wasmtime.wat2wasm(NN_WAT)))
    assert (r.container.exit_code, r.container.outcome) == (137, "link-failed")
    assert r.err[:2] == [
        "[error] instantiation failed: unknown import, Code: 0x302",
        '[error]     When linking module: "wasi_ephemeral_nn" , function name: "compute"',
    ]
    assert "[error]     At AST node: import section" in r.err


class FakeNN:
    """A tiny WASI-NN stand-in, linked only when the pod mounts the plugin directory."""

    name, import_module = "wasi-nn-test", "wasi_ephemeral_nn"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def applies(self, context: PodContext) -> bool:
        return "/plugin" in context.mounts

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store, context: PodContext) -> None:
        def compute(ctx: int) -> int:
            self.calls.append((context.name, ctx))
            return ctx * 6

        i32 = wasmtime.ValType.i32()
        linker.define_func(self.import_module, "compute", wasmtime.FuncType([i32], [i32]), compute)


def test_extension_linked_only_when_it_applies(tmp_path: Path) -> None:
    registry, nn = ExtensionRegistry(), FakeNN()
    registry.register(nn)
    spec = ContainerSpec(
        bytes(wasmtime.wat2wasm(NN_WAT)), ["/llm.wasm"], mounts=[(tmp_path, "/plugin", True)], name="llm"
    )
    with_plugin = WasmContainer(spec)
    assert [e.name for e in registry.extensions_for(with_plugin.context)] == ["wasi-nn-test"]
    linked = Run(spec, extensions=registry.extensions_for(with_plugin.context))
    assert linked.wait() == 42 and nn.calls == [("llm", 7)]
    bare = ContainerSpec(bytes(wasmtime.wat2wasm(NN_WAT)), ["/llm.wasm"])
    assert registry.extensions_for(PodContext(name="llm")) == []
    assert Run(bare, extensions=registry.extensions_for(PodContext(name="llm"))).wait() == 137


def test_registry_rejects_non_extensions() -> None:
    with pytest.raises(LabkitError, match="not a host extension"):
        ExtensionRegistry().register(object())


def test_module_cache_compiles_once(tmp_path: Path, probe: bytes) -> None:
    cache = ModuleCache(tmp_path)
    first = Run(ContainerSpec(probe, ["/p.wasm", "exit", "5"]), cache=cache)
    second = Run(ContainerSpec(probe, ["/p.wasm", "exit", "6"]), cache=cache)
    assert (first.wait(), second.wait()) == (5, 6)
    assert cache.stats == {"compiles": 1, "memory_hits": 1, "disk_hits": 0}
    assert len(list(tmp_path.glob("*.cwasm"))) == 1
    fresh = ModuleCache(tmp_path)  # another process, same directory
    assert Run(ContainerSpec(probe, ["/p.wasm", "exit", "7"]), cache=fresh).wait() == 7
    assert fresh.stats["disk_hits"] == 1 and fresh.stats["compiles"] == 0


def test_module_cache_recovers_from_a_corrupt_artifact(tmp_path: Path) -> None:
    module = bytes(wasmtime.wat2wasm(TRAP_WAT))
    (tmp_path / f"{ModuleCache.key(module)}.cwasm").write_bytes(b"not an artifact")
    cache = ModuleCache(tmp_path)
    assert isinstance(cache.get(module), wasmtime.Module)
    assert cache.stats["compiles"] == 1


def test_module_cache_rejects_invalid_wasm(tmp_path: Path) -> None:
    with pytest.raises(WasmError, match="not valid WebAssembly"):
        ModuleCache(tmp_path).get(b"\0asm\x01\0\0\0garbage")


WASM = b"\0asm\x01\0\0\0"


def test_arg0_must_be_a_wasm_file() -> None:
    files = {"/wasi-demo-app.wasm": WASM, "/bin/sh": b"\x7fELF...", "/notes.txt": b"hello"}
    assert check_arg0(["/wasi-demo-app.wasm", "echo"], files) == ("/wasi-demo-app.wasm", WASM, "_start")
    with pytest.raises(CantHandleSpec) as missing:
        check_arg0(["/wasi-demo-app"], files)
    assert SHIM_CANT_HANDLE in str(missing.value) and "/wasi-demo-app.wasm" in str(missing.value.fix)
    with pytest.raises(CantHandleSpec) as text:
        check_arg0(["/notes.txt"], files)
    assert not text.value.native
    with pytest.raises(CantHandleSpec) as elf:
        check_arg0(["sh"], files, env={"PATH": "/bin"})
    assert elf.value.native  # the real shim would run it as a Linux container


def test_arg0_lookup_rules() -> None:
    files = {"/usr/bin/tool.wasm": WASM, "/app/main.wasm": WASM, "/m.wat": b'(module (func (export "run")))'}
    assert check_arg0(["tool.wasm"], files).path == "/usr/bin/tool.wasm"  # found on PATH
    assert check_arg0(["./main.wasm"], files, working_dir="/app").path == "/app/main.wasm"
    wat = check_arg0(["/m.wat#run"], files)
    assert wat.func == "run" and wat.module.startswith(WASM[:4])
    layers = {"load_balancer.wasm": WASM}
    assert check_arg0(["load_balancer.wasm"], {}, wasm_layers=layers).module == WASM
    with pytest.raises(CantHandleSpec):
        check_arg0([], files)
