"""Statistics over RequestRecords: acceptance, τ, speed, speedup, per-position acceptance,
prompt-level bootstrap intervals, paired model comparisons and the i.i.d.-acceptance model.

Pure functions: no I/O, no printing. The definitions are the ones in design.md ("Definitions"):

- acceptance of a rep = Σ draft_n_accepted / Σ draft_n over the rep's requests (ratio of sums);
  reported acceptance = mean over reps ± sample sd (ddof=1), n = number of reps.
- τ = 1 + accepted / verification steps (per rep, then mean ± sd).
- decode speed = Σ predicted_n / Σ predicted_ms (server side); wall speed uses client wall_ms.
- speedup = decode speed at depth n / decode speed at depth 0, same model, paired by rep.
- per position: p_i = accepted at i / steps that drafted ≥ i+1 tokens; α_i = steps that
  accepted ≥ i+1 / steps that drafted ≥ i+1 and accepted ≥ i (needs per-step data).
- E[tokens per step] = (1 − α^(n+1)) / (1 − α); speedup ≈ that / (n·c + 1).

Conventions used throughout:

- Only ``status == "ok"`` records enter statistics; every other status is counted as failed.
- A rep is the ``RequestRecord.rep`` field (one seed per rep). Requests of two cells are paired
  on ``(prompt_id, rep)``; a rep's seed may vary per prompt, so the seed is not part of the key.
- Results never depend on input order: records are first put into a canonical total order, so
  even floating-point sums are bitwise identical for any permutation. "Order of first
  appearance" of a model means first in time (smallest ``started_at``, then label), not first in
  the list, for the same reason.
- Nothing returns NaN or inf. A statistic with no data is ``None``; every ``Estimate`` carries
  the n it rests on (n ≥ 1, sd = 0.0 when n == 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from specsweep.records import RequestRecord, decode_steps

OK_STATUS = "ok"

__all__ = [
    "Estimate",
    "CellKey",
    "PositionStat",
    "CellSummary",
    "PairedComparison",
    "Recommendation",
    "model_order",
    "rep_acceptance",
    "pooled_acceptance",
    "mean_rep_acceptance",
    "summarize",
    "summarize_by_category",
    "per_position",
    "bootstrap_ci",
    "paired_difference",
    "neighbour_comparisons",
    "fit_geometric_alpha",
    "expected_tokens_per_step",
    "predicted_speedup",
    "estimate_draft_cost",
    "predicted_best_depth",
    "recommend",
]


# ---------------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Mean ± sample sd over reps, the number of reps n, and a prompt-level bootstrap interval.

    Construction refuses NaN/inf so that no undefined number can leave this module unnoticed.
    """

    mean: float
    sd: float  # sample sd (ddof=1); 0.0 when n == 1 (n says so)
    n: int
    ci_low: float | None = None  # 95% percentile interval from resampling prompts
    ci_high: float | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"an Estimate needs n >= 1, got {self.n}")
        for name in ("mean", "sd"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Estimate.{name} must be finite, got {getattr(self, name)}")
        if self.sd < 0:
            raise ValueError(f"Estimate.sd must be >= 0, got {self.sd}")
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("ci_low and ci_high are given together or not at all")
        if self.ci_low is not None and not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            raise ValueError("bootstrap interval must be finite")

    @classmethod
    def from_values(cls, values: Iterable[float], ci: tuple[float, float] | None = None) -> Estimate | None:
        """Mean ± sample sd of the finite values; None when there are none."""
        return _estimate(np.asarray(list(values), dtype=float), ci)

    def fmt_pct(self, with_n: bool = False) -> str:
        """'88.5 ±1.0%' (mean and sd in percent), optionally followed by ' (n=3)'."""
        text = f"{100 * self.mean:.1f} ±{100 * self.sd:.1f}%"
        return f"{text} (n={self.n})" if with_n else text

    def fmt(self, digits: int = 2, with_n: bool = False) -> str:
        """'1.23 ±0.04', optionally followed by ' (n=3)'."""
        text = f"{self.mean:.{digits}f} ±{self.sd:.{digits}f}"
        return f"{text} (n={self.n})" if with_n else text


@dataclass(frozen=True)
class CellKey:
    model_label: str
    spec_type: str
    depth: int


@dataclass(frozen=True)
class PositionStat:
    position: int  # 0-indexed draft position
    drafted_steps: int  # steps whose draft had >= position+1 tokens (or the m_steps fallback)
    accepted: int  # steps that accepted the token at this position
    p_uncond: float | None  # accepted / drafted_steps
    se: float | None  # binomial standard error of p_uncond: sqrt(p(1-p)/drafted_steps)
    # Steps that drafted >= position+1 tokens and accepted >= position (reached this position);
    # None when some request of the pool has no per-step data to count them exactly.
    cond_steps: int | None = None
    alpha_cond: float | None = None  # accepted / cond_steps
    alpha_se: float | None = None  # sqrt(α(1-α)/cond_steps)


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


@dataclass(frozen=True)
class PairedComparison:
    label_a: str
    label_b: str
    depth: int
    diff: float  # acceptance(a) − acceptance(b), mean over reps of the per-rep difference
    ci_low: float
    ci_high: float
    n_pairs: int  # (prompt_id, rep) pairs present in both
    significant: bool  # the bootstrap interval excludes 0


@dataclass(frozen=True)
class Recommendation:
    model_label: str
    spec_type: str
    depth: int
    speedup: Estimate | None  # None when the fastest model has no depth-0 baseline
    smallest_model_within_1sd: str | None


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

_FIELD_NAMES = tuple(f.name for f in fields(RequestRecord))


def _canonical(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """A total order over records (repr of every field; repr of a float is exact), so that sums
    and everything after them are identical whatever order the caller passed."""
    return sorted(records, key=lambda r: tuple(repr(getattr(r, name)) for name in _FIELD_NAMES))


def _is_ok(record: RequestRecord) -> bool:
    return record.status == OK_STATUS


def _finite(value) -> float | None:
    """The value as a float, or None when missing or not finite (bad data never becomes NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int_total(values: Iterable) -> int:
    return int(sum(int(v) for v in values if _finite(v) is not None))


def _pair(num, den) -> tuple[float, float] | None:
    n, d = _finite(num), _finite(den)
    return None if n is None or d is None else (n, d)


# Each "parts" function gives a record's (numerator, denominator) contribution to a
# ratio-of-sums statistic, or None when the record lacks the fields.


def _acceptance_parts(r: RequestRecord) -> tuple[float, float] | None:
    return _pair(r.draft_n_accepted, r.draft_n)


def _tau_parts(r: RequestRecord) -> tuple[float, float] | None:
    """(accepted, verification steps) from one tally, so τ never mixes sources: the trace log
    (exact per step) first, then the /metrics deltas, then timings' accepted over any step count."""
    for accepted, steps in ((r.log_accepted, r.log_steps), (r.m_accepted, r.m_steps)):
        got = _pair(accepted, steps)
        if got is not None:
            return got
    steps = r.log_steps if r.log_steps is not None else r.m_steps
    return _pair(r.draft_n_accepted, steps)


def _decode_parts(r: RequestRecord) -> tuple[float, float] | None:
    return _pair(r.predicted_n, r.predicted_ms)


def _wall_parts(r: RequestRecord) -> tuple[float, float] | None:
    return _pair(r.predicted_n, r.wall_ms)


def _safe_div(num, den) -> np.ndarray:
    """num / den elementwise, NaN where den <= 0 (NaN stays internal: callers keep finite values)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    out = np.full(num.shape, np.nan)
    with np.errstate(all="ignore"):
        np.divide(num, den, out=out, where=den > 0)
    return out


def _estimate(per_rep: np.ndarray, ci: tuple[float, float] | None) -> Estimate | None:
    """Mean ± sample sd over the finite per-rep values; None when no rep has a value."""
    values = per_rep[np.isfinite(per_rep)]
    if values.size == 0:
        return None
    with np.errstate(all="ignore"):
        mean = float(np.mean(values))
        sd = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    return Estimate(mean=mean, sd=sd, n=int(values.size),
                    ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None)


# ---------------------------------------------------------------------------------------------
# Prompt-level bootstrap
# ---------------------------------------------------------------------------------------------


def _check_boot_args(n_boot: int, level: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _resample_indices(n_prompts: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_prompts] prompt indices drawn with replacement. Both bootstrap paths (the
    generic one over records and the vectorised one over sum tables) use this, so a seed gives
    the same replicates in both."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_prompts, size=(n_boot, n_prompts))


def _resample_counts(n_prompts: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_prompts]: how often each prompt was drawn in each replicate."""
    idx = _resample_indices(n_prompts, n_boot, seed)
    counts = np.zeros((n_boot, n_prompts))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    with np.errstate(all="ignore"):
        low, high = np.percentile(values, [tail, 100 - tail])
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return float(low), float(high)


def _row_means(x: np.ndarray) -> np.ndarray:
    """Mean over the finite entries of each row (the reps with a defined value); NaN if none."""
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    total = np.where(finite, x, 0.0).sum(axis=1)
    out = np.full(x.shape[0], np.nan)
    with np.errstate(all="ignore"):
        np.divide(total, count, out=out, where=count > 0)
    return out


def _sum_tables(records: Sequence[RequestRecord], prompts: Sequence[str], reps: Sequence[int],
                parts: Callable[[RequestRecord], tuple[float, float] | None]) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator sums per (prompt, rep): [n_prompts, n_reps] each."""
    p_index = {p: i for i, p in enumerate(prompts)}
    r_index = {r: j for j, r in enumerate(reps)}
    num = np.zeros((len(prompts), len(reps)))
    den = np.zeros((len(prompts), len(reps)))
    for record in records:
        got = parts(record)
        if got is None or record.prompt_id not in p_index or record.rep not in r_index:
            continue
        i, j = p_index[record.prompt_id], r_index[record.rep]
        num[i, j] += got[0]
        den[i, j] += got[1]
    return num, den


def _rep_statistic(tables: Mapping[str, np.ndarray],
                   per_rep: Callable[[Mapping[str, np.ndarray]], np.ndarray],
                   n_boot: int, seed: int, level: float) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Per-rep values of a statistic built from per-(prompt, rep) sum tables, and the bootstrap
    interval of their mean over reps.

    A replicate redraws prompts with replacement; a prompt's row (all its reps) moves as one.
    Sums over a replicate are then ``counts @ table``. Replicates in which no rep is defined
    (e.g. only prompts that drafted nothing were drawn) are dropped.
    """
    with np.errstate(all="ignore"):
        point = per_rep({k: t.sum(axis=0) for k, t in tables.items()})
    n_prompts = next(iter(tables.values())).shape[0]
    if n_boot == 0 or n_prompts == 0 or not np.isfinite(point).any():
        return point, None
    counts = _resample_counts(n_prompts, n_boot, seed)
    with np.errstate(all="ignore"):
        replicate_reps = per_rep({k: counts @ t for k, t in tables.items()})  # [n_boot, n_reps]
    return point, _percentile_interval(_row_means(replicate_reps), level)


def bootstrap_ci(records: Iterable[RequestRecord],
                 statistic: Callable[[list[RequestRecord]], float | None],
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Prompt-level percentile bootstrap interval of ``statistic`` over the ok records.

    Each replicate draws prompt_ids with replacement (all reps' requests of a prompt move
    together) and recomputes ``statistic`` on the resulting records. Replicates where the
    statistic is None or not finite are dropped. Deterministic given ``seed``; the same seed
    draws the same prompts as the intervals inside ``summarize``. Returns None when there are no
    ok records, n_boot == 0, or the statistic is never defined.
    """
    _check_boot_args(n_boot, level)
    ok = [r for r in _canonical(records) if _is_ok(r)]
    by_prompt: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_prompt[r.prompt_id].append(r)
    prompts = sorted(by_prompt)
    if n_boot == 0 or not prompts:
        return None
    values = []
    for row in _resample_indices(len(prompts), n_boot, seed):
        sample = [r for i in row for r in by_prompt[prompts[i]]]
        value = _finite(statistic(sample))
        if value is not None:
            values.append(value)
    return _percentile_interval(np.asarray(values, dtype=float), level)


# ---------------------------------------------------------------------------------------------
# Acceptance and other per-rep statistics
# ---------------------------------------------------------------------------------------------


def rep_acceptance(records: Iterable[RequestRecord]) -> dict[int, float]:
    """rep -> Σ draft_n_accepted / Σ draft_n over the rep's ok requests (ratio of sums, not the
    mean of per-request ratios). Reps that drafted nothing are left out."""
    parts: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        got = _acceptance_parts(r) if _is_ok(r) else None
        if got is not None:
            parts[r.rep].append(got)
    out = {}
    for rep in sorted(parts):
        # fsum is exactly rounded, hence independent of record order (no canonical sort needed)
        acc, drafted = math.fsum(a for a, _ in parts[rep]), math.fsum(d for _, d in parts[rep])
        ratio = _finite(acc / drafted) if drafted > 0 else None
        if ratio is not None:
            out[rep] = ratio
    return out


def mean_rep_acceptance(records: Iterable[RequestRecord]) -> float | None:
    """The reported acceptance: mean over reps of ``rep_acceptance``; None if nothing drafted.
    (Use as the ``statistic`` of ``bootstrap_ci`` to reproduce CellSummary.acceptance's CI.)"""
    values = list(rep_acceptance(records).values())
    return _finite(math.fsum(values) / len(values)) if values else None


def pooled_acceptance(records: Iterable[RequestRecord]) -> float | None:
    """Σ draft_n_accepted / Σ draft_n over all ok requests together (one ratio of sums)."""
    parts = [got for got in (_acceptance_parts(r) for r in records if _is_ok(r)) if got is not None]
    acc, drafted = math.fsum(a for a, _ in parts), math.fsum(d for _, d in parts)
    return _finite(acc / drafted) if drafted > 0 else None


def _ratio_estimate(ok: Sequence[RequestRecord], parts, transform: Callable[[np.ndarray], np.ndarray],
                    n_boot: int, seed: int, level: float) -> Estimate | None:
    """Per rep transform(Σ num / Σ den), then mean ± sd over reps, with its bootstrap interval."""
    prompts = sorted({r.prompt_id for r in ok})
    reps = sorted({r.rep for r in ok})
    num, den = _sum_tables(ok, prompts, reps, parts)
    point, ci = _rep_statistic({"num": num, "den": den},
                               lambda s: transform(_safe_div(s["num"], s["den"])), n_boot, seed, level)
    return _estimate(point, ci)


def _matched_tables(records_a: Sequence[RequestRecord], records_b: Sequence[RequestRecord], parts):
    """Per-(prompt, rep) sums of ``parts`` for both sides, restricted to the (prompt_id, rep) keys
    where both have usable data: (common keys, (num_a, den_a), (num_b, den_b))."""
    keys_a = {(r.prompt_id, r.rep) for r in records_a if parts(r) is not None}
    keys_b = {(r.prompt_id, r.rep) for r in records_b if parts(r) is not None}
    common = keys_a & keys_b
    if not common:
        return common, (None, None), (None, None)
    prompts = sorted({p for p, _ in common})
    reps = sorted({rep for _, rep in common})
    tables = [_sum_tables([r for r in records if (r.prompt_id, r.rep) in common], prompts, reps, parts)
              for records in (records_a, records_b)]
    return common, tables[0], tables[1]


def _speedup_estimate(ok: Sequence[RequestRecord], baseline: Sequence[RequestRecord],
                      n_boot: int, seed: int, level: float) -> Estimate | None:
    """Per rep: decode speed here / decode speed at depth 0, both over the same prompts (only
    (prompt, rep) pairs that succeeded on both sides), then mean ± sd over reps."""
    common, (n1, d1), (n0, d0) = _matched_tables(ok, baseline, _decode_parts)
    if not common:
        return None
    point, ci = _rep_statistic(
        {"n1": n1, "d1": d1, "n0": n0, "d0": d0},
        lambda s: _safe_div(_safe_div(s["n1"], s["d1"]), _safe_div(s["n0"], s["d0"])),
        n_boot, seed, level)
    return _estimate(point, ci)


# ---------------------------------------------------------------------------------------------
# Per-position acceptance
# ---------------------------------------------------------------------------------------------


def _step_counts(r: RequestRecord) -> tuple[list[int], list[int], list[int | None]] | None:
    """One record's (drafted_i, accepted_i, reached_i) per position, or None without counts.

    drafted_i = steps that drafted ≥ i+1 tokens, accepted_i = steps that accepted ≥ i+1,
    reached_i = steps that drafted ≥ i+1 and accepted ≥ i. From the per-step pairs when stored.
    Without them reached_i is still exact where no draft ended at exactly i tokens
    (drafted_(i−1) = drafted_i, so reached_i = accepted_(i−1)); elsewhere it is None (unknown).
    The /metrics fallback (no trace log) assumes full-length drafts for drafted_i and leaves
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
    if steps is None:
        return None  # no denominator at all: counting its accepts would bias p upwards
    longest = r.max_draft_len if r.max_draft_len is not None else r.depth
    span = max(len(acc), int(longest) if _finite(longest) is not None else 0)
    return [int(steps)] * span, acc + [0] * (span - len(acc)), [int(steps)] + [None] * (span - 1)


def per_position(records: Iterable[RequestRecord]) -> list[PositionStat]:
    """Per draft position i (0-indexed), pooled over the ok records (see ``_step_counts``):

    - p_uncond = accepted_i / drafted_i, se = sqrt(p(1−p)/drafted_i). Without the trace log the
      /metrics fallback uses the verification steps for every position up to the longest draft;
      it assumes full-length drafts, so it is biased low wherever drafts were cut short.
    - alpha_cond = accepted_i / reached_i, alpha_se = sqrt(α(1−α)/reached_i): the share of the
      steps that reached position i (drafted it, and accepted every earlier one) that accepted
      it. None, with cond_steps None, when some record cannot count reached_i exactly: old rows
      without per-step data never make this ratio up from p_i / p_(i−1).

    Trailing positions with no data are dropped.
    """
    drafted: list[int] = []
    accepted: list[int] = []
    reached: list[int | None] = []

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
        add(drafted, counts[0])
        add(accepted, counts[1])
        add(reached, counts[2])

    length = max(len(drafted), len(accepted))
    for target in (drafted, accepted, reached):
        target += [0] * (length - len(target))
    while length and drafted[length - 1] == 0 and accepted[length - 1] == 0:
        length -= 1

    stats = []
    for i in range(length):
        d, a, n = drafted[i], accepted[i], reached[i]
        p = a / d if d > 0 else None
        alpha = a / n if n else None
        stats.append(PositionStat(
            position=i, drafted_steps=d, accepted=a, p_uncond=p,
            se=math.sqrt(max(p * (1 - p), 0.0) / d) if p is not None else None,
            cond_steps=n, alpha_cond=alpha,
            alpha_se=math.sqrt(max(alpha * (1 - alpha), 0.0) / n) if alpha is not None else None))
    return stats


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------


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
                    n_boot: int, seed: int, level: float) -> CellSummary:
    ok = [r for r in cell if _is_ok(r)]
    speculative = key.depth > 0
    lengths = [int(r.max_draft_len) for r in ok if _finite(r.max_draft_len) is not None]
    tau_steps = [parts[1] for parts in map(_tau_parts, ok) if parts is not None]
    return CellSummary(
        key=key,
        n_reps=len({r.rep for r in ok}),
        n_requests=len(ok),
        n_failed=len(cell) - len(ok),
        acceptance=_ratio_estimate(ok, _acceptance_parts, lambda x: x, n_boot, seed, level)
        if speculative else None,
        tau=_ratio_estimate(ok, _tau_parts, lambda x: 1.0 + x, n_boot, seed, level) if speculative else None,
        decode_tps=_ratio_estimate(ok, _decode_parts, lambda x: 1000.0 * x, n_boot, seed, level),
        wall_tps=_ratio_estimate(ok, _wall_parts, lambda x: 1000.0 * x, n_boot, seed, level),
        speedup=_speedup_estimate(ok, baseline, n_boot, seed, level) if ok and baseline else None,
        per_position=per_position(ok) if speculative else [],
        effective_depth=max(lengths) if lengths else None,
        drafted_tokens=_int_total(r.draft_n for r in ok),
        accepted_tokens=_int_total(r.draft_n_accepted for r in ok),
        steps=_int_total(tau_steps),
    )


def _summarize(records: Sequence[RequestRecord], order: Sequence[str], n_boot: int, seed: int,
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
    return [_summarize_cell(k, cells[k], baselines.get(k.model_label, []), n_boot, seed, level) for k in keys]


def summarize(records: Iterable[RequestRecord], n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> list[CellSummary]:
    """One CellSummary per (model_label, spec_type, depth), sorted by model order of first
    appearance (see ``model_order``), depth 0 first, then spec_type and depth. Cells with only
    failed requests are listed (their n_failed counts) with None statistics."""
    _check_boot_args(n_boot, level)
    recs = _canonical(records)
    return _summarize(recs, model_order(recs), n_boot, seed, level)


def summarize_by_category(records: Iterable[RequestRecord], n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict[str, list[CellSummary]]:
    """``summarize`` per prompt category (speedup against the same category's baseline), with
    the model order of the whole record set so tables line up. Keys sorted."""
    _check_boot_args(n_boot, level)
    recs = _canonical(records)
    order = model_order(recs)
    by_category: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in recs:
        by_category[r.category].append(r)
    return {c: _summarize(by_category[c], order, n_boot, seed, level) for c in sorted(by_category)}


# ---------------------------------------------------------------------------------------------
# Paired comparisons between models
# ---------------------------------------------------------------------------------------------


def paired_difference(records_a: Iterable[RequestRecord], records_b: Iterable[RequestRecord],
                      n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> PairedComparison | None:
    """acceptance(a) − acceptance(b) on the (prompt_id, rep) pairs present (ok, with draft
    counts) in both. Per rep, the ratio-of-sums acceptance of each side over the shared prompts;
    diff = mean over reps of the difference. The interval resamples prompts (a prompt's pairs
    move together); significant = the interval excludes 0.

    Both sides must be at one draft depth. Returns None when no pair has drafted tokens on both
    sides (nothing to compare) or no bootstrap replicate is defined.
    """
    _check_boot_args(n_boot, level)
    if n_boot == 0:
        raise ValueError("paired_difference needs n_boot >= 1 for its interval")
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
                               lambda s: _safe_div(s["na"], s["da"]) - _safe_div(s["nb"], s["db"]),
                               n_boot, seed, level)
    diff = _estimate(point, None)
    if diff is None or ci is None:
        return None
    return PairedComparison(
        label_a="+".join(sorted({r.model_label for r in ok_a})),
        label_b="+".join(sorted({r.model_label for r in ok_b})),
        depth=depths.pop(),
        diff=diff.mean, ci_low=ci[0], ci_high=ci[1], n_pairs=len(common),
        significant=ci[0] > 0 or ci[1] < 0,
    )


def neighbour_comparisons(records: Iterable[RequestRecord], n_boot: int = 2000,
                          seed: int = 0) -> list[PairedComparison]:
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
            cmp = paired_difference(by_model[a], by_model[b], n_boot=n_boot, seed=seed)
            if cmp is not None:
                out.append(cmp)
    return out


# ---------------------------------------------------------------------------------------------
# The i.i.d.-acceptance model (Leviathan et al. 2023)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Recommendation
# ---------------------------------------------------------------------------------------------


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
