"""labkit.wasinn_mounts: the real ldd on a sandbox node's ELF files, ldd's x86_64 and aarch64 formats, `wasmedge -v`
through LocalHost, and ldd output that tries to mount what it should not."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from labkit.errors import PrerequisiteMissing
from labkit.host import LocalHost, SandboxHost, commands
from labkit.host.ldd import X86_64_EXAMPLE, LddOutputRefused, LibraryNotFound, parse_ldd, parse_wasmedge_plugins
from labkit.imagestore import ImageStore
from labkit.manifests import wasm_job
from labkit.pluginmounts import PLUGIN_NAME, wasinn_mounts
from labkit.profiles import profile_for
from labkit.sandbox.kubelet.noderoot import prepare_node_root

HOME = "/home/runner/.wasmedge"
PLUGIN = f"{HOME}/plugin/{PLUGIN_NAME}"
SYSTEM = ["libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "libc.so.6"]

#: aarch64 ldd of the same plugin on an arm64 Debian/Ubuntu node (/lib/aarch64-linux-gnu/…,
#: the interpreter /lib/ld-linux-aarch64.so.1; the seed's arm64 manifests use /home/dev).
AARCH64 = """\tlinux-vdso.so.1 (0x0000ffff9c6f2000)
\tlibwasmedge.so.0 => /home/dev/.wasmedge/lib/libwasmedge.so.0 (0x0000ffff9a400000)
\tlibstdc++.so.6 => /lib/aarch64-linux-gnu/libstdc++.so.6 (0x0000ffff9a1d0000)
\tlibm.so.6 => /lib/aarch64-linux-gnu/libm.so.6 (0x0000ffff9a130000)
\tlibgcc_s.so.1 => /lib/aarch64-linux-gnu/libgcc_s.so.1 (0x0000ffff9a100000)
\tlibpthread.so.0 => /lib/aarch64-linux-gnu/libpthread.so.0 (0x0000ffff9a0e0000)
\tlibdl.so.2 => /lib/aarch64-linux-gnu/libdl.so.2 (0x0000ffff9a0c0000)
\tlibc.so.6 => /lib/aarch64-linux-gnu/libc.so.6 (0x0000ffff99f10000)
\t/lib/ld-linux-aarch64.so.1 (0x0000ffff9c6b5000)
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = prepare_node_root(tmp_path_factory.mktemp("node"))
    if not (root / PLUGIN.lstrip("/")).is_file():
        pytest.skip("no C compiler here to build the plugin's ELF files")
    if shutil.which("ldd") is None:
        pytest.skip("no ldd here")
    return root


def sandbox_host(root: Path) -> SandboxHost:
    return SandboxHost(root, ImageStore(root.parent / f"{root.name}-images"))


def has_model(root: Path) -> bool:
    return (root / "home/runner/models").is_dir() and any((root / "home/runner/models").iterdir())


# -- the real ldd on the sandbox node's files --------------------------------------------------------------


def test_real_ldd_on_the_node_gives_every_dependency_at_its_node_path(node: Path) -> None:
    nn = wasinn_mounts(sandbox_host(node), profile_for("sandbox"), model=has_model(node))
    paths = {m.path: m for m in nn.mounts}
    assert nn.plugin == PLUGIN and nn.found_by == "profile.plugin_dir"
    assert paths[PLUGIN].type == "File" and paths[f"{HOME}/lib"].type == "Directory"
    assert paths["/lib64/ld-linux-x86-64.so.2"].type == "File"  # the interpreter line
    for lib in SYSTEM:
        assert paths[f"/lib/x86_64-linux-gnu/{lib}"].type == "File"
    # libwasmedge.so.0 => <node root>/home/runner/.wasmedge/lib/… maps back to its node path, inside the lib dir mount
    assert f"{HOME}/lib/libwasmedge.so.0" in nn.ldd.paths and nn.covered == {
        f"{HOME}/lib/libwasmedge.so.0": f"{HOME}/lib"
    }
    assert all(m.read_only and (m.mount_path or m.path) == m.path for m in nn.mounts)
    assert not any(str(node) in p for p in paths)
    assert nn.env["WASMEDGE_PLUGIN_PATH"] == f"{HOME}/plugin" and nn.env["LD_LIBRARY_PATH"] == f"{HOME}/lib"
    if has_model(node):
        model = "/home/runner/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        assert nn.env["WASMEDGE_WASINN_PRELOAD"] == f"default:GGML:AUTO:{model}" and paths[model].type == "File"
    assert nn.plugin_mount.path == PLUGIN
    assert nn.ldd.command() == f"LD_LIBRARY_PATH={HOME}/lib ldd {PLUGIN}"


def test_the_mounts_compose_into_a_job_and_preview_as_yaml(node: Path) -> None:
    nn = wasinn_mounts(sandbox_host(node), profile_for("sandbox"), model=False, target="cpu")
    job = wasm_job("chat", "docker.io/labkit/wasinn-chat:latest", volumes=nn.mounts, env=nn.env)
    pod = job["spec"]["template"]["spec"]
    assert len(pod["volumes"]) == len(nn.mounts) == len(pod["containers"][0]["volumeMounts"])
    text = nn.to_yaml()
    assert text.startswith(f"# plugin {PLUGIN} (found by profile.plugin_dir)\n")
    assert "#   libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6" in text
    assert yaml.safe_load(text) == nn.fragment() and "WASMEDGE_WASINN_PRELOAD" not in nn.env
    assert str(nn.show()) == text


def test_a_library_ldd_cannot_find_is_named_with_the_fix(node: Path, tmp_path: Path) -> None:
    root = tmp_path / "node"
    shutil.copytree(node / "home", root / "home", symlinks=True)
    shutil.rmtree(root / HOME.lstrip("/") / "lib")  # WasmEdge's lib dir gone: the real ldd says "not found"
    with pytest.raises(LibraryNotFound) as err:
        wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False)
    assert err.value.missing == ["libwasmedge.so.0"]
    assert "libwasmedge.so.0 => not found" in err.value.problem and "install.sh" in (err.value.fix or "")


def test_a_library_the_node_has_no_copy_of_is_refused(node: Path, tmp_path: Path) -> None:
    root = tmp_path / "node"
    shutil.copytree(node / "home", root / "home", symlinks=True)  # no /lib copies on this node
    with pytest.raises(LddOutputRefused, match="on this machine, but the node has no /lib/x86_64-linux-gnu/"):
        wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False)


def test_no_plugin_on_the_node_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteMissing, match=f"{PLUGIN_NAME}.*looked at {PLUGIN}") as err:
        wasinn_mounts(sandbox_host(tmp_path), profile_for("sandbox"), model=False)
    assert "wasi_nn-ggml" in (err.value.fix or "")


def test_a_plugin_symlink_out_of_the_node_root_is_refused(node: Path, tmp_path: Path) -> None:
    root = tmp_path / "node"
    shutil.copytree(node / "home", root / "home", symlinks=True)
    plugin = root / PLUGIN.lstrip("/")
    outside = tmp_path / PLUGIN_NAME
    shutil.copy(plugin, outside)
    plugin.unlink()
    plugin.symlink_to(outside)
    with pytest.raises(LddOutputRefused, match="outside the node's root"):
        wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False)


# -- wasmedge -v through LocalHost ---------------------------------------------------------------------------


def test_local_host_finds_the_plugin_from_wasmedge_v(node: Path, tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wasmedge = bin_dir / "wasmedge"
    wasmedge.write_text(  # WasmEdge 0.14.1's `wasmedge -v`
        "#!/bin/sh\necho 'wasmedge version 0.14.1'\n"
        f"echo '{HOME}/lib/../plugin/{PLUGIN_NAME} (plugin \"wasi_nn\") version 0.1.28.0'\n"
    )
    wasmedge.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    nn = wasinn_mounts(LocalHost(root=node), profile_for("kubeconfig"), model=False)
    assert nn.found_by == "wasmedge -v" and nn.plugin == PLUGIN  # lib/../plugin realpath-ed on the node
    assert "/lib64/ld-linux-x86-64.so.2" in {m.path for m in nn.mounts}


def test_wasmedge_v_lists_only_the_wasi_nn_plugin() -> None:
    text = (
        "wasmedge version 0.14.1\n"
        '/home/runner/.wasmedge/lib/../plugin/libwasmedgePluginWasiLogging.so (plugin "wasi_logging") version 0.1.0.0\n'
        '/home/runner/.wasmedge/lib/../plugin/libwasmedgePluginWasiNN.so (plugin "wasi_nn") version 0.1.28.0\n'
    )
    assert parse_wasmedge_plugins(text) == ["/home/runner/.wasmedge/lib/../plugin/libwasmedgePluginWasiNN.so"]
    assert parse_wasmedge_plugins("wasmedge version 0.14.1\n") == []


# -- ldd formats: x86_64 and aarch64 --------------------------------------------------------------------------


def test_x86_64_format() -> None:
    entries = parse_ldd(X86_64_EXAMPLE)
    assert entries[0].name == "linux-vdso.so.1" and entries[0].path is None and not entries[0].missing
    assert [e.name for e in entries[1:8]] == ["libwasmedge.so.0", *SYSTEM]
    assert entries[-1].path == "/lib64/ld-linux-x86-64.so.2" and entries[-1].is_loader


def test_aarch64_ldd_output_gives_the_same_mounts_at_arm64_paths(node: Path, tmp_path: Path, monkeypatch) -> None:
    """An arm64 node (/home/dev, /lib/aarch64-linux-gnu, /lib/ld-linux-aarch64.so.1): the files are laid out in a
    node root and ldd's answer is the arm64 one, so the whole generation runs on arm64 paths."""
    root = tmp_path / "arm"
    for line in AARCH64.splitlines():
        path = line.split("=>")[-1].split()[0]
        if path.startswith("/"):
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_bytes(b"\x7fELF stand-in")
    plugin = root / "home/dev/.wasmedge/plugin" / PLUGIN_NAME
    plugin.parent.mkdir(parents=True)
    shutil.copy(node / PLUGIN.lstrip("/"), plugin)
    real_run = commands.run
    monkeypatch.setattr(
        commands,
        "run",
        lambda argv, **kw: commands.CommandResult(tuple(argv), 0, AARCH64, "") if argv[0] == "ldd" else real_run(argv),
    )
    profile = dataclasses.replace(profile_for("sandbox"), plugin_dir=Path("/home/dev/.wasmedge/plugin"))
    nn = wasinn_mounts(sandbox_host(root), profile, model=False)
    paths = {m.path: m.type for m in nn.mounts}
    assert paths == {
        f"/home/dev/.wasmedge/plugin/{PLUGIN_NAME}": "File",
        "/home/dev/.wasmedge/lib": "Directory",
        **{f"/lib/aarch64-linux-gnu/{lib}": "File" for lib in SYSTEM},
        "/lib/ld-linux-aarch64.so.1": "File",
    }
    assert nn.env == {
        "WASMEDGE_PLUGIN_PATH": "/home/dev/.wasmedge/plugin",
        "LD_LIBRARY_PATH": "/home/dev/.wasmedge/lib",
    }


# -- hostile ldd output ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("\tlibc.so.6 => /lib/x86_64-linux-gnu/../../etc/shadow (0x1)\n", "not a plain absolute path"),
        ("\tlibc.so.6 => lib/libc.so.6 (0x1)\n", "not an absolute path"),
        ("\tlibc.so.6 => /lib//libc.so.6 (0x1)\n", "not a plain absolute path"),
        ("\tlibc.so.6 => /lib/./libc.so.6 (0x1)\n", "not a plain absolute path"),
        ("\tlibc.so.6 => /lib/x\x1b[2J.so (0x1)\n", "control characters"),
        # a newline inside a path splits the line: the tail is not ldd's format
        ("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6\n/etc/passwd (0x1)\n", "a line labkit does not read"),
        ("\t/etc/shadow\n", "a line labkit does not read"),
        ("\tlibc.so.6 => / (0x1)\n", "not a plain absolute path"),
        ("\tlibc.so.6 => /lib/libc.so.6 (0x1) extra words\n", "a line labkit does not read"),
        ("\tnot a dynamic executable\n", "not a shared object"),
        ("\tstatically linked\n", "not a shared object"),
        ("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n" * 300, "more than 256"),
        ("\tlib.so => /lib/" + "a" * 70000 + " (0x1)\n", "characters (more than"),
    ],
)
def test_hostile_ldd_output_is_refused(text: str, words: str) -> None:
    with pytest.raises(LddOutputRefused, match=words.replace("(", r"\(")):
        parse_ldd(text)


@pytest.mark.parametrize(
    "path", ["/etc/shadow", "/var/lib/rancher/k3s/server/token", "/root/.ssh/id_rsa", "/proc/self/environ"]
)
def test_a_path_outside_the_library_directories_is_never_mounted(
    node: Path, tmp_path: Path, monkeypatch, path: str
) -> None:
    root = tmp_path / "node"
    shutil.copytree(node, root, symlinks=True)
    if path != "/":
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text("secret")
    text = X86_64_EXAMPLE.replace("/lib/x86_64-linux-gnu/libm.so.6", path)
    real_run = commands.run
    monkeypatch.setattr(
        commands,
        "run",
        lambda argv, **kw: commands.CommandResult(tuple(argv), 0, text, "") if argv[0] == "ldd" else real_run(argv),
    )
    with pytest.raises(LddOutputRefused, match=r"outside the directories labkit mounts|labkit never mounts"):
        wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False)
    # no explicit prefix opens the node's secrets and kernel views either
    with pytest.raises(LddOutputRefused, match="labkit never mounts anything under"):
        wasinn_mounts(
            sandbox_host(root), profile_for("sandbox"), model=False, allowed_prefixes=[str(Path(path).parent)]
        )


def test_an_explicit_prefix_admits_a_library_elsewhere(node: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "node"
    shutil.copytree(node, root, symlinks=True)
    (root / "srv/gpu").mkdir(parents=True)
    (root / "srv/gpu/libcudart.so.12").write_bytes(b"\x7fELF")
    text = X86_64_EXAMPLE + "\tlibcudart.so.12 => /srv/gpu/libcudart.so.12 (0x00007f2b1c100000)\n"
    real_run = commands.run
    monkeypatch.setattr(
        commands,
        "run",
        lambda argv, **kw: commands.CommandResult(tuple(argv), 0, text, "") if argv[0] == "ldd" else real_run(argv),
    )
    with pytest.raises(LddOutputRefused, match="outside the directories"):
        wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False)
    nn = wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False, allowed_prefixes=["/srv/gpu"])
    assert "/srv/gpu/libcudart.so.12" in {m.path for m in nn.mounts}


def test_ldd_is_not_run_on_a_file_that_is_not_a_shared_object(node: Path, tmp_path: Path) -> None:
    root = tmp_path / "node"
    shutil.copytree(node / "home", root / "home", symlinks=True)
    (root / PLUGIN.lstrip("/")).write_text("#!/bin/sh\nrm -rf /\n")
    with pytest.raises(LddOutputRefused, match="not an ELF shared object"):
        wasinn_mounts(sandbox_host(root), profile_for("sandbox"), model=False)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"target": "NPU"}, "execution target"), ({"alias": "a:b"}, "preload alias"), ({"model": "/m/a:b.gguf"}, "':'")],
)
def test_preload_parts_that_would_break_the_variable_are_refused(node: Path, kwargs, words: str) -> None:
    from labkit.errors import LabkitError

    with pytest.raises(LabkitError, match=words):
        wasinn_mounts(sandbox_host(node), profile_for("sandbox"), **kwargs)
