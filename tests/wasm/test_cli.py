"""The CLI end to end, as the issue's "must show" list runs it, through ``labkit.cli.main``.

In-process rather than the console script: ``import labkit`` costs seconds (kubernetes client),
and the commands are the same code either way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit.cli import main
from labkit.wasm.apps import module_path
from tests.wasm.test_inspect import objdump_imports


@pytest.fixture
def labkit(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``labkit ARGS`` in-process with a private LABKIT_HOME; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_BACKEND", "sandbox")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return run


def test_must_show_flow(tmp_path: Path, labkit) -> None:
    if shutil.which("clang") is None or shutil.which("skopeo") is None or shutil.which("wasm-objdump") is None:
        pytest.skip("needs clang, skopeo and wabt")
    built = labkit("apps", "build", "--out", str(tmp_path / "mods"))
    assert built.returncode == 0, built.stderr
    module = tmp_path / "mods" / "wasi-demo.wasm"
    assert f"built wasi-demo: {module}" in built.stdout
    digests = {}
    for layout in ("runwasi", "compat"):
        for attempt in ("a", "b"):
            out = tmp_path / f"{layout}-{attempt}.tar"
            run = labkit(
                "image",
                "build",
                "--module",
                str(module),
                "--name",
                "wasi-demo",
                "--tag",
                "latest",
                "--layout",
                layout,
                "-o",
                str(out),
            )
            assert run.returncode == 0, run.stderr
            digests[layout, attempt] = hashlib.sha256(out.read_bytes()).hexdigest()
        assert digests[layout, "a"] == digests[layout, "b"]
        info = json.loads(
            subprocess.run(
                ["skopeo", "inspect", f"oci-archive:{tmp_path / f'{layout}-a.tar'}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert (info["Os"], info["Architecture"]) == ("wasip1", "wasm")
    assert digests["runwasi", "a"] != digests["compat", "a"]

    inspected = labkit("wasm", "inspect", str(module))
    assert inspected.returncode == 0, inspected.stderr
    lines = inspected.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("imports ("))
    end = next(i for i, line in enumerate(lines) if line.startswith("exports ("))
    listed = [line.split(None, 2) for line in lines[start + 1 : end]]
    expected = objdump_imports(module)
    assert [tuple(row) for row in listed] == expected
    assert len(expected) >= 10 and all(name.startswith("wasi_snapshot_preview1.") for _, name, _ in expected)


def test_import_and_list_on_the_sandbox_backend(tmp_path: Path, labkit) -> None:
    archive = tmp_path / "img.tar"
    assert (
        labkit(
            "image",
            "build",
            "--module",
            str(module_path("wasi-demo")),
            "--name",
            "wasi-demo",
            "--tag",
            "v3",
            "--layout",
            "compat",
            "--env",
            "A=b",
            "-o",
            str(archive),
        ).returncode
        == 0
    )
    imported = labkit("image", "import", str(archive))
    assert imported.stdout == "imported docker.io/library/wasi-demo:v3\n", imported.stderr
    assert (tmp_path / "sandbox" / "images" / "images.db").is_file()
    listing = labkit("image", "list").stdout.splitlines()
    assert listing[0].split() == ["REF", "DIGEST", "PLATFORM", "SIZE", "LAYOUT"]
    assert listing[1].split()[0::2] == ["docker.io/library/wasi-demo:v3", "wasip1/wasm", "compat"]


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wasm", "inspect", "--json", str(module_path("wasi-demo"))]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "core" and data["imports"][0]["module"] == "wasi_snapshot_preview1"
    assert {"name": "_start", "kind": "func"}.items() <= data["exports"][-1].items()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wasm", "inspect", "{sh}"], "ELF"),
        (["image", "build", "--module", "{demo}", "--name", "Bad", "-o", "{out}"], "not a valid image name"),
        (["image", "build", "--module", "{demo}", "--name", "ok", "--env", "novalue", "-o", "{out}"], "not KEY=VALUE"),
        (["image", "import", "{missing}"], "does not exist"),
    ],
)
def test_errors_print_problem_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    values = {
        "sh": str(Path("/bin/sh").resolve()),
        "demo": str(module_path("wasi-demo")),
        "out": str(tmp_path / "o.tar"),
        "missing": str(tmp_path / "none.tar"),
    }
    assert main([a.format(**values) for a in args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "fix:" in err
    assert not (tmp_path / "o.tar").exists()
