"""Acceptance against fidelity across models: Pearson and Spearman (exact p for a few models)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

from .cells import CellSummary


@dataclass(frozen=True)
class Correlation:
    """Across models at one depth: acceptance vs a fidelity measure (``against``)."""

    spec_type: str
    depth: int
    against: str  # "top1_pct" or "kld_mean"
    n_models: int
    pearson_r: float | None
    pearson_p: float | None
    spearman_rho: float | None
    spearman_p: float | None
    why_none: str | None  # when undefined: too few models, constant values


def correlations(cells: Sequence[CellSummary], fidelity: dict[str, dict]) -> list[Correlation]:
    from scipy import stats
    out = []
    keys = sorted({(c.key.spec_type, c.key.depth) for c in cells if c.key.depth > 0 and c.acceptance})
    for spec_type, depth in keys:
        for against in ("top1_pct", "kld_mean"):
            pairs = [(c.acceptance.mean, float(fidelity[c.key.model_label][against])) for c in cells
                     if (c.key.spec_type, c.key.depth) == (spec_type, depth) and c.acceptance
                     and isinstance(fidelity.get(c.key.model_label, {}).get(against), (int, float))]
            values = dict(n_models=len(pairs), pearson_r=None, pearson_p=None, spearman_rho=None, spearman_p=None)
            why = None
            xs, ys = [p[1] for p in pairs], [p[0] for p in pairs]
            if len(pairs) < 3:
                why = f"needs ≥ 3 models, has {len(pairs)}"  # two points always correlate ±1
            elif len(set(xs)) < 2 or len(set(ys)) < 2:
                why = "a constant variable has no correlation"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pr = stats.pearsonr(xs, ys)
                    rho, rho_p = spearman(xs, ys)
                got = [float(pr.statistic), float(pr.pvalue), rho, rho_p]
                if all(math.isfinite(g) for g in got):
                    values.update(pearson_r=got[0], pearson_p=got[1], spearman_rho=got[2], spearman_p=got[3])
                else:
                    why = "undefined for these values"
            out.append(Correlation(spec_type=spec_type, depth=depth, against=against, why_none=why, **values))
    return out


EXACT_SPEARMAN_MAX = 8  # 8! = 40320 permutations: exact and still instant


def spearman(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Spearman ρ and its two-sided p. For a handful of models the t approximation is badly off
    (ρ = ±1 with 3 models gets p = 0), so up to EXACT_SPEARMAN_MAX models p is exact: the share
    of all rank permutations with |ρ| at least as large."""
    import itertools

    import numpy as np
    from scipy import stats
    result = stats.spearmanr(xs, ys)
    rho, p = float(result.statistic), float(result.pvalue)
    if len(xs) <= EXACT_SPEARMAN_MAX:
        rx, ry = stats.rankdata(xs), stats.rankdata(ys)
        rx = rx - rx.mean()
        perms = np.array(list(itertools.permutations(ry - ry.mean())))
        r = perms @ rx / (np.linalg.norm(perms, axis=1) * np.linalg.norm(rx))
        p = float(np.mean(np.abs(r) >= abs(rho) - 1e-12))
    return rho, p
