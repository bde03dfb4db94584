"""A specsweep run with synthetic acceptance and one seed per request: ground truth for
benchmarks/coverage.py.

`specsweep run` gives every prompt of a rep the same seed (rep r uses seed + r). llama-server
re-seeds its synthetic accept/reject generator from the request seed, so under
``--spec-synth-rates`` every prompt of a rep replays the same accept/reject sequence (design.md,
"Facts about the pinned engine") and the prompts stop being independent samples. This script
runs the sweep described by a TOML file (whose model carries ``server_args = ["--spec-synth-rates",
"…"]``) through specsweep's own Sweep, with the one change that request (rep r, prompt i) gets
seed + 1000·r + i. Everything else — servers, counters, trace log, the store — is the tool's.

    flock /tmp/specsweep-cpu.lock .venv/bin/python benchmarks/synthetic_run.py SWEEP.toml --db SYNTH.db

Resumable like any sweep (the store skips what is done).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from specsweep.config import load_toml
from specsweep.engine.locate import resolve_engine
from specsweep.errors import SpecsweepError
from specsweep.plan import Plan
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare

SEED_STRIDE = 1000  # seeds of one rep: seed + 1000·rep + prompt index (suites have far fewer prompts)


def one_seed_per_request(plan: Plan, base_seed: int, prompt_ids: list[str]) -> Plan:
    index = {p: i for i, p in enumerate(prompt_ids)}
    return Plan(tuple(replace(g, requests=tuple(replace(r, seed=base_seed + SEED_STRIDE * r.rep + index[r.prompt.id])
                                                for r in g.requests)) for g in plan.groups))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="sweep TOML with --spec-synth-rates in the model's server_args")
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = replace(load_toml(args.config), db=args.db)
        if not any("--spec-synth-rates" in m.server_args for m in config.models):
            raise SystemExit("Error: no model of the config has --spec-synth-rates in its server_args")
        prepared = prepare(config, resolve_engine())
        store = Store(config.db)
        sweep = Sweep(prepared, store, args.db.resolve().parent / (args.db.stem + "-logs"))
        sweep.plan = one_seed_per_request(sweep.plan, config.sampling.seed, [p.id for p in prepared.prompts])
        result = sweep.execute()
    except SpecsweepError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.performed} requests measured, {result.failed} failed; run state {result.run.state}")
    return 0 if result.run.state == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
