"""Per-backend values, so a notebook never branches on the backend.

Images, host paths, model files and the cluster DNS address differ between a
real k3s node and a sandbox node; everything else in a lab is the same.

>>> profile_for("kubeconfig").wasi_demo_image
'ghcr.io/containerd/runwasi/wasi-demo-app:latest'
>>> profile_for("sandbox").runtime_handler
'wasmedge'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from labkit import config
from labkit.errors import LabkitError

#: Where k3s keeps the containerd config it renders (and the template it reads).
K3S_CONTAINERD_DIR = Path("/var/lib/rancher/k3s/agent/etc/containerd")


@dataclass(frozen=True)
class LlmServer:
    """An OpenAI-compatible LLM server image: the seed's ``llama-api-server`` on k3s (the seed's
    examples/k3s-example), the kit's ``llama-server`` (wasm-apps/llama-server, the same flags and routes) with
    SmolLM2-135M on the sandbox."""

    image: str | None
    command: tuple[str, ...]
    args: tuple[str, ...]
    #: The GGUF file in the profile's ``model_dir``.
    model_file: str
    #: What the answers' ``model`` field says (``--model-name``).
    model_name: str
    #: Where the GGUF is downloaded from, when the learner fetches it (``None``: the kit ships it).
    model_url: str | None = None


@dataclass(frozen=True)
class Profile:
    """What differs between backends. Paths are as the *node* sees them (hostPath values)."""

    backend: str
    #: runwasi's demo app image; the sandbox ships its own build under its own name.
    wasi_demo_image: str
    #: RuntimeClass name and containerd runtime handler for the WasmEdge shim.
    runtime_class: str
    runtime_handler: str
    #: The node's containerd config directory (k3s layout), as seen by the node.
    containerd_dir: Path
    #: Directory of GGUF model files on the node.
    model_dir: Path
    #: Directory of WasmEdge plugins (``libwasmedgePluginWasiNN.so``) on the node.
    plugin_dir: Path
    #: ``host:port`` of the cluster DNS for wasm pods' ``DNS_SERVER``; ``None`` until known
    #: (the sandbox reports its own when it starts).
    cluster_dns: str | None
    #: The LLM server of notebooks 03 and 05 and how it is started. ``None`` for the image: the lab builds the
    #: kit's own ``llama-server`` module into an image and imports it (the sandbox cannot pull the seed's).
    llm: LlmServer

    @property
    def node_root(self) -> Path:
        """Where the node's filesystem is on this machine: ``/`` for a real node; for the sandbox the first
        node's root (the node :func:`labkit.host.host_for_backend` acts on)."""
        return config.sandbox_node_root() if self.backend == "sandbox" else Path("/")

    def on_node(self, path: Path | str) -> Path:
        """Where a node path (e.g. ``profile.containerd_dir``) lives on this machine."""
        if not Path(path).is_absolute():
            raise LabkitError(
                f"{str(path)!r} is not a node path",
                "give the absolute path as seen on the node, e.g. /var/lib/rancher/k3s/agent/etc/containerd",
            )
        return self.node_root / Path(path).relative_to("/")


class _SharedFields(TypedDict):
    """The fields every backend's profile has in common."""

    runtime_class: str
    runtime_handler: str
    containerd_dir: Path
    model_dir: Path
    plugin_dir: Path


_SHARED: _SharedFields = {
    "runtime_class": "wasmedge",
    "runtime_handler": "wasmedge",
    "containerd_dir": K3S_CONTAINERD_DIR,
    # The paths of the journey's k3s CI runner (seed: /home/runner/...), mirrored on sandbox nodes.
    "model_dir": Path("/home/runner/models"),
    "plugin_dir": Path("/home/runner/.wasmedge/plugin"),
}

_PROFILES = {
    "kubeconfig": Profile(
        backend="kubeconfig",
        wasi_demo_image="ghcr.io/containerd/runwasi/wasi-demo-app:latest",
        cluster_dns="10.43.0.10:53",
        # the seed's Deployment (examples/k3s-example/k3s_deployment.yaml)
        llm=LlmServer(
            image="ghcr.io/second-state/llama-api-server:latest",
            command=("llama-api-server.wasm",),
            args=("--prompt-template", "llama-3-chat", "--ctx-size", "4096", "--model-name", "llama-3-1b"),
            model_file="Llama-3.2-1B-Instruct-Q5_K_M.gguf",
            model_name="llama-3-1b",
            # the seed CI's download (examples/k3s-example; .github/workflows/k3s_ci.yml "Download gguf model")
            model_url="https://huggingface.co/second-state/Llama-3.2-1B-Instruct-GGUF/resolve/main/"
            "Llama-3.2-1B-Instruct-Q5_K_M.gguf",
        ),
        **_SHARED,
    ),  # k3s default --cluster-dns
    "sandbox": Profile(
        backend="sandbox",
        wasi_demo_image="docker.io/labkit/wasi-demo:latest",
        # the running sandbox's: 127.43.0.10:53 in address slot 0, another when another sandbox holds that slot
        # (labkit.connect() fills it in from the sandbox it reaches; sandbox/netmap.py)
        cluster_dns=None,
        # SmolLM2-135M-Instruct speaks ChatML; a small context keeps a sandbox pod's memory small
        llm=LlmServer(
            image=None,
            command=(),
            args=("--prompt-template", "chatml", "--ctx-size", "1024", "--model-name", "smollm2-135m"),
            model_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            model_name="smollm2-135m",
        ),
        **_SHARED,
    ),
}


def profile_for(backend: str | None = None) -> Profile:
    """The profile of *backend* (resolved like :func:`labkit.connect` does)."""
    return _PROFILES[config.resolve_backend(backend)]
