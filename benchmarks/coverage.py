"""Coverage of every interval specsweep prints: how often a nominal 95% interval contains the truth,
and how often "significant" fires when a model is compared with itself.

Sources of replicates (specsweep.analysis.coverage has the machinery):

    --real LABEL=DB          a (large) run taken as the population: each replicate draws P of its
                             prompts (with replacement) and R of its reps; truth = the pooled value
                             over the whole run. Statistics: acceptance, speedup (where depth 0 was
                             run), position 0's p, the paired difference of neighbouring models at
                             one depth (of adjacent depths when the run has one model), and a cell
                             against itself on disjoint reps (truth 0: the false-positive rate).
    --synthetic LABEL=DB=RATES  a run made with llama-server --spec-synth-rates RATES: subsampled the
                             same way, truth = what the rates imply for its drafts.
    --simulate LABEL=DB      a hierarchical model prompt -> rep -> step fitted to the run (per depth,
                             pooled over its models), simulated at its fitted heterogeneity (×1), with
                             none (×0, as synthetic rates), at twice it (×2) and with 15% of prompts a
                             far easier kind (see SCENARIOS).

Methods: prompt-bootstrap (the tool's interval before), prompt-bca, prompt-t-simple, prompt-t (the
interval the tool prints now), rep-t, and for position 0 the per-position table's binomial interval.

    .venv/bin/python benchmarks/coverage.py --real cpu=RUN.db --simulate cpu=RUN.db \\
        --synthetic synth=SYNTH.db=0.8,0.6,0.4 --out benchmarks/coverage.md --json benchmarks/coverage.json

Pure computation on stored runs (no server): the databases are opened read-only from a copy.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from specsweep.analysis import by_drafting, model_order
from specsweep.analysis.coverage import (BINOMIAL, METHOD_NAMES, Coverage, fit_hierarchy, grids_from_records,
                                         measure, pooled_hierarchy, subsample_replicates, synthetic_truth)
from specsweep.analysis.intervals import (PROMPT_BCA, PROMPT_BOOTSTRAP, PROMPT_T, PROMPT_T_SIMPLE, REP_T, REPORTED,
                                          TWO_WAY_T)
from specsweep.errors import SpecsweepError
from specsweep.provenance import cpu_model
from specsweep.store import Store

METHODS = (PROMPT_BOOTSTRAP, PROMPT_BCA, PROMPT_T_SIMPLE, PROMPT_T, TWO_WAY_T, REP_T)
BEFORE = PROMPT_BOOTSTRAP
PUBLISHED = (5, 3)
SIM_SHAPES = "3x3,4x3,5x3,5x10,10x3,20x3"
# A run is a finite population: P of its N prompts vary by (1 − P/N) of what P prompts of an endless
# supply would (coverage reads high), so subsamples stay at P ≤ N/4 for a 40-prompt run.
SUBSAMPLE_SHAPES = "3x3,4x3,5x3,10x3"
REAL_STATISTICS = ("acceptance", "speedup", "difference", "self-difference", "position 0")
SIM_STATISTICS = ("acceptance", "self-difference", "position 0")
# (label, heterogeneity scale, easy share, easy shift): none (as synthetic rates), as fitted, twice
# it, and as fitted with 15% of prompts a kind the drafter finds far easier (+2.1 on the logit
# scale: ~75% → ~96%, the code-versus-stories gap reported for real MTP heads)
SCENARIOS = (("×0", 0.0, 0.0, 0.0), ("×1", 1.0, 0.0, 0.0), ("×2", 2.0, 0.0, 0.0), ("×1 + 15% easy", 1.0, 0.15, 2.1))


def load(db: Path, run: str) -> tuple[list, object]:
    """The run's ok requests, from a copy of the database (a WAL database may need to write)."""
    if not db.is_file():
        raise SystemExit(f"Error: no database at {db}")
    work = Path(tempfile.mkdtemp(prefix="coverage-"))
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", work / f"run.db{suffix}")
    store = Store(work / "run.db", readonly=True)
    try:
        row = store.run(run)
    except SpecsweepError:
        raise SystemExit(f"Error: no run {run!r} in {db} ('specsweep runs --db {db}' lists them)") from None
    return by_drafting(store.requests(row.id, status="ok")), row


def pairs(grids, records) -> list[tuple]:
    """(a, b) cells compared by a paired difference: neighbouring models at one depth, or, in a
    run of one model, adjacent depths of that model (the same machinery, a real difference)."""
    order = model_order(records)
    by_key = {(g.model, g.spec_type, g.depth): g for g in grids}
    out = []
    for (model, spec, depth), g in by_key.items():
        later = [m for m in order[order.index(model) + 1:] if (m, spec, depth) in by_key] if model in order else []
        if later:
            out.append((g, by_key[(later[0], spec, depth)]))
    if not out:
        depths = sorted({g.depth for g in grids})
        out = [(by_key[(m, s, d)], by_key[(m, s, e)]) for (m, s, d) in by_key for e in depths if e > d
               and (m, s, e) in by_key and e == min(x for x in depths if x > d)]
    return out


def tally(results: dict, key: tuple, rows: list[Coverage]) -> None:
    for row in rows:
        got = results[key + (row.method,)]
        got["replicates"] += row.replicates
        got["covered"] += row.covered
        got["undefined"] += row.undefined
        got["half_width_sum"] += (row.mean_half_width or 0.0) * row.replicates


def methods_for(statistic: str) -> tuple[str, ...]:
    return METHODS + ((BINOMIAL,) if statistic == "position 0" else ())


def subsample_task(key, grid, other, shape, count, seed, statistic, truth):
    got = subsample_replicates(grid, *shape, count, seed, statistic, other=other, truth=truth)
    return key, [] if got is None else measure(*got, methods_for(statistic), seed=seed)


def simulation_task(key, model, shape, count, seed, statistic):
    return key, measure(*model.replicates(*shape, count, seed, statistic), methods_for(statistic), seed=seed)


def subsample_tasks(label, grids, records, shapes, count, seed, rates=None, statistics=REAL_STATISTICS):
    neighbours = {id(a): b for a, b in pairs(grids, records)}
    for grid in grids:
        truth = synthetic_truth([r for r in records if (r.model_label, r.spec_type, r.depth)
                                 == (grid.model, grid.spec_type, grid.depth)], rates) if rates else None
        for statistic in statistics:
            for shape in shapes:
                yield subsample_task, ((label, statistic, shape), grid, neighbours.get(id(grid)), shape, count, seed,
                                       statistic, rates[0] if rates and statistic == "position 0" else truth)


def simulation_tasks(label, grids, shapes, count, seed, fits):
    for depth in sorted({g.depth for g in grids}):
        cells = [fit_hierarchy(g) for g in grids if g.depth == depth]
        for name, scale, share, shift in SCENARIOS:
            model = replace(pooled_hierarchy(cells, scale), easy_share=share, easy_shift=shift)
            fits.append({"source": label, "depth": depth, "scenario": name, "mu": model.mu,
                         "sd_prompt": model.sd_prompt, "sd_rep": model.sd_rep, "easy_share": share,
                         "easy_shift": shift, "truth": model.truth(), "cells": len(cells)})
            for statistic in SIM_STATISTICS:
                for shape in shapes:
                    yield simulation_task, ((f"{label} sim {name}", statistic, shape), model, shape, count, seed,
                                            statistic)


def run(tasks: list, jobs: int, results: dict) -> None:
    """Every task (each a function and its arguments) on ``jobs`` processes; tallied in task order."""
    if jobs <= 1:
        outcomes = [function(*args) for function, args in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            outcomes = [f.result() for f in [pool.submit(function, *args) for function, args in tasks]]
    for key, rows in outcomes:
        tally(results, key, rows)


def figure(got: dict, statistic: str) -> str:
    """'94.1% ±4.2' = coverage and mean half-width in points; for a self-difference the share
    of replicates marked significant (the false-positive rate, nominal 5%)."""
    if not got or not got["replicates"]:
        return "–"
    rate = got["covered"] / got["replicates"]
    half = got["half_width_sum"] / got["replicates"]
    if statistic == "self-difference":
        return f"{100 * (1 - rate):.1f}% ±{100 * half:.1f}"
    return f"{100 * rate:.1f}% ±" + (f"{half:.2f}×" if statistic == "speedup" else f"{100 * half:.1f}")


def markdown(results: dict, fits: list, args, seconds: float) -> str:
    sources = list(dict.fromkeys(k[0] for k in results))
    statistics = list(dict.fromkeys(k[1] for k in results))
    shapes = sorted({k[2] for k in results}, key=lambda s: (s[0], s[1]))
    methods = list(METHODS) + [BINOMIAL]
    head = ["source", "statistic", "shape", *methods, "replicates"]
    lines = ["# Coverage of specsweep's intervals", "",
             f"Generated by `benchmarks/coverage.py` in {seconds / 60:.1f} min on {cpu_model()} "
             f"({platform.machine()}, Python {platform.python_version()}); seed {args.seed}.", "",
             "```sh", ".venv/bin/python benchmarks/coverage.py " + " ".join(sys.argv[1:]), "```", "",
             "Each cell: empirical coverage of the nominal 95% interval, ± its mean half-width (percentage "
             "points; × for speedup). **self-difference** rows give instead the share of replicates marked "
             "significant when a cell is compared with itself on other reps (nominal 5%). Columns: "
             + "; ".join(f"`{m}` = {METHOD_NAMES[m]}" + (" (**printed now**)" if m == REPORTED else "")
                         + (" (printed before)" if m == BEFORE else "") for m in methods) + ".", ""]
    for title, wanted in ((f"Published shape ({PUBLISHED[0]} prompts × {PUBLISHED[1]} reps)", [PUBLISHED]),
                          ("Every shape (P prompts × R reps)", shapes)):
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for source in sources:
            for statistic in statistics:
                for shape in wanted:
                    row = {m: results.get((source, statistic, shape, m)) for m in methods}
                    if not any(row.values()):
                        continue
                    n = max(g["replicates"] + g["undefined"] for g in row.values() if g)
                    lines.append(f"| {source} | {statistic} | {shape[0]}×{shape[1]} | "
                                 + " | ".join(figure(row[m], statistic) for m in methods) + f" | {n} |")
        lines.append("")
    if fits:
        lines += ["## Simulated hierarchies", "",
                  "logit α = μ + N(0, σ_prompt²) + N(0, σ_rep²) (+ a shift for an easy share of prompts); steps "
                  "accept min(G, n), P(G ≥ i) = α^i; fitted by moments to each depth's cells (×1), then without "
                  "heterogeneity (×0), at twice it (×2), and with 15% of prompts far easier.", "",
                  "| source | depth | scenario | μ | σ_prompt | σ_rep | easy share, shift | true acceptance | cells |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {f['source']} | {f['depth']} | {f['scenario']} | {f['mu']:.3f} | {f['sd_prompt']:.3f} | "
                  f"{f['sd_rep']:.3f} | {f['easy_share']:g}, {f['easy_shift']:+g} | {100 * f['truth']:.1f}% | "
                  f"{f['cells']} |" for f in fits]
        lines.append("")
    return "\n".join(lines)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        shapes = [tuple(int(x) for x in s.lower().split("x")) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"Error: shapes {text!r}: expected e.g. 5x3,10x3") from None
    if any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise SystemExit(f"Error: shapes {text!r}: expected e.g. 5x3,10x3")
    return shapes


def labelled(text: str, parts: int) -> list[str]:
    got = text.split("=", parts - 1)
    if len(got) != parts or not all(got):
        raise SystemExit(f"Error: expected {'=' .join(['LABEL', 'DB', 'RATES'][:parts])}, got {text!r}")
    return got


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="append", default=[], metavar="LABEL=DB")
    parser.add_argument("--synthetic", action="append", default=[], metavar="LABEL=DB=RATES")
    parser.add_argument("--simulate", action="append", default=[], metavar="LABEL=DB")
    parser.add_argument("--run", default="latest", help="run id or name in each database (default latest)")
    parser.add_argument("--shapes", default=SIM_SHAPES, help=f"P×R shapes simulated (default {SIM_SHAPES})")
    parser.add_argument("--subsample-shapes", default=SUBSAMPLE_SHAPES,
                        help=f"P×R shapes drawn from --real and --synthetic runs (default {SUBSAMPLE_SHAPES})")
    parser.add_argument("--replicates", type=int, default=1000, help="replicates per cell and shape from a run")
    parser.add_argument("--sim-replicates", type=int, default=2000, help="replicates per depth and shape simulated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="processes (the figures do not depend on it)")
    parser.add_argument("--out", type=Path, help="Markdown table (default: print it)")
    parser.add_argument("--json", type=Path, help="every count, for later tables")
    args = parser.parse_args(argv)
    shapes, subsample_shapes = parse_shapes(args.shapes), parse_shapes(args.subsample_shapes)
    if not (args.real or args.synthetic or args.simulate):
        raise SystemExit("Error: give at least one --real, --synthetic or --simulate database")
    started = time.monotonic()
    results: dict = defaultdict(lambda: {"replicates": 0, "covered": 0, "undefined": 0, "half_width_sum": 0.0})
    fits: list = []
    tasks: list = []
    try:
        for text in args.synthetic:
            label, db, rates = labelled(text, 3)
            records, _ = load(Path(db), args.run)
            tasks += subsample_tasks(label, grids_from_records(records), records, subsample_shapes, args.replicates,
                                     args.seed, rates=[float(x) for x in rates.split(",")],
                                     statistics=("acceptance", "self-difference", "position 0"))
        for text in args.real:
            label, db = labelled(text, 2)
            records, _ = load(Path(db), args.run)
            tasks += subsample_tasks(label, grids_from_records(records), records, subsample_shapes, args.replicates,
                                     args.seed)
        for text in args.simulate:
            label, db = labelled(text, 2)
            records, _ = load(Path(db), args.run)
            tasks += simulation_tasks(label, grids_from_records(records), shapes, args.sim_replicates, args.seed, fits)
    except (OSError, ValueError, SpecsweepError) as exc:
        raise SystemExit(f"Error: {exc}") from None
    run(tasks, args.jobs, results)
    text = markdown(results, fits, args, time.monotonic() - started)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": [dict(zip(("source", "statistic", "shape", "method"), k),
                                                          **v) for k, v in results.items()],
                                         "fits": fits}, indent=1, default=list) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
