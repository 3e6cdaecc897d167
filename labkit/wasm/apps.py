"""Build the kit's own wasm apps (``wasm-apps/<app>/*.c``) and find the shipped modules.

Built modules ship inside the package (``labkit/wasm/modules/<app>.wasm``) so a
machine without clang (Binder, a laptop) still runs the labs.
``modules/SOURCES.json`` records, per app, the hash of the sources and flags
each module was built from, so a test can tell when a shipped module is stale.

>>> module_path("wasi-demo").name             # doctest: +SKIP
'wasi-demo.wasm'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labkit.config import project_root
from labkit.errors import PrerequisiteMissing, WasmError
from labkit.wasm.inspection import inspect

MODULES_DIR = Path(__file__).resolve().parent / "modules"
MANIFEST = "SOURCES.json"
#: Debian/Ubuntu packages that give clang a wasm32-wasi target with libc and builtins.
TOOLCHAIN_PACKAGES = "clang lld wasi-libc libclang-rt-dev-wasm32"
TARGET = "wasm32-wasi"
#: -Oz + strip keeps wasi-demo under 40 KB; stripping also drops the producers
#: section, which names the compiler version, so rebuilds are byte-identical.
CFLAGS = ("-Oz", "-Wl,--strip-all")
#: sources every app is built with (``-I`` and linked), next to the app directories
LIB_DIR = "lib"


@dataclass(frozen=True)
class BuiltApp:
    """One compiled app: where it went, its size, its hash, and the hash of its sources."""

    name: str
    path: Path
    size: int
    sha256: str
    sources_sha256: str
    seconds: float


def apps_dir() -> Path:
    """The ``wasm-apps/`` directory of the checkout labkit runs from."""
    return project_root() / "wasm-apps"


def app_sources(app_dir: Path) -> list[Path]:
    """The files an app is built from (``*.c`` and ``*.h``): its own, then the shared ``wasm-apps/lib/`` ones.

    Every app is compiled with the shared library (e.g. ``wasmedge_sock.c``, the
    WasmEdge socket ABI); the linker drops what an app does not call.
    """
    dirs = [app_dir, app_dir.parent / LIB_DIR]
    return [p for d in dirs if d.is_dir() for p in sorted(d.iterdir()) if p.suffix in (".c", ".h") and p.is_file()]


def sources_hash(app_dir: Path) -> str:
    """sha256 over the app's source names and contents plus the target and flags.

    Any change to a source or to the flags changes the hash, which is how a
    stale shipped module is detected.
    """
    digest = hashlib.sha256(f"{TARGET} {' '.join(CFLAGS)}\n".encode())
    for path in app_sources(app_dir):
        content = path.read_bytes()
        digest.update(f"{path.name} {len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def find_apps(src_dir: Path | None = None) -> list[Path]:
    """App directories under *src_dir* (default ``wasm-apps/``): those with a ``main.c``."""
    root = Path(src_dir) if src_dir else apps_dir()
    if not root.is_dir():
        raise WasmError(
            f"no wasm app sources at {root}",
            "run from a labkit checkout (git clone), or pass src_dir=<dir with one folder per app>",
        )
    return sorted(p for p in root.iterdir() if (p / "main.c").is_file())


def find_clang() -> str:
    """The clang to use (``CC`` if set, else ``clang``); checks wasi-libc is there too."""
    clang = os.environ.get("CC") or "clang"
    exe = shutil.which(clang)
    if exe is None:
        raise PrerequisiteMissing(
            f"{clang} (C compiler) is not installed, so the wasm apps cannot be built",
            f"sudo apt-get install -y {TOOLCHAIN_PACKAGES} "
            "(the shipped modules in labkit/wasm/modules still work without it)",
        )
    return exe


def toolchain_version(clang: str) -> str:
    """First line of ``clang --version``: module bytes are only comparable across equal toolchains."""
    proc = subprocess.run([clang, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.splitlines()[0].strip() if proc.returncode == 0 and proc.stdout else "unknown"


def _run_clang(clang: str, cwd: Path, output: Path, sources: list[str]) -> subprocess.CompletedProcess[str]:
    # Relative source names and cwd keep build paths out of the binary.
    cmd = [clang, f"--target={TARGET}", *CFLAGS, f"-I../{LIB_DIR}", "-o", str(output), *sources]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _toolchain_error(clang: str) -> str | None:
    """Why *clang* cannot build a hello world for wasm32-wasi (missing libc, builtins, wasm-ld), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "probe.c").write_text('#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n')
        proc = _run_clang(clang, Path(tmp), Path(tmp) / "probe.wasm", ["probe.c"])
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return next((line for line in lines if "error" in line), lines[-1] if lines else f"exit status {proc.returncode}")


def _compile(clang: str, app_dir: Path, output: Path) -> None:
    sources = [os.path.relpath(p, app_dir) for p in app_sources(app_dir) if p.suffix == ".c"]
    proc = _run_clang(clang, app_dir, output, sources)
    if proc.returncode == 0:
        return
    # Tell a broken toolchain (the learner installs packages) from broken sources (the author fixes code).
    problem = _toolchain_error(clang)
    if problem:
        raise PrerequisiteMissing(
            f"{clang} cannot build for {TARGET} here: {problem}",
            f"sudo apt-get install -y {TOOLCHAIN_PACKAGES}",
        )
    raise WasmError(f"building {app_dir.name} failed:\n{proc.stderr.strip()}", f"fix the C sources in {app_dir}")


def read_manifest(out_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """The ``SOURCES.json`` records of *out_dir* (default: the shipped modules)."""
    path = (out_dir or MODULES_DIR) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def build_apps(src_dir: Path | None = None, out_dir: Path | None = None) -> list[BuiltApp]:
    """Compile every app under *src_dir* into ``<out_dir>/<app>.wasm`` and record their source hashes.

    Defaults: ``wasm-apps/`` of the checkout → the package's shipped ``modules/``.
    Raises :class:`~labkit.errors.PrerequisiteMissing` naming the apt packages when
    the toolchain is absent.
    """
    out = Path(out_dir) if out_dir else MODULES_DIR
    apps = find_apps(src_dir)
    clang = find_clang()
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    toolchain = toolchain_version(clang)
    built = []
    for app_dir in apps:
        started = time.perf_counter()
        target = out / f"{app_dir.name}.wasm"
        # Compile next to the target, then rename: a failed build never leaves a half module.
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            scratch = Path(tmp) / target.name
            _compile(clang, app_dir, scratch)
            inspect(scratch)  # refuse to ship something that is not a wasm module
            scratch.chmod(0o644)
            os.replace(scratch, target)
        data = target.read_bytes()
        app = BuiltApp(
            name=app_dir.name,
            path=target,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            sources_sha256=sources_hash(app_dir),
            seconds=time.perf_counter() - started,
        )
        manifest[app.name] = {"sources_sha256": app.sources_sha256, "module_sha256": app.sha256, "toolchain": toolchain}
        built.append(app)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return built


def shipped_modules() -> list[str]:
    """Names of the modules shipped in the package."""
    return sorted(p.stem for p in MODULES_DIR.glob("*.wasm"))


def module_path(name: str) -> Path:
    """The shipped module of app *name* (``"wasi-demo"`` or ``"wasi-demo.wasm"``)."""
    path = MODULES_DIR / f"{name.removesuffix('.wasm')}.wasm"
    if not path.is_file():
        raise WasmError(
            f"labkit ships no wasm module named {name!r} (shipped: {', '.join(shipped_modules()) or 'none'})",
            "use one of the shipped names, or build the apps with `labkit apps build`",
        )
    return path


def stale_modules(src_dir: Path | None = None) -> list[str]:
    """Apps whose shipped module was not built from their current sources (or is missing)."""
    manifest = read_manifest()
    stale = []
    for app_dir in find_apps(src_dir):
        record = manifest.get(app_dir.name, {})
        module = MODULES_DIR / f"{app_dir.name}.wasm"
        if (
            not module.is_file()
            or record.get("sources_sha256") != sources_hash(app_dir)
            or record.get("module_sha256") != hashlib.sha256(module.read_bytes()).hexdigest()
        ):
            stale.append(app_dir.name)
    return stale
