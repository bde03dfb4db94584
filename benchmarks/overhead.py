"""How much of a sweep's time specsweep itself spends outside llama-server.

Runs the demo sweep (the demo's quant ladder drafted by its F16 reference, depths 0-4,
3 reps, mixed-5, 16 tokens) into a fresh database, then splits its wall time:

    server starts   spawn -> healthy -> warm-up, per server (servers.start_seconds)
    server work     Σ (prompt_ms + predicted_ms) from each response's timings
    tool overhead   everything else: planning, HTTP and JSON, /metrics scrapes, reading the
                    server log, SQLite writes, stopping servers

and reports tool overhead / (wall - server starts). Usage (after `make demo` made the models):

    .venv/bin/python benchmarks/overhead.py [--demo-dir specsweep-demo] [--out benchmarks/overhead.md]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from specsweep.demo import DemoSettings, demo_config
from specsweep.engine.locate import resolve_engine
from specsweep.provenance import cpu_model
from specsweep.quantize import build_ladder, make_reference
from specsweep.models import fetch_default_model
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", type=Path, default=Path("specsweep-demo"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/overhead.md"))
    args = parser.parse_args(argv)
    engine = resolve_engine()
    settings = DemoSettings(out_dir=args.demo_dir)
    models_dir = args.demo_dir / "models"
    reference = make_reference(engine, fetch_default_model(), models_dir)
    rungs = build_ladder(engine, reference, list(settings.types), models_dir)
    with tempfile.TemporaryDirectory() as tmp:
        config = replace(demo_config(settings, rungs, reference), db=Path(tmp) / "bench.db")
        store = Store(config.db)
        sweep = Sweep(prepare(config, engine), store, Path(tmp) / "logs")
        started = time.perf_counter()
        result = sweep.execute()
        wall = time.perf_counter() - started
        conn = sqlite3.connect(config.db)
        starts = conn.execute("SELECT SUM(start_seconds), COUNT(*) FROM servers").fetchone()
        server_ms, client_ms, n = conn.execute(
            "SELECT SUM(prompt_ms + predicted_ms), SUM(wall_ms), COUNT(*) FROM requests WHERE status = 'ok'"
        ).fetchone()
    excluding_starts = wall - starts[0]
    overhead = excluding_starts - server_ms / 1000
    http = client_ms / 1000 - server_ms / 1000
    share = overhead / excluding_starts
    lines = [
        "# Tool overhead on the demo sweep",
        "",
        f"Command: `.venv/bin/python benchmarks/overhead.py` · {time.strftime('%Y-%m-%d', time.gmtime())}",
        f"Machine: {cpu_model()}, {platform.machine()}, {__import__('os').cpu_count()} cores; "
        f"engine {engine.version()} ({engine.backend})",
        "",
        "| | seconds |",
        "|---|---|",
        f"| sweep wall time ({n} requests, {starts[1]} servers, state {result.run.state}) | {wall:.1f} |",
        f"| server starts (spawn → healthy → warm-up) | {starts[0]:.1f} |",
        f"| wall time excluding server starts | {excluding_starts:.1f} |",
        f"| server work (Σ prompt_ms + predicted_ms) | {server_ms / 1000:.1f} |",
        f"| of the overhead: HTTP round trip beyond server work (Σ wall_ms − server work) | {http:.1f} |",
        f"| **tool overhead** (excluding starts − server work) | **{overhead:.1f}** |",
        "",
        f"Tool overhead is **{100 * share:.2f}%** of the sweep's wall time excluding server starts "
        f"(target: under 3%).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if share < 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
