"""A real quant ladder: reference, imatrix, three rungs, fidelity, sweep file.

The source is the committed Gemma-4 miniature quantized to Q8_0: a quantized file, as the default
model is, so the reference is dequantized from it, and with 24.6M parameters against SmolLM2's 135M
its quantizing, imatrix and perplexity passes take a quarter of the time (about 20 s instead of
74 s at one thread; every check below holds on both).

Kept small for 2 CPU cores: an imatrix over 2 chunks of 256 tokens, KL divergence over
4 chunks of 128 tokens (252 scored tokens).
"""

import json
import time

import pytest

from specsweep.config import load_toml
from specsweep.errors import EngineError, ModelError, UsageError
from specsweep.fidelity import check_same_vocabulary, kld_base, measure_kld
from specsweep.quantize import build_ladder, make_reference, needs_imatrix, write_sweep_file
from tests.conftest import THREADS

pytestmark = pytest.mark.e2e
# Falling bits; llama-quantize refuses Q2_K_S (its Q2_K tensors) without an importance matrix.
# (An i-quant such as IQ2_XS needs one too, but its search took most of this test's time; i-quants
# are made in test_hf_published.py.)
TYPES = ["Q8_0", "Q4_K_M", "Q2_K_S"]


@pytest.fixture
def source(gemma4_q8_0):
    """The Gemma-4 miniature (F16, committed) quantized to Q8_0."""
    return gemma4_q8_0


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch, engine, source):
    # engine and model are resolved first (from the user cache); the sha256 memo then goes to tmp.
    monkeypatch.setenv("SPECSWEEP_CACHE", str(tmp_path / "cache"))


def test_ladder_fidelity_and_sweep_file(engine, source, tmp_path, isolated_cache, model_path):
    other_vocabulary = model_path
    out = tmp_path / "ladder"
    reference = make_reference(engine, source, out, threads=THREADS)
    assert "dequantized from" in json.loads(reference.with_name(reference.name + ".json").read_text())["provenance"]

    steps = []
    rungs = build_ladder(engine, reference, TYPES, out, threads=THREADS, imatrix_chunks=2,
                         progress=lambda done, total, msg: steps.append(msg))
    assert [r.qtype for r in rungs] == TYPES
    assert steps[0] == "importance matrix"

    # Files exist and shrink as bits fall; none was requantized (the source is F16).
    sizes = [r.path.stat().st_size for r in rungs]
    assert all(r.path.exists() and not r.requantized for r in rungs)
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3
    assert [r.size_bytes for r in rungs] == sizes
    assert rungs[0].bits_per_weight > rungs[1].bits_per_weight > rungs[2].bits_per_weight

    # The imatrix was computed and used for the low-bit rung only, as llama-quantize's log confirms.
    imatrix = out / "gemma4-mini.imatrix.gguf"
    assert imatrix.exists() and needs_imatrix("Q2_K_S") and not needs_imatrix("Q4_K_M")
    assert [r.imatrix for r in rungs] == [None, None, imatrix]
    assert "importance matrix entries" in (out / "gemma4-mini-Q2_K_S.gguf.log").read_text()

    # Fidelity against the reference: KLD grows and top-1 agreement falls as bits fall.
    base = kld_base(engine, reference, out / "reference.kld", ctx=128, chunks=4, threads=THREADS)
    results = [measure_kld(engine, r.path, base, threads=THREADS) for r in rungs]
    klds = [f.kld_mean for f in results]
    top1 = [f.top1_pct for f in results]
    print("\ntype     size_MB  bpw    mean_KLD            top1_%            tokens")
    for rung, fid in zip(rungs, results):
        print(f"{rung.qtype:8} {rung.size_bytes / 1e6:7.2f}  {rung.bits_per_weight:5.2f}  "
              f"{fid.kld_mean:.6f} ± {fid.kld_mean_unc:.6f}  {fid.top1_pct:6.2f} ± {fid.top1_pct_unc:5.2f}  "
              f"{fid.tokens}")
    assert klds[0] < klds[1] < klds[2]
    assert top1[0] > top1[1] > top1[2]
    assert all(f.tokens == 4 * 63 for f in results)

    itself = measure_kld(engine, reference, base, threads=THREADS)
    assert itself.kld_mean == pytest.approx(0.0, abs=1e-4) and itself.top1_pct == 100.0

    # A model of another vocabulary (SmolLM2): llama-perplexity only logs it, exits 0 and prints
    # figures; the tool refuses it before any run, and measure_kld from the engine's own complaint.
    with pytest.raises(ModelError, match=r"SmolLM2.* different vocabulary from the reference .*\(49152 vs 1536 "):
        check_same_vocabulary(reference, [rungs[0].path, other_vocabulary])
    with pytest.raises(EngineError, match=r"inconsistent vocabulary \(1536 vs 49152\)"):
        measure_kld(engine, other_vocabulary, base, threads=THREADS)

    # A second call with the same inputs does no work.
    made = [imatrix, *(r.path for r in rungs)]
    mtimes = [p.stat().st_mtime_ns for p in made]
    started = time.monotonic()
    again = build_ladder(engine, reference, TYPES, out, threads=THREADS, imatrix_chunks=2)
    assert time.monotonic() - started < 5
    assert again == rungs
    assert [p.stat().st_mtime_ns for p in made] == mtimes

    # The sweep file: every rung a target, the reference its draft model.
    config = load_toml(write_sweep_file(rungs, reference, out))
    assert [m.label for m in config.models] == TYPES
    assert [m.path.resolve() for m in config.models] == [r.path.resolve() for r in rungs]
    assert {m.draft_model.resolve() for m in config.models} == {reference.resolve()}
    assert config.drafting.spec_type == "draft-simple" and config.drafting.depths == (0, 1, 2, 3, 4)


def test_unknown_quant_type_is_one_clear_error(engine, model_path, tmp_path):
    with pytest.raises(UsageError, match=r"unknown quant type Q9_X; valid: .*Q4_K_M"):
        build_ladder(engine, model_path, ["q8_0", "Q9_X"], tmp_path)
    assert not any(tmp_path.iterdir())
