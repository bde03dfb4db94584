"""The miniatures this project trained (training/), committed under models/ with their sha256.

They are miniatures of their architectures, not the real models: a Gemma-4 target with its MTP
assistant (the published experiment's mechanism), a Qwen3.5 model with its own MTP head, and an
EAGLE-3 head for the default model SmolLM2-135M trained for minutes (a floor for the method).
Each file is checked against the sha256 recorded here before it is used, so a damaged clone
or a Git LFS pointer fails with one clear line instead of a server crash.
"""

from __future__ import annotations

from pathlib import Path

from .cache import sha256_file_memo
from .errors import ModelError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"

# name -> role -> (path under models/, sha256)
TRAINED: dict[str, dict[str, tuple[str, str]]] = {
    "gemma4-mini": {
        "target": ("gemma4-mini/gemma4-mini-F16.gguf",
                   "e49748cdbf0ce299751c127020b9b32822fb5a06bfbf0a53ebe59f3dc37a36e0"),
        "assistant": ("gemma4-mini/gemma4-mini-assistant-F16.gguf",
                      "1593612034ca0aca4d3c8f400db06f2528ff906a800c4bdf9d2c1eaf253f64f7"),
    },
    "qwen35-mini": {
        "target": ("qwen35-mini/qwen35-mini-mtp-F16.gguf",
                   "83bf44abdc09efa9b4b3c199e9b7b489f13ec505086115c3c9713125bb79bd4d"),
    },
    # a drafter only: its target is the default model, SmolLM2-135M-Instruct (fetched from PyPI)
    "eagle3-smollm2": {
        "head": ("eagle3-smollm2/eagle3-smollm2-F16.gguf",
                 "f3ac20265e0d2e7150110db8f6f86af38c83f8bc58a1ab9260a3f06258694583"),
    },
}


def trained_file(name: str, role: str = "target", models_dir: Path | None = None) -> Path:
    """The verified path of a committed miniature's file."""
    try:
        relative, expected = TRAINED[name][role]
    except KeyError:
        raise ModelError(f"no trained model {name!r} with a {role!r} file; known: {', '.join(TRAINED)}") from None
    path = (models_dir or MODELS_DIR) / relative
    if not path.is_file():
        raise ModelError(f"trained model file {path} is missing",
                         hint="the miniatures ship with the git repository: run from a clone of it")
    digest = sha256_file_memo(path)
    if digest != expected:
        raise ModelError(f"{path} has sha256 {digest[:16]}…, expected {expected[:16]}… (damaged or replaced)",
                         hint="restore it with 'git checkout -- models/'")
    return path
