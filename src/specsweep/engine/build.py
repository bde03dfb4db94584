"""Build llama-server and friends from a source tree into the user cache.

A build lives in ``<cache>/engines/<key>/`` where the key hashes the source id,
the backend and the CMake flags, so a second ``engine install`` with the same
inputs returns at once. ``engine.json`` beside the binaries records provenance;
``<cache>/engines/current.json`` names the build that ``locate`` uses by default.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_root
from ..errors import EngineError, UsageError
from .source import SourceTree

TOOLS = ("llama-server", "llama-quantize", "llama-imatrix", "llama-perplexity")
COMMON_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries that can be copied out of the build dir
)
NINJA_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\]")


@dataclass(frozen=True)
class BuildRequest:
    backend: str  # "cpu" or "cuda"
    cuda_arch: str | None = None
    extra_flags: tuple[str, ...] = ()

    def cmake_flags(self) -> list[str]:
        flags = list(COMMON_FLAGS)
        if self.backend == "cuda":
            flags += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={self.cuda_arch}"]
        return flags + list(self.extra_flags)


def detect_cuda_arch() -> str:
    """Compute capability of the first GPU as CMake wants it ("90" for an H100)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is None or out.returncode != 0 or not out.stdout.strip():
        raise UsageError("--cuda: no GPU found with nvidia-smi; give the architecture with --cuda-arch (e.g. 90)")
    return out.stdout.strip().splitlines()[0].strip().replace(".", "")


def build_key(tree: SourceTree, request: BuildRequest) -> str:
    flags_hash = hashlib.sha256("\n".join(request.cmake_flags()).encode()).hexdigest()[:10]
    return f"{tree.info.source_id[:12]}-{request.backend}-{flags_hash}"


def engines_dir() -> Path:
    return cache_root() / "engines"


def _set_current(build_dir: Path) -> None:
    pointer = engines_dir() / "current.json"
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps({"build": build_dir.name}))
    tmp.replace(pointer)


def current_build() -> Path | None:
    """The build directory ``engine install`` made last, if it is complete."""
    pointer = engines_dir() / "current.json"
    try:
        name = json.loads(pointer.read_text())["build"]
    except (OSError, ValueError, KeyError):
        return None
    candidate = engines_dir() / name
    return candidate if (candidate / "engine.json").exists() else None


def _run_logged(cmd: list[str], log, on_line) -> int:
    """Run a build step with its output appended to the log file, line by line."""
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:  # drained to the end, so the child never blocks on a full pipe
        log.write(line)
        log.flush()  # the log is what a user reads when a build fails or seems stuck
        on_line(line)
    return proc.wait()


def cached_build(tree: SourceTree, request: BuildRequest) -> Path | None:
    """The finished build for these inputs, if there is one (made current)."""
    final = engines_dir() / build_key(tree, request)
    if (final / "engine.json").exists():
        _set_current(final)
        return final
    return None


def install(tree: SourceTree, request: BuildRequest, jobs: int | None = None,
            progress=None) -> Path:
    """Build (or find cached) binaries; returns the build directory holding ``bin/`` and ``engine.json``.

    ``progress(done, total, message)`` is called as the build advances.
    """
    key = build_key(tree, request)
    final = engines_dir() / key
    engines_dir().mkdir(parents=True, exist_ok=True)
    if cached_build(tree, request):
        return final
    if shutil.which("cmake") is None:
        raise EngineError("cmake is not installed; it is needed to build llama.cpp",
                          hint="install cmake (and ninja for faster builds), or point "
                               "--llama-server at an existing build")
    lock_path = engines_dir() / f"{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second install of the same key waits, then finds it built
        if (final / "engine.json").exists():
            _set_current(final)
            return final
        work = cache_root() / "build" / key
        log_path = engines_dir() / f"{key}.build.log"
        jobs = jobs or os.cpu_count() or 2
        notify = progress or (lambda done, total, msg: None)
        configure = ["cmake", "-S", str(tree.root), "-B", str(work), *request.cmake_flags()]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        started = time.time()
        with open(log_path, "w") as log:
            notify(0, 1, "configuring")
            if _run_logged(configure, log, lambda line: None) != 0:
                raise EngineError(f"cmake configure failed; see {log_path}")

            def on_line(line: str) -> None:
                match = NINJA_PROGRESS.match(line) or re.match(r"^\[\s*(\d+)%\]", line)
                if match and match.lastindex == 2:
                    notify(int(match.group(1)), int(match.group(2)), "compiling")
                elif match:
                    notify(int(match.group(1)), 100, "compiling")

            build_cmd = ["cmake", "--build", str(work), "--config", "Release", "-j", str(jobs),
                         "--target", *TOOLS]
            if _run_logged(build_cmd, log, on_line) != 0:
                raise EngineError(f"engine build failed; see {log_path}")
        staging = final.with_name(final.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        for tool in TOOLS:
            built = next((p for p in (work / "bin" / tool, work / "bin" / "Release" / tool) if p.exists()), None)
            if built is None:
                raise EngineError(f"build finished but {tool} is missing; see {log_path}")
            shutil.copy2(built, staging / "bin" / tool)
        (staging / "engine.json").write_text(json.dumps({
            "key": key,
            "source": tree.info.to_json(),
            "backend": request.backend,
            "cuda_arch": request.cuda_arch,
            "cmake_flags": request.cmake_flags(),
            "build_seconds": round(time.time() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2))
        shutil.copy2(log_path, staging / "build.log")
        shutil.rmtree(final, ignore_errors=True)
        staging.replace(final)
        shutil.rmtree(work, ignore_errors=True)
        _set_current(final)
        return final
