"""Confidence intervals of the reported statistics: the one the tool prints, and the candidates it
was measured against (``benchmarks/coverage.md``).

Every interval specsweep prints is of a statistic built the same way: per-(prompt, rep) sums of
numerators and denominators (``tables``: name -> [n_prompts, n_reps]), a value per rep from the
column sums (``per_rep``: a ratio of sums over the rep's prompts — acceptance, τ, speed, speedup,
a paired difference) and the mean of those values over reps.

What an interval is about: the acceptance of prompts like these, not of these few prompts only.
A prompt is the sampling unit (its reps move together); the spread between prompts and the noise
between reps both widen the interval. Methods:

``prompt-t``          estimate ± t(df) · delete-one-prompt jackknife standard error, df the prompts'
                      effective degrees of freedom (``effective_df``), on the logit scale for a
                      share such as acceptance. The tool's interval.
``prompt-t-simple``   the same with df = P − 1 and no logit: slightly narrow when prompts weigh
                      unequally (their generations differ in length).
``two-way-t``         prompts and reps crossed: adds what a rep shares across its prompts (its seed,
                      the machine's state while it ran) to the prompt jackknife.
``prompt-bootstrap``  percentile bootstrap over prompts: the tool's interval before; with 5 prompts
                      its quantiles are those of a normal, not of a t with 4 df, and it undercovers.
``prompt-bca``        bias-corrected and accelerated bootstrap over prompts (scipy.stats.bootstrap).
``rep-t``             estimate ± t(R−1) · sd over reps / √R: treats the prompts as fixed, so it
                      leaves the spread between prompts out.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Mapping

import numpy as np
# scipy.special only: scipy.stats takes about a second to import, paid by every `specsweep run` and
# `report` that prints a table; only the coverage harness's BCa bootstrap needs it (imported there).
from scipy import special

Tables = Mapping[str, np.ndarray]  # name -> [n_prompts, n_reps] sums
PerRep = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # column sums [..., n_reps] -> values [..., n_reps]
Interval = tuple[float, float]

PROMPT_T = "prompt-t"
PROMPT_T_SIMPLE = "prompt-t-simple"
TWO_WAY_T = "two-way-t"
PROMPT_BOOTSTRAP = "prompt-bootstrap"
PROMPT_BCA = "prompt-bca"
REP_T = "rep-t"

REPORTED = PROMPT_T  # the interval behind every CI, significance mark and --target-ci
# Fewer prompts than this and no interval is printed. Two prompts leave the jackknife one degree
# of freedom: the interval still covers when prompts vary normally (coverage.md) but spans tens of
# points, and rests entirely on how two prompts happen to differ.
MIN_PROMPTS = 3

DESCRIPTION = {
    PROMPT_T: "t over prompts: jackknife SE, t with the prompts' effective df, logit scale for acceptance",
    PROMPT_T_SIMPLE: "t over prompts: jackknife SE, t with prompts − 1 df, symmetric",
    TWO_WAY_T: "t over prompts and reps crossed (two-way jackknife, Satterthwaite df)",
    PROMPT_BOOTSTRAP: "percentile bootstrap over prompts",
    PROMPT_BCA: "BCa bootstrap over prompts",
    REP_T: "t over reps (prompts held fixed)",
}


def row_means(x: np.ndarray) -> np.ndarray:
    """Mean over the finite entries of the last axis (the reps with a defined value); NaN if none."""
    finite = np.isfinite(x)
    count = finite.sum(axis=-1)
    total = np.where(finite, x, 0.0).sum(axis=-1)
    out = np.full(count.shape, np.nan)
    with np.errstate(all="ignore"):
        np.divide(total, count, out=out, where=count > 0)
    return out


def rep_values(tables: Tables, per_rep: PerRep) -> np.ndarray:
    """The statistic of each rep over all prompts: [n_reps], NaN where a rep is undefined."""
    with np.errstate(all="ignore"):
        return per_rep({k: t.sum(axis=0) for k, t in tables.items()})


def _with_data(tables: Tables) -> dict[str, np.ndarray]:
    """The prompts with any data (a prompt whose every sum is 0 drafted and timed nothing)."""
    keep = np.zeros(next(iter(tables.values())).shape[0], dtype=bool)
    for t in tables.values():
        keep |= (t != 0).any(axis=1)
    return {k: t[keep] for k, t in tables.items()}


def _finite_interval(low: float, high: float) -> Interval | None:
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else None


def _t_quantile(level: float, df: int) -> float:
    return float(special.stdtrit(df, 0.5 + level / 2))  # what scipy.stats.t.ppf computes


def percentile_interval(values: np.ndarray, level: float) -> Interval | None:
    """The central ``level`` percentile range of the finite values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    with np.errstate(all="ignore"):
        low, high = np.percentile(values, [tail, 100 - tail])
    return _finite_interval(low, high)


def resample_indices(n_prompts: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_prompts] prompt indices drawn with replacement. Every bootstrap path uses this,
    so a seed gives the same replicates everywhere."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_prompts, size=(n_boot, n_prompts))


def resample_counts(n_prompts: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_prompts]: how often each prompt was drawn in each replicate."""
    idx = resample_indices(n_prompts, n_boot, seed)
    counts = np.zeros((n_boot, n_prompts))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def prompt_bootstrap(tables: Tables, per_rep: PerRep, level: float, n_boot: int, seed: int) -> Interval | None:
    """Percentile bootstrap: a replicate redraws prompts with replacement (a prompt's row moves as
    one), sums become ``counts @ table``; replicates where no rep is defined are dropped."""
    n_prompts = next(iter(tables.values())).shape[0]
    if n_boot == 0 or n_prompts == 0:
        return None
    counts = resample_counts(n_prompts, n_boot, seed)
    with np.errstate(all="ignore"):
        replicate_reps = per_rep({k: counts @ t for k, t in tables.items()})  # [n_boot, n_reps]
    return percentile_interval(row_means(replicate_reps), level)


def prompt_bca(tables: Tables, per_rep: PerRep, level: float, n_boot: int, seed: int) -> Interval | None:
    """scipy.stats.bootstrap (BCa) with the prompt indices as the data: the statistic turns a
    resample of indices into per-prompt counts and recomputes the estimate from the tables."""
    from scipy import stats
    tables = _with_data(tables)
    n_prompts = next(iter(tables.values())).shape[0]
    if n_boot == 0 or n_prompts < 2:
        return None

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        counts = (np.moveaxis(idx, axis, -1)[..., None] == np.arange(n_prompts)).sum(axis=-2).astype(float)
        with np.errstate(all="ignore"):
            return row_means(per_rep({k: counts @ t for k, t in tables.items()}))

    with warnings.catch_warnings():  # a constant statistic is a degenerate interval, returned as None
        warnings.simplefilter("ignore")
        result = stats.bootstrap((np.arange(n_prompts),), statistic, n_resamples=n_boot, vectorized=True,
                                 confidence_level=level, method="BCa", rng=np.random.default_rng(seed))
    return _finite_interval(*result.confidence_interval)


def jackknife_se(tables: Tables, per_rep: PerRep) -> tuple[float, int] | None:
    """Delete-one-prompt jackknife standard error of the rep-mean estimate, and the number of
    prompts it rests on; None with fewer than 2 prompts or when a leave-one-out value is undefined."""
    tables = _with_data(tables)
    n_prompts = next(iter(tables.values())).shape[0]
    if n_prompts < 2:
        return None
    with np.errstate(all="ignore"):
        left_out = row_means(per_rep({k: t.sum(axis=0)[None, :] - t for k, t in tables.items()}))  # [P]
    if not np.isfinite(left_out).all():
        return None
    spread = left_out - left_out.mean()
    return math.sqrt((n_prompts - 1) / n_prompts * float(np.sum(spread * spread))), n_prompts


def effective_df(tables: Tables) -> float:
    """Degrees of freedom of the jackknife variance when prompts weigh unequally: a prompt's
    weight is its share of all the sums (its share of the drafted tokens, for acceptance), and
    the Satterthwaite approximation for Σ w_p² e_p² gives (Σ w²)² / Σ w⁴ — P for equal weights,
    fewer when a few long generations dominate. Capped at P − 1, the jackknife's own df."""
    tables = _with_data(tables)
    totals = sum(np.abs(t).sum(axis=1) for t in tables.values())
    weights = totals / totals.sum()
    n_prompts = weights.size
    return float(min(n_prompts - 1, np.sum(weights ** 2) ** 2 / np.sum(weights ** 4)))


def prompt_t(tables: Tables, per_rep: PerRep, level: float, bounded: bool = False) -> Interval | None:
    """estimate ± t(df) · jackknife SE over prompts, df = ``effective_df``. ``bounded`` (a share
    in 0..1, such as acceptance): the same interval on the logit scale (delta method), so that
    near 0 or 1 it leans away from the bound instead of crossing it."""
    se = jackknife_se(tables, per_rep)
    point = float(row_means(rep_values(tables, per_rep)))
    if se is None or not math.isfinite(point):
        return None
    quantile = _t_quantile(level, effective_df(tables))
    if bounded and 0.0 < point < 1.0:
        centre, half = special.logit(point), quantile * se[0] / (point * (1.0 - point))
        return _finite_interval(special.expit(centre - half), special.expit(centre + half))
    return _finite_interval(point - quantile * se[0], point + quantile * se[0])


def prompt_t_simple(tables: Tables, per_rep: PerRep, level: float) -> Interval | None:
    """estimate ± t(P−1) · jackknife SE over prompts: the textbook cluster t interval."""
    se = jackknife_se(tables, per_rep)
    point = float(row_means(rep_values(tables, per_rep)))
    if se is None or not math.isfinite(point):
        return None
    half = _t_quantile(level, se[1] - 1) * se[0]
    return _finite_interval(point - half, point + half)


def two_way_t(tables: Tables, per_rep: PerRep, level: float, bounded: bool = False) -> Interval | None:
    """Prompts and reps crossed (Cameron, Gelbach & Miller 2011): V = V_prompts + V_reps − V_cells,
    each a delete-one jackknife (a prompt, a rep, a (prompt, rep) cell), at least the larger of the
    first two; t with the Satterthwaite df of V_prompts (``effective_df``) and V_reps (R − 1).
    For what a rep shares across prompts (its seed, the machine's state while it ran)."""
    tables = _with_data(tables)
    n_prompts, n_reps = next(iter(tables.values())).shape
    if n_prompts < 2 or n_reps < 2:
        return None
    with np.errstate(all="ignore"):
        values = per_rep({k: t.sum(axis=0) for k, t in tables.items()})  # [R]
        left = per_rep({k: t.sum(axis=0)[None, :] - t for k, t in tables.items()})  # [P, R]: rep r without p
    if not (np.isfinite(values).all() and np.isfinite(left).all()):
        return None
    point = float(values.mean())

    def jackknife(estimates: np.ndarray) -> float:
        n = estimates.size
        return (n - 1) / n * float(np.sum((estimates - estimates.mean()) ** 2))

    by_prompt = left.mean(axis=1)  # the estimate without prompt p: every rep's value without it
    by_rep = (values.sum() - values) / (n_reps - 1)  # the estimate without rep r
    # A cell's pull on the estimate, (values_r − left_pr) / R, scaled by (P−1)/P so that it is its
    # own share of the sum (removing it also shrinks its rep's denominator): heteroskedastic V.
    v_cells = float(np.sum(((n_prompts - 1) / n_prompts * (values[None, :] - left) / n_reps) ** 2))
    v_prompts, v_reps = jackknife(by_prompt), jackknife(by_rep)
    variance = max(v_prompts + v_reps - v_cells, v_prompts, v_reps)
    df_prompts = effective_df(tables)
    df = (v_prompts + v_reps) ** 2 / (v_prompts ** 2 / df_prompts + v_reps ** 2 / (n_reps - 1)) \
        if v_prompts + v_reps > 0 else n_reps - 1
    quantile, se = _t_quantile(level, max(1.0, df)), math.sqrt(variance)
    if bounded and 0.0 < point < 1.0:
        centre, half = special.logit(point), quantile * se / (point * (1.0 - point))
        return _finite_interval(special.expit(centre - half), special.expit(centre + half))
    return _finite_interval(point - quantile * se, point + quantile * se)


def rep_t(tables: Tables, per_rep: PerRep, level: float) -> Interval | None:
    """mean over reps ± t(R−1) · sd / √R of the per-rep values."""
    values = rep_values(tables, per_rep)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    half = _t_quantile(level, values.size - 1) * float(np.std(values, ddof=1)) / math.sqrt(values.size)
    mean = float(np.mean(values))
    return _finite_interval(mean - half, mean + half)


def interval(method: str, tables: Tables, per_rep: PerRep, level: float = 0.95, n_boot: int = 2000,
             seed: int = 0, bounded: bool = False) -> Interval | None:
    """The ``level`` interval of the rep-mean statistic by ``method`` (see the module docstring);
    ``bounded``: the statistic is a share in 0..1 (only ``prompt-t`` uses it)."""
    if method == PROMPT_T:
        return prompt_t(tables, per_rep, level, bounded)
    if method == PROMPT_T_SIMPLE:
        return prompt_t_simple(tables, per_rep, level)
    if method == TWO_WAY_T:
        return two_way_t(tables, per_rep, level, bounded)
    if method == PROMPT_BOOTSTRAP:
        return prompt_bootstrap(tables, per_rep, level, n_boot, seed)
    if method == PROMPT_BCA:
        return prompt_bca(tables, per_rep, level, n_boot, seed)
    if method == REP_T:
        return rep_t(tables, per_rep, level)
    raise ValueError(f"unknown interval method {method!r}; known: {', '.join(DESCRIPTION)}")


def n_prompts_with_data(tables: Tables) -> int:
    return next(iter(_with_data(tables).values())).shape[0]


def reported_interval(tables: Tables, per_rep: PerRep, level: float = 0.95,
                      bounded: bool = False) -> Interval | None:
    """The interval the tool prints (``REPORTED``); None below ``MIN_PROMPTS`` prompts."""
    if n_prompts_with_data(tables) < MIN_PROMPTS:
        return None
    return interval(REPORTED, tables, per_rep, level, bounded=bounded)
