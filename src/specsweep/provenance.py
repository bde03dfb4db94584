"""What a run was measured on: engine, hardware, model files, tool. Stored with every run."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from . import __version__
from .cache import sha256_file_memo
from .engine.locate import Engine
from .engine.server import engine_environment
from .models import GGUFInfo

if TYPE_CHECKING:
    from .config import ModelSpec


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


def cuda_version() -> str | None:
    """The CUDA version the driver supports, from ``nvidia-smi``'s banner; None without one."""
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"CUDA Version:\s*([\d.]+)", out.stdout) if out.returncode == 0 else None
    return match.group(1) if match else None


def hardware() -> dict:
    import os
    found = gpus()
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": found,
            **({"cuda_version": cuda_version()} if found else {}),
            "platform": platform.platform(), "python": sys.version.split()[0]}


def engine_provenance(engine: Engine) -> dict:
    """The engine and the environment its servers inherit from this process (on Ray workers, their own)."""
    return {"server": str(engine.server), "origin": engine.origin, "version": engine.version(),
            "backend": engine.backend, "source": engine.provenance.get("source"),
            "cmake_flags": engine.provenance.get("cmake_flags"), "environment": engine_environment()}


def model_provenance(info: GGUFInfo, spec: "ModelSpec | None" = None) -> dict:
    """The file's summary and sha256 (every part of a split model), its draft model, and for a model
    from the Hugging Face cache the repository, revision and files."""
    out = {**info.summary(), "sha256": sha256_file_memo(info.path)}
    if info.parts:
        out["parts_sha256"] = [sha256_file_memo(p) for p in info.parts]
    if spec is not None and spec.origin is not None:
        from .hf_cache import origin_provenance
        out["hf"] = origin_provenance(spec)
    if spec is not None and spec.draft_model is not None:
        from .hf_cache import draft_choice
        out["draft_model"] = {"path": str(spec.draft_model), "sha256": sha256_file_memo(spec.draft_model),
                              "chosen": draft_choice(spec)}
    return out


def run_provenance(engine: Engine, models: dict[str, dict]) -> dict:
    return {"engine": engine_provenance(engine), "hardware": hardware(), "models": models,
            "tool": {"name": "specsweep", "version": __version__},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
