"""Shared test fixtures: isolation from the user's folders, and where the real engine and model are.

Every test runs with HOME, XDG_CACHE_HOME and SPECSWEEP_CACHE pointing into its own temporary
folder and that folder as the working directory, and MPLCONFIGDIR in one temporary folder for the
session, so nothing a test (or a ``specsweep`` it starts) writes lands in the user's cache, home
or checkout. The engine and the default model
built into the real cache are still found: their paths are read once at start-up and passed
explicitly (SPECSWEEP_LLAMA_SERVER …, the ``model_path`` fixture); nothing writes there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from specsweep.cache import cache_root
from specsweep.engine.build import TOOLS, current_build
from specsweep.engine.locate import env_var

SPECSWEEP = Path(sys.executable).with_name("specsweep")
# Four one-line prompts: the e2e sweeps test the machinery, and every prompt token is processed
# again by the target and the drafter of every request (the packaged suites are 2-3x longer).
SHORT_PROMPTS = Path(__file__).resolve().parent / "fixtures" / "short-prompts.jsonl"
REAL_CACHE = cache_root()  # before any test changes the environment
REAL_BUILD = current_build()  # the build 'specsweep engine install' made there, if any


def _threads_per_server() -> int:
    """Threads for each llama-server a test starts: 2, or the cores' share of one pytest-xdist worker
    when fewer (``make test`` runs two workers on 2 cores: two servers spinning 2 threads each on
    2 cores would wait on each other at every barrier)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, len(os.sched_getaffinity(0)) // workers))


THREADS = _threads_per_server()

# The e2e modules that take longest, longest first (about 50, 42, 40, 31, 30, 25, 24, 24, 20, 20 and
# 15 s in make test on 2 cores). pytest-xdist (--dist loadscope --no-loadscope-reorder) hands each
# module whole to a worker in collection order: with the long ones first, the short modules (the rest
# of e2e, then the unit tier) even out the two workers' ends, instead of one worker still in a long
# module while the other has nothing left. Modules not listed keep their order after these.
LONGEST_FIRST = tuple(f"tests/e2e/test_{name}.py" for name in (
    "faults", "eagle3", "ray", "degeneration", "hf_published", "sweep", "validate", "drafting", "parallel",
    "ladder", "trained_mtp"))


def pytest_collection_modifyitems(items):
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: modules stay whole


@pytest.fixture(scope="session")
def matplotlib_dir(tmp_path_factory) -> Path:
    """matplotlib's config and font cache for the whole session (not the user's): its font list is
    then built once, not again by every ``specsweep report`` a test starts."""
    return tmp_path_factory.mktemp("matplotlib")


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch, matplotlib_dir):
    """Keep the test out of the user's cache, home and working folder (see the module docstring)."""
    root = tmp_path_factory.mktemp("isolated")
    for name in ("home", "xdg-cache", "cache", "work"):
        (root / name).mkdir()
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    monkeypatch.setenv("SPECSWEEP_CACHE", str(root / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(matplotlib_dir))
    monkeypatch.chdir(root / "work")
    if REAL_BUILD is not None:
        for tool in TOOLS:
            if not os.environ.get(env_var(tool)) and (REAL_BUILD / "bin" / tool).exists():
                monkeypatch.setenv(env_var(tool), str(REAL_BUILD / "bin" / tool))
    return root


@pytest.fixture
def real_cache(monkeypatch):
    """For the few tests about the cache itself (a cached build, the fetched model): read-only use."""
    monkeypatch.setenv("SPECSWEEP_CACHE", str(REAL_CACHE))
    return REAL_CACHE


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, cwd: Path | None = None):
    """Run the installed ``specsweep`` console script as a user would."""
    return subprocess.run([str(SPECSWEEP), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def start_cli(log_dir: Path, *args: str, new_session: bool = False) -> tuple[subprocess.Popen, Path]:
    """Start ``specsweep`` in the background with its output in files (never an undrained pipe).
    Returns the process and the path of its stderr; read it after ``proc.wait()``. ``new_session``:
    its own process group, as a terminal's foreground job has (``os.killpg`` then signals it and
    every child still in the group, as Ctrl-C at a terminal does)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr = log_dir / "stderr.txt"
    with open(log_dir / "stdout.txt", "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen([str(SPECSWEEP), *map(str, args)], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=new_session)
    return proc, stderr


def finish(proc: subprocess.Popen, stderr: Path, timeout: float) -> str:
    proc.wait(timeout=timeout)
    return stderr.read_text(errors="replace")


# Every process this pytest process starts inherits this variable (llama-servers, the ``specsweep``
# commands between, the nodes of a local Ray cluster and their workers), so the servers of this
# session, or of this pytest-xdist worker, are told from those of another worker or of anyone else
# on the machine, orphans included. Set at import: each xdist worker imports conftest and sets its own.
SESSION_MARK = f"{os.getpid()}-{os.urandom(4).hex()}"
os.environ["SPECSWEEP_TEST_SESSION"] = SESSION_MARK
_MARK_ENTRY = f"SPECSWEEP_TEST_SESSION={SESSION_MARK}".encode()


def llama_server_pids() -> set[int]:
    """The llama-server processes this test session started, from /proc (tests check none is left
    behind; the servers of other sessions or xdist workers are none of their business)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            if not argv0.endswith(b"llama-server"):
                continue
            state = next((line for line in (entry / "status").read_text().splitlines()
                          if line.startswith("State:")), "")
            ours = _MARK_ENTRY in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if ours and "zombie" not in state:
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def engine(isolated):
    from specsweep.engine.locate import resolve_engine
    return resolve_engine()


@pytest.fixture(scope="session")
def gemma4_q8_0(tmp_path_factory) -> Path:
    """The committed Gemma-4 miniature quantized to Q8_0: a second real model beside its F16, and a
    quantized source to dequantize a reference from (as the default model is); made once per worker."""
    from specsweep.trained import trained_file
    assert REAL_BUILD is not None, "engine missing: run 'make engine' (make test does it)"
    out = tmp_path_factory.mktemp("gemma4") / "gemma4-mini-Q8_0.gguf"
    subprocess.run([str(REAL_BUILD / "bin" / "llama-quantize"), str(trained_file("gemma4-mini", "target")), str(out),
                    "Q8_0"], check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def model_path() -> Path:
    from specsweep.models import DEFAULT_MODEL_NAME
    path = REAL_CACHE / "models" / DEFAULT_MODEL_NAME
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
def second_model(model_path, tmp_path_factory) -> Path:
    """A second real model for two-model sweeps: the default model requantized to Q8_0."""
    assert REAL_BUILD is not None, "engine missing: run 'make engine' (make test does it)"
    out = tmp_path_factory.mktemp("models") / "SmolLM2-135M-Instruct.Q8_0.gguf"
    subprocess.run([str(REAL_BUILD / "bin" / "llama-quantize"), "--allow-requantize", str(model_path), str(out),
                    "Q8_0"], check=True, capture_output=True, timeout=300)
    return out
