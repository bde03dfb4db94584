"""Shipped texts: calibration data for llama-imatrix and evaluation text for llama-perplexity (KL divergence).

The two files are deliberately different writing so that a quant is never scored on the text it was calibrated on.
"""

from __future__ import annotations

import pathlib
from importlib import resources

_NAMES = {"calibration": "calibration.txt", "evaluation": "evaluation.txt"}


def text_path(name: str) -> pathlib.Path:
    """Path of a shipped text, by name (``calibration``/``evaluation``, with or without ``.txt``)."""
    key = name.removesuffix(".txt")
    if key not in _NAMES:
        raise KeyError(f"no shipped text {name!r}; known: {', '.join(sorted(_NAMES))}")
    # The package is installed as plain files (setuptools package-data), so this is a real path
    # that can be passed to llama.cpp tools on their command line.
    return pathlib.Path(str(resources.files("specsweep.texts").joinpath(_NAMES[key])))
