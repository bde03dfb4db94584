"""Document blocks for runs with several drafting entries: "Drafting methods" (ranking per target,
per-position curves side by side, paired differences) and "Target quant × drafter" (which of the
two moves acceptance). A run with one entry has neither section."""

from __future__ import annotations

from collections import defaultdict

from ..analysis import Spread
from .blocks import DASH, Heading, Image, Para, Table, _pm, _signed
from .model import Report
from .uncertainty import MARK_NOTE, POSITION_SE_NOTE, position_cell, pp_interval, significance

MAX_POSITIONS = 8  # n-gram drafts can be 48 long: the first positions carry the comparison


def _pp(value: float | None) -> str:
    return DASH if value is None else f"{_signed(100 * value, 1)} pp"


def _interval(low: float | None, high: float | None) -> str:
    return DASH if low is None else f"[{_signed(100 * low, 1)}, {_signed(100 * high, 1)}] pp"


def _depth_text(report: Report, label: str, depth: int) -> str:
    """A cell's depth as the methods table shows it: an n-gram type has none, only its own cap."""
    return f"{DASH} (≤{depth})" if label in report.ngram_methods else str(depth)


def _gap_text(gap) -> str:
    if gap is None:
        return DASH
    interval = DASH if gap.ci_low is None else f"[{_signed(gap.ci_low, 2)}, {_signed(gap.ci_high, 2)}]"
    return f"{_signed(gap.diff, 2)}× {interval}{' ✱' if gap.significant else ''}"


def drafting_blocks(report: Report) -> list:
    if not report.several_drafting or not report.methods:
        return []
    spec = {e["label"]: e.get("spec_type") or DASH for e in report.entries}
    gaps = {(g.model_label, g.drafting): g for g in report.method_gaps}
    blocks: list = [Heading(2, "Drafting methods"),
                    Para(f"{len(report.entries)} drafting entries on the same models, prompts and seeds; the "
                         "depth-0 baseline is measured once per model and shared. Each entry is shown at its "
                         "best depth (highest mean speedup) and ranked by that speedup.")]
    header = ["Model", "rank", "drafting", "spec type", "best n", "speedup", "behind leader", "acceptance", "τ",
              "draft length", "steps drafting", "n"]
    rows = []
    for m in report.methods:
        c = m.best
        rows.append([m.model_label, str(m.rank), m.drafting, spec.get(m.drafting, DASH),
                     _depth_text(report, m.drafting, c.key.depth), _pm(c.speedup, "x2"),
                     "leader" if m.rank == 1 else _gap_text(gaps.get((m.model_label, m.drafting))),
                     _pm(c.acceptance, "pct"), _pm(c.tau, "f2"), _pm(c.draft_length, "f2"),
                     _pm(c.drafting_share, "pct"), str(c.n_reps)])
    ngram = "; n-gram types ignore the depth and draft up to their own cap (≤N)" if any(
        m.drafting in report.ngram_methods for m in report.methods) else ""
    blocks.append(Table(header, rows, "Speedup = decode speed / the model's depth-0 decode speed, paired by rep; "
                                      "behind leader = the rank-1 entry's speedup at its best depth − this entry's "
                                      "at its best depth, per rep on shared (prompt, rep) pairs, with its 95% "
                                      "t interval over prompts (✱ = excludes 0: significantly slower); "
                                      "acceptance and τ at the same depth; draft length = drafted tokens per step "
                                      "that drafted; steps drafting = share of target decode steps that carried a "
                                      f"draft{ngram}. Mean ±1σ over n reps."))
    blocks += _position_table(report)
    blocks += _leader_table(report)
    blocks.append(Image("drafting_methods.png", "acceptance vs draft depth and by draft position per drafting "
                                                "method"))
    return blocks + _grid_blocks(report)


def _position_table(report: Report) -> list:
    pooled = defaultdict(dict)
    for p in report.positions:
        if p.depth is None and p.position < MAX_POSITIONS:
            pooled[(p.model, p.spec_type)][p.position] = p
    if not pooled:
        return []
    n_pos = max(i for cells in pooled.values() for i in cells) + 1
    rows = []
    for m in report.methods:
        cells = pooled.get((m.model_label, m.drafting), {})
        rows.append([m.model_label, m.drafting] + [
            DASH if cells.get(i) is None or cells[i].p is None
            else position_cell(cells[i].p, cells[i].p_se, cells[i].drafted_steps)
            for i in range(n_pos)])
    return [Table(["Model", "drafting", *[f"p_{i}" for i in range(n_pos)]], rows,
                  "Unconditional acceptance at draft position i (0 = first drafted token), pooled over the "
                  f"entry's depths and reps; {POSITION_SE_NOTE}; n = steps that drafted position i.")]


def _leader_table(report: Report) -> list:
    if not report.method_comparisons:
        return []
    leaders = {m.model_label: m.drafting for m in report.methods if m.rank == 1}
    rows = [[model, f"{leaders[model]} − {label}", str(c.depth), _pp(c.diff), pp_interval(c.ci_low, c.ci_high),
             str(c.n_pairs), significance(c)]
            for model, label, c in report.method_comparisons]
    return [Table(["Model", "comparison", "depth", "acceptance difference", "95% CI", "pairs", "significant"], rows,
                  "Acceptance of each model's rank-1 entry minus each other entry at every depth both measured, "
                  f"paired on (prompt, rep); {MARK_NOTE}")]


def _spread_text(name: str, s: Spread | None) -> str:
    return f"{name} {DASH}" if s is None else f"{name} {100 * s.value:.1f} pp {pp_interval(s.ci_low, s.ci_high)}"


def _verdict(d: Spread | None) -> str:
    if d is None or d.ci_low is None:
        return "no interval (too few prompts), so no verdict"
    if not d.significant:
        return "neither moves acceptance significantly more than the other"
    return ("the **target quant** moves acceptance more" if d.value > 0
            else "the **drafter** moves acceptance more")


def _grid_blocks(report: Report) -> list:
    if not report.grids:
        return []
    blocks: list = [Heading(2, "Target quant × drafter"),
                    Para("Acceptance of every target with every drafting entry at one depth. A target's mean "
                         "averages it over the drafters, a drafter's mean over the targets (per rep, then mean ±1σ "
                         "over reps); the spread of each set of means (max − min) says how far that axis moves "
                         "acceptance. Cell and mean intervals: 95% t over prompts (see All cells). A spread "
                         "(max − min) is not a smooth statistic, so its interval is a 95% percentile bootstrap "
                         "over prompts, whose coverage is not measured and which runs narrow with few prompts; "
                         "a spread is ≥ 0 and noise alone makes it positive, so compare the two.")]
    for g in report.grids:
        n = sorted({e.n for e in g.cells.values() if e is not None})
        rows = [[t, *[_pm(g.cells[(t, d)], "pct") for d in g.drafters], _pm(g.target_means[t], "pct")]
                for t in g.targets]
        rows.append(["drafter mean", *[_pm(g.drafter_means[d], "pct") for d in g.drafters], DASH])
        note = (f"Depth n={g.depth}; mean ±1σ over n={'/'.join(map(str, n)) or '?'} reps, {g.n_prompts} prompts. "
                + "; ".join([_spread_text("Spread of target means", g.target_spread),
                             _spread_text("spread of drafter means", g.drafter_spread),
                             _spread_text("target − drafter", g.difference)])
                + f": {_verdict(g.difference)}.")
        blocks.append(Table([f"Target × drafter, n={g.depth}", *g.drafters, "target mean"], rows, note))
    return blocks
