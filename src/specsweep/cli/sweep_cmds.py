"""Commands that measure and read results: ``run``, ``runs``, ``report``, ``compare``."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from ..errors import SpecsweepError, UsageError
from .options import (config_from_args, db_flag, engine_flags, engine_from_args, executor_flags, executor_from_args,
                      open_results, sweep_flags)


def _resume_hint(argv: list[str]) -> str:
    return "resume with: specsweep " + " ".join(shlex.quote(a) for a in argv)


def cmd_run(args) -> int:
    from ..config import ONE_SLOT_SERVERS
    from ..engine.caveats import MPS_RUNNING, mtp_cuda_graphs_caveat, mtp_time_sliced_caveat
    from ..engine.server import engine_environment
    from ..progress import SweepProgress, console
    from ..report import print_main_table
    from ..records import drafts_that_did_not_replay
    from ..store import Store
    from ..analysis import MIN_PROMPTS
    from ..sweep import AdaptiveTarget, Sweep, prepare
    config = config_from_args(args)
    engine = engine_from_args(args)
    executor = executor_from_args(args, engine, config)
    prepared = prepare(config, engine, gpus=executor.servers_get_gpus)
    mtp = any(d.spec_type == "draft-mtp" and any(depth > 0 for depth in d.depths) for d in config.drafting_entries())
    one_slot = config.parallel == 1 or config.side_by_side in ONE_SLOT_SERVERS
    caveat = mtp_cuda_graphs_caveat(engine.backend if executor.servers_get_gpus else None, engine_environment(),
                                    mtp and one_slot)
    if caveat:
        console.print(f"[yellow]warning:[/yellow] {caveat}")
    if args.dry_run:
        return _dry_run(prepared, config)
    adaptive = None
    if args.target_ci is not None:
        if args.target_ci <= 0:
            raise UsageError("--target-ci must be a positive number of percentage points")
        if len(prepared.prompts) < MIN_PROMPTS:
            raise UsageError(f"--target-ci needs at least {MIN_PROMPTS} prompts (this sweep has "
                             f"{len(prepared.prompts)}): with fewer, no acceptance interval can be trusted")
        adaptive = AdaptiveTarget(args.target_ci / 100.0, args.max_reps, args.max_tokens_total)
    try:  # connect inside: a Ctrl-C while an MPS daemon starts, or a store that cannot open, still closes it
        executor.connect()
        store = Store(config.db)
        logs = Path(config.db).resolve().parent / (Path(config.db).stem + "-logs")
        sweep = Sweep(prepared, store, logs, progress=SweepProgress(), executor=executor)
        where = {"ray": " over a Ray cluster", "lanes": f", {config.parallel} at once"}.get(executor.name, "")
        mps = getattr(executor, "run_notes", {}).get("mps")
        if engine.backend == "cuda" and mps is not None and mps not in MPS_RUNNING:
            why = mps.removeprefix("unavailable: ") if mps.startswith("unavailable") else "--no-mps"
            console.print(f"[yellow]warning:[/yellow] no MPS daemon ({why}): the {config.parallel} servers "
                          "time-slice the GPU and each decodes several times slower")
            sliced = mtp_time_sliced_caveat(engine.backend, mtp, mps)
            if sliced:
                console.print(f"[yellow]warning:[/yellow] {sliced}")
        console.print(f"run {sweep.run.id} ({sweep.run.run_key[:12]}) → {config.db}: {sweep.plan.n_requests} "
                      f"requests on {sweep.plan.n_servers} servers{where}")
        result = sweep.execute(adaptive)
    except SpecsweepError as exc:
        if exc.exit_code == 130:
            console.print(f"stopped; every finished request is saved in {config.db}. {_resume_hint(args.argv)}")
        raise
    finally:
        executor.close()
    if result.skipped_done:
        console.print(f"resumed: {result.skipped_done} requests were already done")
    console.print(f"{result.performed} requests measured, {result.failed} failed; run state: {result.run.state}")
    if result.reps_used:
        console.print("reps per cell: " + ", ".join(f"{k} {v}" for k, v in result.reps_used.items()))
    if result.budget_hit:
        console.print(f"[yellow]budget reached before the target interval:[/yellow] {', '.join(result.budget_hit)} "
                      "(the interval is over prompts: more reps narrow it only down to the spread between "
                      "prompts, more prompts narrow it further)")
    for item in result.unconfirmed_drafting:
        console.print(f"[yellow]warning:[/yellow] no drafts on the warm-up for {item} "
                      "(normal for n-gram types on short text)")
    records = store.requests(result.run.id)  # read once: the warning below and the table
    redrafted, replayed = drafts_that_did_not_replay(r for r in records if r.status == "ok")
    if redrafted:
        console.print(f"[yellow]warning:[/yellow] {redrafted} of {replayed} traced replays generated their request's "
                      "text with other draft counts: this engine's drafts vary between identical requests on this "
                      "machine, so acceptance carries more than sampling noise (the report's Measurement section)")
    print_main_table(store, result.run, records)
    return 0 if result.run.state == "complete" else 1


def _dry_run(prepared, config) -> int:
    from rich.table import Table
    from ..plan import make_plan
    from ..progress import console
    from ..store import Store
    from ..sweep import estimate_seconds, run_key
    from ..engine.options import NGRAM_TYPES
    plan = make_plan(config, prepared.prompts)
    store = Store(config.db, readonly=True) if Path(config.db).exists() else None
    done: set = set()
    if store is not None:
        run = store.find_run(run_key(prepared))
        done = store.completed_cells(run.id) if run else set()
    table = Table(title="plan")
    for column in ("#", "model", "drafting", "spec type", "depth", "requests", "to do"):
        table.add_column(column)
    for i, group in enumerate(plan.groups, 1):
        todo = sum(1 for r in group.requests if r.cell not in done)
        depth = f"≤{group.depth} (its own cap)" if group.spec_type in NGRAM_TYPES else str(group.depth)
        table.add_row(str(i), group.model_label, group.drafting, group.spec_type, depth,
                      str(len(group.requests)), str(todo))
    console.print(table)
    remaining = sum(1 for r in plan.requests() if r.cell not in done)
    estimate = estimate_seconds(plan, store, done)
    eta = f"about {estimate / 60:.1f} min" if estimate is not None else "unknown until a first run measures it"
    print(f"{plan.n_servers} server starts, {plan.n_requests} requests ({remaining} to do); estimate: {eta}")
    return 0


def _local_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def cmd_runs(args) -> int:
    from rich.table import Table
    from ..progress import console
    store = open_results(args.db)
    table = Table(title=str(store.path))
    for column in ("id", "key", "name", "state", "requests ok", "failed", "started", "updated"):
        table.add_column(column)
    for run in store.runs():
        ok = len(store.requests(run.id, status="ok"))
        failed = len(store.requests(run.id, status="failed"))
        table.add_row(str(run.id), run.run_key[:12], run.name or "", run.state, str(ok), str(failed),
                      _local_time(run.created_at), _local_time(run.updated_at))
    console.print(table)
    return 0


def cmd_report(args) -> int:
    from ..analysis import parse_size
    from ..progress import console
    from ..report import render_markdown, write_report
    budget = None
    if args.budget is not None:
        try:
            budget = parse_size(args.budget)
        except ValueError as exc:
            raise UsageError(f"--budget: {exc}") from None
    store = open_results(args.db)
    run = store.run(args.run)
    if args.out:
        paths = write_report(store, run, args.out, budget_bytes=budget)
        for name, path in paths.items():
            console.print(f"{name}: {path}")
        if budget is not None:  # the choice, as report.md states it
            text = paths["report.md"].read_text(encoding="utf-8")
            start = text.find("**Memory budget")
            print(text[start:text.find("\n## ", start)].strip() if start >= 0 else "no memory figures in this run")
    else:
        print(render_markdown(store, run, budget_bytes=budget))
    return 0


def cmd_compare(args) -> int:
    from ..report import render_compare
    from ..store import Store
    store_a = open_results(args.db)
    store_b = Store(args.db_b, readonly=True) if args.db_b else store_a
    print(render_compare(store_a, store_a.run(args.run_a), store_b, store_b.run(args.run_b)))
    return 0


def register(sub, parser_class) -> None:
    run = sub.add_parser("run", help="measure a sweep (resumes an interrupted one)")
    sweep_flags(run)
    executor_flags(run)
    run.add_argument("--dry-run", action="store_true", help="print the plan and an estimate, run nothing")
    engine_flags(run)
    run.set_defaults(handler=cmd_run)

    runs = sub.add_parser("runs", help="runs in a results database")
    db_flag(runs)
    runs.set_defaults(handler=cmd_runs)

    report = sub.add_parser("report", help="tables, exports, plots and HTML for a run (reads only the store)")
    report.add_argument("run", nargs="?", default="latest", help="run id, key prefix or name (default: latest)")
    db_flag(report)
    report.add_argument("--out", type=Path, help="write report.md, CSV, JSON, PNG plots and report.html here")
    report.add_argument("--budget", metavar="SIZE",
                        help="memory budget, e.g. 24GiB or 512MiB: the fastest (model, drafting, depth) whose "
                             "server used no more (device memory on a GPU host, peak resident set on CPU), with "
                             "the cells not significantly slower")
    report.set_defaults(handler=cmd_report)

    compare = sub.add_parser("compare", help="the acceptance table of run B minus run A, with spreads")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    db_flag(compare)
    compare.add_argument("--db-b", type=Path, help="database of run B if it is another file")
    compare.set_defaults(handler=cmd_compare)
