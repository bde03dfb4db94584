"""parse_kld_output against real llama-perplexity --kl-divergence output (llama.cpp 0c1e570).

Fixtures: SmolLM2-135M-Instruct, F16 reference (dequantized from the Q4_1 wheel), evaluation
text, -c 128 --chunks 4, CPU; an IQ2_XS quant (with imatrix) and the reference against itself.
"""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from specsweep.fidelity import MIN_TOKENS, FidelityResult, parse_kld_output, why_no_statistics

FIXTURES = Path(__file__).parent / "fixtures"


def test_parses_every_printed_summary_figure():
    result = parse_kld_output((FIXTURES / "kld_smollm2_iq2_xs.txt").read_text())
    assert (result.kld_mean, result.kld_mean_unc) == (0.425780, 0.029198)
    assert (result.kld_max, result.kld_p99_9, result.kld_p99, result.kld_p95, result.kld_p90) == \
        (4.556608, 4.057786, 2.134558, 1.241135, 0.865220)
    assert (result.kld_median, result.kld_p10, result.kld_p5, result.kld_p1, result.kld_p0_1, result.kld_min) == \
        (0.289542, 0.093763, 0.056398, 0.021598, 0.008498, 0.006609)
    assert (result.top1_pct, result.top1_pct_unc) == (65.476, 3.001)
    assert (result.rms_dp_pct, result.rms_dp_pct_unc) == (13.001, 1.640)
    assert (result.mean_dp_pct, result.mean_dp_pct_unc) == (-3.840, 0.784)
    assert (result.ppl_q, result.ppl_q_unc, result.ppl_base, result.ppl_base_unc) == \
        (70.170130, 13.934776, 49.186130, 9.753803)
    assert (result.ln_ppl_ratio, result.ln_ppl_ratio_unc) == (0.355311, 0.063617)
    assert (result.ppl_ratio, result.ppl_ratio_unc) == (1.426624, 0.090758)
    assert result.chunks == 4
    assert result.tokens == 4 * (128 - 1 - 64)
    # Every printed field was found: nothing silently None.
    assert all(getattr(result, f.name) is not None for f in fields(FidelityResult))


def test_reference_against_itself_is_identical():
    result = parse_kld_output((FIXTURES / "kld_smollm2_self.txt").read_text())
    assert result.kld_mean == pytest.approx(0.0, abs=1e-5)
    assert result.top1_pct == 100.0
    assert result.rms_dp_pct == 0.0
    assert result.ppl_q == pytest.approx(result.ppl_base, rel=1e-5)  # the base stores log-probs as uint16


def test_missing_statistics_are_none():
    # Fewer than 100 scored tokens: the tool prints the chunk table but no summary.
    text = ("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence\n"
            "   1      46.9244 ±   17.5771       0.30025 ±    0.11446       0.44278 ±    0.06092\n")
    result = parse_kld_output(text)
    assert result.kld_mean is None and result.top1_pct is None
    assert result.chunks == 1


def test_to_json_round_trips_field_names():
    result = parse_kld_output((FIXTURES / "kld_smollm2_iq2_xs.txt").read_text())
    assert FidelityResult(**result.to_json()) == result


def _cut_before(text: str, marker: str) -> str:
    return text[:text.index(marker)]


def test_why_no_statistics_names_the_cause_the_log_shows():
    real = (FIXTURES / "kld_smollm2_iq2_xs.txt").read_text()
    assert "Perplexity statistics" in real and "Mean    KLD" in real

    nan = re.sub(r"Mean    KLD: .*", "Mean    KLD:        nan ±        nan", real)
    assert parse_kld_output(nan).kld_mean is None
    assert "not finite" in why_no_statistics(nan)

    failed = _cut_before(real, "====== Perplexity") + "kl_divergence : failed to decode\n"
    assert why_no_statistics(failed) == "kl_divergence : failed to decode"

    table_only = _cut_before(real, "====== Perplexity")  # what the tool prints below 100 tokens
    why = why_no_statistics(table_only)
    assert f"fewer than {MIN_TOKENS} tokens" in why and why.endswith(table_only.strip().splitlines()[-1].strip())

    cut_in_summary = _cut_before(real, "====== KL divergence")  # e.g. the disk filled while it wrote
    assert "cut short" in why_no_statistics(cut_in_summary) and "fewer than" not in why_no_statistics(cut_in_summary)

    unknown_format = real.replace("Mean    KLD: ", "Mean    KLD: ~")
    assert "could not be read" in why_no_statistics(unknown_format)
