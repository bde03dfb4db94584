"""How a sweep's wall time scales with Ray workers: a simulation on group durations from a real run.

The plan is the published protocol on the Gemma-4 miniature measured on an H200
(benchmarks/runs/gemma4-mini-h200-published.db): 5 quants × depths 0-4 = 25 server groups, each
3 reps × 5 prompts × 200 tokens. A group's duration is its server's life in that run (start,
warm-up, 15 requests, stop). The simulation hands groups to W workers (one GPU each, one per
node) exactly as the Ray executor does (``specsweep.executors.placement.Placement``: a free
worker takes the next group of a model already on its node, else of a model not started yet,
else helps the model with most groups left), adding the Ray executor's per-group overhead and
its one-off start measured on CPU (benchmarks/ray-overhead.md). A second table adds a cold read
for the first server of a model on a node (a 31B GGUF is ~20 GB: about a minute from disk,
seconds from the page cache) and compares that placement with plain first-come order.

    .venv/bin/python benchmarks/ray_scaling.py [--per-group S] [--one-off S] [--cold-load S]
"""

from __future__ import annotations

import argparse
import heapq
import sqlite3
import sys
from pathlib import Path

from specsweep.executors.placement import Placement

DB = Path(__file__).with_name("runs") / "gemma4-mini-h200-published.db"
WORKERS = (1, 2, 4, 8, 16)


def groups_from_run(db: Path) -> list[tuple[str, int, float]]:
    """(model, depth, seconds) per server group, in the order the run measured them."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT model_label, depth, stopped_at - started_at FROM servers ORDER BY id").fetchall()
    reps = conn.execute("SELECT COUNT(DISTINCT rep), COUNT(DISTINCT prompt_id) FROM requests").fetchone()
    assert len(rows) == 25 and tuple(reps) == (3, 5), (len(rows), reps)
    return [(model, depth, seconds) for model, depth, seconds in rows]


class Fifo:
    """First come, first served: no node affinity (for comparison)."""

    def __init__(self, work):
        self.queue = [item for _, item in work]

    def next_for(self, node):
        return self.queue.pop(0) if self.queue else None


def simulate(groups, workers: int, per_group: float, one_off: float, cold_load: float, policy=Placement):
    """Wall seconds and cold reads when ``workers`` free nodes ask for groups as the driver hands them out."""
    placement = policy([(model, (model, seconds)) for model, _, seconds in groups])
    free = [(one_off, node) for node in range(workers)]
    seen: set[tuple[str, int]] = set()
    cold, end = 0, one_off
    while free:
        now, node = heapq.heappop(free)
        item = placement.next_for(node)
        if item is None:
            end = max(end, now)
            continue
        model, seconds = item
        penalty = cold_load if (model, node) not in seen else 0.0
        cold += (model, node) not in seen
        seen.add((model, node))
        heapq.heappush(free, (now + per_group + penalty + seconds, node))
    return end, cold


def table(groups, per_group, one_off, cold_load, policies) -> list[str]:
    serial = sum(s for *_, s in groups) + cold_load * len({m for m, *_ in groups})
    longest = max(s for *_, s in groups) + cold_load
    head = "| workers | " + " | ".join(f"{name}: wall s · speedup · cold reads" for name in policies) + \
           " | lower bound s |"
    lines = [head, "|---" * (len(policies) + 2) + "|"]
    for w in WORKERS:
        cells = []
        for policy in policies.values():
            wall, cold = simulate(groups, w, per_group, one_off, cold_load, policy)
            cells.append(f"{wall:.1f} · {serial / wall:.2f}× · {cold}")
        bound = max(serial / w, longest)
        lines.append(f"| {w} | " + " | ".join(cells) + f" | {bound:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-group", type=float, default=0.0, help="Ray overhead per group, seconds")
    parser.add_argument("--one-off", type=float, default=0.0, help="Ray connect + slot start, seconds")
    parser.add_argument("--cold-load", type=float, default=60.0, help="first read of a model on a node, seconds")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ray-scaling.md"))
    args = parser.parse_args(argv)
    groups = groups_from_run(DB)
    serial = sum(s for *_, s in groups)
    lines = [
        "# Ray executor: wall time against workers (simulation on a real run's group durations)",
        "",
        f"Command: `.venv/bin/python benchmarks/ray_scaling.py --per-group {args.per_group:g} --one-off "
        f"{args.one_off:g} --cold-load {args.cold_load:g}`",
        "",
        f"Plan: {len(groups)} server groups (5 quants × depths 0-4, each 3 reps × 5 prompts × 200 tokens) "
        f"from `{DB.relative_to(DB.parents[2])}` (H200, CUDA build). Group durations "
        f"{min(s for *_, s in groups):.1f}-{max(s for *_, s in groups):.1f} s, {serial:.1f} s in all run one "
        "after another. " + (f"Ray overhead added: {args.per_group:g} s per group and {args.one_off:g} s once "
                             "(measured on CPU: benchmarks/ray-overhead.md). " if args.per_group or args.one_off else
                             "No Ray overhead added (benchmarks/ray_overhead.py measures it: pass it as --per-group "
                             "and --one-off). ") + "One worker = one node with one GPU. "
        "Speedup is against the serial sum; the lower bound is max(serial / workers, longest group).",
        "",
        "## As measured (the miniature loads in 0.5 s: no cold read)",
        "",
        *table(groups, args.per_group, args.one_off, 0.0, {"Ray executor": Placement}),
        "",
        f"## With a {args.cold_load:g} s cold read for a model's first server on a node (a 31B-sized file)",
        "",
        *table(groups, args.per_group, args.one_off, args.cold_load,
               {"node affinity (Ray executor)": Placement, "first come (no affinity)": Fifo}),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
