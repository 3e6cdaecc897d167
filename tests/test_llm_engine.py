"""scripts/llm-engine: the LLM engine's build flags are chosen per CPU (never AVX-512 or AMX, which crash in these VMs;
the portable baseline without AVX or without a readable cpuinfo), and a cached wheel is reused, not rebuilt."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llm-engine"
# the flags line of a Sapphire Rapids VM like these machines' (cut), and of an old CPU without AVX
MODERN = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 avx512f avx512bw avx512_vnni amx_tile amx_int8"
OLD = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt"
ISA = ("AVX", "AVX2", "FMA", "F16C", "BMI2")
NEVER = ("NATIVE", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_TILE", "AMX_INT8", "AMX_BF16")


def run(*args: str, cpuinfo: Path, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABKIT_CPUINFO": str(cpuinfo)}
    if cache is not None:
        env["LABKIT_CACHE_DIR"] = str(cache)
    cmd = ["bash", str(SCRIPT), *args]
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=60)


def chosen(flags_line: str | None, tmp_path: Path) -> dict[str, str]:
    cpuinfo = tmp_path / "cpuinfo"
    if flags_line is not None:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags_line}\n\nprocessor\t: 1\nflags\t\t: avx512f\n")
    out = run("flags", cpuinfo=cpuinfo).stdout.split()
    return dict(arg.removeprefix("-DGGML_").split("=") for arg in out if arg.startswith("-DGGML_"))


def test_a_cpu_with_avx512_and_amx_gets_avx2_but_never_them(tmp_path: Path) -> None:
    got = chosen(MODERN, tmp_path)
    assert {k: got[k] for k in ISA} == dict.fromkeys(ISA, "ON")
    assert {k: got[k] for k in NEVER} == dict.fromkeys(NEVER, "OFF")


@pytest.mark.parametrize("flags_line", [OLD, None], ids=["no-avx", "no-cpuinfo"])
def test_without_avx_or_cpuinfo_the_build_is_the_portable_baseline(tmp_path: Path, flags_line: str | None) -> None:
    got = chosen(flags_line, tmp_path)
    assert set(got.values()) == {"OFF"} and set(ISA) | set(NEVER) <= set(got)


def test_a_cached_wheel_is_reused_and_another_cpu_has_its_own(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"flags\t\t: {MODERN}\n")
    args = run("flags", cpuinfo=cpuinfo).stdout.strip()
    version = next(line for line in SCRIPT.read_text().splitlines() if line.startswith("VERSION=")).split()[0][8:]
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    key = hashlib.sha256(f"{version} {tag} {args}".encode()).hexdigest()[:12]
    wheel = tmp_path / "cache/llm-engine" / f"llama_cpp_python-{version}-{tag}-{key}"
    wheel = wheel / f"llama_cpp_python-{version}-{tag}-{tag}-linux_x86_64.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"")
    found = run("wheel", sys.executable, cpuinfo=cpuinfo, cache=tmp_path / "cache")
    assert (found.returncode, found.stdout.strip(), found.stderr) == (0, str(wheel), "")  # no build, no message
    cpuinfo.write_text(f"flags\t\t: {OLD}\n")
    other = run("flags", cpuinfo=cpuinfo).stdout.strip()
    assert hashlib.sha256(f"{version} {tag} {other}".encode()).hexdigest()[:12] != key
