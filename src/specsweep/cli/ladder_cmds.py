"""Commands around quant ladders: ``quantize``, ``fidelity``, ``validate``, ``demo``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import UsageError
from .options import db_flag, engine_flags, engine_from_args, open_results


def cmd_quantize(args) -> int:
    from ..progress import BuildProgress, console
    from ..quantize import build_ladder, write_sweep_file
    engine = engine_from_args(args)
    imatrix = args.imatrix if args.imatrix in (None, "auto") else Path(args.imatrix)
    types = [t for t in args.types.split(",") if t]
    with BuildProgress("quantizing") as progress:
        rungs = build_ladder(engine, args.source, types, args.out, imatrix=imatrix, threads=args.threads,
                             progress=progress)
    for rung in rungs:
        console.print(f"{rung.qtype:8} {rung.size_bytes / 1e6:8.1f} MB {rung.bits_per_weight:5.2f} bpw  {rung.path}"
                      + ("  (imatrix)" if rung.imatrix else ""))
    sweep_file = write_sweep_file(rungs, args.reference or args.source, args.out)
    console.print(f"sweep file: {sweep_file}  (specsweep run --config {sweep_file})")
    return 0


def cmd_fidelity(args) -> int:
    from ..fidelity import check_same_vocabulary, kld_base, measure_models
    from ..progress import console
    store = open_results(args.db, readonly=False)
    run = store.run(args.run)
    models = run.config["models"]
    reference = args.reference
    if reference is None:
        drafters = {m.get("draft_model") for m in models}
        if len(drafters) != 1 or None in drafters:
            raise UsageError("give --reference: the run's models do not share one draft model to use as reference")
        reference = Path(drafters.pop())
    check_same_vocabulary(Path(reference), [Path(m["path"]) for m in models])  # before the reference's pass
    engine = engine_from_args(args)
    base = kld_base(engine, reference, store.path.resolve().parent / f"{Path(reference).stem}.kld",
                    text=args.text, ctx=args.ctx, chunks=args.chunks, threads=args.threads)

    def report(label, result):
        console.print(f"{label:10} KLD {result.kld_mean:.5f}  top-1 {result.top1_pct:.2f}%  (n={result.tokens} tokens)")
    measure_models(engine, store, run.id, [(m["label"], Path(m["path"])) for m in models], reference, base,
                   threads=args.threads, report=report)
    return 0


def cmd_validate(args) -> int:
    from rich.table import Table
    from ..models import fetch_default_model
    from ..progress import BuildProgress, console
    from ..validate import DEFAULT_RATE_VECTORS, parse_rates, pruned_drafter, validate_rates
    vectors = [parse_rates(r) for r in args.rates] if args.rates else list(DEFAULT_RATE_VECTORS)
    engine = engine_from_args(args)
    model = args.model or fetch_default_model()
    drafter = pruned_drafter(engine, model)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for rates in vectors:
        with BuildProgress("steps per position") as progress:
            check = validate_rates(engine, model, drafter, rates, log_dir, max_tokens=args.max_tokens,
                                   max_requests=args.max_requests, threads=args.threads, progress=progress)
        results.append(check)
        table = Table(title=f"synthetic rates {','.join(f'{r:g}' for r in rates)}: {check.requests} requests, "
                            f"{check.steps} steps ({check.short_drafts} short drafts), {check.seconds:.0f} s")
        for column in ("pos", "configured", "estimate", "diff (pp)", "drafted steps", "SE", "naive", "pass"):
            table.add_column(column, justify="right")
        for p in check.positions:
            table.add_row(str(p.position), f"{p.configured:.3f}",
                          "–" if p.estimate is None else f"{p.estimate:.4f}",
                          "–" if p.diff_pp is None else f"{p.diff_pp:+.2f}", str(p.drafted_steps),
                          "–" if p.se is None else f"{p.se:.4f}",
                          "–" if p.naive_estimate is None else f"{p.naive_estimate:.4f}",
                          "[green]pass[/green]" if p.passed else "[red]FAIL[/red]")
        console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in results], indent=2, default=str))
    passed = all(r.passed for r in results)
    console.print(f"engine {engine.server}: " + ("[green]all positions within 3σ and 2 pp[/green]" if passed
                                                  else "[red]validation failed[/red]"))
    return 0 if passed else 1


def cmd_demo(args) -> int:
    from ..demo import DemoSettings, run_demo
    from ..progress import SweepProgress, console
    from ..report import print_main_table
    started = time.monotonic()
    engine = engine_from_args(args)
    settings = DemoSettings(out_dir=args.out, reps=args.reps, max_tokens=args.max_tokens, threads=args.threads)
    done = run_demo(engine, settings, say=lambda text: console.print(f"[bold]demo[/bold] · {text}"),
                    sweep_progress=SweepProgress())
    print_main_table(done["store"], done["run"])
    for name, path in done["report"].items():
        console.print(f"{name}: {path}")
    console.print(f"results database: {settings.db} (specsweep runs --db {settings.db})")
    console.print(f"demo finished in {time.monotonic() - started:.0f} s")
    return 0 if done["run"].state == "complete" else 1


def register(sub, parser_class) -> None:
    from ..demo import DemoSettings
    quantize = sub.add_parser("quantize", help="make a quant ladder (and a sweep file for it) from one GGUF")
    quantize.add_argument("source", type=Path, help="high-precision GGUF (F16/BF16/F32, or a quant to requantize)")
    quantize.add_argument("--types", default="Q8_0,Q6_K,Q5_K_S,Q4_K_M,IQ4_XS,IQ3_M,IQ2_M")
    quantize.add_argument("--imatrix", help="'auto' (compute one and use it for every type, as `specsweep demo` "
                                            "does), or an imatrix file (used for every type); default: compute one "
                                            "only when a type needs it and use it only for those")
    quantize.add_argument("--out", type=Path, default=Path("ladder"))
    quantize.add_argument("--reference", type=Path, help="draft model for the sweep file (default: SOURCE)")
    quantize.add_argument("--threads", type=int)
    engine_flags(quantize)
    quantize.set_defaults(handler=cmd_quantize)

    fidelity = sub.add_parser("fidelity", help="KL divergence and top-1 agreement of each model of a run")
    fidelity.add_argument("run", nargs="?", default="latest")
    db_flag(fidelity)
    fidelity.add_argument("--reference", type=Path, help="reference GGUF (default: the run's shared draft model)")
    fidelity.add_argument("--text", type=Path, help="evaluation text (default: the shipped one)")
    fidelity.add_argument("--ctx", type=int, default=128)
    fidelity.add_argument("--chunks", type=int)
    fidelity.add_argument("--threads", type=int)
    engine_flags(fidelity)
    fidelity.set_defaults(handler=cmd_fidelity)

    validate = sub.add_parser("validate", help="check the measurement against synthetic acceptance rates")
    validate.add_argument("--rates", action="append", metavar="P0,P1,…",
                          help="unconditional per-position rates (repeatable; default: two vectors, n=4 and n=5)")
    validate.add_argument("--model", type=Path, help="target model (default: the default model)")
    validate.add_argument("--max-tokens", type=int, default=256)
    validate.add_argument("--max-requests", type=int, default=400)
    validate.add_argument("--threads", type=int)
    validate.add_argument("--log-dir", type=Path, default=Path("specsweep-validate-logs"))
    validate.add_argument("--json", type=Path, help="also write the results as JSON")
    engine_flags(validate)
    validate.set_defaults(handler=cmd_validate)

    demo = sub.add_parser("demo", help="the published MTP experiment in miniature on the committed Gemma-4 "
                                       "miniature (CPU, a few minutes)")
    demo.add_argument("--out", type=Path, default=Path("specsweep-demo"))
    demo.add_argument("--reps", type=int, default=3)
    demo.add_argument("--max-tokens", type=int, default=DemoSettings.max_tokens,
                      help=f"tokens per request (default {DemoSettings.max_tokens}, what two cores finish in "
                           "6 minutes; the published protocol has 200)")
    demo.add_argument("--threads", type=int)
    engine_flags(demo)
    demo.set_defaults(handler=cmd_demo)
