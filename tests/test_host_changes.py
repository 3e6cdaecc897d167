"""The host-change machinery on real files: diff, backup, atomic write, restore, the root helper's JSON protocol."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit.host.changes import (
    BACKUP_DIR,
    NEW_FILE_MODE,
    HostChangeError,
    apply_files,
    list_backups,
    restore_backup,
    unified_diff,
)


def tree(root: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """Every file and directory under *root* (backups excluded): bytes (None for dirs), mode, uid."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("var/lib/labkit"):
            continue
        st = path.lstat()
        out[rel] = (None if path.is_dir() else path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    node = tmp_path / "node"
    (node / "etc/rancher/k3s").mkdir(parents=True)
    (node / "var/lib").mkdir(parents=True)  # every node has it; backups go below it
    conf = node / "etc/rancher/k3s/config.yaml"
    conf.write_bytes(b"token: s3cret\nwrite-kubeconfig-mode: '644'\n")
    conf.chmod(0o640)
    return node


def test_apply_then_restore_is_byte_identical(root: Path) -> None:
    before = tree(root)
    conf = root / "etc/rancher/k3s/config.yaml"
    new = root / "var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl"
    backup = apply_files(root, {conf: "default-runtime: crun\n", new: '{{ template "base" . }}\n'}, "crun swap")
    assert conf.read_text() == "default-runtime: crun\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640, "the original mode is kept"
    assert stat.S_IMODE(new.stat().st_mode) == NEW_FILE_MODE, "new files are owner-only"
    assert [(f.path, f.existed) for f in backup.files] == [
        ("/etc/rancher/k3s/config.yaml", True),
        ("/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl", False),
    ]
    assert backup.created_dirs[0] == "/var/lib/rancher" and backup.created_dirs[-1].endswith("/containerd")
    assert backup.dir.parent == root / BACKUP_DIR and stat.S_IMODE(backup.dir.stat().st_mode) == 0o700
    restore_backup(backup)
    assert tree(root) == before, "files, modes and directories are exactly as before"


def test_write_is_atomic_and_leaves_no_temporary_files(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    inode = conf.stat().st_ino
    apply_files(root, {conf: "x: 1\n"}, "t")
    assert conf.stat().st_ino != inode, "replaced by rename, not rewritten in place"
    assert sorted(p.name for p in conf.parent.iterdir()) == ["config.yaml"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_is_kept(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    os.chown(conf, 1234, 4321)
    backup = apply_files(root, {conf: "x: 1\n"}, "t")
    assert (conf.stat().st_uid, conf.stat().st_gid) == (1234, 4321)
    os.chown(conf, 0, 0)
    restore_backup(backup)
    assert (conf.stat().st_uid, conf.stat().st_gid) == (1234, 4321), "restore puts the recorded owner back"


def test_a_failed_write_rolls_back_what_was_written(root: Path) -> None:
    before = tree(root)
    conf = root / "etc/rancher/k3s/config.yaml"
    blocker = root / "etc/rancher/k3s/dir.yaml"
    blocker.mkdir()  # writing a file over a directory fails after config.yaml was already written
    with pytest.raises(IsADirectoryError):
        apply_files(root, {conf: "x: 1\n", blocker: "y\n"}, "t")
    blocker.rmdir()
    assert tree(root) == before


def test_damaged_backup_is_refused_and_nothing_written(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    backup = apply_files(root, {conf: "x: 1\n"}, "t")
    copy = backup.dir / "files/etc/rancher/k3s/config.yaml"
    copy.write_bytes(b"tampered\n")
    with pytest.raises(HostChangeError, match="damaged") as err:
        restore_backup(backup)
    assert conf.read_text() == "x: 1\n"
    assert "nothing was written" in str(err.value)


def test_damaged_second_copy_leaves_the_first_file_unrestored(root: Path) -> None:
    first, second = root / "etc/rancher/k3s/config.yaml", root / "etc/second.conf"
    second.write_bytes(b"second\n")
    backup = apply_files(root, {first: "x: 1\n", second: "y: 2\n"}, "t")
    (backup.dir / "files/etc/second.conf").write_bytes(b"tampered\n")
    with pytest.raises(HostChangeError, match=r"second\.conf .* damaged"):
        restore_backup(backup)
    assert (first.read_text(), second.read_text()) == ("x: 1\n", "y: 2\n"), "checked before anything is written"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can read a mode-0 file to back it up")
def test_restore_keeps_a_mode_of_zero(root: Path) -> None:
    locked = root / "etc/locked.conf"
    locked.write_bytes(b"locked\n")
    locked.chmod(0)
    backup = apply_files(root, {locked: "changed\n"}, "t")
    restore_backup(backup)
    assert stat.S_IMODE(locked.stat().st_mode) == 0, "restoring must not widen 0o000 to the new-file mode"


def test_backups_are_listed_oldest_first(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    first = apply_files(root, {conf: "a: 1\n"}, "first")
    second = apply_files(root, {conf: "a: 2\n"}, "second")
    assert first.dir != second.dir
    assert [b.description for b in list_backups(root)] == ["first", "second"]
    assert list_backups(root)[1] == second, "the manifest round-trips"
    restore_backup(first)  # restoring an older backup puts that backup's originals back
    assert conf.read_bytes() == b"token: s3cret\nwrite-kubeconfig-mode: '644'\n"


def test_unified_diff_shapes() -> None:
    assert unified_diff("/etc/x", "same\n", "same\n") == "(unchanged) /etc/x\n"
    new = unified_diff("/etc/new", None, "a\nb\n")
    assert new.splitlines() == ["--- /dev/null", "+++ b/etc/new", "@@ -0,0 +1,2 @@", "+a", "+b"]
    changed = unified_diff("/etc/x", "keep\nold\n", "keep\nnew")
    assert changed.splitlines()[3:] == [" keep", "-old", "+new", "\\ No newline at end of file"]


def run_helper(op: str, payload: dict) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "labkit.host.changes", op],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_root_helper_protocol(root: Path) -> None:
    """What LocalHost runs under ``sudo -n``: JSON in, JSON out, errors as problem + fix."""
    conf = root / "etc/rancher/k3s/config.yaml"
    code, out = run_helper("apply", {"node_root": str(root), "files": {str(conf): "z: 1\n"}, "description": "cli"})
    assert code == 0 and out["result"]["files"][0]["path"] == "/etc/rancher/k3s/config.yaml"
    code, out = run_helper("read", {"paths": [str(conf), str(root / "absent")]})
    assert out["result"] == {str(conf): "z: 1\n", str(root / "absent"): None}
    code, out = run_helper("backups", {"node_root": str(root)})
    code, _ = run_helper("restore", {"backup": out["result"][0]})
    assert code == 0 and conf.read_text().startswith("token: s3cret")
    code, out = run_helper("format-disk", {})
    assert code == 1 and "unknown host file operation" in out["error"]["problem"]
    code, out = run_helper("read", {"paths": [str(root)]})  # a directory: an OSError still comes back with a fix
    assert code == 1 and str(root) in out["error"]["problem"] and out["error"]["fix"]


def test_docstring_examples() -> None:
    import doctest

    import labkit.host.changes

    result = doctest.testmod(labkit.host.changes)
    assert result.failed == 0 and result.attempted > 0


# ------------------------------------------------------------------ the same machinery on a sandbox node


@pytest.mark.slow  # starts a real sandbox daemon: 4-8 s on 2 cores
def test_sandbox_host_crun_swap_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SandboxHost inherits plan/preview/apply/verify/restore; its restart is the daemon's node restart."""
    from labkit.cluster import connect
    from labkit.host import host_for_backend
    from labkit.host.base import wait_node_ready
    from labkit.sandbox import client as daemon

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    cluster = connect("sandbox")
    try:
        host = host_for_backend("sandbox")
        paths = host.containerd_paths()
        config_before = paths.config.read_bytes()
        assert host.runtime_info().default_runtime == "runc"
        change = host.plan_crun_swap()
        assert change.default_runtime == "crun-wasm", "the sandbox node has a crun on k3s's PATH: k3s declares 'crun'"
        assert "+default-runtime: crun-wasm" in host.preview(change)
        backup = host.apply(change, cluster=cluster)
        info = host.verify_default_runtime("crun-wasm")
        assert str(info).startswith("default runtime 'crun-wasm' (config.toml); runtimes: crun, crun-wasm, runc")
        host.restore(backup, cluster=cluster)
        assert paths.config.read_bytes() == config_before and not paths.template_v3.exists()
        assert host.verify_default_runtime("runc").default_runtime == "runc"
        # a sandbox kubelet keeps its heartbeat across a restart: a named wait says so, with the evidence
        with pytest.raises(HostChangeError, match=r"did not report Ready within 1 s.*heartbeat"):
            wait_node_ready(cluster, cluster.nodes()[0]["name"], datetime.now(UTC) + timedelta(hours=1), 1)
    finally:
        daemon.stop(home=tmp_path / "sandbox")


def test_paths_outside_the_node_root_are_refused(root: Path, tmp_path: Path) -> None:
    with pytest.raises(HostChangeError, match="not under the node root"):
        apply_files(root, {tmp_path / "elsewhere.conf": "x\n"}, "t")
    assert not (root / BACKUP_DIR).exists(), "refused before the backup directory was made"


def test_unreadable_node_path_is_a_labkit_error(tmp_path):
    from labkit.host.changes import HostChangeError
    from labkit.host.sandbox import SandboxHost
    from labkit.imagestore import ImageStore

    host = SandboxHost(tmp_path / "node", ImageStore(tmp_path / "images"))
    (tmp_path / "node" / "etc").mkdir(parents=True)
    with pytest.raises(HostChangeError, match="cannot read") as err:
        host.read_node_files([tmp_path / "node" / "etc"])  # a directory, not a file
    assert err.value.fix


# --- a hostile or broken backup changes nothing outside (or inside) the node ---


def test_a_manifest_path_climbing_out_of_the_node_is_refused(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "outside.txt"
    victim.write_text("precious\n")
    conf = root / "etc/rancher/k3s/config.yaml"
    backup = apply_files(root, {conf: "x: 1\n"}, "change")
    edited = backup.to_json()
    edited["files"][0]["path"] = "/../../outside.txt"
    with pytest.raises(HostChangeError, match=r"not an absolute path inside the node"):
        restore_backup(type(backup).from_json(edited))
    assert victim.read_text() == "precious\n" and conf.read_text() == "x: 1\n", "nothing was written"


def test_a_backup_directory_outside_the_node_is_refused(root: Path, tmp_path: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    backup = apply_files(root, {conf: "x: 1\n"}, "change")
    elsewhere = tmp_path / "planted" / backup.dir.name
    elsewhere.parent.mkdir()
    os.rename(backup.dir, elsewhere)  # a planted copy, e.g. made by someone who can write /tmp
    edited = {**backup.to_json(), "dir": str(elsewhere)}
    with pytest.raises(HostChangeError, match=r"is not a labkit backup of the node"):
        restore_backup(type(backup).from_json(edited))
    assert conf.read_text() == "x: 1\n"


def test_a_corrupt_manifest_is_an_error_naming_the_file(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    backup = apply_files(root, {conf: "x: 1\n"}, "change")
    (backup.dir / "manifest.json").write_text('{"dir": ')
    with pytest.raises(HostChangeError, match=r"manifest\.json is corrupt") as err:
        list_backups(root)
    assert str(backup.dir) in err.value.problem


def test_a_failed_apply_leaves_no_backup_and_no_change(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    before = tree(root)
    blocked = root / "etc/rancher/k3s/registries.yaml"
    blocked.mkdir()  # a directory where the change writes a file: the write fails
    with pytest.raises(IsADirectoryError):
        apply_files(root, {conf: "x: 1\n", blocked: "mirrors: {}\n"}, "change")
    blocked.rmdir()
    assert tree(root) == before, "the first file was rolled back"
    assert list(root.joinpath(BACKUP_DIR).iterdir()) == [], "the half-made backup is gone"


def test_restore_is_all_or_nothing_when_staging_fails(root: Path) -> None:
    conf = root / "etc/rancher/k3s/config.yaml"
    other = root / "etc/rancher/k3s/config.yaml.d/10-labkit.yaml"
    other.parent.mkdir()
    other.write_text("old: 1\n")
    backup = apply_files(root, {conf: "new: 1\n", other: "new: 2\n"}, "two files")
    # the second file's directory is replaced by a file: its original cannot be staged
    other.unlink()
    other.parent.rmdir()
    other.parent.write_text("not a directory\n")
    with pytest.raises(HostChangeError) as err:  # mkdir of the parent meets the file
        restore_backup(backup)
    assert err.value.problem == (
        f"the restore from {backup.dir} could not stage /etc/rancher/k3s/config.yaml.d/10-labkit.yaml "
        "(File exists): nothing was written, the node's files are as they were before the restore"
    )
    assert isinstance(err.value.__cause__, FileExistsError)
    assert conf.read_text() == "new: 1\n", "the first file was not switched back alone"
    assert not [p for p in conf.parent.iterdir() if p.name.endswith(".labkit-tmp")], "no staged file is left"


def test_a_restore_that_fails_midway_says_which_files_are_restored_and_which_not(root: Path) -> None:
    first, second = root / "etc/rancher/k3s/config.yaml", root / "etc/second.conf"
    second.write_bytes(b"second\n")
    backup = apply_files(root, {first: "x: 1\n", second: "y: 2\n"}, "two files")
    # the second file became a non-empty directory: its original stages beside it, but the switch cannot replace it
    second.unlink()
    (second / "inside").mkdir(parents=True)
    with pytest.raises(HostChangeError) as err:
        restore_backup(backup)
    assert err.value.problem.startswith(f"the restore from {backup.dir} stopped at /etc/second.conf (")
    assert err.value.problem.endswith("): restored /etc/rancher/k3s/config.yaml; not restored /etc/second.conf")
    assert "run the restore again: it is safe to repeat" in err.value.fix
    assert first.read_bytes() == b"token: s3cret\nwrite-kubeconfig-mode: '644'\n"  # what the message says
    assert (second / "inside").is_dir()
    assert not list(root.rglob("*.labkit-tmp")), "no staged file is left"
    (second / "inside").rmdir()
    second.rmdir()
    restore_backup(backup)  # as the message says: once the cause is fixed, the restore completes
    assert second.read_bytes() == b"second\n"


def test_restart_refuses_a_config_that_would_not_load(tmp_path: Path) -> None:
    """A hand-edited template that containerd would reject is named before k3s is restarted on it."""
    from labkit.containerd import ContainerdConfigError
    from labkit.host.sandbox import SandboxHost
    from labkit.imagestore import ImageStore

    host = SandboxHost(tmp_path / "node", ImageStore(tmp_path / "images"))
    template = host.containerd_paths().template_v3
    template.parent.mkdir(parents=True)
    template.write_text("{{ template \"base\" . }}\n[plugins.'io.containerd.cri.v1.runtime'.containerd\n")
    with pytest.raises(ContainerdConfigError):
        host.restart()  # no daemon runs here: the refusal comes before any restart is attempted


def test_a_backup_of_another_node_is_refused(root: Path, tmp_path: Path) -> None:
    from labkit.host.sandbox import SandboxHost
    from labkit.imagestore import ImageStore

    backup = apply_files(root, {root / "etc/rancher/k3s/config.yaml": "x: 1\n"}, "change")
    other = SandboxHost(tmp_path / "other-node", ImageStore(tmp_path / "images"))
    with pytest.raises(HostChangeError, match="belongs to the node root"):
        other.restore(backup)
