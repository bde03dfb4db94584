"""What the local Hugging Face cache holds (``specsweep models list-hf``) and the optional download
through ``huggingface_hub`` (``models download-hf``); the resolution rules are in hf_cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, UsageError
from .hf_cache import (SIDECARS, TAG_RE, CacheLocation, _first_part, cache_location, download_hint, is_model_file,
                       is_valid_repo_id, scan, split_files, split_info)


@dataclass(frozen=True)
class ListedFile:
    repo: str
    revision: str
    kind: str      # model, mtp- sidecar, eagle3- sidecar, …, mmproj (ignored), imatrix (ignored), other
    tag: str
    path: str      # the first part for a split model
    parts: int
    size_bytes: int | None


def _kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for word in SIDECARS:
        if word in path and path.endswith(".gguf"):
            return f"{word.rstrip('-')} sidecar"
    if "mmproj" in name:
        return "mmproj (ignored)"
    if "imatrix" in name:
        return "imatrix (ignored)"
    return "model" if is_model_file(path) else "other"


def listing(location: CacheLocation | None = None) -> list[ListedFile]:
    """Every GGUF in every cached repository, split models as one row with their total size."""
    rows = []
    for repo in sorted(scan(location), key=lambda r: r.repo_id.lower()):
        for path in repo.files:
            if not path.endswith(".gguf") or not _first_part(path):
                continue
            parts = split_files(list(repo.files), path)
            sizes = [repo.size(p) for p in parts]
            total = None if None in sizes else sum(sizes)
            rows.append(ListedFile(repo.repo_id, repo.revision, _kind(path), split_info(path).tag, path,
                                   len(parts), total))
    order = {"model": 0}
    return sorted(rows, key=lambda r: (r.repo.lower(), order.get(r.kind, 1), r.kind, -(r.size_bytes or 0), r.path))


def download(repo_id: str, quants: list[str], location: CacheLocation | None = None,
             sidecars: bool = True) -> Path:
    """Fetch quants (and mtp- sidecars) into the cache the server reads, through ``huggingface_hub``."""
    location = location or cache_location()
    if not is_valid_repo_id(repo_id):
        raise UsageError(f"{repo_id!r}: expected OWNER/REPO")
    for tag in quants:
        if not TAG_RE.match(tag):
            raise UsageError(f"quant tag {tag!r} may contain only letters, digits and _ . -")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UsageError("downloading needs the huggingface_hub package, which is not installed",
                         hint="pip install huggingface_hub; or " + download_hint(repo_id, quants, location)) from None
    patterns = [p for t in quants for p in (f"*{t}*", f"*{t.lower()}*")] + (["*mtp-*"] if sidecars else [])
    try:
        path = snapshot_download(repo_id, allow_patterns=patterns or None, ignore_patterns=["*mmproj*"],
                                 cache_dir=str(location.path))
    except Exception as exc:  # the library's own errors: network, auth, missing repo
        raise ModelError(f"download of {repo_id} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return Path(path)
