"""Property tests for specsweep.analysis: arbitrary small record sets never crash, never leak
NaN/inf, give the same answers in any input order, and count failed requests as failures only;
per-position rates are probabilities."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specsweep.analysis import (
    bootstrap_ci,
    estimate_draft_cost,
    expected_tokens_per_step,
    fit_geometric_alpha,
    mean_rep_acceptance,
    neighbour_comparisons,
    paired_difference,
    per_position,
    pooled_acceptance,
    predicted_best_depth,
    predicted_speedup,
    recommend,
    rep_acceptance,
    summarize,
    summarize_by_category,
)
from specsweep.records import RequestRecord, encode_steps

N_BOOT = 20  # enough to exercise the bootstrap paths while keeping the suite fast
SETTINGS = settings(max_examples=60, deadline=None)

counts = st.none() | st.integers(min_value=0, max_value=300)
times_ms = st.none() | st.floats(min_value=0.0, max_value=1e5, allow_nan=False, allow_infinity=False)
per_pos = st.none() | st.lists(st.integers(min_value=0, max_value=100), max_size=5)


@st.composite
def records_strategy(draw) -> RequestRecord:
    spec_type, depth = draw(st.sampled_from(["none", "draft-mtp", "ngram-simple"]).flatmap(
        lambda t: st.tuples(st.just(t), st.just(0) if t == "none" else st.integers(0, 4))))
    rep = draw(st.integers(0, 2))
    return RequestRecord(
        run_id=1, server_id=draw(st.integers(0, 3)),
        model_label=draw(st.sampled_from(["A", "B", "C"])), spec_type=spec_type, depth=depth,
        rep=rep, seed=1000 + rep, prompt_id=draw(st.sampled_from(["p0", "p1", "p2", "p3"])),
        category=draw(st.sampled_from(["code", "math"])), attempt=draw(st.integers(1, 2)),
        status=draw(st.sampled_from(["ok", "ok", "ok", "failed"])), error=None,
        started_at=draw(st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)),
        wall_ms=draw(times_ms), finish_reason=None, prompt_n=draw(counts), prompt_ms=draw(times_ms),
        predicted_n=draw(counts), predicted_ms=draw(times_ms), predicted_per_second=None,
        draft_n=draw(counts), draft_n_accepted=draw(counts),
        m_draft_tokens=draw(counts), m_accepted=draw(counts), m_steps=draw(counts),
        m_accepted_per_pos=draw(per_pos),
        log_steps=draw(counts), log_drafted=draw(counts), log_accepted=draw(counts),
        log_drafted_per_pos=draw(per_pos), log_accepted_per_pos=draw(per_pos),
        log_summary_drafted=None, log_summary_accepted=None,
        max_draft_len=draw(st.none() | st.integers(0, 8)), completion_tokens=draw(counts),
        crosscheck=None, content=None,
    )




@st.composite
def paired_sets(draw) -> list[RequestRecord]:
    """The same requests run on two or three models (accepted counts redrawn), so that pairing,
    speedup against a baseline and neighbour comparisons have data to work on."""
    base = [dataclasses.replace(r, model_label="A")
            for r in draw(st.lists(records_strategy(), min_size=1, max_size=6))]
    out = list(base)
    for i, label in enumerate(draw(st.lists(st.sampled_from(["B", "C"]), max_size=2, unique=True))):
        for r in base:
            out.append(dataclasses.replace(r, model_label=label, started_at=r.started_at + 1e4 * (i + 1),
                                           draft_n_accepted=draw(st.integers(0, 300))))
    return out


record_sets = st.lists(records_strategy(), max_size=14) | paired_sets()


def assert_all_finite(value, path="result"):
    """Walk dataclasses, lists, tuples and dicts; every float must be finite."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            assert_all_finite(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            assert_all_finite(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_all_finite(v, f"{path}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), f"{path} = {value}"


# Every analysis of a record set whose result must not depend on the records' order.
ORDER_INDEPENDENT = {
    "summarize": summarize,
    "summarize_by_category": summarize_by_category,
    "per_position": per_position,
    "rep_acceptance": rep_acceptance,
    "neighbour_comparisons": neighbour_comparisons,
    "bootstrap_ci(mean_rep_acceptance)": lambda records: bootstrap_ci(records, mean_rep_acceptance, n_boot=N_BOOT),
}


# Four properties of any record set share each generated example (generating the records is
# most of the time): finite results, order independence, a group paired with itself, and the
# same records all failed. Each analysis runs once on the records as drawn; the first two
# properties both check that result.
@SETTINGS
@given(record_sets, st.randoms(use_true_random=False))
def test_any_record_set(records, rnd):
    results = {name: analyse(records) for name, analyse in ORDER_INDEPENDENT.items()}
    check_no_crash_and_no_nan_or_inf(records, results)
    check_results_do_not_depend_on_record_order(records, rnd, results)
    check_paired_difference_against_itself_is_zero(records)
    if records:
        check_only_failures_are_counted_and_nothing_else(
            [dataclasses.replace(r, status="failed") for r in records])


def check_no_crash_and_no_nan_or_inf(records, results):
    summaries = results["summarize"]
    assert_all_finite(summaries)
    assert sum(c.n_requests + c.n_failed for c in summaries) == len(records)
    for c in summaries:
        for est in (c.acceptance, c.tau, c.decode_tps, c.wall_tps, c.speedup):
            assert est is None or 1 <= est.n <= c.n_reps
        for s in c.per_position:
            assert s.drafted_steps >= 0 and s.accepted >= 0
            assert s.se is None or s.se >= 0
    assert_all_finite(results["summarize_by_category"])
    assert_all_finite(results["per_position"])
    assert_all_finite(results["rep_acceptance"])
    assert_all_finite(results["neighbour_comparisons"])
    assert_all_finite(bootstrap_ci(records, pooled_acceptance, n_boot=N_BOOT))
    assert_all_finite(recommend(summaries, {"A": 3, "B": 2}))
    cost = estimate_draft_cost(summaries)
    assert cost is None or (math.isfinite(cost) and cost >= 0)
    alpha = fit_geometric_alpha(results["per_position"])
    assert alpha is None or 0.0 <= alpha <= 1.0


def check_results_do_not_depend_on_record_order(records, rnd, results):
    shuffled = list(records)
    rnd.shuffle(shuffled)
    for name, analyse in ORDER_INDEPENDENT.items():
        assert analyse(shuffled) == results[name], name


def check_paired_difference_against_itself_is_zero(records):
    by_depth = {}
    for r in records:
        by_depth.setdefault(r.depth, []).append(r)
    for group in by_depth.values():
        cmp = paired_difference(group, group)
        if cmp is not None:
            assert cmp.diff == 0.0 and not cmp.significant


def check_only_failures_are_counted_and_nothing_else(records):
    summaries = summarize(records)
    assert sum(c.n_failed for c in summaries) == len(records)
    for c in summaries:
        assert c.n_requests == 0 and c.n_reps == 0
        assert c.acceptance is c.tau is c.decode_tps is c.wall_tps is c.speedup is None
        assert c.per_position == []
    assert per_position(records) == []
    assert rep_acceptance(records) == {}
    assert bootstrap_ci(records, pooled_acceptance, n_boot=N_BOOT) is None
    assert neighbour_comparisons(records) == []
    assert recommend(summaries, {"A": 1}) is None


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0), st.integers(0, 12),
       st.floats(min_value=0.0, max_value=3.0))
def test_iid_model_bounds(alpha, n, c):
    tokens = expected_tokens_per_step(alpha, n)
    assert 1.0 <= tokens <= n + 1 + 1e-9
    assert expected_tokens_per_step(alpha, n + 1) >= tokens
    assert predicted_speedup(alpha, 0, c) == 1.0
    assert 0.0 < predicted_speedup(alpha, n, c) <= tokens
    best = predicted_best_depth(alpha, c, max_depth=n)
    assert 0 <= best <= n
    assert all(predicted_speedup(alpha, best, c) >= predicted_speedup(alpha, k, c) for k in range(n + 1))


@st.composite
def step_records(draw, full_length: bool = False) -> list[RequestRecord]:
    """Requests with per-step (accepted, drafted) pairs: drafts of 1..depth tokens (exactly depth
    when ``full_length``), each accepting a prefix of its draft; aggregates consistent with them."""
    depth = draw(st.integers(1, 5))
    out = []
    drafted = st.just(depth) if full_length else st.integers(1, depth)
    for i in range(draw(st.integers(1, 4))):
        # Each step's draft length, then how much of it was accepted. Drawn one after the other
        # rather than through flatmap, which builds a new strategy per step and was most of
        # these tests' time; the steps are the same: d in 1..depth, a in 0..d.
        steps = [(draw(st.integers(0, d)), d) for d in draw(st.lists(drafted, min_size=1, max_size=40))]
        tally = [(sum(1 for _, d in steps if d > k), sum(1 for a, _ in steps if a > k)) for k in range(depth)]
        out.append(RequestRecord(**{**{name: None for name in RequestRecord.__dataclass_fields__},
                                    "run_id": 1, "server_id": 1, "model_label": "A", "spec_type": "draft-mtp",
                                    "depth": depth, "rep": i % 2, "seed": 1, "prompt_id": f"p{i}",
                                    "category": "code", "attempt": 1, "status": "ok", "started_at": 0.0,
                                    "log_steps": len(steps), "log_drafted_per_pos": [d for d, _ in tally],
                                    "log_accepted_per_pos": [a for _, a in tally],
                                    "log_step_pairs": encode_steps(steps)}))
    return out


@SETTINGS
@given(step_records())
def test_per_position_rates_are_probabilities(records):
    for s in per_position(records):
        assert s.p_uncond is None or 0.0 <= s.p_uncond <= 1.0
        assert s.alpha_cond is None or 0.0 <= s.alpha_cond <= 1.0
        assert s.cond_steps is not None and s.accepted <= s.cond_steps <= s.drafted_steps


@SETTINGS
@given(step_records(full_length=True))
def test_full_length_drafts_make_alpha_the_ratio_of_unconditional_rates(records):
    stats = per_position(records)
    previous = 1.0
    for s in stats:
        if previous > 0:
            assert s.alpha_cond == pytest.approx(s.p_uncond / previous)
        previous = s.p_uncond
    # Without the pairs the same records still give the exact α: no draft ended early.
    bare = per_position([dataclasses.replace(r, log_step_pairs=None) for r in records])
    assert [(s.alpha_cond, s.cond_steps) for s in bare] == [(s.alpha_cond, s.cond_steps) for s in stats]
