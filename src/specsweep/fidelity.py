"""Fidelity of a quant to its reference: KL divergence and top-1 agreement from llama-perplexity.

Two steps, as llama.cpp does it: ``kld_base`` saves the reference's log-probabilities over the
evaluation text once; ``measure_kld`` runs another model over the same tokens and compares
(``--kl-divergence``). Only the second half of each ``ctx`` chunk is scored, so a run scores
``chunks × (ctx − 1 − ctx/2)`` tokens, and the tool prints no statistics below 100 tokens.
"""

from __future__ import annotations

import re
import struct
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .cache import sha256_file_memo
from .errors import EngineError, ModelError, UsageError
from .engine.tools import engine_version_of, first_error_line, make_cached, run_tool, thread_args
from .models import inspect_gguf
from .texts import text_path

MIN_TOKENS = 100  # perplexity.cpp: "we do not wish to do statistics on so few values"
KLD_ATTEMPTS = 3  # runs of one comparison whose log was cut short (see why_no_statistics)


def scored_tokens(ctx: int, chunks: int) -> int:
    return chunks * (ctx - 1 - ctx // 2)


def _printed(label: str, unc: bool = False):
    """A field filled from the summary line ``<label>: value [± unc]`` of llama-perplexity."""
    return field(default=None, metadata={"label": label, "unc": unc})


@dataclass(frozen=True)
class FidelityResult:
    """llama-perplexity's KL-divergence summary; None where this version did not print it.

    Uncertainties (``*_unc``) are the tool's own ± (one standard error). Percent fields are in %.
    """

    kld_mean: float | None = _printed("Mean KLD")
    kld_mean_unc: float | None = _printed("Mean KLD", unc=True)
    kld_max: float | None = _printed("Maximum KLD")
    kld_p99_9: float | None = _printed("99.9% KLD")
    kld_p99: float | None = _printed("99.0% KLD")
    kld_p95: float | None = _printed("95.0% KLD")
    kld_p90: float | None = _printed("90.0% KLD")
    kld_median: float | None = _printed("Median KLD")
    kld_p10: float | None = _printed("10.0% KLD")
    kld_p5: float | None = _printed("5.0% KLD")
    kld_p1: float | None = _printed("1.0% KLD")
    kld_p0_1: float | None = _printed("0.1% KLD")
    kld_min: float | None = _printed("Minimum KLD")
    top1_pct: float | None = _printed("Same top p")  # % of tokens where both models rank the same token first
    top1_pct_unc: float | None = _printed("Same top p", unc=True)
    rms_dp_pct: float | None = _printed("RMS Δp")  # RMS of p_Q(token) − p_base(token), in %
    rms_dp_pct_unc: float | None = _printed("RMS Δp", unc=True)
    mean_dp_pct: float | None = _printed("Mean Δp")
    mean_dp_pct_unc: float | None = _printed("Mean Δp", unc=True)
    ppl_q: float | None = _printed("Mean PPL(Q)")
    ppl_q_unc: float | None = _printed("Mean PPL(Q)", unc=True)
    ppl_base: float | None = _printed("Mean PPL(base)")
    ppl_base_unc: float | None = _printed("Mean PPL(base)", unc=True)
    ln_ppl_ratio: float | None = _printed("Mean ln(PPL(Q)/PPL(base))")
    ln_ppl_ratio_unc: float | None = _printed("Mean ln(PPL(Q)/PPL(base))", unc=True)
    ppl_ratio: float | None = _printed("Mean PPL(Q)/PPL(base)")
    ppl_ratio_unc: float | None = _printed("Mean PPL(Q)/PPL(base)", unc=True)
    chunks: int | None = None  # chunks compared (the last row of the per-chunk table)
    tokens: int | None = None  # tokens scored: the n behind every figure

    def to_json(self) -> dict:
        return asdict(self)


# "Mean    KLD:   0.425780 ±   0.029198", "Same top p: 65.476 ± 3.001 %", "99.9%   KLD:   4.057786"
_SUMMARY = re.compile(r"^\s*(?P<label>[^:]+?)\s*:\s*(?P<value>-?\d+(?:\.\d+)?)"
                      r"(?:\s*±\s*(?P<unc>-?\d+(?:\.\d+)?))?\s*%?\s*$")
# Per-chunk table rows: "   4      70.1701 ±   13.9348       0.35531 ± …"
_CHUNK_ROW = re.compile(r"^\s*(\d+)\s+-?\d+(?:\.\d+)?\s+±")
# An error line of the comparison itself: "0.00.679.569 E kl_divergence: inconsistent vocabulary (1536 vs 49152)"
_KL_ERROR = re.compile(r"^\S+ E kl_divergence: (.*)$", re.MULTILINE)
# "kl_divergence: computing over 4 chunks, n_ctx=128, batch_size=2048, n_seq=16"
_SETUP = re.compile(r"computing over (\d+) chunks, n_ctx=(\d+)")


def parse_kld_output(text: str) -> FidelityResult:
    """Read the summary of ``llama-perplexity --kl-divergence`` (llama.cpp 0c1e570 print format)."""
    found: dict[tuple[str, bool], float] = {}
    chunks = tokens = None
    for line in text.splitlines():
        if match := _SETUP.search(line):
            tokens = scored_tokens(int(match[2]), int(match[1]))
        elif match := _SUMMARY.match(line):
            label = " ".join(match["label"].split())  # the tool pads labels: "Mean    KLD"
            found[(label, False)] = float(match["value"])
            if match["unc"] is not None:
                found[(label, True)] = float(match["unc"])
        elif match := _CHUNK_ROW.match(line):
            chunks = int(match[1])
    values = {f.name: found.get((f.metadata["label"], f.metadata["unc"]))
              for f in fields(FidelityResult) if "label" in f.metadata}
    return FidelityResult(**values, chunks=chunks, tokens=tokens)


def why_no_statistics(text: str) -> tuple[str, bool]:
    """Why a llama-perplexity log that exited 0 has no KL summary, and whether a rerun may help.

    A rerun helps only when the log was cut short: the pinned tools log through an asynchronous
    queue that nobody flushes at exit, so on a busy machine the last lines can be lost
    (llama.cpp issue 22142; seen in CI, the summary missing after chunk 3 of 4).
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if failed := first_error_line(lines):
        return failed, False
    if any(re.match(r"Mean\s+KLD\s*:\s*-?(nan|inf)", ln, re.IGNORECASE) for ln in lines):
        return "its KL divergence is not finite (the model's logits are nan or inf)", False
    result = parse_kld_output(text)
    for label, value in (("Mean KLD", result.kld_mean), ("Same top p", result.top1_pct)):
        if value is None and any(" ".join(ln.partition(":")[0].split()) == label for ln in lines):
            return f"its {label!r} line could not be read (a print format this version does not know?)", False
    tokens = result.tokens
    if tokens is not None and tokens < MIN_TOKENS:
        return f"it scored {tokens} tokens and prints statistics only from {MIN_TOKENS}", False
    return f"its log was cut short after: {lines[-1] if lines else 'nothing'}", True


def _base_ctx(base: Path) -> int:
    """The context size a base file was saved with: header "_logits_" then uint32 n_ctx."""
    try:
        with open(base, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise UsageError(f"cannot read KL-divergence base {base}: {exc.strerror}") from None
    if len(head) < 12 or head[:8] != b"_logits_":
        raise UsageError(f"{base} is not a llama-perplexity --kl-divergence-base file")
    return struct.unpack("<I", head[8:])[0]


def kld_base(engine, reference: Path, out: Path, text: Path | None = None, ctx: int = 128,
             chunks: int | None = None, threads: int | None = None) -> Path:
    """Save the reference's log-probabilities over ``text`` (cached by inputs, like the ladder)."""
    reference, out = Path(reference), Path(out)
    text = Path(text) if text else text_path("evaluation")
    if chunks is not None and scored_tokens(ctx, chunks) < MIN_TOKENS:
        raise UsageError(f"{chunks} chunks of ctx {ctx} score {scored_tokens(ctx, chunks)} tokens; "
                         f"llama-perplexity needs at least {MIN_TOKENS} for KL statistics")
    argv = [str(engine.tool("llama-perplexity")), "-m", str(reference), "-f", str(text),
            "--kl-divergence-base", str(out), "-c", str(ctx),
            *(["--chunks", str(chunks)] if chunks else []), *thread_args(threads)]
    inputs = {"kind": "kld-base", "reference_sha256": sha256_file_memo(reference),
              "text_sha256": sha256_file_memo(text), "ctx": ctx, "chunks": chunks,
              "engine": engine_version_of(engine)}
    make_cached(out, argv, inputs, {"reference": str(reference), "text": str(text)})
    return out


def measure_kld(engine, model: Path, base: Path, threads: int | None = None) -> FidelityResult:
    """KL divergence and top-1 agreement of ``model`` against the reference saved in ``base``."""
    model, base = Path(model), Path(base)
    ctx = _base_ctx(base)  # the comparison must run at the base's context size
    log = base.with_name(f"{base.stem}.{model.stem}.log")
    for attempt in range(1, KLD_ATTEMPTS + 1):
        run_tool([str(engine.tool("llama-perplexity")), "-m", str(model), "--kl-divergence-base", str(base),
                  "--kl-divergence", "-c", str(ctx), *thread_args(threads)], log)
        text = log.read_text(errors="replace")
        if complaint := _KL_ERROR.search(text):  # e.g. "inconsistent vocabulary": figures follow, but garbage
            raise EngineError(f"llama-perplexity, {model.name} against {base.name}: {complaint[1].strip()}",
                              hint=f"full log: {log}")
        result = parse_kld_output(text)
        if result.kld_mean is not None and result.top1_pct is not None:
            break
        why, cut_short = why_no_statistics(text)
        if not cut_short or attempt == KLD_ATTEMPTS:
            tries = f" ({attempt} tries)" if attempt > 1 else ""
            raise EngineError(f"llama-perplexity printed no KL-divergence statistics for {model.name}{tries}: "
                              f"{why}", hint=f"full log: {log}")
    if result.tokens is None and result.chunks:
        result = replace(result, tokens=scored_tokens(ctx, result.chunks))
    return result


def check_same_vocabulary(reference: Path, models: list[Path]) -> None:
    """KL divergence compares two next-token distributions over one vocabulary. ``specsweep fidelity``
    checks it before the reference's pass: the pinned llama-perplexity only logs "inconsistent
    vocabulary", then prints figures anyway (``measure_kld`` fails on that line; the demo's ladder is
    made from its reference)."""
    ref = inspect_gguf(reference)
    for path in models:
        info = inspect_gguf(path)
        if info.vocab_hash != ref.vocab_hash:
            raise ModelError(f"{path.name} has a different vocabulary from the reference {reference.name} "
                             f"({info.vocab_size} vs {ref.vocab_size} tokens): no KL divergence between them",
                             hint="give --reference the unquantized model the quants were made from")


def measure_models(engine, store, run_id: int, models: list[tuple[str, Path]], reference: Path, base: Path,
                   threads: int | None = None, skip_known: bool = False, report=None) -> dict[str, FidelityResult]:
    """Measure each ``(label, path)`` against ``base`` and save it in the store under ``run_id``.

    ``skip_known`` leaves out labels the store already has a result for (a resumed demo);
    ``report(label, result)`` is called after each one is saved. Returns the results measured.
    """
    known = store.fidelity(run_id) if skip_known else {}
    results = {}
    for label, path in models:
        if label in known:
            continue
        result = measure_kld(engine, Path(path), base, threads=threads)
        store.save_fidelity(run_id, label, str(reference), result.to_json())
        results[label] = result
        if report is not None:
            report(label, result)
    return results
