"""How much of a cell's rep-to-rep σ is counting noise: the acceptance table with, per cell, the σ
that binomial counting alone would give (√(p(1−p)/drafted per rep)), optionally without one prompt
category (to set aside a prompt a model was found to have been trained on).

    PYTHONPATH=src python benchmarks/rep_sigma.py RUN.db [--without math | --without mixed5-coding-intervals] [--run latest]

Why it matters: the published protocol (5 prompts × 200 tokens × 3 reps) drafts only ~400–550 tokens
per rep at depth 1, so at ~50% acceptance counting alone gives σ ≈ 2.4 pp, and the sample σ of three
reps exceeds 3 pp by chance in exp(−(3/2.4)²) ≈ 21% of cells (s²/σ² ~ χ²₂/2). At the published 31B's
88.5% the same counts give ≈ 1.4 pp. Written for benchmarks/gemma4-mini-v2-h100.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from specsweep.analysis import summarize
from specsweep.analysis.cells import model_order
from specsweep.errors import SpecsweepError
from specsweep.store import Store


def load_ok_requests(db: Path, run: str) -> list:
    try:
        store = Store(db, readonly=True)
        return store.requests(store.run(run).id, status="ok")
    except SpecsweepError as exc:
        raise SystemExit(f"Error: {exc}") from None


def counting_sigma(cell) -> float:
    """√(p(1−p)/d̄): p pooled over the cell's reps, d̄ its drafted tokens per rep."""
    p = cell.accepted_tokens / cell.drafted_tokens
    return math.sqrt(p * (1 - p) / (cell.drafted_tokens / cell.n_reps))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--without", metavar="CATEGORY|PROMPT",
                    help="leave out the prompts of one category, or one prompt by its id")
    ap.add_argument("--run", default="latest")
    args = ap.parse_args(argv)
    records = [r for r in load_ok_requests(args.db, args.run) if args.without not in (r.category, r.prompt_id)]
    if not records:
        raise SystemExit(f"Error: no ok requests left in {args.db}" + (f" without {args.without}" if args.without else ""))
    cells = {(c.key.model_label, c.key.depth): c for c in summarize(records, intervals=False) if c.acceptance}
    depths = sorted({d for _, d in cells})
    print("| Model | " + " | ".join(f"n={d}: mean ±σ (counting σ)" for d in depths) + " |")
    print("|---|" + "---|" * len(depths))
    for model in model_order(records):
        row = []
        for d in depths:
            c = cells.get((model, d))
            row.append(f"{100 * c.acceptance.mean:.1f} ±{100 * c.acceptance.sd:.1f}% ({100 * counting_sigma(c):.1f})"
                        if c else "–")
        print(f"| {model} | " + " | ".join(row) + " |")
    within = sum(c.acceptance.sd <= 0.03 for c in cells.values())
    print(f"\nσ ≤ 3 pp in {within} of {len(cells)} cells"
          + (f"; {args.without!r} left out" if args.without else ""))


if __name__ == "__main__":
    main()
