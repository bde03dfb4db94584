"""Statistics per (model, spec type, depth) cell, and paired comparisons between models."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..records import RequestRecord
from .estimates import (Estimate, _acceptance_parts, _canonical, _check_level, _decode_parts, _draft_length_parts,
                        _drafting_share_parts, _estimate, _finite, _int_total, _is_ok, _matched_tables,
                        _ratio_estimate, _rep_statistic, _safe_div, _speedup_estimate, _tau_parts, _wall_parts,
                        speed_sample)
from .positions import PositionStat, per_position


@dataclass(frozen=True)
class CellKey:
    model_label: str
    spec_type: str
    depth: int


@dataclass(frozen=True)
class CellSummary:
    key: CellKey
    n_reps: int  # distinct reps among ok requests
    n_requests: int  # ok requests (the ones the statistics rest on)
    n_failed: int  # requests with any other status
    acceptance: Estimate | None  # None at depth 0 or when nothing was drafted
    tau: Estimate | None  # 1 + accepted/steps; None at depth 0 or without step counts
    decode_tps: Estimate | None  # None only when no ok request has predicted_n/predicted_ms
    wall_tps: Estimate | None  # None only when no ok request has predicted_n/wall_ms
    speedup: Estimate | None  # paired by rep against depth 0 of the same model; None without one
    per_position: list[PositionStat]
    effective_depth: int | None  # longest draft seen (max of max_draft_len)
    drafted_tokens: int  # Σ draft_n
    accepted_tokens: int  # Σ draft_n_accepted
    steps: int  # Σ verification steps (same tally as τ)
    # Σ drafted / Σ verification steps per rep: the mean draft length, what the depth amounts to
    # (n-gram types and short drafts make it less than the depth). None at depth 0.
    draft_length: Estimate | None = None
    # Σ steps that drafted / Σ target decode steps per rep: n-gram types draft only on a lookup hit.
    drafting_share: Estimate | None = None
    # Where the speed figures come from: "untraced" requests, "traced" ones (runs stored before
    # speed was measured without the trace), or None: not measured (requests ran side by side).
    speed_from: str | None = "untraced"


@dataclass(frozen=True)
class PairedComparison:
    label_a: str
    label_b: str
    depth: int
    diff: float  # acceptance(a) − acceptance(b), mean over reps of the per-rep difference
    ci_low: float | None  # t over prompts; None (and significant None) below intervals.MIN_PROMPTS prompts
    ci_high: float | None
    n_pairs: int  # (prompt_id, rep) pairs present in both
    significant: bool | None  # the interval excludes 0; None: too few prompts to say
    n_prompts: int = 0  # prompts the pairs come from (the interval's sampling units)


def model_order(records: Iterable[RequestRecord]) -> list[str]:
    """Model labels in order of first appearance in time (smallest started_at, then label).
    Time rather than list position keeps every result independent of input order."""
    first: dict[str, float] = {}
    for r in records:
        t = _finite(r.started_at)
        t = math.inf if t is None else t
        first[r.model_label] = min(first.get(r.model_label, math.inf), t)
    return sorted(first, key=lambda m: (first[m], m))


def _summarize_cell(key: CellKey, cell: Sequence[RequestRecord], baseline: Sequence[RequestRecord],
                    intervals: bool, level: float) -> CellSummary:
    ok = [r for r in cell if _is_ok(r)]
    timed, speed_from = speed_sample(ok)
    baseline, _ = speed_sample(baseline)
    speculative = key.depth > 0
    lengths = [int(r.max_draft_len) for r in ok if _finite(r.max_draft_len) is not None]
    tau_steps = [parts[1] for parts in map(_tau_parts, ok) if parts is not None]
    return CellSummary(
        key=key,
        n_reps=len({r.rep for r in ok}),
        n_requests=len(ok),
        n_failed=len(cell) - len(ok),
        acceptance=_ratio_estimate(ok, _acceptance_parts, lambda x: x, intervals, level, bounded=True)
        if speculative else None,
        tau=_ratio_estimate(ok, _tau_parts, lambda x: 1.0 + x, intervals, level) if speculative else None,
        decode_tps=_ratio_estimate(timed, _decode_parts, lambda x: 1000.0 * x, intervals, level),
        wall_tps=_ratio_estimate(timed, _wall_parts, lambda x: 1000.0 * x, intervals, level),
        speedup=_speedup_estimate(timed, baseline, intervals, level) if timed and baseline else None,
        per_position=per_position(ok) if speculative else [],
        effective_depth=max(lengths) if lengths else None,
        drafted_tokens=_int_total(r.draft_n for r in ok),
        accepted_tokens=_int_total(r.draft_n_accepted for r in ok),
        steps=_int_total(tau_steps),
        draft_length=_ratio_estimate(ok, _draft_length_parts, lambda x: x, intervals, level)
        if speculative else None,
        drafting_share=_ratio_estimate(ok, _drafting_share_parts, lambda x: x, intervals, level)
        if speculative else None,
        speed_from=speed_from if ok else None,
    )


def _summarize(records: Sequence[RequestRecord], order: Sequence[str], intervals: bool,
               level: float) -> list[CellSummary]:
    cells: dict[CellKey, list[RequestRecord]] = defaultdict(list)
    baselines: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        cells[CellKey(r.model_label, r.spec_type, r.depth)].append(r)
        if r.depth == 0 and _is_ok(r):
            baselines[r.model_label].append(r)  # depth 0 of any spec_type is "no speculation"
    rank = {m: i for i, m in enumerate(order)}
    # Model order first; within a model the depth-0 baseline leads, then spec_type and depth.
    keys = sorted(cells, key=lambda k: (rank.get(k.model_label, len(rank)), k.model_label,
                                        k.depth != 0, k.spec_type, k.depth))
    return [_summarize_cell(k, cells[k], baselines.get(k.model_label, []), intervals, level) for k in keys]


def summarize(records: Iterable[RequestRecord], intervals: bool = True, level: float = 0.95) -> list[CellSummary]:
    """One CellSummary per (model_label, spec_type, depth), sorted by model order of first
    appearance (see ``model_order``), depth 0 first, then spec_type and depth. Cells with only
    failed requests are listed (their n_failed counts) with None statistics. ``intervals``: give
    each Estimate its ``level`` interval (t over prompts, see ``intervals``)."""
    _check_level(level)
    recs = _canonical(records)
    return _summarize(recs, model_order(recs), intervals, level)


def summarize_by_category(records: Iterable[RequestRecord], intervals: bool = True,
                          level: float = 0.95) -> dict[str, list[CellSummary]]:
    """``summarize`` per prompt category (speedup against the same category's baseline), with
    the model order of the whole record set so tables line up. Keys sorted."""
    _check_level(level)
    recs = _canonical(records)
    order = model_order(recs)
    by_category: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in recs:
        by_category[r.category].append(r)
    return {c: _summarize(by_category[c], order, intervals, level) for c in sorted(by_category)}


def paired_difference(records_a: Iterable[RequestRecord], records_b: Iterable[RequestRecord],
                      level: float = 0.95) -> PairedComparison | None:
    """acceptance(a) − acceptance(b) on the (prompt_id, rep) pairs present (ok, with draft
    counts) in both. Per rep, the ratio-of-sums acceptance of each side over the shared prompts;
    diff = mean over reps of the difference. The interval is t over prompts (a prompt's pairs
    are one sampling unit); significant = the interval excludes 0. Without an interval (below
    ``MIN_PROMPTS`` prompts) ``significant`` is None: too few prompts to tell.

    Both sides must be at one draft depth. Returns None when no pair has drafted tokens on both
    sides (nothing to compare).
    """
    _check_level(level)
    ok_a = [r for r in _canonical(records_a) if _is_ok(r)]
    ok_b = [r for r in _canonical(records_b) if _is_ok(r)]
    if not ok_a or not ok_b:
        return None
    depths = {r.depth for r in ok_a} | {r.depth for r in ok_b}
    if len(depths) != 1:
        raise ValueError(f"paired_difference compares one draft depth, got {sorted(depths)}")
    common, (na, da), (nb, db) = _matched_tables(ok_a, ok_b, _acceptance_parts)
    if not common:
        return None
    point, ci = _rep_statistic({"na": na, "da": da, "nb": nb, "db": db},
                               lambda s: _safe_div(s["na"], s["da"]) - _safe_div(s["nb"], s["db"]), True, level)
    diff = _estimate(point, None)
    if diff is None:
        return None
    return PairedComparison(
        label_a="+".join(sorted({r.model_label for r in ok_a})),
        label_b="+".join(sorted({r.model_label for r in ok_b})),
        depth=depths.pop(),
        diff=diff.mean, ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None, n_pairs=len(common),
        significant=(ci[0] > 0 or ci[1] < 0) if ci else None, n_prompts=len({p for p, _ in common}),
    )


def neighbour_comparisons(records: Iterable[RequestRecord]) -> list[PairedComparison]:
    """For each (spec_type, depth ≥ 1), paired_difference of each model against the next one in
    model order (e.g. Q5_K_S vs IQ4_XS, IQ4_XS vs IQ3_M …). Pairs with nothing to compare are
    left out. Sorted by spec_type, depth, then model order."""
    recs = _canonical(records)
    order = model_order(recs)
    groups: dict[tuple[str, int], dict[str, list[RequestRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r.depth >= 1 and _is_ok(r):
            groups[(r.spec_type, r.depth)][r.model_label].append(r)
    out = []
    for spec_type, depth in sorted(groups):
        by_model = groups[(spec_type, depth)]
        models = [m for m in order if m in by_model]
        for a, b in zip(models, models[1:]):
            cmp = paired_difference(by_model[a], by_model[b])
            if cmp is not None:
                out.append(cmp)
    return out
