"""Unit tests for specsweep.analysis: the design.md definitions on small hand-checked data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from specsweep.analysis import (
    CellKey,
    CellSummary,
    Estimate,
    bootstrap_ci,
    estimate_draft_cost,
    expected_tokens_per_step,
    fit_geometric_alpha,
    mean_rep_acceptance,
    model_order,
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
from specsweep.records import decode_steps, encode_steps

from tests.records import baseline, rec


def cell(summaries, model, depth, spec_type=None):
    matches = [c for c in summaries if c.key.model_label == model and c.key.depth == depth
               and (spec_type is None or c.key.spec_type == spec_type)]
    assert len(matches) == 1, matches
    return matches[0]


# --------------------------------------------------------------------------- Estimate


def test_estimate_format_and_validation():
    e = Estimate(mean=0.885, sd=0.0104, n=3)
    assert e.fmt_pct() == "88.5 ±1.0%"
    assert e.fmt_pct(with_n=True) == "88.5 ±1.0% (n=3)"
    assert Estimate(mean=1.2345, sd=0.0412, n=2).fmt() == "1.23 ±0.04"
    assert Estimate(mean=1.2345, sd=0.0412, n=2).fmt(digits=1, with_n=True) == "1.2 ±0.0 (n=2)"
    with pytest.raises(ValueError):
        Estimate(mean=math.nan, sd=0.0, n=1)
    with pytest.raises(ValueError):
        Estimate(mean=1.0, sd=math.inf, n=2)
    with pytest.raises(ValueError):
        Estimate(mean=1.0, sd=0.0, n=0)
    assert Estimate.from_values([]) is None
    one = Estimate.from_values([0.7])
    assert (one.mean, one.sd, one.n) == (0.7, 0.0, 1)


# --------------------------------------------------------------------------- acceptance


def test_rep_acceptance_is_ratio_of_sums_not_mean_of_ratios():
    records = [
        rec(prompt_id="p0", draft_n=10, draft_n_accepted=9),  # 0.9
        rec(prompt_id="p1", draft_n=90, draft_n_accepted=45),  # 0.5
    ]
    mean_of_ratios = (0.9 + 0.5) / 2
    assert rep_acceptance(records) == {0: pytest.approx(54 / 100)}
    assert rep_acceptance(records)[0] != pytest.approx(mean_of_ratios)
    assert pooled_acceptance(records) == pytest.approx(0.54)
    summary = summarize(records, intervals=False)[0]
    assert summary.acceptance.mean == pytest.approx(0.54)


def test_reported_acceptance_is_mean_and_sample_sd_over_reps_with_n():
    records = []
    for rep, accepted in enumerate([80, 85, 90]):
        records.append(rec(rep=rep, seed=1000 + rep, prompt_id="p0", draft_n=50, draft_n_accepted=accepted // 2))
        records.append(rec(rep=rep, seed=1000 + rep, prompt_id="p1", draft_n=50,
                           draft_n_accepted=accepted - accepted // 2))
    acc = summarize(records, intervals=False)[0].acceptance
    assert acc.n == 3
    assert acc.mean == pytest.approx(0.85)
    assert acc.sd == pytest.approx(0.05)  # ddof=1: sqrt((0.05² + 0 + 0.05²) / 2)
    assert acc.fmt_pct(with_n=True) == "85.0 ±5.0% (n=3)"
    assert acc.ci_low is None and acc.ci_high is None  # intervals=False: no interval

    single = summarize(records[:2], intervals=False)[0].acceptance
    assert single.n == 1 and single.sd == 0.0


def test_depth_zero_and_nothing_drafted_have_no_acceptance():
    summaries = summarize([baseline(), rec(depth=3, draft_n=0, draft_n_accepted=0, m_steps=0,
                                           m_accepted=0, m_accepted_per_pos=[])], intervals=False)
    base, spec = cell(summaries, "Q5_K_S", 0), cell(summaries, "Q5_K_S", 3)
    assert base.acceptance is None and base.tau is None and base.per_position == []
    assert spec.acceptance is None and spec.tau is None
    assert spec.decode_tps is not None


# --------------------------------------------------------------------------- τ


def test_tau_per_rep_then_mean():
    records = [
        rec(rep=0, prompt_id="p0", m_steps=40, m_accepted=60),
        rec(rep=0, prompt_id="p1", m_steps=10, m_accepted=20),  # rep 0: 1 + 80/50 = 2.6
        rec(rep=1, prompt_id="p0", m_steps=50, m_accepted=70),  # rep 1: 1 + 70/50 = 2.4
    ]
    s = summarize(records, intervals=False)[0]
    assert s.tau.n == 2
    assert s.tau.mean == pytest.approx(2.5)
    assert s.tau.sd == pytest.approx(math.sqrt(0.02))
    assert s.steps == 100


def test_tau_prefers_trace_log_tally_over_metrics():
    r = rec(m_steps=40, m_accepted=60, log_steps=50, log_accepted=50)
    assert summarize([r], intervals=False)[0].tau.mean == pytest.approx(2.0)


# --------------------------------------------------------------------------- speed and speedup


def test_decode_and_wall_speed_are_ratios_of_sums_per_rep():
    records = [
        rec(prompt_id="p0", predicted_n=100, predicted_ms=1000.0, wall_ms=2000.0),
        rec(prompt_id="p1", predicted_n=300, predicted_ms=1000.0, wall_ms=2000.0),
    ]
    s = summarize(records, intervals=False)[0]
    assert s.decode_tps.mean == pytest.approx(200.0)  # 400 tokens / 2 s
    assert s.wall_tps.mean == pytest.approx(100.0)
    skewed = [rec(prompt_id="p0", predicted_n=100, predicted_ms=100.0),
              rec(prompt_id="p1", predicted_n=100, predicted_ms=900.0)]
    # 200 tokens / 1 s, not the mean of per-request speeds (1000 + 111) / 2
    assert summarize(skewed, intervals=False)[0].decode_tps.mean == pytest.approx(200.0)


def test_speedup_is_paired_by_rep():
    records = [
        baseline(rep=0, predicted_n=100, predicted_ms=1000.0),  # 100 tok/s
        baseline(rep=1, predicted_n=100, predicted_ms=500.0),  # 200 tok/s
        rec(rep=0, predicted_n=100, predicted_ms=500.0),  # 200 tok/s: ×2
        rec(rep=1, predicted_n=100, predicted_ms=200.0),  # 500 tok/s: ×2.5
    ]
    summaries = summarize(records, intervals=False)
    spec = cell(summaries, "Q5_K_S", 2)
    assert spec.speedup.n == 2
    assert spec.speedup.mean == pytest.approx(2.25)  # unpaired: mean 350 / mean 150 = 2.33
    assert spec.speedup.sd == pytest.approx(math.sqrt(0.125))
    base = cell(summaries, "Q5_K_S", 0)
    assert base.speedup.mean == 1.0 and base.speedup.sd == 0.0


def test_speedup_uses_only_prompts_present_on_both_sides_and_none_without_baseline():
    records = [
        baseline(prompt_id="p0", predicted_n=100, predicted_ms=1000.0),
        baseline(prompt_id="p1", status="failed", predicted_n=None, predicted_ms=None),
        rec(prompt_id="p0", predicted_n=100, predicted_ms=500.0),
        rec(prompt_id="p1", predicted_n=100, predicted_ms=100.0),  # no baseline partner: left out
        rec(model_label="other", predicted_n=100, predicted_ms=500.0),
    ]
    summaries = summarize(records, intervals=False)
    assert cell(summaries, "Q5_K_S", 2).speedup.mean == pytest.approx(2.0)
    assert cell(summaries, "other", 2).speedup is None


# --------------------------------------------------------------------------- per position


def test_per_position_with_short_drafts_uses_drafted_per_pos():
    r = rec(depth=3, log_drafted_per_pos=[10, 8, 4], log_accepted_per_pos=[8, 6, 2],
            m_accepted_per_pos=[1, 1, 1], max_draft_len=3)
    stats = per_position([r])
    assert [s.position for s in stats] == [0, 1, 2]
    assert [s.drafted_steps for s in stats] == [10, 8, 4]
    assert [s.accepted for s in stats] == [8, 6, 2]  # the log wins over /metrics
    assert [s.p_uncond for s in stats] == pytest.approx([0.8, 0.75, 0.5])
    assert stats[0].se is None and stats[2].se is None  # one prompt: no standard error over prompts
    # Drafts ended at 1 and at 2 tokens, and without per-step pairs the steps that reached
    # positions 1 and 2 are unknown: no α is made up from p_i / p_(i−1).
    assert stats[0].alpha_cond == pytest.approx(0.8) and stats[0].cond_steps == 10
    assert [(s.alpha_cond, s.cond_steps, s.alpha_se) for s in stats[1:]] == [(None, None, None)] * 2


def test_per_position_without_pairs_is_exact_where_no_draft_ended_early():
    stats = per_position([rec(depth=3, log_drafted_per_pos=[10, 10, 4], log_accepted_per_pos=[8, 6, 2])])
    assert stats[1].cond_steps == 8 and stats[1].alpha_cond == pytest.approx(6 / 8)
    assert stats[2].cond_steps is None


def test_conditional_acceptance_from_step_pairs_with_short_drafts():
    # Five one-token drafts half accepted, five two-token drafts fully accepted: p_1 / p_0 = 200%,
    # while the steps that reached position 1 (drafted it, accepted position 0) all accepted it.
    steps = [(1, 1), (0, 1)] * 2 + [(1, 1)] + [(2, 2)] * 5
    stats = per_position([rec(depth=2, log_step_pairs=encode_steps(steps))])
    assert [s.drafted_steps for s in stats] == [10, 5]
    assert [s.accepted for s in stats] == [8, 5]
    assert [s.p_uncond for s in stats] == pytest.approx([0.8, 1.0])
    assert [s.cond_steps for s in stats] == [10, 5]
    assert [s.alpha_cond for s in stats] == pytest.approx([0.8, 1.0])
    assert stats[0].alpha_se is None and stats[1].alpha_se is None  # one prompt
    steps = [(0, 2), (1, 2), (2, 2), (2, 2)]
    stats = per_position([rec(depth=2, log_step_pairs=encode_steps(steps))])
    assert stats[1].cond_steps == 3 and stats[1].alpha_cond == pytest.approx(2 / 3)


def test_step_pairs_encode_compactly_and_back():
    steps = [(3, 3)] * 5 + [(1, 3), (0, 2), (0, 2)]
    text = encode_steps(steps)
    assert text == "3/3*5 1/3 0/2*2"
    assert decode_steps(text) == steps and decode_steps(encode_steps([])) == []


def test_per_position_falls_back_to_m_steps_for_every_position():
    r = rec(depth=3, m_steps=10, m_accepted_per_pos=[8, 6, 2], log_drafted_per_pos=None, max_draft_len=3)
    stats = per_position([r])
    assert [s.drafted_steps for s in stats] == [10, 10, 10]
    assert [s.p_uncond for s in stats] == pytest.approx([0.8, 0.6, 0.2])  # biased low at depth
    # a position drafted but never accepted still gets its denominator from max_draft_len
    stats = per_position([rec(depth=3, m_steps=10, m_accepted_per_pos=[8], max_draft_len=3)])
    assert [s.drafted_steps for s in stats] == [10, 10, 10]
    assert [s.accepted for s in stats] == [8, 0, 0]
    assert stats[1].se is None
    assert stats[0].alpha_cond == pytest.approx(0.8)
    assert [s.alpha_cond for s in stats[1:]] == [None, None]  # no trace log: who reached i is unknown


def test_per_position_pools_records_and_skips_missing_data():
    a = rec(log_drafted_per_pos=[10, 5], log_accepted_per_pos=[5, 1])
    b = rec(prompt_id="p1", m_steps=10, m_accepted_per_pos=[5, 4], max_draft_len=2)
    no_counts = rec(prompt_id="p2", m_accepted_per_pos=None, log_accepted_per_pos=None)
    failed = rec(prompt_id="p3", status="failed", m_accepted_per_pos=[100, 100])
    stats = per_position([a, b, no_counts, failed])
    assert [s.drafted_steps for s in stats] == [20, 15]
    assert [s.accepted for s in stats] == [10, 5]
    assert per_position([]) == []


def test_per_position_undefined_values_are_none():
    stats = per_position([rec(log_drafted_per_pos=[4, 0], log_accepted_per_pos=[0, 1])])
    assert stats[0].p_uncond == 0.0
    assert stats[1].p_uncond is None and stats[1].se is None and stats[1].alpha_cond is None


# --------------------------------------------------------------------------- failures


def test_failed_records_are_excluded_but_counted():
    good = [rec(rep=0, prompt_id="p0", draft_n=100, draft_n_accepted=80),
            rec(rep=1, prompt_id="p0", draft_n=100, draft_n_accepted=90)]
    failed = rec(rep=2, prompt_id="p1", status="failed", error="timeout", draft_n=100, draft_n_accepted=0,
                 predicted_n=1, predicted_ms=1e6)
    s = summarize(good + [failed], intervals=False)[0]
    assert (s.n_requests, s.n_failed, s.n_reps) == (2, 1, 2)
    assert s.acceptance.mean == pytest.approx(0.85) and s.acceptance.n == 2
    assert s.drafted_tokens == 200 and s.accepted_tokens == 170
    assert rep_acceptance(good + [failed]) == rep_acceptance(good)


def test_only_failures_give_a_counted_cell_with_no_statistics():
    s = summarize([rec(status="failed"), rec(status="failed", prompt_id="p1")])[0]
    assert (s.n_requests, s.n_failed, s.n_reps) == (0, 2, 0)
    assert s.acceptance is s.tau is s.decode_tps is s.wall_tps is s.speedup is None
    assert s.per_position == [] and s.effective_depth is None


def test_effective_depth_is_longest_draft_seen():
    records = [rec(spec_type="ngram-simple", depth=4, max_draft_len=48),
               rec(spec_type="ngram-simple", depth=4, max_draft_len=12, prompt_id="p1")]
    assert summarize(records, intervals=False)[0].effective_depth == 48


# --------------------------------------------------------------------------- bootstrap


def _varied_records(model="Q5_K_S", shift=0, reps=3, prompts=6):
    out = []
    for rep in range(reps):
        for p in range(prompts):
            accepted = 50 + 7 * p + 3 * rep + shift
            out.append(rec(model_label=model, rep=rep, seed=1000 + rep, prompt_id=f"p{p}",
                           draft_n=100, draft_n_accepted=min(accepted, 100),
                           predicted_ms=800.0 + 40 * p + 10 * rep))
    return out


def test_bootstrap_ci_contains_point_estimate_and_is_deterministic():
    records = _varied_records()
    point = mean_rep_acceptance(records)
    ci = bootstrap_ci(records, mean_rep_acceptance, n_boot=500, seed=7)
    assert ci[0] <= point <= ci[1]
    assert ci[0] < ci[1]
    assert bootstrap_ci(records, mean_rep_acceptance, n_boot=500, seed=7) == ci
    assert bootstrap_ci(list(reversed(records)), mean_rep_acceptance, n_boot=500, seed=7) == ci
    assert bootstrap_ci(records, pooled_acceptance, n_boot=500, seed=7)[0] <= pooled_acceptance(records)


def test_summary_interval_is_the_prompt_jackknife_t_interval():
    """The printed CI, worked by hand: leave each prompt out, recompute the rep-mean acceptance,
    jackknife variance (P−1)/P Σ (θ_(−p) − mean)², half-width t(P−1, 0.975) × its root (every
    prompt drafted alike, so df = P − 1), on the logit scale for acceptance; linear for τ."""
    records = _varied_records()
    s = summarize(records)[0]
    prompts = sorted({r.prompt_id for r in records})
    q = scipy.stats.t.ppf(0.975, len(prompts) - 1)

    def jackknife(statistic):
        left_out = np.array([statistic([r for r in records if r.prompt_id != p]) for p in prompts])
        return math.sqrt((len(prompts) - 1) / len(prompts) * np.sum((left_out - left_out.mean()) ** 2))

    acc = s.acceptance.mean
    assert acc == pytest.approx(mean_rep_acceptance(records))
    half = q * jackknife(mean_rep_acceptance) / (acc * (1 - acc))
    logit = math.log(acc / (1 - acc))
    assert (s.acceptance.ci_low, s.acceptance.ci_high) == pytest.approx(
        (1 / (1 + math.exp(-(logit - half))), 1 / (1 + math.exp(-(logit + half)))))
    half = q * jackknife(lambda rs: 1000 * np.mean([sum(r.predicted_n for r in rs if r.rep == k)
                                                    / sum(r.predicted_ms for r in rs if r.rep == k) for k in range(3)]))
    assert (s.decode_tps.ci_low, s.decode_tps.ci_high) == pytest.approx((s.decode_tps.mean - half,
                                                                         s.decode_tps.mean + half))
    for est in (s.tau, s.decode_tps, s.wall_tps):
        assert est.ci_low <= est.mean <= est.ci_high


def test_too_few_prompts_give_no_interval_and_no_mark():
    few = [r for r in _varied_records() if r.prompt_id in ("p0", "p1")]  # 2 < MIN_PROMPTS
    assert summarize(few)[0].acceptance.ci_low is None
    cmp = paired_difference(few, [r.__class__(**{**r.__dict__, "model_label": "B",
                                                 "draft_n_accepted": r.draft_n_accepted - 20}) for r in few])
    assert cmp.diff == pytest.approx(0.2) and cmp.n_prompts == 2
    assert cmp.significant is None and cmp.ci_low is None  # a clear difference, but no mark on 2 prompts


def test_per_position_standard_error_is_over_prompts():
    """Two prompts' steps disagree far more than binomial noise: the SE over prompts says so."""
    records = [rec(prompt_id=f"p{p}", rep=rep, depth=1, log_drafted_per_pos=[100], log_accepted_per_pos=[acc])
               for p, acc in enumerate([90, 85, 30, 35, 60]) for rep in range(2)]
    stat = per_position(records)[0]
    binomial = math.sqrt(0.6 * 0.4 / 1000)
    assert stat.p_uncond == pytest.approx(0.6)
    left_out = np.array([(600 - acc) / 400 for acc in (90, 85, 30, 35, 60)])
    assert stat.se == pytest.approx(math.sqrt(4 / 5 * np.sum((left_out - left_out.mean()) ** 2)))
    assert stat.se > 5 * binomial


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([], pooled_acceptance) is None
    assert bootstrap_ci([rec(status="failed")], pooled_acceptance) is None
    assert bootstrap_ci([baseline()], pooled_acceptance) is None  # statistic never defined
    assert bootstrap_ci(_varied_records(), pooled_acceptance, n_boot=0) is None
    with pytest.raises(ValueError):
        bootstrap_ci(_varied_records(), pooled_acceptance, level=1.5)


# --------------------------------------------------------------------------- paired comparisons


def test_paired_difference_of_a_model_against_itself_is_zero_and_not_significant():
    records = _varied_records()
    cmp = paired_difference(records, records)
    assert cmp.diff == 0.0 and (cmp.ci_low, cmp.ci_high) == (0.0, 0.0)
    assert not cmp.significant
    assert cmp.n_pairs == 18 and cmp.depth == 2


def test_paired_difference_detects_a_clear_difference():
    a = _varied_records("Q5_K_S", shift=0)
    b = _varied_records("IQ2_M", shift=-10)
    cmp = paired_difference(a, b)
    assert cmp.label_a == "Q5_K_S" and cmp.label_b == "IQ2_M"
    assert cmp.diff == pytest.approx(0.10)
    assert cmp.ci_low > 0 and cmp.significant


def test_paired_difference_uses_only_shared_pairs():
    a = _varied_records("A")
    b = [r for r in _varied_records("B") if r.prompt_id != "p0"]
    assert paired_difference(a, b).n_pairs == 15
    assert paired_difference(a, []) is None
    with pytest.raises(ValueError):
        paired_difference(a, [rec(depth=3)])


def test_neighbour_comparisons_follow_model_order_per_depth():
    records = []
    for i, (model, shift) in enumerate([("Q5_K_S", 0), ("IQ4_XS", -2), ("IQ2_M", -12)]):
        for r in _varied_records(model, shift=shift, reps=2, prompts=4):
            records.append(r.__class__(**{**r.__dict__, "started_at": 100.0 * i + r.rep}))
            records.append(r.__class__(**{**r.__dict__, "depth": 1, "started_at": 100.0 * i + 50}))
        records.append(baseline(model_label=model, started_at=100.0 * i))
    assert model_order(list(reversed(records))) == ["Q5_K_S", "IQ4_XS", "IQ2_M"]
    comps = neighbour_comparisons(records)
    assert [(c.depth, c.label_a, c.label_b) for c in comps] == [
        (1, "Q5_K_S", "IQ4_XS"), (1, "IQ4_XS", "IQ2_M"), (2, "Q5_K_S", "IQ4_XS"), (2, "IQ4_XS", "IQ2_M")]
    assert comps[1].significant and comps[1].diff == pytest.approx(0.10)


# --------------------------------------------------------------------------- summarize order, categories


def test_summarize_sorts_by_model_appearance_then_baseline_spec_type_depth():
    records = [
        rec(model_label="late", started_at=500.0),
        rec(model_label="early", depth=3, started_at=10.0),
        rec(model_label="early", depth=1, started_at=20.0),
        baseline(model_label="early", started_at=30.0),
        rec(model_label="early", spec_type="draft-simple", depth=1, started_at=40.0),
    ]
    keys = [c.key for c in summarize(records, intervals=False)]
    assert keys == [CellKey("early", "none", 0), CellKey("early", "draft-mtp", 1),
                    CellKey("early", "draft-mtp", 3), CellKey("early", "draft-simple", 1),
                    CellKey("late", "draft-mtp", 2)]


def test_summarize_by_category_uses_the_category_baseline():
    records = [
        baseline(category="code", predicted_ms=1000.0), rec(category="code", predicted_ms=500.0),
        baseline(category="math", predicted_ms=1000.0), rec(category="math", predicted_ms=250.0),
    ]
    by_cat = summarize_by_category(records, intervals=False)
    assert sorted(by_cat) == ["code", "math"]
    assert cell(by_cat["code"], "Q5_K_S", 2).speedup.mean == pytest.approx(2.0)
    assert cell(by_cat["math"], "Q5_K_S", 2).speedup.mean == pytest.approx(4.0)


# --------------------------------------------------------------------------- geometric model


def _geometric_positions(alpha_num: int, alpha_den: int, drafted: list[int]):
    """Per-position counts exactly on the geometric model: A_i = D_i · α^(i+1)."""
    records = [rec(depth=len(drafted), log_drafted_per_pos=drafted,
                   log_accepted_per_pos=[d * alpha_num ** (i + 1) // alpha_den ** (i + 1)
                                         for i, d in enumerate(drafted)])]
    return per_position(records)


def test_geometric_fit_recovers_alpha_from_exact_counts():
    full = _geometric_positions(3, 4, [1024, 1024, 1024, 1024])  # 768, 576, 432, 324
    assert [s.accepted for s in full] == [768, 576, 432, 324]
    assert fit_geometric_alpha(full) == pytest.approx(0.75)
    short = _geometric_positions(1, 2, [1024, 512, 256, 128])  # drafts cut short at depth
    assert [s.accepted for s in short] == [512, 128, 32, 8]
    assert fit_geometric_alpha(short) == pytest.approx(0.5)
    assert fit_geometric_alpha([]) is None
    assert fit_geometric_alpha(per_position([rec(log_drafted_per_pos=[0], log_accepted_per_pos=[0])])) is None


def test_expected_tokens_and_predicted_speedup_known_values():
    assert expected_tokens_per_step(0.8, 3) == pytest.approx((1 - 0.8 ** 4) / 0.2)  # 2.952
    assert expected_tokens_per_step(0.8, 3) == pytest.approx(2.952)
    assert expected_tokens_per_step(1.0, 4) == 5.0
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(0.5, 0) == 1.0
    assert predicted_speedup(0.8, 3, 0.1) == pytest.approx(2.952 / 1.3)
    assert predicted_speedup(0.8, 0, 0.1) == 1.0
    with pytest.raises(ValueError):
        expected_tokens_per_step(1.2, 2)
    with pytest.raises(ValueError):
        predicted_speedup(0.8, 2, -0.1)


def test_predicted_best_depth_known_values():
    assert predicted_best_depth(0.8, 0.1) == 6  # 2.4696 at n=6 vs 2.4595 (5) and 2.4477 (7)
    assert predicted_best_depth(0.8, 0.3) == 3
    assert predicted_best_depth(0.6, 0.0) == 8  # free drafts: go as deep as allowed
    assert predicted_best_depth(0.5, 0.5) == 0  # n=1 only ties with no speculation
    assert predicted_best_depth(0.8, 0.1, max_depth=2) == 2


def _model_cell(depth, tau=None, speedup=None, decode=None, model="m", spec_type="draft-mtp"):
    def est(x):
        if x is None:
            return None
        mean, sd = x if isinstance(x, tuple) else (x, 0.0)
        return Estimate(mean=mean, sd=sd, n=3)
    return CellSummary(key=CellKey(model, spec_type, depth), n_reps=3, n_requests=15, n_failed=0,
                       acceptance=None, tau=est(tau), decode_tps=est(decode), wall_tps=est(decode),
                       speedup=est(speedup), per_position=[], effective_depth=depth,
                       drafted_tokens=0, accepted_tokens=0, steps=0)


def test_estimate_draft_cost_recovers_c():
    alpha, c = 0.8, 0.15
    cells = [_model_cell(0, speedup=1.0)]
    for n in range(1, 5):
        tau = expected_tokens_per_step(alpha, n)
        cells.append(_model_cell(n, tau=tau, speedup=tau / (n * c + 1)))
    assert estimate_draft_cost(cells) == pytest.approx(c)
    # a drafter faster than free (τ/S < 1) clips at 0; nothing usable gives None
    assert estimate_draft_cost([_model_cell(2, tau=2.0, speedup=2.5)]) == 0.0
    assert estimate_draft_cost([_model_cell(0, speedup=1.0), _model_cell(2, tau=2.0)]) is None


def test_recommend_picks_fastest_and_smallest_within_one_sd():
    cells = [
        _model_cell(0, decode=(50.0, 1.0), speedup=1.0, model="Q5_K_S"),
        _model_cell(3, decode=(100.0, 5.0), speedup=(2.0, 0.1), model="Q5_K_S"),
        _model_cell(3, decode=(97.0, 2.0), speedup=(1.9, 0.1), model="IQ4_XS"),
        _model_cell(2, decode=(96.0, 2.0), speedup=(1.9, 0.1), model="IQ3_M"),  # within 1σ (≥ 95)
        _model_cell(2, decode=(94.0, 2.0), speedup=(1.8, 0.1), model="IQ2_M"),  # outside
    ]
    sizes = {"Q5_K_S": 21_000, "IQ4_XS": 17_000, "IQ3_M": 14_000, "IQ2_M": 11_000}
    rec_ = recommend(cells, sizes)
    assert (rec_.model_label, rec_.spec_type, rec_.depth) == ("Q5_K_S", "draft-mtp", 3)
    assert rec_.speedup.mean == 2.0 and rec_.speedup.sd == 0.1
    assert rec_.smallest_model_within_1sd == "IQ3_M"
    assert recommend(cells, {}).smallest_model_within_1sd is None
    assert recommend([], sizes) is None
    assert recommend([_model_cell(2)], sizes) is None  # no decode speed anywhere


def test_recommend_end_to_end_from_records():
    records = []
    for model, ms in [("big", 400.0), ("small", 410.0)]:
        for rep in range(3):
            records.append(baseline(model_label=model, rep=rep, predicted_ms=1000.0))
            records.append(rec(model_label=model, rep=rep, predicted_ms=ms + 20 * rep))
    r = recommend(summarize(records, intervals=False), {"big": 2, "small": 1})
    assert r.model_label == "big" and r.depth == 2
    assert r.speedup.n == 3 and r.speedup.mean == pytest.approx(
        sum(1000.0 / (400.0 + 20 * rep) for rep in range(3)) / 3)
    assert r.smallest_model_within_1sd == "small"


def test_order_invariance_holds_bitwise_for_float_sums():
    # (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in floating point: summing in input order would leak it
    records = [rec(prompt_id="p0", predicted_ms=ms, wall_ms=ms, predicted_n=1) for ms in (0.1, 0.2, 0.3)]
    forward = summarize(records)
    assert summarize(list(reversed(records))) == forward
    assert summarize(records[1:] + records[:1]) == forward
