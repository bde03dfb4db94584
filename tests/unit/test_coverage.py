"""The coverage harness (specsweep.analysis.coverage) on the committed real demo run, and the
property the tool's significance marks must have: a model compared with itself is marked
significant no more often than the nominal 5% across the harness's replicates."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import stats

from specsweep.analysis import REPORTED, by_drafting
from specsweep.analysis.coverage import (BINOMIAL, Hierarchy, fit_hierarchy, grids_from_records, measure,
                                         pooled_hierarchy, subsample_replicates, synthetic_truth)
from specsweep.analysis.intervals import PROMPT_BOOTSTRAP
from specsweep.records import encode_steps

from tests.records import rec


@pytest.fixture(scope="module")
def grids(demo_records):
    return grids_from_records(by_drafting(demo_records))


def test_grids_of_the_demo_run_are_complete(grids):
    assert len(grids) == 12  # 3 models × depths 1-4
    for g in grids:
        assert (len(g.prompts), len(g.reps)) == (5, 3)
        assert g.has("accepted", "drafted", "steps", "pos0_acc", "n1", "d0")
        assert 0 < g.pooled("accepted", "drafted") < 1


def test_a_model_against_itself_is_marked_significant_at_most_at_the_nominal_rate(grids):
    """Self-comparisons (same prompts, new rep effects and steps) simulated from the hierarchy
    fitted to the demo run at depth 2, at the published 5 prompts × 3 reps. The printed interval's
    false-positive rate must not be significantly above 5% (one-sided binomial test); the
    percentile bootstrap printed before is, which shows the test can fail."""
    model = pooled_hierarchy([fit_hierarchy(g) for g in grids if g.depth == 2])
    assert model.sd_prompt > 0 or model.sd_rep > 0  # real heterogeneity, not a flat model
    stat, replicates = model.replicates(5, 3, 300, seed=11, statistic="self-difference")
    rows = {c.method: c for c in measure(stat, replicates, [REPORTED, PROMPT_BOOTSTRAP], n_boot=300)}
    for method in (REPORTED, PROMPT_BOOTSTRAP):
        assert rows[method].replicates == 300 and rows[method].undefined == 0
    false_positives = {m: c.replicates - c.covered for m, c in rows.items()}
    assert stats.binomtest(false_positives[REPORTED], 300, 0.05, alternative="greater").pvalue > 0.01
    assert stats.binomtest(false_positives[PROMPT_BOOTSTRAP], 300, 0.05, alternative="greater").pvalue < 0.01


def test_subsampled_self_difference_of_a_real_cell_uses_disjoint_reps(grids):
    grid = next(g for g in grids if g.depth == 1)
    assert subsample_replicates(grid, 5, 2, 10, 0, "self-difference") is None  # 2 × 2 reps > 3
    stat, replicates = subsample_replicates(grid, 4, 1, 5, 0, "self-difference")
    assert stat.truth == 0.0
    for tables in replicates:
        assert tables["na"].shape == (4, 1)
        assert not np.array_equal(tables["na"], tables["nb"]) or np.array_equal(grid.sums["accepted"][:, 0],
                                                                                grid.sums["accepted"][:, 1])


def test_subsampled_acceptance_truth_is_the_pooled_run(grids):
    grid = grids[0]
    stat, replicates = subsample_replicates(grid, 5, 3, 20, 1, "acceptance")
    assert stat.truth == pytest.approx(grid.sums["accepted"].sum() / grid.sums["drafted"].sum())
    rows = measure(stat, replicates, [REPORTED, BINOMIAL])
    assert [r.replicates + r.undefined for r in rows] == [20, 20]
    assert all(0 <= r.covered <= r.replicates for r in rows)


def test_hierarchy_truth_and_fit_round_trip():
    flat = Hierarchy(depth=3, mu=0.4, sd_prompt=0.0, sd_rep=0.0, steps=((50, 60),))
    alpha = 1 / (1 + np.exp(-0.4))
    assert flat.truth() == pytest.approx((alpha + alpha ** 2 + alpha ** 3) / 3)
    mixed = Hierarchy(depth=1, mu=0.0, sd_prompt=0.0, sd_rep=0.0, steps=((50,),), easy_share=0.25, easy_shift=2.0)
    assert mixed.truth() == pytest.approx(0.75 * 0.5 + 0.25 / (1 + np.exp(-2.0)))
    # simulate one large run from known parameters, fit it back
    known = Hierarchy(depth=2, mu=0.2, sd_prompt=0.5, sd_rep=0.3, steps=((150, 160, 170),) * 3)
    _, tables = known.replicates(60, 6, 1, seed=5, statistic="acceptance")
    table = next(tables)
    grid = type("G", (), {"sums": {"accepted": table["num"], "drafted": table["den"], "steps": table["den"] / 2},
                          "depth": 2})()
    fitted = fit_hierarchy(grid)
    assert fitted.mu == pytest.approx(0.2, abs=0.15)
    assert fitted.sd_prompt == pytest.approx(0.5, abs=0.15)
    assert fitted.sd_rep == pytest.approx(0.3, abs=0.1)


def test_synthetic_truth_follows_the_drafts_actually_made():
    full = rec(depth=3, log_step_pairs=encode_steps([(3, 3), (0, 3), (1, 3)]))
    assert synthetic_truth([full], [0.8, 0.6, 0.4]) == pytest.approx(0.6)  # full drafts: the mean rate
    short = rec(depth=3, log_step_pairs=encode_steps([(1, 1), (2, 3)]))  # one draft of 1 token, one of 3
    assert synthetic_truth([short], [0.8, 0.6, 0.4]) == pytest.approx((0.8 + 1.8) / 4)
