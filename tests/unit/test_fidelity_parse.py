"""parse_kld_output against real llama-perplexity --kl-divergence output (llama.cpp 0c1e570).

Fixtures: SmolLM2-135M-Instruct, F16 reference (dequantized from the Q4_1 wheel), evaluation
text, -c 128 --chunks 4, CPU; an IQ2_XS quant (with imatrix) and the reference against itself.
"""

import re
import struct
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from specsweep.errors import EngineError
from specsweep.fidelity import (KLD_ATTEMPTS, MIN_TOKENS, FidelityResult, measure_kld, parse_kld_output,
                                 why_no_statistics)

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


REAL = (FIXTURES / "kld_smollm2_iq2_xs.txt").read_text()
NAN = re.sub(r"Mean    KLD: .*", "Mean    KLD:        nan ±        nan", REAL)
TABLE_ONLY = _cut_before(REAL, "====== Perplexity")  # the per-chunk rows, no summary


def test_why_no_statistics_names_the_cause_and_retries_only_a_log_cut_short():
    assert "Perplexity statistics" in REAL and "Mean    KLD" in REAL

    assert parse_kld_output(NAN).kld_mean is None
    why, retry = why_no_statistics(NAN)
    assert "not finite" in why and not retry

    failed = TABLE_ONLY + "kl_divergence : failed to decode\n"
    assert why_no_statistics(failed) == ("kl_divergence : failed to decode", False)

    for label, unknown_format in (("Mean KLD", REAL.replace("Mean    KLD: ", "Mean    KLD: ~")),
                                  ("Same top p", REAL.replace("Same top p: ", "Same top p: ~"))):
        why, retry = why_no_statistics(unknown_format)
        assert why.startswith(f"its {label!r} line could not be read") and not retry

    # One chunk of 128 scores 63 tokens: the tool prints its table and, rightly, no summary.
    one_chunk = REAL.replace("computing over 4 chunks", "computing over 1 chunks")
    one_chunk = _cut_before(one_chunk, "   2 ")
    assert why_no_statistics(one_chunk) == (f"it scored 63 tokens and prints statistics only from {MIN_TOKENS}",
                                            False)

    # Four chunks (252 tokens) but the summary, or the last rows, never reached the log: cut short.
    # (CI and make test have seen the cut before the summary and inside it, after "Median  KLD".)
    for cut in (TABLE_ONLY, _cut_before(REAL, "   4 "), _cut_before(REAL, "====== KL divergence"),
                _cut_before(REAL, "10.0%   KLD"), _cut_before(REAL, "Same top p:")):
        why, retry = why_no_statistics(cut)
        assert retry and why == f"its log was cut short after: {cut.strip().splitlines()[-1].strip()}"


class _ScriptEngine:
    """A stand-in whose llama-perplexity is a script: for the one failure a real run cannot be made
    to show on demand, a log cut short at exit."""

    def __init__(self, script: Path):
        self.script = script

    def tool(self, name: str) -> Path:
        return self.script


def _perplexity_script(tmp_path: Path, outputs: list[str]) -> Path:
    """A script printing ``outputs[k]`` on its k-th run (the last one from then on)."""
    for k, text in enumerate(outputs):
        (tmp_path / f"out{k}.txt").write_text(text)
    script = tmp_path / "llama-perplexity"
    script.write_text(f"""#!{sys.executable}
import pathlib
runs = pathlib.Path({str(tmp_path / "runs")!r})
k = len(runs.read_text()) if runs.exists() else 0
runs.write_text("x" * (k + 1))
print(pathlib.Path({str(tmp_path)!r}, f"out{{min(k, {len(outputs) - 1})}}.txt").read_text(), end="")
""")
    script.chmod(0o755)
    return script


def _base_file(tmp_path: Path, ctx: int = 128) -> Path:
    base = tmp_path / "reference.kld"
    base.write_bytes(b"_logits_" + struct.pack("<I", ctx))
    return base


def test_measure_kld_reruns_a_comparison_whose_log_was_cut_short(tmp_path):
    engine = _ScriptEngine(_perplexity_script(tmp_path, [TABLE_ONLY, TABLE_ONLY, REAL]))
    result = measure_kld(engine, tmp_path / "m.gguf", _base_file(tmp_path))
    assert (tmp_path / "runs").read_text() == "xxx"
    assert result == parse_kld_output(REAL)


def test_measure_kld_gives_up_after_its_attempts_and_at_once_on_a_lasting_cause(tmp_path):
    engine = _ScriptEngine(_perplexity_script(tmp_path, [TABLE_ONLY]))
    with pytest.raises(EngineError, match=rf"m\.gguf \({KLD_ATTEMPTS} tries\): its log was cut short after"):
        measure_kld(engine, tmp_path / "m.gguf", _base_file(tmp_path))
    assert len((tmp_path / "runs").read_text()) == KLD_ATTEMPTS

    (tmp_path / "runs").unlink()
    engine = _ScriptEngine(_perplexity_script(tmp_path, [NAN]))
    with pytest.raises(EngineError, match=r"m\.gguf: its KL divergence is not finite"):
        measure_kld(engine, tmp_path / "m.gguf", _base_file(tmp_path))
    assert (tmp_path / "runs").read_text() == "x"
