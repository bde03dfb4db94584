"""Shared test fixtures: where the real engine and the real default model are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SPECSWEEP = Path(sys.executable).with_name("specsweep")


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, cwd: Path | None = None):
    """Run the installed ``specsweep`` console script as a user would."""
    return subprocess.run([str(SPECSWEEP), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def llama_server_pids() -> set[int]:
    """Every llama-server process on the machine, from /proc (tests check none is left behind)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            state = next((line for line in (entry / "status").read_text().splitlines()
                          if line.startswith("State:")), "")
        except OSError:
            continue
        if argv0.endswith(b"llama-server") and "zombie" not in state:
            pids.add(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def engine():
    from specsweep.engine.locate import resolve_engine
    return resolve_engine()


@pytest.fixture(scope="session")
def model_path() -> Path:
    from specsweep.models import default_model_path
    path = default_model_path()
    assert path.exists(), "default model missing: run 'make model' (make test does it)"
    return path


@pytest.fixture
def no_orphans():
    """Fail the test if it leaves a llama-server running."""
    before = llama_server_pids()
    yield
    import time
    deadline = time.monotonic() + 10
    while (left := llama_server_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"llama-server processes left behind: {sorted(left)}"


@pytest.fixture(scope="session")
def second_model(engine, model_path, tmp_path_factory) -> Path:
    """A second real model for two-model sweeps: the default model requantized to Q8_0."""
    out = tmp_path_factory.mktemp("models") / "SmolLM2-135M-Instruct.Q8_0.gguf"
    subprocess.run([str(engine.tool("llama-quantize")), "--allow-requantize", str(model_path), str(out), "Q8_0"],
                   check=True, capture_output=True, timeout=300)
    return out
