"""Running llama.cpp's command-line tools (quantize, imatrix, perplexity) with cached outputs.

Every output file gets a ``<file>.json`` sidecar holding the inputs that decide its content
(input sha256s, type, settings, engine version) and the exact argv; a later call with the same
inputs finds the sidecar and does no work. Tool output goes to ``<file>.log`` beside the output
(a file: never an undrained pipe).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import EngineError, SpecsweepError


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _up_to_date(out: Path, inputs: dict) -> bool:
    """The output exists, is the size we recorded and was made from exactly these inputs."""
    try:
        record = json.loads(_sidecar(out).read_text())
        return record.get("inputs") == inputs and out.stat().st_size == record.get("size_bytes")
    except (OSError, ValueError):
        return False


def first_error_line(lines: list[str]) -> str | None:
    """The first of ``lines`` that says error or failed, if any."""
    return next((ln for ln in lines if re.search(r"error|failed", ln, re.IGNORECASE)), None)


def _last_error_line(log: Path) -> str:
    """The line that says why: the first error/failed line near the end, else the last line."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-20:]
    return first_error_line(lines) or (lines or ["no output"])[-1]


def run_tool(argv: list[str], log: Path) -> None:
    """Run one llama.cpp tool with stdout+stderr to ``log`` (a file: never an undrained pipe)."""
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(argv) + "\n")
        fh.flush()
        try:
            proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise EngineError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise EngineError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {_last_error_line(log)}",
                          hint=f"full log: {log}")


def make_cached(out: Path, argv: list[str], inputs: dict, notes: dict | None = None,
                finish: Callable[[Path], None] | None = None) -> bool:
    """Run ``argv`` to make ``out`` unless its sidecar shows the same inputs; True if it ran.
    ``finish(out)`` amends the tool's output before the sidecar vouches for it."""
    if _up_to_date(out, inputs):
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    _sidecar(out).unlink(missing_ok=True)  # a failed run must not leave an old sidecar vouching for it
    started = time.monotonic()
    run_tool(argv, out.with_name(out.name + ".log"))
    if not out.exists():
        raise EngineError(f"{Path(argv[0]).name} exited 0 but wrote no {out}")
    if finish is not None:
        finish(out)
    record = {"inputs": inputs, "argv": argv, "size_bytes": out.stat().st_size,
              "seconds": round(time.monotonic() - started, 2), **(notes or {})}
    _sidecar(out).write_text(json.dumps(record, indent=2) + "\n")
    return True


def engine_version_of(engine) -> str:
    """The engine's ``b<build>-<commit>`` (asked once per binary): part of every cache key."""
    try:
        return engine.version()
    except SpecsweepError:
        return "unknown"


def thread_args(threads: int | None) -> list[str]:
    return ["-t", str(threads)] if threads else []
