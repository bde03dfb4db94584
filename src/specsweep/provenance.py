"""What a run was measured on: engine, hardware, model files, tool. Stored with every run."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time

from . import __version__
from .cache import sha256_file_memo
from .engine.locate import Engine
from .models import GGUFInfo


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def hardware() -> dict:
    import os
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus(),
            "platform": platform.platform(), "python": sys.version.split()[0]}


def engine_provenance(engine: Engine) -> dict:
    return {"server": str(engine.server), "origin": engine.origin, "version": engine.version(),
            "backend": engine.backend, "source": engine.provenance.get("source"),
            "cmake_flags": engine.provenance.get("cmake_flags")}


def model_provenance(info: GGUFInfo) -> dict:
    """The file's sha256; a split model's is the sha256 of its parts' digests, in order."""
    if info.split_count <= 1:
        return {**info.summary(), "sha256": sha256_file_memo(info.path)}
    from .discover import split_parts
    parts = split_parts(info.path)
    digests = [sha256_file_memo(p) for p in parts]
    return {**info.summary(), "size_bytes": sum(p.stat().st_size for p in parts),
            "parts": [{"path": str(p), "sha256": d} for p, d in zip(parts, digests)],
            "sha256": hashlib.sha256("".join(digests).encode()).hexdigest()}


def run_provenance(engine: Engine, models: dict[str, dict]) -> dict:
    return {"engine": engine_provenance(engine), "hardware": hardware(), "models": models,
            "tool": {"name": "specsweep", "version": __version__},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
