"""One model of a sweep: its label, file, drafter and where it came from (no other imports, so both
the config and the Hugging Face cache resolver can build it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HfOrigin:
    """Where a model spec came from in the cache; stored with the run's config."""

    repo: str
    revision: str
    quant: str               # the tag asked for ("" = the server's default choice)
    snapshot: str            # absolute snapshot directory
    files: tuple[str, ...]   # snapshot-relative; the first is the one the server loads
    sidecar: str | None      # the mtp- sidecar llama-server pairs with it under draft-mtp
    cache: str               # CacheLocation.describe()
    paired: bool = False     # the model's draft_model is that sidecar, attached by pair_sidecars

    def sidecar_path(self) -> Path | None:
        return Path(self.snapshot) / self.sidecar if self.sidecar else None


@dataclass(frozen=True)
class ModelSpec:
    label: str
    path: Path
    draft_model: Path | None = None  # a draft model, EAGLE-3 head or MTP sidecar
    server_args: tuple[str, ...] = ()
    origin: "HfOrigin | None" = None  # set when the model was found in the Hugging Face cache (hf_cache)
