"""Drafting methods side by side: several drafting entries on the same targets, prompts and seeds.

Records are first keyed by their drafting entry (``by_drafting``): two entries may share a spec
type (draft-mtp with the assistant at F16 and at Q8_0), so the entry label, not the spec type, is
what a method is. Then, per target: each entry at its best depth (highest mean speedup), ranked,
with the speedup gap to the leader (each at its best depth) and paired acceptance differences
against the leader at shared depths; and per depth a target × drafter grid of acceptance whose
row and column means say which of the two moves acceptance.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from ..records import RequestRecord
from .cells import CellSummary, PairedComparison, paired_difference
from .estimates import (Estimate, _acceptance_parts, _canonical, _decode_parts, _estimate, _is_ok, _rep_statistic,
                        _safe_div, _sum_tables)
from .intervals import MIN_PROMPTS, percentile_interval, reported_interval, resample_counts


def by_drafting(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The records with ``spec_type`` replaced by their drafting label, so that every statistic
    keyed by spec type is keyed by drafting entry. A run with one entry named by its spec type
    (and every run stored before the axis existed) is unchanged."""
    return [replace(r, spec_type=r.drafting) if r.drafting and r.drafting != r.spec_type else r for r in records]


@dataclass(frozen=True)
class MethodBest:
    model_label: str
    drafting: str
    rank: int  # 1 = fastest at its best depth; entries without a speedup rank last
    best: CellSummary  # the depth with the highest mean speedup (else the highest acceptance)


def rank_methods(cells: Sequence[CellSummary]) -> list[MethodBest]:
    """Per model (in cell order), each drafting entry at its best depth, fastest first.
    ``cells`` come from ``summarize(by_drafting(records))``: their spec_type is the entry label."""
    groups: dict[str, dict[str, list[CellSummary]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        if c.key.depth > 0:
            groups[c.key.model_label][c.key.spec_type].append(c)
    out = []
    for model, entries in groups.items():
        bests = []
        for label, mine in entries.items():
            timed = [c for c in mine if c.speedup is not None]
            if timed:
                best = max(timed, key=lambda c: (c.speedup.mean, -c.key.depth))
            else:
                best = max(mine, key=lambda c: (c.acceptance.mean if c.acceptance else -1.0, -c.key.depth))
            bests.append((label, best))
        bests.sort(key=lambda lb: (lb[1].speedup is None, -(lb[1].speedup.mean if lb[1].speedup else 0.0)))
        out += [MethodBest(model, label, i, best) for i, (label, best) in enumerate(bests, 1)]
    return out


def leader_comparisons(records: Sequence[RequestRecord],
                       ranking: Sequence[MethodBest]) -> list[tuple[str, str, PairedComparison]]:
    """(model, entry, comparison) of each entry's acceptance against its model's rank-1 entry at
    every depth both measured: leader − entry, paired on (prompt, rep). ``records`` as keyed by
    ``by_drafting``."""
    cells: dict[tuple, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if r.depth > 0 and _is_ok(r):
            cells[(r.model_label, r.spec_type, r.depth)].append(r)
    leaders = {m.model_label: m.drafting for m in ranking if m.rank == 1}
    out = []
    for m in ranking:
        leader = leaders[m.model_label]
        if m.drafting == leader:
            continue
        depths = sorted({d for (model, label, d) in cells if model == m.model_label and label == m.drafting}
                        & {d for (model, label, d) in cells if model == m.model_label and label == leader})
        for depth in depths:
            cmp = paired_difference(cells[(m.model_label, leader, depth)], cells[(m.model_label, m.drafting, depth)])
            if cmp is not None:
                out.append((m.model_label, m.drafting, cmp))
    return out


@dataclass(frozen=True)
class SpeedupGap:
    """How far an entry's speedup at its best depth is behind its model's leader at the leader's
    best depth: leader − entry, per rep over the (prompt, rep) pairs all three cells share (the
    two and the depth-0 baseline both speedups divide by), then mean over reps; the interval is
    the tool's t over prompts (``intervals``). This is what the ranking rests on: an entry whose
    interval holds 0 is not shown to be slower."""

    model_label: str
    drafting: str
    depth: int
    leader: str
    leader_depth: int
    diff: float
    ci_low: float | None
    ci_high: float | None
    n_pairs: int

    @property
    def significant(self) -> bool:
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)


def speedup_gaps(records: Sequence[RequestRecord], ranking: Sequence[MethodBest],
                 level: float = 0.95) -> list[SpeedupGap]:
    """One ``SpeedupGap`` per ranked entry below rank 1 (records as keyed by ``by_drafting``)."""
    cells: dict[tuple, list[RequestRecord]] = defaultdict(list)
    for r in _canonical(records):
        if _is_ok(r) and _decode_parts(r) is not None:
            cells[(r.model_label, r.spec_type, r.depth)].append(r)
    leaders = {m.model_label: m for m in ranking if m.rank == 1}
    out = []
    for m in ranking:
        lead = leaders[m.model_label]
        if m.rank == 1 or lead.best.speedup is None or m.best.speedup is None:
            continue
        sides = [cells[(m.model_label, lead.drafting, lead.best.key.depth)],
                 cells[(m.model_label, m.drafting, m.best.key.depth)]]
        baseline = [r for (model, _, depth), recs in cells.items() if model == m.model_label and depth == 0
                    for r in recs]
        common = set.intersection(*({(r.prompt_id, r.rep) for r in recs} for recs in (*sides, baseline)))
        if not common:
            continue
        prompts, reps = sorted({p for p, _ in common}), sorted({rep for _, rep in common})
        tables = {}
        for name, recs in zip(("lead", "other", "base"), (*sides, baseline)):
            tables[name + "_n"], tables[name + "_d"] = _sum_tables(
                [r for r in recs if (r.prompt_id, r.rep) in common], prompts, reps, _decode_parts)

        def gap(t):
            base = _safe_div(t["base_n"], t["base_d"])
            return _safe_div(_safe_div(t["lead_n"], t["lead_d"]) - _safe_div(t["other_n"], t["other_d"]), base)

        point, ci = _rep_statistic(tables, gap, True, level)
        diff = _estimate(point, None)
        if diff is not None:
            out.append(SpeedupGap(m.model_label, m.drafting, m.best.key.depth, lead.drafting, lead.best.key.depth,
                                  diff.mean, *(ci or (None, None)), n_pairs=len(common)))
    return out


@dataclass(frozen=True)
class Spread:
    """max − min of a set of marginal means, with its percentile bootstrap interval over prompts
    (None below MIN_PROMPTS prompts)."""

    value: float
    ci_low: float | None
    ci_high: float | None

    @property
    def significant(self) -> bool | None:
        """The interval excludes 0; None without an interval."""
        return None if self.ci_low is None else (self.ci_low > 0 or self.ci_high < 0)


@dataclass(frozen=True)
class DrafterGrid:
    """Acceptance of every target × drafter at one depth, and which axis moves it.

    Row (target) means average a target over the drafters, column (drafter) means a drafter over
    the targets, per rep; ± sd over reps with n, intervals t over prompts (``intervals``). The spreads
    are max − min of those means; ``difference`` = target spread − drafter spread (> 0: the target
    quant moves acceptance more). A spread is never below 0, and noise alone makes it positive.
    """

    depth: int
    targets: list[str]
    drafters: list[str]
    cells: dict[tuple[str, str], Estimate | None]
    target_means: dict[str, Estimate | None]
    drafter_means: dict[str, Estimate | None]
    target_spread: Spread | None
    drafter_spread: Spread | None
    difference: Spread | None
    n_prompts: int


def _spread(values: np.ndarray) -> np.ndarray:
    """max − min over the last axis (NaN if any entry is NaN)."""
    return values.max(axis=-1) - values.min(axis=-1)


def _mean_ratio(n_cells: int):
    """Per rep: the mean over ``n_cells`` cells of each cell's ratio of sums (tables n0, d0, n1 …)."""
    def per_rep(sums):
        ratios = np.stack([_safe_div(sums[f"n{k}"], sums[f"d{k}"]) for k in range(n_cells)])
        with warnings.catch_warnings():  # a rep missing from every cell stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(ratios, axis=0)
    return per_rep


def drafter_grid(records: Iterable[RequestRecord], depth: int, targets: Sequence[str], drafters: Sequence[str],
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> DrafterGrid | None:
    """The grid at ``depth`` from records keyed by ``by_drafting``; None unless every target ×
    drafter cell has drafted tokens (marginal means over a ragged grid would compare unlike sets).
    ``n_boot = 0``: no intervals; else the bootstrap draws of the spreads' intervals."""
    ok = [r for r in _canonical(records) if _is_ok(r) and r.depth == depth and r.model_label in targets
          and r.spec_type in drafters and _acceptance_parts(r) is not None]
    prompts = sorted({r.prompt_id for r in ok})
    reps = sorted({r.rep for r in ok})
    if len(targets) < 2 or len(drafters) < 2 or not prompts:
        return None
    by_cell: dict[tuple[str, str], list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_cell[(r.model_label, r.spec_type)].append(r)
    shape = (len(targets), len(drafters), len(prompts), len(reps))
    num, den = np.zeros(shape), np.zeros(shape)
    for i, t in enumerate(targets):
        for j, d in enumerate(drafters):
            num[i, j], den[i, j] = _sum_tables(by_cell[(t, d)], prompts, reps, _acceptance_parts)
    per_rep = _safe_div(num.sum(axis=2), den.sum(axis=2))  # [T, D, reps]
    if not np.isfinite(per_rep).any(axis=2).all():
        return None
    with warnings.catch_warnings():  # a rep missing from every drafter is NaN, and _estimate drops it
        warnings.simplefilter("ignore", RuntimeWarning)
        row_rep, col_rep = np.nanmean(per_rep, axis=1), np.nanmean(per_rep, axis=0)  # [T, reps], [D, reps]
        cell_mean = np.nanmean(per_rep, axis=2)  # [T, D]
    point_t, point_d = cell_mean.mean(axis=1), cell_mean.mean(axis=0)
    T, D = range(len(targets)), range(len(drafters))
    intervals: dict[str, list] = {"cell": [], "t": [], "d": [], "ts": None, "ds": None, "diff": None}
    if n_boot:
        def margin(cells: list[tuple[int, int]]):
            return reported_interval({f"n{k}": num[c] for k, c in enumerate(cells)}
                                     | {f"d{k}": den[c] for k, c in enumerate(cells)}, _mean_ratio(len(cells)), level,
                                     bounded=True)
        intervals |= {"cell": [[margin([(i, j)]) for j in D] for i in T],
                      "t": [margin([(i, j) for j in D]) for i in T], "d": [margin([(i, j) for i in T]) for j in D]}
    if n_boot and len(prompts) >= MIN_PROMPTS:
        # A spread (max − min) is not a smooth statistic, so no jackknife: its interval stays a
        # percentile bootstrap over prompts, whose coverage the harness does not measure.
        counts = resample_counts(len(prompts), n_boot, seed)  # [B, P]
        with np.errstate(all="ignore"):
            boot_num = np.einsum("bp,tdpr->btdr", counts, num)
            boot_den = np.einsum("bp,tdpr->btdr", counts, den)
            acc = _safe_div(boot_num, boot_den)  # [B, T, D, reps]
            finite = np.isfinite(acc)
            cell_boot = np.where(finite, acc, 0.0).sum(axis=3) / np.maximum(finite.sum(axis=3), 1)
            cell_boot[finite.sum(axis=3) == 0] = np.nan  # [B, T, D]
        ts, ds = _spread(cell_boot.mean(axis=2)), _spread(cell_boot.mean(axis=1))
        intervals |= {"ts": percentile_interval(ts, level), "ds": percentile_interval(ds, level),
                      "diff": percentile_interval(ts - ds, level)}

    def ci(kind, *index):
        got = intervals[kind]
        for i in index:
            got = got[i] if got else None
        return got

    def spread(value: float, interval) -> Spread:
        return Spread(float(value), *(interval or (None, None)))

    t_spread, d_spread = _spread(point_t), _spread(point_d)
    return DrafterGrid(
        depth=depth, targets=list(targets), drafters=list(drafters),
        cells={(t, d): _estimate(per_rep[i, j], ci("cell", i, j)) for i, t in enumerate(targets)
               for j, d in enumerate(drafters)},
        target_means={t: _estimate(row_rep[i], ci("t", i)) for i, t in enumerate(targets)},
        drafter_means={d: _estimate(col_rep[j], ci("d", j)) for j, d in enumerate(drafters)},
        target_spread=spread(t_spread, intervals["ts"]), drafter_spread=spread(d_spread, intervals["ds"]),
        difference=spread(t_spread - d_spread, intervals["diff"]), n_prompts=len(prompts))
