"""What the LLM labs need on a real k3s node and nothing installs: the profile's GGUF model and its image.

On k3s, notebooks 03, 05, 06 and 07 run the seed's ``llama-api-server`` image with ``imagePullPolicy: Never``
and mount the profile's model from the node (hostPath). k3s ships neither: the seed builds the image from
second-state/runwasi-wasmedge-demo and imports it into k3s's containerd, and downloads the model from
Hugging Face (the seed's ``.github/workflows/k3s_ci.yml``). Without the image the first rollout fails with
``ErrImageNeverPull``; without the model the WASI-NN preload has nothing to load. These rows say so before
a notebook starts, each with the exact fix. The sandbox builds the kit's own ``llama-server`` image and ships
its model, so it has no such rows (:func:`labkit.preflight.check_llm_server` skips them).

>>> model_fix(profile_for("kubeconfig")).split(" && ")[0]
'sudo mkdir -p /home/runner/models'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.checks import Check
from labkit.errors import LabkitError
from labkit.profiles import Profile, profile_for
from labkit.wasm.oci import normalize_ref

if TYPE_CHECKING:
    from labkit.host.base import Host
    from labkit.imagestore import ImageRecord

#: The seed repository and the commit the live workflow builds the image from (its Makefile and
#: ``disable_wasi_logging.patch``; submodule ``apps/llamaedge`` = LlamaEdge/LlamaEdge ``05f3349a``).
SEED_REPO = "second-state/runwasi-wasmedge-demo"
SEED_REF = "eb113afff88e38d220428ba2a918929a08cb4bb9"
#: The Makefile target that builds the image archive without importing it (its ``%:`` rule would import
#: with the system ``ctr`` into the ``default`` namespace, which k3s's kubelet never sees).
SEED_IMAGE_TAR = "apps/llamaedge/llama-api-server/target/wasm32-wasip1/release/img-oci.tar"
#: Every GGUF file starts with these four bytes (ggml's gguf.h, GGUF_MAGIC); a Git LFS pointer or an
#: HTML error page saved under the model's name does not.
GGUF_MAGIC = b"GGUF"
NAMES = ("llm model", "llm image")


def model_path(profile: Profile) -> str:
    """The node path of the profile's model (what the pods' WASI-NN preload names)."""
    return f"{profile.model_dir}/{profile.llm.model_file}"


def model_fix(profile: Profile) -> str:
    """The commands that put the profile's model on the node (the seed CI's download)."""
    url = profile.llm.model_url or f"<the URL of {profile.llm.model_file}>"
    return (
        f"sudo mkdir -p {profile.model_dir} && sudo curl -fL --retry 3 -o {model_path(profile)} {url} "
        "(the seed's model, Hugging Face second-state/Llama-3.2-1B-Instruct-GGUF)"
    )


def image_fix(image: str) -> str:
    """How the seed builds and imports *image* (its k3s_ci.yml at SEED_REF; the live workflow does the same)."""
    return (
        f"build it as the seed does and import it into k3s's containerd: git clone --recurse-submodules "
        f"https://github.com/{SEED_REPO} && cd runwasi-wasmedge-demo && git checkout {SEED_REF[:8]} && "
        "git submodule update && git -C apps/llamaedge apply ../../disable_wasi_logging.patch && "
        'OPT_PROFILE=release RUSTFLAGS="--cfg wasmedge --cfg tokio_unstable" make '
        f"{SEED_IMAGE_TAR} && sudo k3s ctr -n k8s.io images import --all-platforms {SEED_IMAGE_TAR} "
        f"(needs Rust with the wasm32-wasip1 target; the result is {image})"
    )


def check_llm_model(host: Host, profile: Profile) -> Check:
    """The profile's GGUF is a file on the node and starts with the GGUF magic."""
    path = model_path(profile)
    try:
        real = host.node_realpath(path)
        if real is None or host.node_kind(real) != "file":
            return Check(NAMES[0], "fail", f"the model {path} is not a file on the node", model_fix(profile))
        head = host.read_node_head(real, len(GGUF_MAGIC))
    except LabkitError as err:
        return Check(NAMES[0], "fail", f"cannot read the model {path}: {err.problem}", err.fix or model_fix(profile))
    if head != GGUF_MAGIC:
        return Check(
            NAMES[0],
            "fail",
            f"{path} is not a GGUF file (it starts with {head!r}, not {GGUF_MAGIC!r}: a Git LFS pointer or an "
            "error page saved under the model's name?)",
            model_fix(profile),
        )
    return Check(NAMES[0], "ok", path if real == path else f"{path} -> {real}")


def image_row(image: str, images: list[ImageRecord] | LabkitError) -> Check:
    """The image row from the node's image list (or from why it could not be listed)."""
    if isinstance(images, LabkitError):
        return Check(
            NAMES[1],
            "warn",
            f"cannot list the node's images to look for {image}: {images.problem}",
            images.fix or "run labkit as root on the node",
            required=False,
        )
    wanted = normalize_ref(image)
    found = next((r for r in images if r.ref == wanted), None)
    if found is None:
        return Check(
            NAMES[1],
            "fail",
            f"{wanted} is not in the node's containerd (namespace k8s.io, {len(images)} images): the pods use "
            "imagePullPolicy: Never and would fail with ErrImageNeverPull",
            image_fix(wanted),
        )
    return Check(NAMES[1], "ok", f"{found.ref} ({found.platform}, {found.digest[:19]})")


def check_llm_image(host: Host, profile: Profile) -> Check:
    """The profile's LLM image is in the node's image store (``k3s ctr -n k8s.io images ls``)."""
    image = profile.llm.image
    if image is None:
        return Check(NAMES[1], "skip", "the lab builds and imports the kit's llama-server", required=False)
    try:
        images: list[ImageRecord] | LabkitError = host.list_images()
    except LabkitError as err:
        images = err
    return image_row(image, images)


def llm_checks(host: Host, profile: Profile | None = None) -> list[Check]:
    """The model and image rows for *host*, a k3s node, and *profile* (default: the k3s profile)."""
    profile = profile or profile_for("kubeconfig")
    return [check_llm_model(host, profile), check_llm_image(host, profile)]
