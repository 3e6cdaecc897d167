"""Building the kit's wasm apps: shipped modules fresh, rebuilds reproducible, toolchain errors clear."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from labkit.errors import PrerequisiteMissing, WasmError
from labkit.wasm.apps import (
    MODULES_DIR,
    TOOLCHAIN_PACKAGES,
    apps_dir,
    build_apps,
    find_clang,
    module_path,
    read_manifest,
    stale_modules,
    toolchain_version,
)


def test_shipped_modules_match_their_sources() -> None:
    assert module_path("wasi-demo").is_file()
    assert stale_modules() == [], "shipped modules are stale: run `labkit apps build` and commit labkit/wasm/modules"


def test_rebuild_is_reproducible_and_equals_shipped(rebuilt_dir: Path, tmp_path: Path) -> None:
    again = build_apps(out_dir=tmp_path)
    assert [a.name for a in again] == [
        "echo-client",
        "echo-server",
        "health-server",
        "http-get",
        "load-balancer",
        "nslookup",
        "wasi-demo",
    ]
    for app in again:
        first = (rebuilt_dir / f"{app.name}.wasm").read_bytes()
        assert app.sha256 == hashlib.sha256(first).hexdigest()
        record = read_manifest()[app.name]
        if record["toolchain"] != toolchain_version(find_clang()):
            pytest.skip(f"shipped module was built with {record['toolchain']}; bytes differ across compilers")
        assert first == module_path(app.name).read_bytes()


def test_demo_is_small(demo_module: bytes) -> None:
    assert len(demo_module) <= 40 * 1024


def test_edited_source_makes_shipped_module_stale(tmp_path: Path) -> None:
    copy = tmp_path / "apps"
    shutil.copytree(apps_dir(), copy)
    assert stale_modules(copy) == []
    main = copy / "wasi-demo" / "main.c"
    main.write_text(main.read_text() + "\n/* edited */\n")
    assert stale_modules(copy) == ["wasi-demo"]


def test_build_into_other_dir_leaves_shipped_manifest_alone(rebuilt_dir: Path) -> None:
    assert (rebuilt_dir / "SOURCES.json").is_file()
    assert (
        read_manifest(rebuilt_dir)["wasi-demo"]["module_sha256"]
        == read_manifest(MODULES_DIR)["wasi-demo"]["module_sha256"]
    )


def test_missing_clang_names_the_apt_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-clang"))
    with pytest.raises(PrerequisiteMissing) as err:
        build_apps(out_dir=tmp_path / "out")
    assert TOOLCHAIN_PACKAGES in str(err.value)
    assert TOOLCHAIN_PACKAGES == "clang lld wasi-libc libclang-rt-dev-wasm32"


def test_clang_without_wasi_libc_names_the_apt_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A real clang pointed at an empty sysroot fails exactly like one without wasi-libc.
    if shutil.which("clang") is None:
        pytest.skip("clang not installed")
    wrapper = tmp_path / "clang-no-libc"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("clang")} --sysroot={tmp_path / "empty"} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    with pytest.raises(PrerequisiteMissing) as err:
        build_apps(out_dir=tmp_path / "out")
    assert "apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32" in str(err.value)
    assert not list((tmp_path / "out").glob("*.wasm")), "a failed build must not leave a module"


def test_broken_source_is_a_wasm_error_with_compiler_output(tmp_path: Path) -> None:
    if shutil.which("clang") is None:
        pytest.skip("clang not installed")
    app = tmp_path / "src" / "broken"
    app.mkdir(parents=True)
    (app / "main.c").write_text("int main(void) { return undefined_name; }\n")
    with pytest.raises(WasmError, match="undefined_name"):
        build_apps(src_dir=tmp_path / "src", out_dir=tmp_path / "out")


def test_unknown_module_name_lists_shipped_ones() -> None:
    with pytest.raises(WasmError, match="wasi-demo"):
        module_path("no-such-app")
    assert module_path("wasi-demo.wasm") == module_path("wasi-demo")
