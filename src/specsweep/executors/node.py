"""What runs on a cluster node: the run's engine found (or built) there, and one server slot.

The driver's engine decides the run (its version and build are in the run key), so a node must
run the same build: the driver's binary if the node sees the same path (a shared filesystem,
or the same machine), else the node's own specsweep build with the same key (source hash,
backend, CMake flags), else that build made there from the pinned llama.cpp source. Anything
else is one clear error naming the node. A ``NodeSlot`` becomes a Ray actor in ``ray_cluster``;
Ray itself is imported only inside it, where it runs.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from .. import __version__
from ..cache import cache_root
from ..engine.build import BuildRequest, build_key, engines_dir, install
from ..engine.locate import engine_version
from ..errors import EngineMissingError, ModelError
from ..plan import PlannedRequest
from ..provenance import cpu_model, gpus
from .worker import GroupTask, ServerWorker


@dataclass(frozen=True)
class EngineSpec:
    """The driver's engine as a node needs to find it again."""

    server: Path
    version: str  # llama-server --version, e.g. b1-0c1e570
    build: dict  # the build's engine.json (key, source, backend, cuda_arch, cmake_flags); {} if not ours

    @classmethod
    def of(cls, engine) -> "EngineSpec":
        build = {k: engine.provenance.get(k) for k in ("key", "source", "backend", "cuda_arch", "cmake_flags")
                 if engine.provenance.get(k) is not None}
        return cls(Path(engine.server), engine.version(), build)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _build_key_of(server: Path) -> str | None:
    try:
        return json.loads((server.parent.parent / "engine.json").read_text()).get("key")
    except (OSError, ValueError):
        return None


def find_engine(spec: EngineSpec) -> tuple[Path, str]:
    """This node's llama-server for the run, and how it was found."""
    host = socket.gethostname()
    key = spec.build.get("key")
    if _executable(spec.server) and (key is None or _build_key_of(spec.server) == key):
        found = (spec.server, "the driver's path")
    elif key and _executable(engines_dir() / key / "bin" / "llama-server"):
        found = (engines_dir() / key / "bin" / "llama-server", "this node's build cache")
    elif key and (spec.build.get("source") or {}).get("origin") == "pypi-sdist":
        found = (_build_pinned(spec), "built on this node")
    else:
        raise EngineMissingError(f"node {host}: no llama-server {spec.version} at {spec.server} and no specsweep "
                                 f"build {key or '(the driver uses an engine specsweep did not build)'}",
                                 hint="put the engine on a path every node sees, or run the same 'specsweep engine "
                                      "install' on every node")
    version = engine_version(found[0])
    if version != spec.version:
        raise EngineMissingError(f"node {host}: {found[0]} is llama-server {version}, the run uses {spec.version}")
    return found


def _build_pinned(spec: EngineSpec) -> Path:
    """Build the driver's engine from the pinned sdist (fetched by pip) under the same cache key."""
    from ..engine.source import resolve_source
    tree = resolve_source(None)
    flags = list(spec.build.get("cmake_flags") or [])
    base = BuildRequest(spec.build.get("backend", "cpu"), spec.build.get("cuda_arch"))
    request = BuildRequest(base.backend, base.cuda_arch, tuple(flags[len(base.cmake_flags()):]))
    if build_key(tree, request) != spec.build["key"]:  # the key hashes the source and every flag
        raise EngineMissingError(f"node {socket.gethostname()}: cannot rebuild engine {spec.build['key']} here "
                                 f"(its flags differ from what 'engine install' makes)")
    return install(tree, request) / "bin" / "llama-server"


def check_model_files(sizes: dict[str, int]) -> None:
    """Every node reads the models from the same path: the file must be there, and the same size."""
    for path, size in sizes.items():
        try:
            here = Path(path).stat().st_size
        except OSError:
            raise ModelError(f"node {socket.gethostname()}: no model file {path} there",
                             hint="put the models on a path every node sees (NFS, a shared disk) "
                                  "or copy them to the same path on every node") from None
        if here != size:
            raise ModelError(f"node {socket.gethostname()}: {path} is {here} bytes there, {size} on the driver")


class NodeSlot:
    """Room for one llama-server on one node (a Ray actor holding its CPUs and GPUs)."""

    def __init__(self):
        self.worker: ServerWorker | None = None
        self.info: dict = {}

    def setup(self, spec: EngineSpec) -> dict:
        """Find or build the engine here; returns what the run's provenance records about this node."""
        import ray  # this runs inside a Ray actor
        context = ray.get_runtime_context()
        server, found = find_engine(spec)
        host = socket.gethostname()
        self.worker = ServerWorker(server, log_tag=f"{host}-{os.getpid()}")
        self.info = {"node_id": context.get_node_id(), "host": host, "pid": os.getpid(), "cpu": cpu_model(),
                     "cpu_count": os.cpu_count(), "gpus": gpus(),
                     "gpu_ids": context.get_accelerator_ids().get("GPU", []),
                     "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                     "engine": {"server": str(server), "found": found, "version": engine_version(server),
                                "build": _build_key_of(server)},
                     "specsweep": __version__}
        return self.info

    def begin(self, task: GroupTask) -> list:
        check_model_files(task.file_sizes)
        try:  # the driver's logs folder when this node sees it (a shared filesystem), else our cache
            task.logs_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            task = replace(task, logs_dir=cache_root() / "logs" / task.logs_dir.name)
        return self.worker.begin(task)

    def measure(self, request: PlannedRequest, attempt: int) -> list:
        return self.worker.measure(request, attempt)

    def start_parallel(self, requests: list[tuple[PlannedRequest, int]]) -> list:
        return self.worker.start_parallel(requests)

    def collect(self) -> list:
        return self.worker.collect()

    def replay(self, row_id: int, record, messages) -> list:
        return self.worker.replay(row_id, record, messages)

    def end(self, reason: str = "done") -> list:
        return self.worker.end(reason)
