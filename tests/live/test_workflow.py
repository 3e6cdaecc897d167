"""The live CI workflow cannot run here: check that it parses, pins its versions and runs real commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import llmnode
from labkit.profiles import profile_for

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "live-k3s.yml"
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return workflow["jobs"]["live"]["steps"]


def script(steps: list[dict[str, Any]]) -> str:
    return "\n".join(step.get("run", "") for step in steps)


def test_structure(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"workflow_dispatch", "schedule", "push"} <= set(triggers)
    job = workflow["jobs"]["live"]
    assert job["runs-on"].startswith("ubuntu-") and job["timeout-minutes"] > 0
    assert all("name" in step and ("run" in step) != ("uses" in step) for step in job["steps"])


def test_versions_are_pinned(workflow: dict[Any, Any]) -> None:
    env = workflow["env"]
    assert re.fullmatch(r"v1\.\d+\.\d+\+k3s\d+", env["K3S_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{40}", env["RUNWASI_REF"]), "runwasi pinned to a commit"
    assert env["WASMEDGE_VERSION"] == "0.14.1" and env["WASMEDGE_PLUGINS"] == "wasi_nn-ggml"
    crun = tuple(int(x) for x in env["CRUN_VERSION"].split("."))
    assert crun >= (1, 15), "crun >= 1.15 loads WasmEdge plugins"
    assert env["LABKIT_ALLOWED_CONTEXTS"] == "default", "k3s.yaml's context is named default"
    uses = [step["uses"] for step in workflow["jobs"]["live"]["steps"] if "uses" in step]
    assert uses and all(re.search(r"@v\d+$", u) for u in uses)


def test_every_env_reference_is_defined(workflow: dict[Any, Any]) -> None:
    text = WORKFLOW.read_text()
    referenced = set(re.findall(r"\$\{\{\s*env\.(\w+)\s*\}\}", text))
    assert referenced and referenced <= set(workflow["env"])


@pytest.mark.parametrize(
    "needle",
    [
        'INSTALL_K3S_VERSION="$K3S_VERSION"',
        "--write-kubeconfig-mode 644",
        "./scripts/setup-linux.sh",
        "make build-wasmedge",
        'INSTALL="sudo install" LN="sudo ln -sf" make install-wasmedge',
        '--plugins "$WASMEDGE_PLUGINS"',
        "./configure --with-wasmedge",
        "grep -q '+WASM:wasmedge'",
        'sudo systemctl restart "$K3S_SERVICE"',
        "k3s crictl info",
        'jq -e "$detected"',
        'pip install -e ".[test]"',
        "labkit run --backend kubeconfig",
        'wasmedge --nn-preload "default:GGML:AUTO:$gguf" "$module"',  # the kit's llama-server on the real plugin
        ".choices[0].message.content",
        "pytest -m live",
        "containerd/containerd.log",
        # the seed's image and model, as the seed's .github/workflows/k3s_ci.yml makes them
        "rustup toolchain install stable --profile minimal --target wasm32-wasip1",
        "git -C apps/llamaedge apply ../../disable_wasi_logging.patch",
        'OPT_PROFILE=release RUSTFLAGS="--cfg wasmedge --cfg tokio_unstable" make "$SEED_IMAGE_TAR"',
        "cargo install --locked --path ../runwasi/crates/oci-tar-builder",
        'sudo k3s ctr -n k8s.io images ls -q | grep -Fxq "$LLM_IMAGE"',
        'echo "$sha  $model" | sha256sum -c -',
        "head -c 4 \"$model\" | grep -q '^GGUF'",
        'journalctl -u "$K3S_SERVICE"',
    ],
)
def test_real_commands(steps: list[dict[str, Any]], needle: str) -> None:
    assert needle in script(steps)


def test_shim_detection_is_proved_by_containerd(steps: list[dict[str, Any]]) -> None:
    """RuntimeClasses prove nothing (k3s ships them for every runtime it knows); containerd's runtimes do."""
    restart = next(s for s in steps if "systemctl restart" in s.get("run", ""))["run"]
    assert "runtimeclass" not in restart.lower()
    assert """has("wasmedge") and has("crun")""" in restart and "crictl info" in restart


def test_nodes_exist_before_kubectl_waits_for_them(steps: list[dict[str, Any]]) -> None:
    install = next(s for s in steps if "INSTALL_K3S_VERSION" in s.get("run", ""))["run"]
    assert install.index("kubectl get nodes -o name") < install.index("kubectl wait --for=condition=Ready node")


def test_no_image_is_imported_that_nothing_uses(workflow: dict[Any, Any], steps: list[dict[str, Any]]) -> None:
    """The notebooks import what they run (imagePullPolicy: Never), except the k3s profile's LLM server: the seed's
    image, which only the workflow can build. It is the one import here, and the LLM notebooks run it."""
    imports = [line.strip() for line in script(steps).splitlines() if "images import" in line]
    assert imports == ['sudo k3s ctr -n k8s.io images import --all-platforms "$SEED_IMAGE_TAR"']
    assert "dist/img.tar" not in script(steps)
    assert workflow["env"]["LLM_IMAGE"] == profile_for("kubeconfig").llm.image
    assert workflow["env"]["SEED_IMAGE_TAR"] == llmnode.SEED_IMAGE_TAR
    for notebook in ("03-wasi-nn-plugin-mounts", "05-load-balanced-llamaedge", "06-pod-tests-and-ci", "07-measuring"):
        text = (NOTEBOOKS / f"{notebook}.ipynb").read_text()
        assert "llm.image" in text and "lab_checks(cluster, backend, llm=True)" in text, notebook


def test_the_seed_and_its_model_are_pinned_as_labkit_checks_them(workflow: dict[Any, Any]) -> None:
    env, profile = workflow["env"], profile_for("kubeconfig")
    assert re.fullmatch(r"[0-9a-f]{40}", env["SEED_REF"]) and env["SEED_REF"] == llmnode.SEED_REF
    assert env["SEED_REPO"] == llmnode.SEED_REPO == "second-state/runwasi-wasmedge-demo"
    assert env["MODEL_DIR"] == str(profile.model_dir) and env["MODEL_FILE"] == profile.llm.model_file
    assert env["MODEL_URL"] == profile.llm.model_url and env["MODEL_URL"].endswith("/" + env["MODEL_FILE"])
    seed = next(s for s in workflow["jobs"]["live"]["steps"] if "${{ env.SEED_REPO }}" in str(s.get("with")))
    assert seed["with"] == {
        "repository": "${{ env.SEED_REPO }}",
        "ref": "${{ env.SEED_REF }}",
        "path": "seed",
        "submodules": True,
    }


def test_the_image_and_model_are_ready_before_the_notebooks(steps: list[dict[str, Any]]) -> None:
    names = [s["name"] for s in steps]

    def at(needle: str) -> int:
        return next(i for i, s in enumerate(steps) if needle in s.get("run", "") + str(s.get("with", "")))

    restart, notebooks = at("systemctl restart"), names.index("Run the notebooks on k3s")
    rust, build, model = at("--target wasm32-wasip1"), at("images import"), at('curl -fL --retry 3 -o "$model"')
    assert restart < rust < build < notebooks and restart < model < notebooks
    assert steps[build]["working-directory"] == "seed" and steps[build]["env"] == {"RUSTUP_TOOLCHAIN": "stable"}
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert "seed/apps/llamaedge/llama-api-server/target" in cache["with"]["path"] and "SEED_REF" in cache["with"]["key"]


def test_no_permission_widening(steps: list[dict[str, Any]]) -> None:
    assert not re.search(r"chmod\s+(-R\s+)?7[0-7]7", script(steps))


def test_artifacts_always_uploaded(steps: list[dict[str, Any]]) -> None:
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"
    assert {"build/notebooks", "build/logs"} <= set(upload["with"]["path"].split())
    logs = next(s for s in steps if s["name"] == "Collect node logs")
    assert logs["if"] == "always()"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_run_scripts_are_valid_bash(steps: list[dict[str, Any]]) -> None:
    for step in steps:
        if "run" in step:
            # ${{ ... }} is expanded by Actions before bash sees the script
            body = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
            result = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{step['name']}: {result.stderr}"
