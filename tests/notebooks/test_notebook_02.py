"""Notebook 02 (runc → crun swap) checked from outside the notebook.

The notebook's own Checks cell compares the four files it read; here the test fingerprints the
*whole* sandbox node root before and after a real papermill run (only labkit's backup directory may
differ), and asks the API server that nothing of the lab is left. The structural test keeps the
notebook within the kit's conventions (parameters, no backend branches, short cells, undo paths).
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import nbformat
import pytest

from labkit import config
from labkit.host import host_for_backend
from labkit.host.changes import BACKUP_DIR
from labkit.runner import run_notebook

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]  # each runs notebooks in kernels: 10-30 s

NOTEBOOK = config.project_root() / "notebooks" / "02-crun-swap.ipynb"
LAB = "02-crun-swap"


def code_cells() -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]


def test_notebook_follows_the_kit_conventions():
    cells = code_cells()
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert {"backend", "namespace", "timeout_s"} <= set(re.findall(r"^(\w+) =", params[0].source, re.MULTILINE))
    assert not [c.source for c in cells if re.search(r"\bif\b[^\n]*\bbackend\b", c.source)], "no backend branches"
    longest = max(cells, key=lambda c: len(c.source.splitlines()))
    assert len(longest.source.splitlines()) <= 16, longest.source
    # every cell acting on the changed node or the cluster undoes the change when it fails
    sources = [c.source for c in cells]
    applied = next(i for i, s in enumerate(sources) if "host.apply(" in s)
    assert "lab.on_close(host.restore, backup" in sources[applied]  # the safety net, as soon as there is a backup
    restored = max(i for i, s in enumerate(sources) if "restore_node()" in s)  # the step
    acting = [s for s in sources[applied + 1 : restored + 1] if re.search(r"\b(lab|host)\.", s)]
    assert applied < restored and len(acting) >= 6
    assert [s for s in acting if "undo_on_failure()" not in s] == []
    # kubectl beside labkit's view where a learner would type it; the node's runtimes as k3s reports them
    assert len(re.findall(r"\blab\.kubectl\(", "\n".join(sources))) >= 3
    markdown = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "markdown")
    for heading in ("## Checks", "## Cleanup", "## Troubleshooting", "## What's next"):
        assert heading in markdown
    assert "sudo k3s crictl info" in markdown  # the runtimes as containerd reports them, the way to look on k3s


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under the node root (labkit's backups aside) → sha256."""
    backups = root / BACKUP_DIR
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and backups not in p.parents
    }


def test_run_leaves_the_node_byte_identical_and_no_lab(tmp_path: Path, private_sandbox: Path):
    from labkit.cluster import connect

    host = host_for_backend("sandbox")
    deadline = time.monotonic() + 30
    while not host.containerd_paths().config.is_file():  # the node renders it when its kubelet starts
        assert time.monotonic() < deadline, "the sandbox node never rendered its containerd config"
        time.sleep(0.2)
    before = fingerprint(host.node_root)

    result = run_notebook(NOTEBOOK, tmp_path / "executed.ipynb", {"backend": "sandbox", "namespace": "lab-02"})
    assert result.status == "passed", str(result.failure())

    assert fingerprint(host.node_root) == before
    [backup] = host.backups()
    assert sorted((f.path, f.existed) for f in backup.files) == [
        ("/etc/rancher/k3s/config.yaml", False),
        ("/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl", False),
    ]
    cluster = connect("sandbox")
    assert cluster.labelled_objects(lab=LAB) == []
    assert "lab-02" not in {n.metadata.name for n in cluster.core.list_namespace().items if n.metadata}
    assert host.runtime_info().default_runtime == "runc"
