"""Find the llama.cpp tools to use, and say where they came from.

Order for each tool: an explicit flag, then ``SPECSWEEP_LLAMA_SERVER`` (and
``SPECSWEEP_LLAMA_QUANTIZE`` …), then the build ``engine install`` made, then
``PATH``. A tool not found that way is looked for beside ``llama-server``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EngineMissingError
from .build import TOOLS, current_build


def env_var(tool: str) -> str:
    return "SPECSWEEP_" + tool.upper().replace("-", "_")


@dataclass(frozen=True)
class Engine:
    """The resolved tools plus what we know of their origin (recorded with every run)."""

    server: Path
    origin: str
    tools: dict[str, Path | None] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def tool(self, name: str) -> Path:
        path = self.server if name == "llama-server" else self.tools.get(name)
        if path is None:
            raise EngineMissingError(f"{name} not found beside {self.server} or on PATH",
                                     hint=f"run 'specsweep engine install' or set {env_var(name)}")
        return path

    @property
    def backend(self) -> str:
        return self.provenance.get("backend", "unknown")

    def version(self) -> str:
        """``build_info`` as the binary prints it, e.g. ``b1-0c1e570``."""
        return engine_version(self.server)

    def spec_types(self) -> list[str]:
        return supported_spec_types(self.server)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find(tool: str, explicit: Path | None) -> tuple[Path | None, str]:
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if not _executable(explicit):
            raise EngineMissingError(f"--{tool} {explicit}: not an executable file")
        return explicit.resolve(), "flag"
    from_env = os.environ.get(env_var(tool))
    if from_env:
        path = Path(from_env).expanduser()
        if not _executable(path):
            raise EngineMissingError(f"{env_var(tool)}={from_env}: not an executable file")
        return path.resolve(), f"env {env_var(tool)}"
    build = current_build()
    if build is not None and _executable(build / "bin" / tool):
        return build / "bin" / tool, f"specsweep build {build.name}"
    on_path = shutil.which(tool)
    if on_path:
        return Path(on_path).resolve(), "PATH"
    return None, ""


def resolve_engine(explicit: dict[str, Path | None] | None = None) -> Engine:
    explicit = explicit or {}
    server, origin = _find("llama-server", explicit.get("llama-server"))
    if server is None:
        raise EngineMissingError("no llama-server found (flag, SPECSWEEP_LLAMA_SERVER, specsweep build, PATH)",
                                 hint="run 'specsweep engine install' (or 'make demo'), or pass --llama-server PATH")
    tools: dict[str, Path | None] = {}
    for tool in TOOLS[1:]:
        path, _ = _find(tool, explicit.get(tool))
        if path is None and _executable(server.parent / tool):
            path = server.parent / tool
        tools[tool] = path
    provenance: dict = {"origin": origin}
    engine_json = server.parent.parent / "engine.json"
    if engine_json.exists():
        provenance.update(json.loads(engine_json.read_text()))
    return Engine(server=server, origin=origin, tools=tools, provenance=provenance)


def _run_quiet(cmd: list[str], timeout: float = 30) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineMissingError(f"cannot run {cmd[0]}: {exc}") from None
    return out.stdout + out.stderr


@functools.lru_cache(maxsize=None)  # a subprocess; asked for by every cache key and run key
def engine_version(server: Path) -> str:
    """``b<build>-<commit>``, as ``/props`` reports ``build_info``, from ``llama-server --version``.

    Newer builds print "version: 0.5.0-dev (build 1, commit 0c1e570)", older ones "version: 1 (0c1e570)".
    """
    text = _run_quiet([str(server), "--version"])
    match = (re.search(r"build (\d+), commit ([0-9a-f]+|unknown)", text)
             or re.search(r"version:\s*(\d+)\s*\(([0-9a-f]+|unknown)\)", text))
    return f"b{match.group(1)}-{match.group(2)}" if match else "unknown"


def supported_spec_types(server: Path) -> list[str]:
    """The ``--spec-type`` values the binary itself lists in its ``--help``."""
    text = _run_quiet([str(server), "--help"])
    match = re.search(r"--spec-type\s+\[?([a-z0-9,|\-]+)\]?", text)
    if not match:
        return []
    return [t for t in re.split(r"[,|]", match.group(1)) if t and t != "none"]
