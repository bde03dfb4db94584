"""Coverage of the intervals: how often each method's interval contains the truth.

Replicates are shaped like a sweep's per-(prompt, rep) sum tables, from one of two sources:

- ``subsample_replicates``: a run taken as the population. A replicate draws P distinct prompts
  and one set of R reps shared by them (a rep's requests run back to back, so anything a rep
  shares stays in), both without replacement. The truth is the pooled value over the whole run,
  or, for a run made with ``--spec-synth-rates``, the value the configured rates imply
  (``synthetic_truth``). The run is a finite population: a sample of P of its N prompts varies
  by (1 − P/N) of what P prompts of an endless supply would, so keep P ≪ N (the harness's
  coverage reads slightly high otherwise). A self-difference is exact: its truth is 0 whatever
  the run holds.
- ``Hierarchy.replicates``: a model prompt -> rep -> step fitted to a run (``fit_hierarchy``):
  logit α = μ + prompt effect + rep effect (normal), each verification step accepts a truncated
  geometric number of its n drafted tokens (P(k ≥ i) = α^i), steps per request resampled from the
  run. The truth is the model's population acceptance (quadrature). Thousands of replicates cost
  seconds.

Statistics: acceptance, speedup, the paired acceptance difference of two cells on the same
prompts and reps (truth: the difference of their pooled values), a cell against itself (two
disjoint rep sets of the same prompts; truth 0, so 1 − coverage is how often the significance
mark fires on no difference), and position 0's p with the per-position table's binomial interval.
Pure functions: no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import special, stats

from ..records import RequestRecord
from .estimates import _acceptance_parts, _decode_parts, _is_ok, _safe_div, _tau_parts
from .intervals import DESCRIPTION, Tables, interval
from .positions import _step_counts

BINOMIAL = "position-binomial"  # p ± z·sqrt(p(1−p)/steps), steps pooled over reps and prompts


def ratio(s):
    return _safe_div(s["num"], s["den"])


def speedup(s):
    return _safe_div(_safe_div(s["n1"], s["d1"]), _safe_div(s["n0"], s["d0"]))


def difference(s):
    return _safe_div(s["na"], s["da"]) - _safe_div(s["nb"], s["db"])


@dataclass(frozen=True)
class Grid:
    """One cell's complete prompt × rep grid of sums (every (prompt, rep) has an ok request)."""

    model: str
    spec_type: str
    depth: int
    prompts: tuple[str, ...]
    reps: tuple[int, ...]
    sums: dict[str, np.ndarray]  # accepted, drafted, steps, pos0_acc, pos0_drafted, n1, d1, n0, d0: [P, R]

    def has(self, *names: str) -> bool:
        return all(name in self.sums for name in names)

    def pooled(self, num: str, den: str) -> float:
        return float(self.sums[num].sum() / self.sums[den].sum())


def _cell_sums(records: Sequence[RequestRecord], prompts, reps, parts) -> np.ndarray | None:
    """[P, R, 2] sums of ``parts``; None when some (prompt, rep) has no value."""
    index = {(p, r): (i, j) for i, p in enumerate(prompts) for j, r in enumerate(reps)}
    out = np.zeros((len(prompts), len(reps), 2))
    seen = np.zeros((len(prompts), len(reps)), dtype=bool)
    for record in records:
        got = parts(record)
        at = index.get((record.prompt_id, record.rep))
        if got is None or at is None:
            continue
        out[at] += got
        seen[at] = True
    return out if seen.all() else None


def _pos0(r: RequestRecord) -> tuple[float, float] | None:
    counts = _step_counts(r)
    return None if counts is None or not counts[0] else (counts[1][0], counts[0][0])


def grids_from_records(records: Iterable[RequestRecord]) -> list[Grid]:
    """A Grid per (model, spec type, depth ≥ 1) cell over the prompts and reps every request of
    the cell has (a prompt missing a rep is dropped); speed sums where the model's depth 0 has
    the same prompts and reps."""
    cells: dict[tuple, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if _is_ok(r):
            cells[(r.model_label, r.spec_type, r.depth)].append(r)
    baselines = {m: rs for (m, _, d), rs in cells.items() if d == 0}
    out = []
    for (model, spec_type, depth), rs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        if depth == 0:
            continue
        reps = tuple(sorted({r.rep for r in rs}))
        keys = {(r.prompt_id, r.rep) for r in rs}
        prompts = tuple(sorted(p for p in {r.prompt_id for r in rs} if all((p, rep) in keys for rep in reps)))
        acc = _cell_sums(rs, prompts, reps, _acceptance_parts)
        steps = _cell_sums(rs, prompts, reps, _tau_parts)
        if acc is None or steps is None or len(prompts) < 2:
            continue
        sums = {"accepted": acc[..., 0], "drafted": acc[..., 1], "steps": steps[..., 1]}
        pos0 = _cell_sums(rs, prompts, reps, _pos0)
        if pos0 is not None:
            sums |= {"pos0_acc": pos0[..., 0], "pos0_drafted": pos0[..., 1]}
        speed = _cell_sums(rs, prompts, reps, _decode_parts)
        base = _cell_sums(baselines.get(model, []), prompts, reps, _decode_parts)
        if speed is not None and base is not None:
            sums |= {"n1": speed[..., 0], "d1": speed[..., 1], "n0": base[..., 0], "d0": base[..., 1]}
        out.append(Grid(model, spec_type, depth, prompts, reps, sums))
    return out


def synthetic_truth(records: Iterable[RequestRecord], rates: Sequence[float]) -> float | None:
    """The acceptance ``--spec-synth-rates`` implies for these requests: a step that drafted d
    tokens accepts Σ_{i<d} P_i on average, so truth = Σ_steps Σ_{i<d} P_i / Σ_steps d, from the
    drafted-per-position counts (steps that drafted ≥ i+1 tokens)."""
    expected = drafted = 0.0
    for r in records:
        counts = _step_counts(r) if _is_ok(r) else None
        if counts is None:
            continue
        expected += sum(n * p for n, p in zip(counts[0], rates))
        drafted += sum(counts[0])
    return expected / drafted if drafted else None


# --------------------------------------------------------------------------- replicates

@dataclass(frozen=True)
class Statistic:
    name: str
    per_rep: Callable
    truth: float
    bounded: bool = False  # a share in 0..1 (acceptance, position 0): prompt-t works on the logit scale


def _take(x: np.ndarray, prompts: np.ndarray, reps: np.ndarray) -> np.ndarray:
    return x[np.ix_(prompts, reps)]


def subsample_replicates(grid: Grid, n_prompts: int, n_reps: int, count: int, seed: int,
                         statistic: str, other: Grid | None = None,
                         truth: float | None = None) -> tuple[Statistic, Iterator[Tables]] | None:
    """Replicate tables of ``statistic`` ("acceptance", "speedup", "self-difference",
    "difference" against ``other``, "position 0") drawn from ``grid``; None when the grid
    cannot give that shape or statistic. ``truth`` overrides the pooled value of acceptance or
    position 0 (synthetic rates know it)."""
    n_all, r_all = len(grid.prompts), len(grid.reps)
    need_reps = 2 * n_reps if statistic == "self-difference" else n_reps
    if need_reps > r_all or n_prompts > n_all:
        return None
    s = grid.sums
    if statistic == "acceptance":
        stat = Statistic(statistic, ratio, truth if truth is not None else grid.pooled("accepted", "drafted"), True)
        parts = {"num": s["accepted"], "den": s["drafted"]}
    elif statistic == "position 0":
        if not grid.has("pos0_acc"):
            return None
        stat = Statistic(statistic, ratio, truth if truth is not None else grid.pooled("pos0_acc", "pos0_drafted"),
                         True)
        parts = {"num": s["pos0_acc"], "den": s["pos0_drafted"]}
    elif statistic == "speedup":
        if not grid.has("n1"):
            return None
        stat = Statistic(statistic, speedup, float(speedup({k: s[k].sum() for k in ("n1", "d1", "n0", "d0")})))
        parts = {k: s[k] for k in ("n1", "d1", "n0", "d0")}
    elif statistic == "self-difference":
        stat = Statistic(statistic, difference, 0.0)
        parts = None
    elif statistic == "difference":
        if other is None or other.prompts != grid.prompts or other.reps != grid.reps:
            return None
        stat = Statistic(statistic, difference,
                         grid.pooled("accepted", "drafted") - other.pooled("accepted", "drafted"))
        parts = {"na": s["accepted"], "da": s["drafted"], "nb": other.sums["accepted"], "db": other.sums["drafted"]}
    else:
        raise ValueError(f"unknown statistic {statistic!r}")

    def generate() -> Iterator[Tables]:
        rng = np.random.default_rng(seed)
        for _ in range(count):
            prompts = rng.permutation(n_all)[:n_prompts]
            reps = rng.permutation(r_all)[:need_reps]
            if parts is None:  # the same prompts, two disjoint rep sets paired by order
                a, b = reps[:n_reps], reps[n_reps:]
                yield {"na": _take(s["accepted"], prompts, a), "da": _take(s["drafted"], prompts, a),
                       "nb": _take(s["accepted"], prompts, b), "db": _take(s["drafted"], prompts, b)}
            else:
                yield {k: _take(v, prompts, reps) for k, v in parts.items()}

    return stat, generate()


def _mean_accepted(alpha: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """E[k] and Var[k] of one step's accepted tokens, P(k ≥ i) = α^i for i ≤ depth."""
    powers = np.stack([alpha ** i for i in range(1, depth + 1)])
    mean = powers.sum(axis=0)
    second = sum((2 * i - 1) * powers[i - 1] for i in range(1, depth + 1))
    return mean, second - mean ** 2


@dataclass(frozen=True)
class Hierarchy:
    """logit α_pr = mu + N(0, sd_prompt²) per prompt + N(0, sd_rep²) per (prompt, rep); each of a
    request's steps accepts min(G, depth) tokens, G geometric with P(G ≥ i) = α^i. A share
    ``easy_share`` of prompts is shifted by ``easy_shift`` on the logit scale: a kind of prompt the
    drafter finds far easier (real MTP heads accept ~96% on code and ~75% on stories: +2.1)."""

    depth: int
    mu: float
    sd_prompt: float
    sd_rep: float
    steps: tuple[tuple[int, ...], ...]  # per prompt of the fitted run, its requests' step counts
    easy_share: float = 0.0
    easy_shift: float = 0.0

    def _population_mean(self, of) -> float:
        """E[of(α)] over prompts and reps (Gauss-Hermite, the easy share mixed in)."""
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        spread = math.hypot(self.sd_prompt, self.sd_rep) * nodes
        mean = [float(np.sum(weights * of(special.expit(self.mu + shift + spread))) / np.sum(weights))
                for shift in (0.0, self.easy_shift)]
        return (1 - self.easy_share) * mean[0] + self.easy_share * mean[1]

    def truth(self) -> float:
        """Population acceptance E[E[k | α]] / depth (steps drawn independently of α)."""
        return self._population_mean(lambda alpha: _mean_accepted(alpha, self.depth)[0] / self.depth)

    def _draw(self, rng, prompt_effect: np.ndarray, source: np.ndarray, n_reps: int) -> dict[str, np.ndarray]:
        n_prompts = prompt_effect.size
        alpha = special.expit(self.mu + prompt_effect[:, None] + rng.normal(0, self.sd_rep, (n_prompts, n_reps)))
        steps = np.array([[rng.choice(self.steps[q]) for _ in range(n_reps)] for q in source])
        per_step = np.repeat(alpha.ravel(), steps.ravel())
        accepted = np.minimum(rng.geometric(1.0 - np.minimum(per_step, 1 - 1e-12)) - 1, self.depth)
        bounds = np.concatenate([[0], np.cumsum(steps.ravel())])[:-1]
        acc = np.add.reduceat(accepted, bounds).reshape(steps.shape) if per_step.size else np.zeros(steps.shape)
        first = np.add.reduceat((accepted > 0).astype(float), bounds).reshape(steps.shape)
        return {"accepted": acc.astype(float), "drafted": (steps * self.depth).astype(float),
                "pos0_acc": first, "pos0_drafted": steps.astype(float)}

    def replicates(self, n_prompts: int, n_reps: int, count: int, seed: int,
                   statistic: str) -> tuple[Statistic, Iterator[Tables]]:
        """Replicate tables of "acceptance", "position 0" or "self-difference" (a second run of
        the same prompts with new rep effects and steps)."""
        if statistic == "acceptance":
            stat = Statistic(statistic, ratio, self.truth(), True)
        elif statistic == "position 0":
            stat = Statistic(statistic, ratio, self._population_mean(lambda alpha: alpha), True)
        elif statistic == "self-difference":
            stat = Statistic(statistic, difference, 0.0)
        else:
            raise ValueError(f"the hierarchy simulates no {statistic!r}")

        def generate() -> Iterator[Tables]:
            rng = np.random.default_rng(seed)
            for _ in range(count):
                effect = rng.normal(0, self.sd_prompt, n_prompts) + self.easy_shift * (rng.random(n_prompts)
                                                                                        < self.easy_share)
                source = rng.integers(0, len(self.steps), n_prompts)
                a = self._draw(rng, effect, source, n_reps)
                if statistic == "self-difference":
                    b = self._draw(rng, effect, source, n_reps)
                    yield {"na": a["accepted"], "da": a["drafted"], "nb": b["accepted"], "db": b["drafted"]}
                elif statistic == "position 0":
                    yield {"num": a["pos0_acc"], "den": a["pos0_drafted"]}
                else:
                    yield {"num": a["accepted"], "den": a["drafted"]}

        return stat, generate()


def _alpha_from_acceptance(a: np.ndarray, depth: int) -> np.ndarray:
    """The α whose truncated geometric gives per-token acceptance ``a`` (E[k]/depth = a)."""
    grid = np.linspace(1e-4, 1 - 1e-4, 4001)
    return np.interp(a, _mean_accepted(grid, depth)[0] / depth, grid)


def fit_hierarchy(grid: Grid, sd_scale: float = 1.0) -> Hierarchy:
    """Method of moments on logit α per (prompt, rep): one-way ANOVA over prompts gives the
    between-prompt variance and the within-prompt mean square, from which the step-level noise
    the geometric steps add by themselves (delta method) is taken off. ``sd_scale`` multiplies
    both standard deviations (0: every request alike, as with synthetic rates)."""
    s, depth = grid.sums, grid.depth
    a = np.clip((s["accepted"] + 0.5) / (s["drafted"] + 1.0), 1e-3, 1 - 1e-3)
    alpha = _alpha_from_acceptance(a, depth)
    y = special.logit(alpha)
    n_prompts, n_reps = y.shape
    msw = float(np.sum((y - y.mean(axis=1, keepdims=True)) ** 2) / (n_prompts * (n_reps - 1))) if n_reps > 1 else 0.0
    msb = float(n_reps * np.var(y.mean(axis=1), ddof=1))
    mean_k, var_k = _mean_accepted(alpha, depth)
    eps = 1e-4  # d(E[k]/depth)/dα numerically, then the delta method onto the logit α scale
    slope = (_mean_accepted(np.minimum(alpha + eps, 1 - 1e-9), depth)[0] - mean_k) / eps / depth
    step_var = var_k / (s["steps"] * depth ** 2) / (slope * alpha * (1 - alpha)) ** 2
    sd_rep = math.sqrt(max(msw - float(np.mean(step_var)), 0.0))
    sd_prompt = math.sqrt(max((msb - msw) / n_reps, 0.0))
    steps = tuple(tuple(int(v) for v in row) for row in s["steps"])
    return Hierarchy(depth, float(np.mean(y)), sd_scale * sd_prompt, sd_scale * sd_rep, steps)


# --------------------------------------------------------------------------- coverage

@dataclass(frozen=True)
class Coverage:
    statistic: str
    method: str
    replicates: int  # with an interval (the others are counted in ``undefined``)
    covered: int
    undefined: int
    mean_half_width: float | None

    @property
    def rate(self) -> float | None:
        return self.covered / self.replicates if self.replicates else None


def binomial_interval(tables: Tables, level: float) -> tuple[float, float] | None:
    """The per-position table's interval: pooled p ± z·sqrt(p(1−p)/n), n = steps."""
    n = float(tables["den"].sum())
    if n <= 0:
        return None
    p = float(tables["num"].sum()) / n
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt(max(p * (1 - p), 0.0) / n)
    return p - half, p + half


def measure(stat: Statistic, replicates: Iterable[Tables], methods: Sequence[str], level: float = 0.95,
            n_boot: int = 1000, seed: int = 0) -> list[Coverage]:
    """Per method, how many replicates' intervals contain ``stat.truth`` (ends included)."""
    tally = {m: [0, 0, 0, 0.0] for m in methods}  # with interval, covered, undefined, Σ half-width
    for i, tables in enumerate(replicates):
        for method in methods:
            got = (binomial_interval(tables, level) if method == BINOMIAL else
                   interval(method, tables, stat.per_rep, level, n_boot=n_boot, seed=seed + i, bounded=stat.bounded))
            t = tally[method]
            if got is None:
                t[2] += 1
                continue
            t[0] += 1
            t[1] += int(got[0] <= stat.truth <= got[1])
            t[3] += (got[1] - got[0]) / 2
    return [Coverage(stat.name, m, t[0], t[1], t[2], t[3] / t[0] if t[0] else None) for m, t in tally.items()]


METHOD_NAMES = {**DESCRIPTION, BINOMIAL: "binomial over steps (the per-position table's ±, as a 95% interval)"}


def pooled_hierarchy(fits: Sequence[Hierarchy], sd_scale: float = 1.0) -> Hierarchy:
    """One hierarchy for several cells of one depth (say every model of a run): mean μ, the
    root-mean-square of the standard deviations times ``sd_scale``, every cell's step counts."""
    depths = {h.depth for h in fits}
    if len(depths) != 1:
        raise ValueError(f"pool hierarchies of one depth, got {sorted(depths)}")
    def rms(values) -> float:
        return math.sqrt(float(np.mean(np.square(values))))

    return Hierarchy(depths.pop(), float(np.mean([h.mu for h in fits])), sd_scale * rms([h.sd_prompt for h in fits]),
                     sd_scale * rms([h.sd_rep for h in fits]), tuple(row for h in fits for row in h.steps))
