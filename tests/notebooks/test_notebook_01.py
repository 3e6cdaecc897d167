"""Notebook 01 (wasi-demo-app) checked from outside the notebook.

The notebook's Checks cell asserts what the lab reached; here a real papermill run on a fresh sandbox is
followed by questions to the API server and the node: nothing of the lab is left, the RuntimeClass k3s made
is still there, and the images the notebook built were imported into the node's store. The structural test
keeps the notebook within the kit's conventions.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit import config
from labkit.host import host_for_backend
from labkit.runner import run_notebook

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]  # each runs notebooks in kernels: 10-30 s

NOTEBOOK = config.project_root() / "notebooks" / "01-wasi-demo-app.ipynb"
LAB = "01-wasi-demo-app"


def cells(kind: str) -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == kind]


def test_notebook_follows_the_kit_conventions():
    code = cells("code")
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert {"backend", "namespace", "timeout_s"} <= set(re.findall(r"^(\w+) =", params[0].source, re.MULTILINE))
    assert not [c.source for c in code if re.search(r"\bif\b[^\n]*\bbackend\b", c.source)], "no backend branches"
    steps = [
        c
        for c in code
        if not all(line.startswith(("import ", "from ")) or not line.strip() for line in c.source.splitlines())
    ]  # the imports cell is no step
    longest = max(steps, key=lambda c: len(c.source.splitlines()))
    assert len(longest.source.splitlines()) <= 14, longest.source
    sources = "\n".join(c.source for c in code)
    # the lab is closed by the cleanup cell and, if a step fails first, by the kernel's exit (open_lab's hook)
    assert "labkit.open_lab(" in sources and code[-1].source.startswith("# NBVAL_CHECK_OUTPUT\nthe_lab.close()")
    assert (
        len(re.findall(r"_diagnosis = diagnose\(cluster,", sources)) == 2
    )  # both failures diagnosed, not just printed
    assert 'image_pull_policy="Never"' in sources and "host.import_image(" in sources
    # beside labkit's view, the kubectl command a learner types on k3s, and its real answer (issue 11)
    shown = re.findall(r'the_lab\.kubectl\("([\w-]+)", "([\w/-]+)"', sources)
    assert {("get", "runtimeclass"), ("rollout", "status"), ("logs", "deployment/wasi-demo"), ("get", "events")} <= set(
        shown
    ), shown
    markdown = "\n".join(c.source for c in cells("markdown"))
    assert "```mermaid" in markdown and "--all-platforms" in markdown
    for heading in ("## Prerequisites", "## Checks", "## Cleanup", "## Troubleshooting", "## What's next"):
        assert heading in markdown


def test_run_leaves_no_lab_and_keeps_what_k3s_made(tmp_path: Path, private_sandbox: Path):
    from labkit.cluster import connect

    result = run_notebook(NOTEBOOK, tmp_path / "executed.ipynb", {"backend": "sandbox", "namespace": "lab-01"})
    assert result.status == "passed", str(result.failure())
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    outputs = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "all checks passed" in outputs and "namespace lab-01 removed: True" in outputs

    cluster = connect("sandbox")
    assert cluster.labelled_objects(lab=LAB) == []
    assert "lab-01" not in {n.metadata.name for n in cluster.core.list_namespace().items if n.metadata}
    kept = cluster.node.read_runtime_class("wasmedge")  # made by the node at start, only applied to by the lab
    assert kept.handler == "wasmedge" and "labkit.io/lab" not in ((kept.metadata and kept.metadata.labels) or {})
    classes = {rc.metadata.name for rc in cluster.node.list_runtime_class().items if rc.metadata}
    assert "wasm" not in classes, "the lab's own broken RuntimeClass is gone"
    assert {"wasmtime", "crun", "nvidia"} <= classes, "the RuntimeClasses k3s ships are untouched"
    images = {r.ref: r.platform for r in host_for_backend("sandbox").list_images()}
    assert images.get("docker.io/library/wasi-demo-own:v1") == "wasip1/wasm"
    assert images.get("docker.io/library/wasi-demo-app:plain") == "wasip1/wasm"
