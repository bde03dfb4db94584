"""Rep statistics and their intervals: ``Estimate`` (mean ± sd over reps with n), ratio-of-sums
parts per record, the interval of a rep mean (``intervals``), a generic prompt-level bootstrap
and acceptance per rep (definitions in ``specsweep.analysis``)."""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..records import RequestRecord
from .intervals import percentile_interval, rep_values, reported_interval, resample_indices


OK_STATUS = "ok"


@dataclass(frozen=True)
class Estimate:
    """Mean ± sample sd over reps, the number of reps n, and the 95% interval of the mean.

    Construction refuses NaN/inf so that no undefined number can leave this module unnoticed.
    """

    mean: float
    sd: float  # sample sd (ddof=1); 0.0 when n == 1 (n says so)
    n: int
    # t over prompts (intervals.REPORTED); None when not asked for or below MIN_PROMPTS prompts
    ci_low: float | None = None
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
            raise ValueError("the interval must be finite")

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


_ALL_FIELDS = operator.attrgetter(*(f.name for f in fields(RequestRecord)))


def _canonical(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """A total order over records (repr of every field; repr of a float is exact), so that sums
    and everything after them are identical whatever order the caller passed."""
    return sorted(records, key=lambda r: tuple(map(repr, _ALL_FIELDS(r))))


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


def _acceptance_parts(r: RequestRecord) -> tuple[float, float] | None:
    return _pair(r.draft_n_accepted, r.draft_n)


def _first_tally(r: RequestRecord, tallies, from_timings) -> tuple[float, float] | None:
    """(count, verification steps) from one tally, so a ratio never mixes sources: the trace log
    (exact per step) first, then the /metrics deltas, then the timings' count over any step count."""
    for count, steps in tallies:
        got = _pair(count, steps)
        if got is not None:
            return got
    steps = r.log_steps if r.log_steps is not None else r.m_steps
    return _pair(from_timings, steps)


def _tau_parts(r: RequestRecord) -> tuple[float, float] | None:
    """(accepted, verification steps): τ = 1 + Σ accepted / Σ steps."""
    return _first_tally(r, ((r.log_accepted, r.log_steps), (r.m_accepted, r.m_steps)), r.draft_n_accepted)


def _draft_length_parts(r: RequestRecord) -> tuple[float, float] | None:
    """(drafted, verification steps): Σ / Σ is the mean draft length of the steps that drafted — the
    effective depth, which n-gram types decide themselves."""
    return _first_tally(r, ((r.log_drafted, r.log_steps), (r.m_draft_tokens, r.m_steps)), r.draft_n)


def _drafting_share_parts(r: RequestRecord) -> tuple[float, float] | None:
    """(steps that drafted, target decode steps). Every decode step yields one token plus the
    accepted ones, and the first token comes from the prompt pass: steps = predicted − 1 − accepted."""
    got = _tau_parts(r)
    predicted = _finite(r.predicted_n)
    if got is None or predicted is None:
        return None
    accepted, steps = got
    return steps, max(predicted - 1 - accepted, steps)


def speed_sample(records: Sequence[RequestRecord]) -> tuple[list[RequestRecord], str | None]:
    """The requests whose speed counts, and where it came from ("untraced" or "traced"; None: not
    measured). A request that shared its server with others (``slots`` > 1, ``--parallel``) has
    no speed of its own. Of the rest, the untraced ones when there are any: the trace log's cost
    sits inside a traced request's speed (every run stored before schema 6 was traced)."""
    alone = [r for r in records if (r.slots or 1) == 1]
    untraced = [r for r in alone if r.traced == 0]
    if untraced:
        return untraced, "untraced"
    return alone, "traced" if alone else None


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


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _check_boot_args(n_boot: int, level: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    _check_level(level)


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
                   with_interval: bool, level: float,
                   bounded: bool = False) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Per-rep values of a statistic built from per-(prompt, rep) sum tables, and the interval the
    tool prints for their mean over reps (``intervals.reported_interval``: t over prompts, None
    below ``intervals.MIN_PROMPTS`` prompts; ``bounded``: a share in 0..1)."""
    point = rep_values(tables, per_rep)
    if not with_interval or not np.isfinite(point).any():
        return point, None
    return point, reported_interval(tables, per_rep, level, bounded)


def bootstrap_ci(records: Iterable[RequestRecord],
                 statistic: Callable[[list[RequestRecord]], float | None],
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Prompt-level percentile bootstrap interval of ``statistic`` over the ok records.

    Each replicate draws prompt_ids with replacement (all reps' requests of a prompt move
    together) and recomputes ``statistic`` on the resulting records. Replicates where the
    statistic is None or not finite are dropped. Deterministic given ``seed``; the same seed
    draws the same prompts as ``intervals.prompt_bootstrap``. Returns None when there are no
    ok records, n_boot == 0, or the statistic is never defined. With few prompts this interval
    is too narrow (benchmarks/coverage.md): the tool prints ``intervals.REPORTED`` instead.
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
    for row in resample_indices(len(prompts), n_boot, seed):
        sample = [r for i in row for r in by_prompt[prompts[i]]]
        value = _finite(statistic(sample))
        if value is not None:
            values.append(value)
    return percentile_interval(np.asarray(values, dtype=float), level)


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
    """The reported acceptance: mean over reps of ``rep_acceptance``; None if nothing drafted."""
    values = list(rep_acceptance(records).values())
    return _finite(math.fsum(values) / len(values)) if values else None


def pooled_acceptance(records: Iterable[RequestRecord]) -> float | None:
    """Σ draft_n_accepted / Σ draft_n over all ok requests together (one ratio of sums)."""
    parts = [got for got in (_acceptance_parts(r) for r in records if _is_ok(r)) if got is not None]
    acc, drafted = math.fsum(a for a, _ in parts), math.fsum(d for _, d in parts)
    return _finite(acc / drafted) if drafted > 0 else None


def _ratio_estimate(ok: Sequence[RequestRecord], parts, transform: Callable[[np.ndarray], np.ndarray],
                    with_interval: bool, level: float, bounded: bool = False) -> Estimate | None:
    """Per rep transform(Σ num / Σ den), then mean ± sd over reps, with its interval (``bounded``:
    the values are shares in 0..1, as acceptance)."""
    prompts = sorted({r.prompt_id for r in ok})
    reps = sorted({r.rep for r in ok})
    num, den = _sum_tables(ok, prompts, reps, parts)
    point, ci = _rep_statistic({"num": num, "den": den},
                               lambda s: transform(_safe_div(s["num"], s["den"])), with_interval, level,
                               bounded)
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
                      with_interval: bool, level: float) -> Estimate | None:
    """Per rep: decode speed here / decode speed at depth 0, both over the same prompts (only
    (prompt, rep) pairs that succeeded on both sides), then mean ± sd over reps."""
    common, (n1, d1), (n0, d0) = _matched_tables(ok, baseline, _decode_parts)
    if not common:
        return None
    point, ci = _rep_statistic(
        {"n1": n1, "d1": d1, "n0": n0, "d0": d0},
        lambda s: _safe_div(_safe_div(s["n1"], s["d1"]), _safe_div(s["n0"], s["d0"])),
        with_interval, level)
    return _estimate(point, ci)
