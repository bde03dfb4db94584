"""The i.i.d.-acceptance model (Leviathan et al. 2023) fitted to a run, and the recommendation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from .cells import CellSummary
from .estimates import Estimate
from .positions import PositionRow, PositionStat


@dataclass(frozen=True)
class Recommendation:
    model_label: str
    spec_type: str
    depth: int
    speedup: Estimate | None  # None when the fastest model has no depth-0 baseline
    smallest_model_within_1sd: str | None


def fit_geometric_alpha(positions: Sequence[PositionStat]) -> float | None:
    """Pooled conditional estimate of an i.i.d. per-token acceptance α from per-position counts.

    Under the geometric model p_i = α^(i+1). With A_i = accepted at position i and D_i = steps
    that drafted ≥ i+1 tokens:

        α̂ = Σ_i A_i / Σ_i R_i,   R_0 = D_0,   R_i = p_(i−1) · D_i = A_(i−1) · D_i / D_(i−1)

    R_i is the number of steps "at risk" at position i: drafted ≥ i+1 tokens and accepted all
    earlier ones. Aggregate counts cannot tell whether a step that accepted all of a short draft
    would have continued, so R_i assumes draft length is independent of earlier acceptance; it is
    exact when all drafts are full length (R_i = A_(i−1)). This is the truncated-geometric MLE
    (total accepted / total trials) and is consistent with α_i = p_i / p_(i−1).

    Positions are used in order from 0 up to the first one never drafted. Returns None without
    data; the estimate is clipped into [0, 1] (inconsistent counts could exceed 1).
    """
    by_pos = {s.position: s for s in positions}
    accepted_total = at_risk_total = 0.0
    prev_p = 1.0
    i = 0
    while i in by_pos and by_pos[i].drafted_steps > 0:
        s = by_pos[i]
        accepted_total += s.accepted
        at_risk_total += prev_p * s.drafted_steps
        prev_p = s.accepted / s.drafted_steps
        i += 1
    if at_risk_total <= 0:
        return None
    return min(max(accepted_total / at_risk_total, 0.0), 1.0)


def _check_alpha_n(alpha: float, n: int) -> None:
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if n < 0:
        raise ValueError(f"draft depth must be >= 0, got {n}")


def expected_tokens_per_step(alpha: float, n: int) -> float:
    """(1 − α^(n+1)) / (1 − α): tokens per verification step at depth n under i.i.d. acceptance
    α; n+1 when α == 1. Summed as 1 + α + … + α^n, which is the same value without the 0/0 at
    α → 1."""
    _check_alpha_n(alpha, n)
    return float(sum(alpha ** k for k in range(n + 1)))


def predicted_speedup(alpha: float, n: int, c: float) -> float:
    """expected_tokens_per_step(α, n) / (n·c + 1), c = cost of one draft step relative to one
    target step (1.0 at n = 0)."""
    if not (math.isfinite(c) and c >= 0):
        raise ValueError(f"draft cost c must be finite and >= 0, got {c}")
    return expected_tokens_per_step(alpha, n) / (n * c + 1.0)


def estimate_draft_cost(cells: Sequence[CellSummary]) -> float | None:
    """Draft cost c from measured timings, for cells of one model and drafter.

    A speculative step produces τ tokens in time (n·c + 1)·T, a target-only step 1 token in T,
    so S = τ / (n·c + 1), i.e. y = τ/S − 1 = n·c. c is the least-squares slope through the
    origin over the cells with depth n ≥ 1 and both τ and speedup measured:
    c = Σ n·y / Σ n², clipped at ≥ 0. Uses the cells' mean τ and mean speedup and n = the
    configured depth (key.depth). None when no cell qualifies.
    """
    num = den = 0.0
    for cell in cells:
        n = cell.key.depth
        if n < 1 or cell.tau is None or cell.speedup is None or cell.speedup.mean <= 0:
            continue
        y = cell.tau.mean / cell.speedup.mean - 1.0
        num += n * y
        den += n * n
    if den <= 0:
        return None
    c = num / den
    return max(c, 0.0) if math.isfinite(c) else None


def predicted_best_depth(alpha: float, c: float, max_depth: int = 8) -> int:
    """argmax of predicted_speedup over n = 0..max_depth (speedup(0) = 1); ties go to the
    smaller depth."""
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    best_n, best = 0, predicted_speedup(alpha, 0, c)
    for n in range(1, max_depth + 1):
        s = predicted_speedup(alpha, n, c)
        if s > best:
            best_n, best = n, s
    return best_n


def recommend(cells: Sequence[CellSummary], model_sizes: Mapping[str, int]) -> Recommendation | None:
    """The fastest cell by mean decode speed, its speedup (with spread), and the smallest model
    file (by ``model_sizes`` bytes; models without a size are not candidates) whose own fastest
    cell is within one σ of the fastest: mean ≥ fastest.mean − fastest.sd (the fastest cell's
    sample sd over reps). Ties go to the earlier cell in ``cells`` (summarize's order), and to
    the smaller label among models of equal size. None when no cell has a decode speed.
    """
    timed = [c for c in cells if c.decode_tps is not None]
    if not timed:
        return None
    fastest = timed[0]
    for c in timed[1:]:
        if c.decode_tps.mean > fastest.decode_tps.mean:
            fastest = c
    best_per_model: dict[str, float] = {}
    for c in timed:
        m = c.key.model_label
        best_per_model[m] = max(best_per_model.get(m, -math.inf), c.decode_tps.mean)
    threshold = fastest.decode_tps.mean - fastest.decode_tps.sd
    candidates = [m for m, tps in best_per_model.items() if tps >= threshold and m in model_sizes]
    smallest = min(candidates, key=lambda m: (model_sizes[m], m)) if candidates else None
    return Recommendation(model_label=fastest.key.model_label, spec_type=fastest.key.spec_type,
                          depth=fastest.key.depth, speedup=fastest.speedup,
                          smallest_model_within_1sd=smallest)


@dataclass(frozen=True)
class TheoryRow:
    """The i.i.d.-acceptance model (Leviathan et al. 2023) fitted to one model's measurements."""

    model: str
    spec_type: str
    alpha: float | None  # fit_geometric_alpha over per-position counts pooled across depths
    draft_cost: float | None  # estimate_draft_cost over the model's cells
    max_depth: int  # deepest measured depth (the prediction searches 0..max_depth)
    predicted_best_depth: int | None
    measured_best_depth: int | None  # argmax of mean speedup (depth 0 = 1.0)
    predicted_tau: dict[int, float]  # depth -> expected tokens per step under α
    predicted_speedup: dict[int, float]  # depth -> prediction under α and c


def theory_rows(cells: Sequence[CellSummary], positions: Sequence[PositionRow], models: Sequence[str],
            spec_types: Sequence[str]) -> list[TheoryRow]:
    out = []
    for model in models:
        for spec in spec_types:
            spec_cells = [c for c in cells if c.key.model_label == model and c.key.spec_type == spec and c.key.depth > 0]
            if not spec_cells:
                continue
            pooled = [PositionStat(p.position, p.drafted_steps, p.accepted, p.p, p.p_se, p.alpha_steps, p.alpha,
                                   p.alpha_se)
                      for p in positions if p.model == model and p.spec_type == spec and p.depth is None]
            alpha = fit_geometric_alpha(pooled)
            cost = estimate_draft_cost(spec_cells)
            max_depth = max(c.key.depth for c in spec_cells)
            measured = {c.key.depth: c.speedup.mean for c in spec_cells if c.speedup is not None}
            if measured:
                measured[0] = 1.0  # speedups exist only against a depth-0 baseline
            best_measured = min(measured, key=lambda d: (-measured[d], d)) if measured else None
            depths = sorted(c.key.depth for c in spec_cells)
            out.append(TheoryRow(
                model=model, spec_type=spec, alpha=alpha, draft_cost=cost, max_depth=max_depth,
                predicted_best_depth=predicted_best_depth(alpha, cost, max_depth) if alpha is not None and cost is not None else None,
                measured_best_depth=best_measured,
                predicted_tau={d: expected_tokens_per_step(alpha, d) for d in depths} if alpha is not None else {},
                predicted_speedup={d: predicted_speedup(alpha, d, cost) for d in depths}
                if alpha is not None and cost is not None else {}))
    return out
