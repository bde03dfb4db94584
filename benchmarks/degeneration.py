"""Degenerate generations on real runs: the distributions the thresholds come from, and how much
acceptance moves on the demo ladder when degenerate requests are left out.

Two kinds of run, each resumable (its database lives in --work):

    distributions  the default model (SmolLM2-135M Q4_1) without speculation on mixed-40 at
                   temperature 0 and 200 tokens, where a tiny model loops often: what clean prose,
                   code and loops look like to each measure of ``specsweep.degeneration``
    ladder         the demo's quant ladder (Q8_0, Q4_K_M, Q2_K_S of the F16 reference) drafted by
                   that reference (draft-simple) at depth 2, mixed-5, temperature 0.3 (see
                   LADDER_SAMPLING for the reps and tokens this machine allowed)

then writes the Markdown (--out): percentiles of each measure per run and category, and per
quant and depth the share of degenerate requests and acceptance with and without them.
Usage (after `make setup`; the engine and the default model are fetched as in the demo):

    .venv/bin/python benchmarks/degeneration.py --work /tmp/degen-bench [--only ladder|distributions]
        [--out benchmarks/degeneration.md] [--extra LABEL=DB ...]

``--extra`` adds the request measures of other specsweep databases to the distributions table
(for example a sweep of another target).
"""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from specsweep.analysis import summarize
from specsweep.config import Drafting, ModelSpec, Sampling, SweepConfig, check_config
from specsweep.degeneration import THRESHOLDS
from specsweep.demo import DemoSettings, demo_config
from specsweep.engine.locate import resolve_engine
from specsweep.engine.options import ServerSettings
from specsweep.models import fetch_default_model
from specsweep.provenance import cpu_model
from specsweep.quantize import build_ladder, make_reference
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare

DISTRIBUTION_RUNS = (  # (name, prompts, prompt limit, temperature, reps, max_tokens)
    ("mixed40-t0.0", "mixed-40", 40, 0.0, 1, 200),
)
# The published protocol (temperature 0.3, mixed-5) at one depth, 1 rep and 96 tokens: the shared
# 2-core machine decoded at 2-10 tok/s while this ran, so the full 0-4 × 3-rep × 200-token ladder did not fit.
LADDER_SAMPLING = Sampling(temperature=0.3, max_tokens=96, reps=1)
LADDER_DEPTHS = (2,)
LADDER_NAME = "ladder"


def _sweep(engine, config: SweepConfig, work: Path) -> None:
    store = Store(config.db)
    Sweep(prepare(config, engine), store, work / "logs").execute()
    store.close()


def run_distributions(engine, work: Path) -> None:
    model = fetch_default_model()
    for name, prompts, limit, temperature, reps, max_tokens in DISTRIBUTION_RUNS:
        print(f"distributions: {name}", flush=True)
        config = check_config(SweepConfig(
            models=(ModelSpec("SmolLM2-135M-Q4_1", model),), drafting=Drafting(spec_type="draft-simple", depths=(0,)),
            prompts=prompts, prompt_limit=limit, sampling=Sampling(temperature=temperature, max_tokens=max_tokens, reps=reps),
            server=ServerSettings(ctx_size=2048), db=work / "distributions.db", name=name))
        _sweep(engine, config, work)


def run_ladder(engine, work: Path) -> None:
    settings = DemoSettings(out_dir=work / "demo")
    models_dir = settings.out_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    reference = make_reference(engine, fetch_default_model(), models_dir)
    rungs = build_ladder(engine, reference, list(settings.types), models_dir)
    print("ladder: sweep", flush=True)
    config = replace(demo_config(settings, rungs, reference), sampling=LADDER_SAMPLING, db=work / "ladder.db",
                     name=LADDER_NAME, server=ServerSettings(ctx_size=1024),
                     drafting=Drafting(spec_type="draft-simple", depths=LADDER_DEPTHS))
    _sweep(engine, check_config(config), work)


def _ok(store: Store, run_id: int):
    return [r for r in store.requests(run_id, status="ok")]


MEASURES = (("degen_repeat_share", "4-gram repeat share", "{:.2f}"),
            ("degen_whitespace_share", "whitespace-only token share", "{:.2f}"),
            ("degen_tail_loop", "loop at the end (tokens)", "{:.0f}"),
            ("degen_longest_repeat", "longest repeated span (tokens)", "{:.0f}"))
QUANTILES = (0.5, 0.9, 0.95, 1.0)


def distribution_lines(sources: list[tuple[str, list]]) -> list[str]:
    lines = []
    for field, title, fmt in MEASURES:
        lines += [f"### {title}", "", "| run | category | n | " + " | ".join(
            "max" if q == 1.0 else f"p{int(q * 100)}" for q in QUANTILES) + " | ≥ threshold |", "|---|---|---|"
            + "---|" * (len(QUANTILES) + 1)]
        threshold = {"degen_repeat_share": THRESHOLDS.repeat_share, "degen_whitespace_share": THRESHOLDS.whitespace_share,
                     "degen_tail_loop": THRESHOLDS.tail_loop}.get(field)
        for label, records in sources:
            by_cat: dict[str, list] = {}
            for r in records:
                if getattr(r, field) is not None:
                    by_cat.setdefault(r.category, []).append(r)
            for cat in sorted(by_cat):
                recs = by_cat[cat]
                values = np.array([getattr(r, field) for r in recs], dtype=float)
                qs = " | ".join(fmt.format(np.quantile(values, q)) for q in QUANTILES)
                if threshold is None:
                    over = "–"
                elif field == "degen_tail_loop":
                    over = str(sum(1 for r in recs if r.finish_reason == "length" and r.degen_tail_loop >= threshold))
                else:
                    over = str(int((values >= threshold).sum()))
                lines.append(f"| {label} | {cat} | {len(recs)} | {qs} | {over} |")
        lines.append("")
    return lines


def _pct(e) -> str:
    return "–" if e is None else f"{100 * e.mean:.1f} ±{100 * e.sd:.1f}% (n={e.n})"


def ladder_lines(store: Store) -> list[str]:
    run = store.run(LADDER_NAME)
    records = _ok(store, run.id)
    clean = [r for r in records if r.degenerate != 1]
    all_cells = {(c.key.model_label, c.key.depth): c for c in summarize(records)}
    clean_cells = {(c.key.model_label, c.key.depth): c for c in summarize(clean)}
    lines = ["| quant | depth | degenerate requests | acceptance, all requests | acceptance without degenerate | "
             "moves by |", "|---|---|---|---|---|---|"]
    for (model, depth), cell in all_cells.items():
        n_deg = sum(1 for r in records if r.model_label == model and r.depth == depth and r.degenerate == 1)
        n_all = cell.n_requests
        share = f"{n_deg} / {n_all} ({100 * n_deg / n_all:.0f}%)" if n_all else "–"
        other = clean_cells.get((model, depth))
        moved = ("–" if depth == 0 or cell.acceptance is None or other is None or other.acceptance is None
                 else f"{100 * (other.acceptance.mean - cell.acceptance.mean):+.1f} pp")
        lines.append(f"| {model} | {depth} | {share} | {_pct(cell.acceptance)} | "
                     f"{_pct(other.acceptance) if other else '–'} | {moved} |")
    return lines


def write_markdown(work: Path, out: Path, extra: list[tuple[str, Path]]) -> None:
    sources = []
    if (work / "distributions.db").exists():
        store = Store(work / "distributions.db", readonly=True)
        sources += [(f"SmolLM2 Q4_1 {run.name}", _ok(store, run.id)) for run in store.runs()]
    if (work / "ladder.db").exists():
        ladder = Store(work / "ladder.db", readonly=True)
        sources.append(("demo ladder (3 quants, depth 2)", _ok(ladder, ladder.run(LADDER_NAME).id)))
    for label, db in extra:
        store = Store(db, readonly=True)
        sources += [(f"{label} {run.name or run.id}", _ok(store, run.id)) for run in store.runs()]
    lines = ["# Degenerate generations: measured distributions and the demo ladder", "",
             f"Machine: {cpu_model()} ({platform.machine()}), shared 2-core CPU, pinned llama.cpp CPU engine.",
             f"Command: `.venv/bin/python benchmarks/degeneration.py --work {work}`", "",
             f"Thresholds in force: {THRESHOLDS.as_text()}.", "", "## Distributions per request", ""]
    lines += distribution_lines(sources)
    if (work / "ladder.db").exists():
        lines += ["## Demo ladder: acceptance with and without degenerate requests", ""]
        lines += ladder_lines(Store(work / "ladder.db", readonly=True))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--only", choices=("ladder", "distributions", "none"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/degeneration.md"))
    parser.add_argument("--extra", action="append", default=[], metavar="LABEL=DB")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    engine = resolve_engine()
    if args.only in (None, "distributions"):
        run_distributions(engine, args.work)
    if args.only in (None, "ladder"):
        run_ladder(engine, args.work)
    extra = [(e.partition("=")[0], Path(e.partition("=")[2])) for e in args.extra]
    write_markdown(args.work, args.out, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
