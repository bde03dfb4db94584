"""Comparing two runs: run B minus run A, cell by cell, with spreads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..analysis import Estimate, summarize
from ..store import RunRow, Store
from .blocks import DASH, Bullets, Heading, Table, _signed
from .render import blocks_to_markdown


@dataclass(frozen=True)
class CompareRow:
    """B − A for one metric of one (model, spec type, depth); spread = sqrt(sd_a²/n_a + sd_b²/n_b)."""

    metric: str  # "acceptance", "speedup" or "decode_tps"
    model: str
    spec_type: str
    depth: int
    a: Estimate | None
    b: Estimate | None
    diff: float | None
    spread: float | None
    marked: bool  # |diff| > 2 × spread


COMPARE_METRICS = (("acceptance", "pct", "Acceptance, percentage points"),
                   ("speedup", "x2", "Speedup vs depth 0"),
                   ("decode_tps", "f1", "Decode speed, tok/s"))


def compare_cells(store_a: Store, run_a: RunRow, store_b: Store, run_b: RunRow) -> list[CompareRow]:
    """Match cells by model label, spec type and depth; a cell in one run only has diff None."""
    cells_a = summarize(store_a.requests(run_a.id), intervals=False)  # intervals are not used here
    cells_b = summarize(store_b.requests(run_b.id), intervals=False)
    a = {c.key: c for c in cells_a}
    b = {c.key: c for c in cells_b}
    keys = list(dict.fromkeys([*a, *b]))
    out = []
    for metric, _, _ in COMPARE_METRICS:
        for k in keys:
            ea = getattr(a[k], metric) if k in a else None
            eb = getattr(b[k], metric) if k in b else None
            diff = spread = None
            if ea is not None and eb is not None:
                diff = eb.mean - ea.mean
                spread = math.sqrt(ea.sd ** 2 / ea.n + eb.sd ** 2 / eb.n)
            out.append(CompareRow(metric, k.model_label, k.spec_type, k.depth, ea, eb, diff, spread,
                                  marked=diff is not None and spread is not None and abs(diff) > 2 * spread))
    return out


def render_compare(store_a: Store, run_a: RunRow, store_b: Store, run_b: RunRow) -> str:
    """Markdown tables of B − A per (model, depth) for acceptance, speedup and decode speed."""
    rows = compare_cells(store_a, run_a, store_b, run_b)
    blocks: list = [Heading(1, "specsweep compare · B − A"),
                    Bullets([f"A: run {run_a.id} `{run_a.run_key[:12]}` in `{store_a.path}` ({run_a.state})",
                             f"B: run {run_b.id} `{run_b.run_key[:12]}` in `{store_b.path}` ({run_b.state})"])]
    specs = {r.spec_type for r in rows if r.depth > 0}
    show_spec = len(specs) > 1
    for metric, kind, title in COMPARE_METRICS:
        mine = [r for r in rows if r.metric == metric and (r.a or r.b)]
        if not mine:
            continue
        depths = sorted({r.depth for r in mine})
        keys = list(dict.fromkeys((r.model, r.spec_type if r.depth > 0 else None) for r in mine))
        keys = list(dict.fromkeys((m, s) for m, s in keys if s is not None or not any(
            km == m and ks is not None for km, ks in keys)))
        scale, digits, unit = {"pct": (100, 1, " pp"), "x2": (1, 2, "×"), "f1": (1, 1, "")}[kind]
        header = ["Model", *(["spec type"] if show_spec else []), *[f"n={d}" for d in depths]]
        table = []
        for model, spec in keys:
            line = [model, *([spec or "none"] if show_spec else [])]
            for d in depths:
                r = next((x for x in mine if x.model == model and x.depth == d
                          and (d == 0 or x.spec_type == spec)), None)
                if r is None or (r.a is None and r.b is None):
                    line.append(DASH)
                elif r.diff is None:
                    line.append("only in A" if r.b is None else "only in B")
                else:
                    text = f"{_signed(scale * r.diff, digits)} ±{scale * r.spread:.{digits}f}{unit}"
                    line.append(text + (" ✱" if r.marked else "") + f" (n={r.a.n}/{r.b.n})")
            table.append(line)
        blocks += [Heading(2, title),
                   Table(header, table, "B − A ± sqrt(sd_A²/n_A + sd_B²/n_B); ✱ = |difference| > 2× that spread; "
                                        "(n=A/B reps).")]
    return blocks_to_markdown(blocks)
