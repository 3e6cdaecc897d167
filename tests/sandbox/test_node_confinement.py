"""Pods stay inside their node: every attack below tries to reach the host outside a node's root, and fails.

The kubelet resolves hostPath, emptyDir, subPath and projected paths (symlinks and ``..`` included) and refuses
any that leaves the node's root; wasmtime preopens only those resolved directories, read-only ones immutable.
The attacker modules are WAT calling WASI directly, so each exits with the errno its one call returned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from labkit.sandbox.kubeclient.https import resource_path
from labkit.sandbox.kubelet.failures import ContainerFailure, SandboxFailure
from labkit.sandbox.kubelet.volumes import ProjectedSources, container_mounts, prepare_volumes
from labkit.sandbox.kubelet.wasmrun import ContainerSpec, Mount, WasmContainer
from tests.sandbox.test_kubelet import Cluster

# Every escape climbs exactly to the test's tmp_path (never further), so a broken kubelet harms nothing else.
# The node root is tmp_path/nodes/n0: three steps up from a directory one level below it.
UP3 = "../../.."


def wasi_module(call: str, *strings: str) -> bytes:
    """A module whose ``_start`` makes one WASI call on the first preopen (fd 3) and exits with its errno.

    *call* is ``symlink`` (target, link), ``mkdir`` (path), ``unlink`` (path) or ``create`` (path: open with
    O_CREAT and the fd_write right).
    """
    data, args, offset = [], [], 16
    for s in strings:
        data.append(f'(data (i32.const {offset}) "{s}")')
        args.append((offset, len(s.encode())))
        offset += len(s.encode()) + 16
    (p0, n0), *rest = args
    imports = {
        "symlink": ("path_symlink", "i32 i32 i32 i32 i32"),
        "mkdir": ("path_create_directory", "i32 i32 i32"),
        "unlink": ("path_unlink_file", "i32 i32 i32"),
        "create": ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32"),
    }
    name, params = imports[call]
    body = {
        "symlink": lambda: (
            f"(i32.const {p0}) (i32.const {n0}) (i32.const 3) (i32.const {rest[0][0]}) (i32.const {rest[0][1]})"
        ),
        "mkdir": lambda: f"(i32.const 3) (i32.const {p0}) (i32.const {n0})",
        "unlink": lambda: f"(i32.const 3) (i32.const {p0}) (i32.const {n0})",
        "create": lambda: (
            f"(i32.const 3) (i32.const 0) (i32.const {p0}) (i32.const {n0}) (i32.const 1) "
            "(i64.const 64) (i64.const 64) (i32.const 0) (i32.const 8)"
        ),
    }[call]()
    wat = f"""(module
      (import "wasi_snapshot_preview1" "{name}" (func $call (param {params}) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      {" ".join(data)}
      (func (export "_start") (call $exit (call $call {body}))))"""
    return bytes(wasmtime.wat2wasm(wat))


def run_module(module: bytes, mounts: list[Mount]) -> int | None:
    container = WasmContainer(ContainerSpec(module, ["/attack.wasm"], mounts=mounts))
    container.start()
    return container.wait(10)


def pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container = {"name": "c", "image": "x", "volumeMounts": mounts or []}
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
        "spec": {"volumes": volumes, "containers": [container]},
    }


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "nodes" / "n0"
    root.mkdir(parents=True)
    (tmp_path / "host-secret").write_text("outside the node")
    return root


def mount_failure(node: Path, volumes: list[dict[str, Any]]) -> str:
    with pytest.raises(SandboxFailure) as caught:
        prepare_volumes(ProjectedSources({}), pod(volumes), node)
    assert caught.value.event_reason == "FailedMount"
    return caught.value.problem


# -- hostPath ------------------------------------------------------------------------------------


def test_host_path_through_dotdot_is_refused_and_nothing_is_created_outside(node: Path) -> None:
    outside = node.parent.parent / "made-by-pod"
    for kind in ("DirectoryOrCreate", "", "FileOrCreate"):
        problem = mount_failure(node, [{"name": "h", "hostPath": {"path": f"/a/{UP3}/made-by-pod", "type": kind}}])
        assert problem.startswith('MountVolume.SetUp failed for volume "h" : hostPath /a/')
        assert "resolves outside the node's root" in problem
        assert not outside.exists() and not (node / "a").exists()


def test_a_symlink_out_of_the_node_is_not_followed(node: Path) -> None:
    (node / "etc-link").symlink_to("/etc")  # absolute: the node's "/etc" would be the host's
    (node / "up").symlink_to("../..")  # relative, climbing out to tmp_path
    (node / "srv").mkdir()
    (node / "srv/inner").symlink_to("../srv")  # a symlink inside the node is fine
    for path in ("/etc-link", "/up/host-secret", "/up"):
        assert "resolves outside" in mount_failure(node, [{"name": "h", "hostPath": {"path": path}}])
    mounted = prepare_volumes(ProjectedSources({}), pod([{"name": "h", "hostPath": {"path": "/srv/inner"}}]), node)
    assert mounted == {"h": (node / "srv").resolve()}


def test_directory_or_create_does_not_create_through_a_symlink(node: Path) -> None:
    (node / "var").symlink_to(node.parent.parent)  # a learner's (or a pod's) link from the node to the host
    assert "resolves outside" in mount_failure(node, [{"name": "h", "hostPath": {"path": "/var/new/dir"}}])
    assert not (node.parent.parent / "outside/new").exists()


# -- emptyDir and projections --------------------------------------------------------------------


def test_empty_dir_under_a_planted_pod_directory_is_refused(node: Path, tmp_path: Path) -> None:
    # a hostPath pod can write /var/lib/kubelet: it plants the next pod's directory as a link to the host
    pods = node / "var/lib/kubelet/pods"
    pods.mkdir(parents=True)
    (pods / "u-1").symlink_to(tmp_path)
    problem = mount_failure(node, [{"name": "scratch", "emptyDir": {}}])
    assert "the pod volume directory var/lib/kubelet/pods/u-1/volumes/kubernetes.io~empty-dir/scratch" in problem
    assert not (tmp_path / "volumes").exists()


def test_projected_item_paths_stay_in_their_volume(node: Path) -> None:
    sources = ProjectedSources({("configmap", "cfg"): {"data": {"k": "stolen"}}})
    # the staging directory is tmp_path/nodes/n0/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~configmap/.cfg.X
    climb = "/".join([".."] * 10)
    volume = {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "k", "path": f"{climb}/host-secret"}]}}
    with pytest.raises(SandboxFailure, match=r"invalid path: must not contain '\.\.'"):
        prepare_volumes(sources, pod([volume]), node)
    assert (node.parent.parent / "host-secret").read_text() == "outside the node"


# -- subPath -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sub_path", "plant", "message"),
    [
        ("/etc", None, "error SubPath `/etc` must not be an absolute path"),
        ("a/../..", None, "unable to provision SubPath `a/../..`: must not contain '..'"),
        ("link", "existing", 'failed to prepare subPath for volumeMount "h" of container "c"'),
        ("link/new", "existing", 'failed to create subPath directory for volumeMount "h" of container "c"'),
    ],
)
def test_sub_path_stays_in_its_volume(node: Path, sub_path: str, plant: str | None, message: str) -> None:
    volumes = prepare_volumes(ProjectedSources({}), pod([{"name": "h", "hostPath": {"path": "/srv"}}]), node)
    if plant:
        (node.parent.parent / "outside").mkdir()
        (node / "srv/link").symlink_to(f"{UP3}/outside")
    container = pod([], [{"name": "h", "mountPath": "/m", "subPath": sub_path}])["spec"]["containers"][0]
    with pytest.raises(ContainerFailure) as caught:
        container_mounts(container, volumes, set())
    assert (caught.value.problem, caught.value.reason) == (message, "CreateContainerConfigError")
    assert not (node.parent.parent / "outside/new").exists()


# -- what the module itself can do ---------------------------------------------------------------


def test_read_only_mounts_are_immutable_to_the_module(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("kept")
    ro = [Mount(tmp_path, "/ro", True)]
    attacks = [
        wasi_module("create", "new.txt"),
        wasi_module("mkdir", "newdir"),
        wasi_module("unlink", "keep"),
        wasi_module("symlink", "keep", "alias"),
    ]
    for module in attacks:
        assert run_module(module, ro) not in (0, None)
    assert sorted(os.listdir(tmp_path)) == ["keep"] and (tmp_path / "keep").read_text() == "kept"
    rw = [Mount(tmp_path, "/rw", False)]
    assert run_module(wasi_module("create", "new.txt"), rw) == 0  # the same call succeeds read-write


def test_a_working_dir_through_a_planted_symlink_is_not_preopened(tmp_path: Path) -> None:
    volume = tmp_path / "node/srv/shared"
    volume.mkdir(parents=True)
    (tmp_path / "host-dir").mkdir()
    (volume / "escape").symlink_to("../../../host-dir")  # what a pod with this volume can make
    container = WasmContainer(
        ContainerSpec(
            wasi_module("create", "x"), ["/a.wasm"], working_dir="/data/escape", mounts=[Mount(volume, "/data", False)]
        )
    )
    assert container._working_dir_mount() is None  # the one decision under test
    container.start()
    assert container.wait(10) == 0  # fd 3 is /data itself: the file lands in the volume, not on the host
    assert (volume / "x").exists() and not (tmp_path / "host-dir/x").exists()


def test_a_symlink_one_pod_makes_cannot_lead_another_pod_off_the_node(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "home")
    try:
        shared = {"name": "shared", "hostPath": {"path": "/srv/shared", "type": "DirectoryOrCreate"}}
        # from <home>/nodes/<node>/srv/shared up to <home>: the test's own directory
        maker = cluster.import_module(wasi_module("symlink", "../../../..", "escape"), "maker")
        cluster.run_pod(
            "maker",
            image=maker,
            volumes=[shared],
            container={"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
        )
        cluster.wait_phase("maker", "Succeeded", timeout=20)  # WASI lets it make the link: it is only data
        assert os.readlink(cluster.node_root() / "srv/shared/escape") == "../../../.."
        stolen = {"name": "host", "hostPath": {"path": "/srv/shared/escape"}}
        cluster.run_pod("thief", volumes=[stolen], container={"volumeMounts": [{"name": "host", "mountPath": "/h"}]})
        message = cluster.wait_event("thief", "FailedMount", timeout=20)
        assert message.startswith('MountVolume.SetUp failed for volume "host" : hostPath /srv/shared/escape ')
        assert cluster.container("thief")["state"] == {"waiting": {"reason": "ContainerCreating"}}
        thief = cluster.get(resource_path("v1", "pods", "default", "thief"))
        assert thief is not None and thief["status"]["phase"] == "Pending"
    finally:
        cluster.close()


def test_kubectl_is_told_as_upstream_tells_it(kubectl: Any) -> None:
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: escape}
spec:
  runtimeClassName: wasmedge
  volumes: [{name: host, hostPath: {path: /var/../../etc}}]
  containers:
  - {name: c, image: labkit/wasi-demo:latest, volumeMounts: [{name: host, mountPath: /h, subPath: /etc}]}
"""
    refused = kubectl("apply", "-f", "-", input=manifest, check=False)
    assert refused.returncode == 1
    assert 'The Pod "escape" is invalid' in refused.stderr
    assert "spec.volumes[0].hostPath.path: Invalid value: \"/var/../../etc\": must not contain '..'" in refused.stderr
    assert (
        'spec.containers[0].volumeMounts[0].subPath: Invalid value: "/etc": must be a relative path' in refused.stderr
    )
    assert kubectl("get", "pod", "escape", check=False).returncode == 1  # nothing was stored
