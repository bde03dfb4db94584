"""Acceptance by draft position: unconditional p_i and conditional α_i, each with its own n."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..records import RequestRecord, decode_steps
from .estimates import _canonical, _finite, _is_ok, _safe_div
from .intervals import MIN_PROMPTS, jackknife_se, n_prompts_with_data


@dataclass(frozen=True)
class PositionStat:
    position: int  # 0-indexed draft position
    drafted_steps: int  # steps whose draft had >= position+1 tokens (or the m_steps fallback)
    accepted: int  # steps that accepted the token at this position
    p_uncond: float | None  # accepted / drafted_steps
    se: float | None  # standard error of p_uncond over prompts (jackknife); None below MIN_PROMPTS prompts
    # Steps that drafted >= position+1 tokens and accepted >= position (reached this position);
    # None when some request of the pool has no per-step data to count them exactly.
    cond_steps: int | None = None
    alpha_cond: float | None = None  # accepted / cond_steps
    alpha_se: float | None = None  # as se, for alpha_cond


def _step_counts(r: RequestRecord) -> tuple[list[int], list[int], list[int | None]] | None:
    """One record's (drafted_i, accepted_i, reached_i) per position, or None without counts.

    drafted_i = steps that drafted ≥ i+1 tokens, accepted_i = steps that accepted ≥ i+1,
    reached_i = steps that drafted ≥ i+1 and accepted ≥ i. From the per-step pairs when stored.
    Without them reached_i is still exact where no draft ended at exactly i tokens
    (drafted_(i−1) = drafted_i, so reached_i = accepted_(i−1)); elsewhere it is None (unknown).
    A request timed without the trace whose drafts were all full length (``counts_from`` =
    "metrics") is exact from /metrics: drafted_i = steps, reached_i = accepted_(i−1).
    Otherwise the /metrics fallback assumes full-length drafts for drafted_i and leaves
    reached_i unknown beyond position 0 (reached_0 = drafted_0 by definition).
    """
    if r.log_step_pairs is not None:
        steps = decode_steps(r.log_step_pairs)
        depth = max((d for _, d in steps), default=0)
        return ([sum(1 for _, d in steps if d > i) for i in range(depth)],
                [sum(1 for a, _ in steps if a > i) for i in range(depth)],
                [sum(1 for a, d in steps if d > i and a >= i) for i in range(depth)])
    acc = r.log_accepted_per_pos if r.log_accepted_per_pos is not None else r.m_accepted_per_pos
    if acc is None:
        return None
    acc = [int(v) if _finite(v) is not None else 0 for v in acc]
    if r.log_drafted_per_pos is not None:
        dr = [int(v) if _finite(v) is not None else 0 for v in r.log_drafted_per_pos]
        dr += [0] * (len(acc) - len(dr))
        acc_ = acc + [0] * (len(dr) - len(acc))
        reached = [dr[0] if i == 0 else (acc_[i - 1] if dr[i - 1] == dr[i] else None) for i in range(len(dr))]
        return dr, acc_, reached
    steps = _finite(r.m_steps if r.m_steps is not None else r.log_steps)
    if r.counts_from == "metrics" and steps is not None and _finite(r.max_draft_len) is not None:
        width = int(r.max_draft_len)
        full = (acc + [0] * width)[:width]
        return [int(steps)] * width, full, ([int(steps)] + full[:-1]) if width else []
    if steps is None:
        return None  # no denominator at all: counting its accepts would bias p upwards
    longest = r.max_draft_len if r.max_draft_len is not None else r.depth
    span = max(len(acc), int(longest) if _finite(longest) is not None else 0)
    return [int(steps)] * span, acc + [0] * (span - len(acc)), [int(steps)] + [None] * (span - 1)


def _prompt_se(num: Sequence[float], den: Sequence[float]) -> float | None:
    """Standard error of Σ num / Σ den over prompts (one entry each): the delete-one-prompt
    jackknife, as the intervals of ``intervals``; None below MIN_PROMPTS prompts with steps."""
    tables = {"num": np.asarray(num, dtype=float)[:, None], "den": np.asarray(den, dtype=float)[:, None]}
    if n_prompts_with_data(tables) < MIN_PROMPTS:
        return None
    got = jackknife_se(tables, lambda s: _safe_div(s["num"], s["den"]))
    return got[0] if got else None


def per_position(records: Iterable[RequestRecord]) -> list[PositionStat]:
    """Per draft position i (0-indexed), pooled over the ok records (see ``_step_counts``):

    - p_uncond = accepted_i / drafted_i. Without the trace log the /metrics fallback uses the
      verification steps for every position up to the longest draft; it assumes full-length
      drafts, so it is biased low wherever drafts were cut short.
    - alpha_cond = accepted_i / reached_i: the share of the steps that reached position i
      (drafted it, and accepted every earlier one) that accepted it. None, with cond_steps None,
      when some record cannot count reached_i exactly: old rows without per-step data never
      make this ratio up from p_i / p_(i−1).
    - se and alpha_se: standard errors over prompts (``_prompt_se``). Steps of one generation
      are not independent draws (a binomial SE over steps covered the truth in about half the
      harness's replicates, benchmarks/coverage.md), prompts are.

    Trailing positions with no data are dropped.
    """
    per_prompt: dict[str, list[list]] = defaultdict(lambda: [[], [], []])  # drafted, accepted, reached

    def add(target: list, values: Sequence) -> None:
        for i, v in enumerate(values):
            while len(target) <= i:
                target.append(0)
            target[i] = None if v is None or target[i] is None else target[i] + v

    for r in _canonical(records):
        if not _is_ok(r):
            continue
        counts = _step_counts(r)
        if counts is None:
            continue
        for target, values in zip(per_prompt[r.prompt_id], counts):
            add(target, values)

    length = max((len(t) for tallies in per_prompt.values() for t in tallies[:2]), default=0)
    for tallies in per_prompt.values():
        for target in tallies:
            target += [0] * (length - len(target))
    drafted, accepted, reached = ([[tallies[k][i] for tallies in per_prompt.values()] for i in range(length)]
                                  for k in range(3))
    while length and sum(drafted[length - 1]) == 0 and sum(accepted[length - 1]) == 0:
        length -= 1

    stats = []
    for i in range(length):
        d, a = sum(drafted[i]), sum(accepted[i])
        n = None if any(v is None for v in reached[i]) else sum(reached[i])
        p = a / d if d > 0 else None
        alpha = a / n if n else None
        stats.append(PositionStat(
            position=i, drafted_steps=d, accepted=a, p_uncond=p,
            se=_prompt_se(accepted[i], drafted[i]) if p is not None else None,
            cond_steps=n, alpha_cond=alpha,
            alpha_se=_prompt_se(accepted[i], reached[i]) if alpha is not None else None))
    return stats


@dataclass(frozen=True)
class PositionRow:
    """Acceptance at draft position ``position`` (0 = first drafted token) for one cell, or pooled
    over every depth of a model when ``depth`` is None. ``p`` = unconditional p_i, ``alpha`` =
    conditional α_i = accepted / alpha_steps, alpha_steps = steps that drafted ≥ i+1 tokens and
    accepted ≥ i (None: the rows lack the per-step data to count them). SEs are over prompts
    (``per_position``)."""

    model: str
    spec_type: str
    depth: int | None
    position: int
    drafted_steps: int
    accepted: int
    p: float | None
    p_se: float | None
    alpha: float | None
    alpha_se: float | None
    alpha_steps: int | None


def position_rows(model: str, spec_type: str, depth: int | None, stats: Sequence[PositionStat]) -> list[PositionRow]:
    return [PositionRow(model, spec_type, depth, s.position, s.drafted_steps, s.accepted, s.p_uncond, s.se,
                        s.alpha_cond, s.alpha_se, s.cond_steps) for s in stats]
