"""Where specsweep keeps what it builds and fetches, and file hashing with a memo.

Everything lives under ``$XDG_CACHE_HOME/specsweep`` (``~/.cache/specsweep``),
overridable with ``SPECSWEEP_CACHE`` so tests can isolate it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    override = os.environ.get("SPECSWEEP_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "specsweep"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_memo(path: Path) -> str:
    """sha256 of a (possibly multi-GB) model file, remembered by (path, size, mtime).

    A 31B GGUF takes tens of seconds to hash; re-running or resuming a sweep
    should not pay that again for an unchanged file.
    """
    path = Path(path).resolve()
    stat = path.stat()
    memo_path = cache_root() / "sha256-memo.json"
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = sha256_file(path)
    memo[key] = digest
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_path)
    except OSError:
        pass  # the memo is an optimisation; hashing again next time is correct
    return digest
