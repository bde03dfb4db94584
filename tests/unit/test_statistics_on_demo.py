"""Statistics on the committed real demo run (tests/fixtures/sweep-run.db): a test of the
statistics, not of the engine."""

from __future__ import annotations

import pytest

from specsweep.analysis import paired_difference, summarize


@pytest.fixture
def records(demo_records):
    return list(demo_records)


def test_bootstrap_intervals_contain_the_rep_based_means(records):
    cells = [c for c in summarize(records) if c.key.depth > 0]
    assert len(cells) == 12
    for cell in cells:
        for estimate in (cell.acceptance, cell.speedup):
            assert estimate.ci_low is not None
            assert estimate.ci_low <= estimate.mean <= estimate.ci_high, cell.key
            assert estimate.ci_high > estimate.ci_low  # five prompts: a real interval, not a point


def test_a_model_against_itself_is_not_significantly_different(records):
    for depth in (1, 2, 3, 4):
        same = [r for r in records if r.model_label == "Q4_K_M" and r.depth == depth]
        comparison = paired_difference(same, same)
        assert comparison.diff == 0 and comparison.ci_low <= 0 <= comparison.ci_high
        assert not comparison.significant
        assert comparison.n_pairs == 15


def test_the_far_ends_of_the_ladder_do_differ(records):
    """The same machinery does find a difference where there is one (Q8_0 vs Q2_K_S at depth 4)."""
    a = [r for r in records if r.model_label == "Q8_0" and r.depth == 4]
    b = [r for r in records if r.model_label == "Q2_K_S" and r.depth == 4]
    comparison = paired_difference(a, b)
    assert comparison.significant and comparison.diff > 0.1
