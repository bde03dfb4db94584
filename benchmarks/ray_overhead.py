"""What the Ray executor costs per server group, against the local executor, on this machine.

The same plan both ways: the default model (SmolLM2-135M Q4_1) under N labels, drafting itself
(draft-simple) at depths 0 and 1, so 2N server groups of one request each (1 rep, 1 prompt,
8 tokens, --threads 1): groups as short as they get, so any per-group cost shows. Ray runs on a
local cluster (``ray.cluster_utils.Cluster``: a head with no CPUs and no dashboard, and one
worker node with 1 CPU, so one server slot and servers run one at a time exactly as locally;
one llama.cpp thread leaves the other core to Ray's own processes and the driver). Each executor runs
the plan at two sizes; the slope of wall time against groups is its cost per group, the
intercept its one-off cost (for Ray: connecting, starting the slot's worker process, finding
the engine there). The driver's round trip for one call to a slot is timed on its own.

    flock /tmp/specsweep-cpu.lock .venv/bin/python benchmarks/ray_overhead.py [--out benchmarks/ray-overhead.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

from specsweep.config import Drafting, Sampling, SweepConfig
from specsweep.engine.locate import resolve_engine
from specsweep.engine.options import ServerSettings
from specsweep.executors.local import LocalExecutor
from specsweep.executors.ray_cluster import RayExecutor
from specsweep.models import fetch_default_model
from specsweep.modelspec import ModelSpec
from specsweep.provenance import cpu_model
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare

SIZES = (4, 8)  # model labels: 8 and 16 groups


def config(model: Path, labels: int, db: Path) -> SweepConfig:
    models = tuple(ModelSpec(f"m{i}", model, draft_model=model) for i in range(labels))
    return SweepConfig(models=models, drafting=Drafting("draft-simple", depths=(0, 1)), prompt_limit=1,
                       sampling=Sampling(max_tokens=8, reps=1), server=ServerSettings(threads=1), db=db)


def timed_sweep(engine, model: Path, labels: int, executor, work: Path) -> tuple[float, int]:
    """Wall seconds of one whole sweep (connect to the end), and its server groups."""
    cfg = config(model, labels, work / f"{executor.name}-{labels}.db")
    prepared = prepare(cfg, engine)
    started = time.perf_counter()
    executor.connect()
    try:
        sweep = Sweep(prepared, Store(cfg.db), work / "logs", executor=executor)
        result = sweep.execute()
    finally:
        executor.close()
    assert result.run.state == "complete", result.run.state
    return time.perf_counter() - started, sweep.plan.n_servers


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    (x1, y1), (x2, y2) = points
    slope = (y2 - y1) / (x2 - x1)
    return slope, y1 - slope * x1


def round_trip_ms(address: str, engine) -> float:
    """Mean driver → slot → driver time of a call that does nothing on the node (``end`` with no server)."""
    import ray
    from specsweep.executors.node import EngineSpec, NodeSlot
    ray.init(address=address, log_to_driver=False)
    try:
        slot = ray.remote(NodeSlot).options(num_cpus=1).remote()
        ray.get(slot.setup.remote(EngineSpec.of(engine)))
        started = time.perf_counter()
        for _ in range(200):
            ray.get(slot.end.remote())
        return (time.perf_counter() - started) / 200 * 1000
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ray-overhead.md"))
    args = parser.parse_args(argv)
    from ray.cluster_utils import Cluster
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    engine = resolve_engine()
    model = fetch_default_model()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still shuts its cluster down
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    walls: dict[str, list[tuple[int, float]]] = {"local": [], "ray": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for labels in SIZES:
                for name in ("local", "ray"):
                    executor = (LocalExecutor(engine) if name == "local"
                                else RayExecutor(engine, address=cluster.address, cpus_per_server=1.0))
                    wall, groups = timed_sweep(engine, model, labels, executor, Path(tmp))
                    walls[name].append((groups, wall))
                    print(f"{name}: {groups} groups in {wall:.2f} s", flush=True)
        trip = round_trip_ms(cluster.address, engine)
    finally:
        cluster.shutdown()
    (local_slope, local_icpt), (ray_slope, ray_icpt) = fit(walls["local"]), fit(walls["ray"])
    rows = [f"| {name} | " + " | ".join(f"{w:.2f}" for _, w in walls[name]) + f" | {slope:.3f} | {icpt:.2f} |"
            for name, (slope, icpt) in (("local", (local_slope, local_icpt)), ("ray", (ray_slope, ray_icpt)))]
    groups = " | ".join(f"{g} groups, s" for g, _ in walls["local"])
    lines = [
        "# Ray executor: scheduling overhead per server group against the local executor",
        "",
        f"Command: `flock /tmp/specsweep-cpu.lock .venv/bin/python benchmarks/ray_overhead.py` · "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}",
        f"Machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} cores; engine {engine.version()} "
        f"({engine.backend}); Ray {__import__('ray').__version__}, local cluster: head (0 CPUs) + 1 worker node "
        "(1 CPU, one server slot)",
        "",
        "Plan: the default model under 4 or 8 labels × depths 0, 1 (draft-simple, drafting itself), 1 rep × "
        "1 prompt × 8 tokens, --threads 1: one request per group, so the per-group cost is as visible as it gets. "
        "Wall time is the whole sweep, from connecting to the last row.",
        "",
        f"| executor | {groups} | seconds per group (slope) | one-off seconds (intercept) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"**Ray's overhead per group: {ray_slope - local_slope:+.3f} s** (slope difference); one-off "
        f"{ray_icpt - local_icpt:+.2f} s (connect, the slot's worker process, the engine check on the node). "
        f"A group costs the driver 2 + its requests calls to its slot; one call's round trip is "
        f"{trip:.2f} ms (mean of 200).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
