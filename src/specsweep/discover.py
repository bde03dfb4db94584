"""Models from file patterns: ``--models 'DIR/*.gguf'`` as a user's download folder holds them.

A quant ladder downloaded from a model repository is a folder of GGUF files: one per quant,
large quants split as ``NAME-00001-of-00003.gguf``, often with a vision projector
(``mmproj-…``) and an MTP assistant or sidecar beside them. Here each pattern is expanded,
split files become one model (llama-server loads the rest from the first part), projectors and
drafters found among the targets are set aside, and every model is labelled by its quant type
(``general.file_type``, else the quant tag in its file name).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from .modelspec import ModelSpec
from .errors import ModelError
from .models import SPLIT_NAME, GGUFInfo, inspect_gguf

# Quant tags as llama.cpp names file types (Q4_K_M, IQ2_XS, Q8_0, F16, BF16, TQ1_0, MXFP4 …).
QUANT_TAG_RE = re.compile(r"(?<![A-Za-z0-9])(I?Q\d+(?:_[A-Z0-9]+)*|B?F16|F32|TQ\d_\d|MXFP4)(?![A-Za-z0-9])",
                          re.IGNORECASE)


# Nominal bits per weight of llama.cpp's file types (its quantize --help), to order a ladder even when
# a split model's first part alone cannot tell its size.
NOMINAL_BITS = {"F32": 32, "BF16": 16, "F16": 16, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_1": 6.0, "Q5_K_M": 5.67,
                "Q5_K_S": 5.52, "Q5_0": 5.5, "Q4_1": 5.0, "Q4_K_M": 4.84, "Q4_K_S": 4.57, "Q4_0": 4.5,
                "IQ4_NL": 4.5, "IQ4_XS": 4.25, "Q3_K_L": 4.27, "Q3_K_M": 3.89, "IQ3_M": 3.66, "Q3_K_S": 3.5,
                "IQ3_S": 3.44, "IQ3_XS": 3.3, "IQ3_XXS": 3.06, "Q2_K": 2.96, "IQ2_M": 2.7, "Q2_K_S": 2.6,
                "IQ2_S": 2.5, "IQ2_XS": 2.31, "IQ2_XXS": 2.06, "IQ1_M": 1.75, "IQ1_S": 1.56}


def quant_tag(name: str) -> str | None:
    """The last quant tag in a file name (``gemma-4-31B-it-IQ4_XS.gguf`` → ``IQ4_XS``)."""
    tags = QUANT_TAG_RE.findall(Path(name).name.removesuffix(".gguf"))
    return tags[-1].upper() if tags else None


def is_projector(path: Path) -> bool:
    return path.name.lower().startswith("mmproj")


def expand(patterns: list[str]) -> list[Path]:
    """Files named by patterns (globs, files or folders), first split parts only, projectors dropped."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern).expanduser()
        matches = sorted(path.glob("*.gguf")) if path.is_dir() else \
            [Path(m) for m in sorted(glob.glob(str(path)))]
        if not matches:
            raise ModelError(f"--models {pattern!r} matches no GGUF file")
        for match in matches:
            split = SPLIT_NAME.match(match.name)
            if is_projector(match) or (split and int(split["no"]) != 1):
                continue
            found.setdefault(match.resolve(), None)
    return list(found)


def _label(info: GGUFInfo) -> str:
    if info.file_type not in ("unknown", "GUESSED"):
        return info.file_type
    return quant_tag(info.path.name) or info.path.stem


def models_from_patterns(patterns: list[str], draft_model: Path | None = None) -> tuple[list[ModelSpec], list[str]]:
    """Model specs labelled by quant type, and notes on the files set aside (drafters, projectors)."""
    specs, notes, infos = [], [], []
    draft = draft_model.resolve() if draft_model else None
    for path in expand(patterns):
        if draft is not None and path == draft:
            continue
        info = inspect_gguf(path)
        if info.architecture == "unknown" or not info.parameter_count or info.block_count == 0:
            notes.append(f"{path.name} is not a model (an importance matrix or other data): skipped")
            continue
        if info.architecture.endswith("-assistant") or "mtp-" in path.name.lower():
            notes.append(f"{path.name} is a drafter ({info.architecture}), not a target: give it as --draft-model")
            continue
        infos.append(info)
    if not infos:
        raise ModelError(f"--models {' '.join(patterns)} names no target model")
    labels = [_label(i) for i in infos]
    # The published table's order: most bits first.
    order = sorted(range(len(infos)), key=lambda k: -NOMINAL_BITS.get(labels[k], infos[k].bits_per_weight))
    infos, labels = [infos[k] for k in order], [labels[k] for k in order]
    if len(set(labels)) != len(labels):  # two files of one quant type: fall back to file names
        labels = [SPLIT_NAME.sub(r"\g<stem>", i.path.name).removesuffix(".gguf") for i in infos]
    for info, label in zip(infos, labels):
        label = re.sub(r"[^A-Za-z0-9_.+\-]", "_", label)
        specs.append(ModelSpec(label=label, path=info.path, draft_model=draft_model))
    return specs, notes
