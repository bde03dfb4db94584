"""The interval methods of specsweep.analysis.intervals, each checked against a hand computation
or scipy on small tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from specsweep.analysis.intervals import (MIN_PROMPTS, PROMPT_BCA, PROMPT_BOOTSTRAP, PROMPT_T, TWO_WAY_T,
                                          effective_df, interval, jackknife_se, prompt_t, prompt_t_simple,
                                          rep_t, reported_interval)


def ratio(s):
    with np.errstate(all="ignore"):
        return s["num"] / s["den"]


def tables(accepted, drafted=None):
    accepted = np.asarray(accepted, dtype=float)
    drafted = np.full(accepted.shape, 100.0) if drafted is None else np.asarray(drafted, dtype=float)
    return {"num": accepted, "den": drafted}


# five prompts × three reps of 100 drafted tokens each
SPREAD = tables([[40, 44, 42], [55, 50, 52], [30, 33, 35], [61, 58, 60], [47, 45, 49]])


def test_jackknife_se_by_hand():
    acc = SPREAD["num"]
    left_out = [np.mean((acc.sum(axis=0) - acc[p]) / 400) for p in range(5)]
    want = math.sqrt(4 / 5 * sum((v - np.mean(left_out)) ** 2 for v in left_out))
    assert jackknife_se(SPREAD, ratio) == (pytest.approx(want), 5)
    # equal denominators: the ratio is a mean, whose jackknife SE is the sd of prompt means / √P
    assert want == pytest.approx(np.std(acc.mean(axis=1) / 100, ddof=1) / math.sqrt(5))


def test_prompt_t_simple_is_the_t_interval_of_prompt_means_when_prompts_weigh_alike():
    means = SPREAD["num"].mean(axis=1) / 100
    want = stats.t.interval(0.95, 4, loc=means.mean(), scale=stats.sem(means))
    assert prompt_t_simple(SPREAD, ratio, 0.95) == pytest.approx(want)
    assert prompt_t(SPREAD, ratio, 0.95) == pytest.approx(want)  # equal weights: df = P − 1, no logit


def test_effective_df_falls_when_a_few_prompts_carry_the_tokens():
    equal = tables(np.full((5, 3), 50.0))
    assert effective_df(equal) == 4
    drafted = np.array([[300] * 3, [20] * 3, [250] * 3, [150] * 3, [130] * 3])
    w = drafted[:, 0] / drafted[:, 0].sum()
    uneven = tables(drafted * 0.4, drafted)
    assert effective_df(uneven) == pytest.approx(np.sum(w ** 2) ** 2 / np.sum(w ** 4))
    assert 1 <= effective_df(uneven) < 4
    low, high = prompt_t(uneven | {"num": uneven["num"] + np.arange(5)[:, None]}, ratio, 0.95)
    simple = prompt_t_simple(uneven | {"num": uneven["num"] + np.arange(5)[:, None]}, ratio, 0.95)
    assert high - low > simple[1] - simple[0]  # fewer df: wider


def test_bounded_prompt_t_is_the_logit_interval_and_stays_inside_0_1():
    small = tables([[3, 1, 2], [0, 1, 0], [8, 6, 7], [1, 2, 1], [2, 0, 1]])
    low, high = prompt_t(small, ratio, 0.95, bounded=True)
    point = small["num"].sum() / small["den"].sum() / 1  # equal denominators: rep mean = pooled
    se, _ = jackknife_se(small, ratio)
    half = stats.t.ppf(0.975, 4) * se / (point * (1 - point))
    assert (low, high) == pytest.approx((special.expit(special.logit(point) - half),
                                         special.expit(special.logit(point) + half)))
    assert 0 < low < point < high < 1 and high - point > point - low  # leans away from 0
    assert prompt_t_simple(small, ratio, 0.95)[0] < 0  # the symmetric one crosses the bound


def test_rep_t_is_scipys_t_interval_over_rep_values():
    values = SPREAD["num"].sum(axis=0) / 500
    assert rep_t(SPREAD, ratio, 0.95) == pytest.approx(stats.t.interval(0.95, 2, loc=values.mean(),
                                                                       scale=stats.sem(values)))
    assert rep_t(tables([[40], [50], [60], [45]]), ratio, 0.95) is None  # one rep: no spread


def test_bootstraps_are_deterministic_and_contain_the_estimate():
    point = SPREAD["num"].sum() / 1500
    for method in (PROMPT_BOOTSTRAP, PROMPT_BCA):
        got = interval(method, SPREAD, ratio, n_boot=400, seed=3)
        assert got == interval(method, SPREAD, ratio, n_boot=400, seed=3)
        assert got[0] < point < got[1]
    # with a single rep and equal denominators the statistic is a plain mean: scipy's own BCa
    one = tables(SPREAD["num"][:, :1])
    want = stats.bootstrap((one["num"][:, 0] / 100,), np.mean, n_resamples=400, method="BCa",
                           rng=np.random.default_rng(3)).confidence_interval
    assert interval(PROMPT_BCA, one, ratio, n_boot=400, seed=3) == pytest.approx(tuple(want))


def test_reported_interval_needs_min_prompts():
    assert MIN_PROMPTS == 3
    assert reported_interval(tables(SPREAD["num"][:2]), ratio) is None
    assert reported_interval(tables(SPREAD["num"][:3]), ratio) == interval(PROMPT_T, tables(SPREAD["num"][:3]), ratio)
    # a prompt without any data does not count as one
    padded = tables(np.vstack([SPREAD["num"][:2], np.zeros((2, 3))]), np.vstack([SPREAD["den"][:2], np.zeros((2, 3))]))
    assert reported_interval(padded, ratio) is None
    with pytest.raises(ValueError):
        interval("nonsense", SPREAD, ratio)



def test_two_way_adds_what_a_rep_shares_across_prompts():
    rng = np.random.default_rng(1)
    prompt_effect = rng.normal(0, 5, (6, 1))
    # prompts independent: two-way is about the prompt interval
    independent = tables(np.clip(50 + prompt_effect + rng.normal(0, 3, (6, 4)), 0, 100))
    one, two = prompt_t(independent, ratio, 0.95), interval(TWO_WAY_T, independent, ratio)
    assert 0.7 < (two[1] - two[0]) / (one[1] - one[0]) < 2.0
    # every prompt of a rep moves together (a shared seed): only the two-way interval sees it
    shared = tables(np.clip(50 + prompt_effect + np.array([[-8, 9, -6, 7]]), 0, 100))
    one, two = prompt_t(shared, ratio, 0.95), interval(TWO_WAY_T, shared, ratio)
    assert two[1] - two[0] > 3 * (one[1] - one[0])
    assert two[0] < shared["num"].sum() / shared["den"].sum() < two[1]
