"""Speed you can trust (issue 13) on one GPU: the trace tax, the tool's own time, --parallel, memory, the budget.

One command writes everything into OUT (made for one H200 call of at most 8 minutes; it stops
measuring at --deadline and still writes what it has):

    PYTHONPATH=src python benchmarks/gpu_speed.py OUT --smollm SmolLM2-135M-Instruct-F16.gguf

Sections run in the order 2, 3, 1 (the trace tax last: cut by the deadline, it keeps every
complete pair), then 4 and 5 from the store.

Models: SmolLM2-135M-Instruct (--smollm, drafted at depth > 0 by --smollm-draft, by default
itself, draft-simple) for the trace tax the issue measured; the committed Gemma-4 miniature
(models/gemma4-mini: F16 target + MTP assistant, draft-mtp) and its quants, made here from the
F16 by the code of `specsweep quantize` (or given with --quant LABEL=PATH), for everything else.
The engine is found as always (SPECSWEEP_LLAMA_SERVER, SPECSWEEP_LLAMA_QUANTIZE, SPECSWEEP_CACHE …);
with a GPU every layer of target and drafter is offloaded and flash attention is on.

1. Trace tax: decode speed with LLAMA_TRACE=1 against without, the same requests (prompt, seed)
   on both, servers alternated (traced first in even rounds, untraced first in odd ones).
2. A sequential sweep (speed from untraced servers, per-position counts from /metrics or a
   traced replay) and where its time goes: server starts, requests, replays, the tool's phases.
3. The same sweep with --parallel K, first on K one-slot servers per cell (--side-by-side
   servers: each request decoded as alone), then on K slots of one server (the default, batched):
   wall time against sequential, acceptance cell by cell (paired on prompt and rep, t interval of
   the difference over prompts), identical generations.
4. Memory: the buffers each server logged at load against what nvidia-smi (GPU) or the OS
   (peak RSS, CPU) reported for it.
5. The report of the sequential run with the speed-memory frontier, and `specsweep report --budget`.

Files in OUT, seven (a GPU host's $OUT returns at most eight): gpu-speed.md (the write-up),
gpu-speed.json (every figure), summary.json (the headline figures), bench.db (every run, one plain
SQLite file), report/report.md, report/memory_frontier.png and report/speed_vs_depth.png of the
sequential run. The quants, server logs and the full report (CSV, JSON, HTML, every plot) stay in
--work (default: a temporary folder, removed at the end). Exit status 0 when every goal is met
(tool overhead < 1%, --parallel on servers >= 3x, its acceptance agreeing in every cell), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from specsweep.analysis import by_drafting, paired_difference, parse_size, summarize
from specsweep.client import chat_body, measure_request
from specsweep.config import Drafting, Sampling, SweepConfig, check_config
from specsweep.engine.locate import resolve_engine
from specsweep.engine.memory import gpu_used_bytes
from specsweep.engine.options import ServerOptions, ServerSettings
from specsweep.engine.server import LlamaServer
from specsweep.errors import Interrupted
from specsweep.modelspec import ModelSpec
from specsweep.overhead import per_request_tool_phases
from specsweep.prompts import load_prompts
from specsweep.provenance import cpu_model, cuda_version, gpus
from specsweep.quantize import build_ladder
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare
from specsweep.trained import trained_file

from gpu_speed_text import write_markdown  # beside this file (the script's folder is on sys.path)

GOAL_TOOL_SHARE = 0.01
GOAL_PARALLEL = 3.0


@dataclass(frozen=True)
class Scale:
    max_tokens: int
    prompts: int  # of mixed-5
    tax_seeds: int  # trace tax: seeds per prompt
    tax_rounds: int  # trace tax: alternations of traced / untraced servers
    tax_depths: tuple[int, ...]
    quants: tuple[str, ...]  # made from the F16 target; F16 itself is swept too
    depths: tuple[int, ...]
    reps: int
    parallel: int
    threads: int | None
    ctx_size: int


SCALES = {
    # H200: about 80 tax requests and 2 × 240 sweep requests of 200 tokens, 5 minutes in all.
    "gpu": Scale(max_tokens=200, prompts=5, tax_seeds=1, tax_rounds=2, tax_depths=(0, 3), quants=("Q8_0", "Q4_K_M"),
                 depths=(0, 1, 2, 3), reps=4, parallel=4, threads=None, ctx_size=1024),
    # 2 CPU cores: the whole path in a few minutes (how the script is tested; figures mean little).
    "tiny": Scale(max_tokens=16, prompts=3, tax_seeds=1, tax_rounds=2, tax_depths=(0, 2), quants=("Q8_0",),
                  depths=(0, 2), reps=2, parallel=2, threads=2, ctx_size=512),
}


class Deadline:
    """SIGINT to this process at the deadline: the sweep in flight stops cleanly (its store stays
    consistent), the tax loop stops, and the sections done so far are written."""

    def __init__(self, seconds: float):
        self.hit = False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.hit = True
        os.kill(os.getpid(), signal.SIGINT)

    def cancel(self) -> None:
        self.timer.cancel()


def _settings(scale: Scale, on_gpu: bool) -> ServerSettings:
    gpu = {"gpu_layers": "all", "draft_gpu_layers": "all", "flash_attn": "on"} if on_gpu else {}
    return ServerSettings(ctx_size=scale.ctx_size, threads=scale.threads, **gpu)


def _tps(timings: dict) -> float | None:
    n, ms = timings.get("predicted_n"), timings.get("predicted_ms")
    return 1000.0 * n / ms if n and ms else None


def _geo_mean_ci(ratios: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    logs = np.log(np.asarray(ratios))
    rng = np.random.default_rng(seed)
    boots = logs[rng.integers(0, len(logs), size=(n_boot, len(logs)))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(np.exp(logs.mean())), float(np.exp(low)), float(np.exp(high))


# 1. the trace tax -----------------------------------------------------------------------------
def trace_tax(engine, models: dict[str, tuple[Path, Path, str]], scale: Scale, settings: ServerSettings,
              logs: Path) -> dict:
    """Traced / untraced decode speed of the same requests; ``models``: label -> (target, drafter, spec type)."""
    prompts = load_prompts("mixed-5", limit=scale.prompts)
    seeds = [2000 + s for s in range(scale.tax_seeds)]
    rows, transport, cut = [], [], False
    try:
        for label, (target, drafter, spec_type) in models.items():
            for depth in scale.tax_depths:
                options = ServerOptions(model=target, draft_model=drafter if depth else None,
                                        spec_type=spec_type if depth else None, draft_n_max=depth or None,
                                        settings=settings if depth else replace(settings, draft_gpu_layers=None))
                for rnd in range(scale.tax_rounds):
                    for traced in ((True, False) if rnd % 2 == 0 else (False, True)):
                        name = f"tax-{label}-d{depth}-r{rnd}-{'traced' if traced else 'untraced'}.log"
                        with LlamaServer(engine.server, options, logs / name, traced=traced) as server:
                            measure_request(server, chat_body([{"role": "user", "content": "Say hello."}], 8, 0.3, 1,
                                                              False), timeout=600)  # warm-up
                            if not transport:  # the HTTP floor: a request that does no work
                                for _ in range(30):
                                    started = time.perf_counter()
                                    server.client.get("/health")
                                    transport.append((time.perf_counter() - started) * 1000.0)
                            for prompt in prompts:
                                for seed in seeds:
                                    body = chat_body(prompt.messages, scale.max_tokens, 0.3, seed, False)
                                    out = measure_request(server, body, timeout=600)
                                    t = out.timings
                                    rows.append({"model": label, "depth": depth, "round": rnd, "traced": traced,
                                                 "prompt": prompt.id, "seed": seed, "tps": _tps(t),
                                                 "predicted_n": t.get("predicted_n"),
                                                 "predicted_ms": t.get("predicted_ms"), "draft_n": t.get("draft_n"),
                                                 "content": (out.response.get("choices") or [{}])[0]
                                                 .get("message", {}).get("content")})
    except KeyboardInterrupt:
        cut = True
    summary: dict = {}
    for label in models:
        for depth in scale.tax_depths:
            pairs: dict = {}
            for row in rows:
                if row["model"] == label and row["depth"] == depth and row["tps"]:
                    pairs.setdefault((row["round"], row["prompt"], row["seed"]), {})[row["traced"]] = row
            both = [p for p in pairs.values() if True in p and False in p]
            if not both:
                continue
            ratios = [p[True]["tps"] / p[False]["tps"] for p in both]
            sums = {t: (sum(p[t]["predicted_n"] for p in both), sum(p[t]["predicted_ms"] for p in both))
                    for t in (True, False)}
            tps = {t: 1000.0 * n / ms for t, (n, ms) in sums.items()}
            geo, low, high = _geo_mean_ci(ratios)
            summary.setdefault(label, {})[depth] = {
                "pairs": len(ratios), "median": statistics.median(ratios), "geo_mean": geo, "geo_ci": [low, high],
                "min": min(ratios), "max": max(ratios), "ratio_of_sums": tps[True] / tps[False],
                "tps_traced": tps[True], "tps_untraced": tps[False], "tps_difference": tps[False] - tps[True],
                "identical": sum(1 for p in both if p[True]["content"] == p[False]["content"])}
    for row in rows:
        row.pop("content")
    return {"by_model": summary, "requests": rows, "cut_short": cut,
            "health_ms_median": statistics.median(transport) if transport else None}


# 2-3. the sweeps ----------------------------------------------------------------------------------
def sweep_config(models: list[ModelSpec], scale: Scale, settings: ServerSettings, db: Path, name: str,
                 parallel: int = 1, side_by_side: str = "slots") -> SweepConfig:
    return check_config(SweepConfig(
        models=tuple(models), drafting=Drafting(spec_type="draft-mtp", depths=scale.depths), prompts="mixed-5",
        prompt_limit=scale.prompts, sampling=Sampling(max_tokens=scale.max_tokens, reps=scale.reps, temperature=0.3,
                                                      thinking=False),
        server=settings, db=db, name=name, parallel=parallel, side_by_side=side_by_side))


def run_sweep(engine, config: SweepConfig, logs: Path) -> tuple[int, float, str]:
    """(run id, wall seconds, state); a deadline leaves the run interrupted but stored."""
    store = Store(config.db)
    try:
        sweep = Sweep(prepare(config, engine), store, logs)
        started = time.perf_counter()
        try:
            state = sweep.execute().run.state
        except (Interrupted, KeyboardInterrupt):
            state = "interrupted"
        return sweep.run.id, time.perf_counter() - started, state
    finally:
        store.close()


def overhead(store: Store, run_id: int, wall: float) -> dict:
    """Where the sequential sweep's time went, from the phases the sweep timed itself (run notes)."""
    notes = store.run(run_id).notes.get("overhead") or {}
    phases = notes.get("phases") or {}
    seconds = {name: v["seconds"] for name, v in phases.items()}
    records = store.requests(run_id, status="ok")
    timed_work = sum((r.prompt_ms or 0) + (r.predicted_ms or 0) for r in records) / 1000.0
    requests = seconds.get("request", 0.0)
    tool = per_request_tool_phases(phases)
    # The driver's wall time not inside any timed phase: planning, the loop, progress, HTTP set-up.
    # ("behind": tokenizing and row building on a thread of their own while the next request runs.)
    timed = sum(v for name, v in seconds.items() if name != "behind")
    tool["between phases (unaccounted)"] = max(0.0, notes.get("wall_seconds", wall) - timed)
    tool_total = sum(tool.values())
    return {"wall": wall, "wall_in_sweep": notes.get("wall_seconds"), "server_start": seconds.get("server_start", 0.0),
            "server_stop": seconds.get("server_stop", 0.0), "server_rows": seconds.get("server_rows", 0.0),
            "replay": seconds.get("replay", 0.0),
            "behind": seconds.get("behind", 0.0),
            "requests": requests, "timed_work": timed_work, "n_requests": len(records),
            "n_replayed": sum(1 for r in records if r.counts_from == "replay"),
            "counts_from": {s: sum(1 for r in records if str(r.counts_from) == s)
                            for s in sorted({str(r.counts_from) for r in records})},
            "tool": tool, "tool_total": tool_total, "tool_share": tool_total / requests if requests else None,
            "in_request_share": (requests - timed_work) / requests if requests else None,
            # everything beyond the server-timed work (tool time and the HTTP inside each request), per
            # server-timed second
            "beyond_timed_work_share": (tool_total + requests - timed_work) / timed_work if timed_work else None}


def parallel_time(store: Store, run_id: int, k: int) -> dict:
    """Where a --parallel sweep's time went: the servers' starts and stops (summed over servers), and
    how busy the K lanes were (Σ request wall time / (K × sweep wall time)); idle lanes mean cell tails."""
    notes = store.run(run_id).notes.get("overhead") or {}
    seconds = {name: v["seconds"] for name, v in (notes.get("phases") or {}).items()}
    in_sweep = notes.get("wall_seconds")
    busy = sum((r.wall_ms or 0) for r in store.requests(run_id, status="ok")) / 1000.0
    return {"wall_in_sweep": in_sweep, "server_start": seconds.get("server_start", 0.0),
            "server_stop": seconds.get("server_stop", 0.0), "request_seconds": busy,
            "lane_utilization": busy / (k * in_sweep) if in_sweep else None}


def agreement(store: Store, seq_run: int, par_run: int) -> list[dict]:
    seq = by_drafting(store.requests(seq_run, status="ok"))
    par = by_drafting(store.requests(par_run, status="ok"))
    seq_cells = {(c.key.model_label, c.key.depth): c for c in summarize(seq)}
    par_cells = {(c.key.model_label, c.key.depth): c for c in summarize(par)}
    out = []
    for key, a in seq_cells.items():
        if key[1] == 0 or key not in par_cells or a.acceptance is None or par_cells[key].acceptance is None:
            continue
        b = par_cells[key]
        in_a = [r for r in seq if (r.model_label, r.depth) == key]
        in_b = [r for r in par if (r.model_label, r.depth) == key]
        cmp = paired_difference(in_b, in_a)
        same = {(r.prompt_id, r.rep): r.content for r in in_a}
        s, p = a.acceptance, b.acceptance
        overlap = None if None in (s.ci_low, s.ci_high, p.ci_low, p.ci_high) else \
            s.ci_low <= p.ci_high and p.ci_low <= s.ci_high
        out.append({"model": key[0], "depth": key[1], "sequential": asdict(s), "parallel": asdict(p),
                    "diff": cmp.diff if cmp else None, "diff_ci": [cmp.ci_low, cmp.ci_high] if cmp else [None, None],
                    "pairs": cmp.n_pairs if cmp else 0,
                    # the paired difference's interval contains 0 (None: too few prompts for an interval)
                    "agree": None if cmp is None or cmp.significant is None else not cmp.significant,
                    "intervals_overlap": overlap,
                    "identical": sum(1 for r in in_b if same.get((r.prompt_id, r.rep)) == r.content),
                    "requests": len(in_b)})
    return out


# 4-5. memory and the budget --------------------------------------------------------------------
def memory_check(store: Store, run_id: int) -> list[dict]:
    rows = []
    for s in store.servers(run_id):
        if s.role != "timed" or not s.memory:
            continue
        buffers = s.memory.get("device_bytes") or s.memory.get("host_bytes")
        rows.append({"model": s.model_label, "depth": s.depth, "device_buffers": s.memory.get("device_bytes"),
                     "host_buffers": s.memory.get("host_bytes"), "kinds": s.memory.get("kinds"),
                     "offloaded": [(s.memory.get(r) or {}).get("offloaded") for r in ("target", "draft")],
                     "measured": s.peak_memory_bytes, "source": s.peak_memory_source,
                     "measured_minus_buffers": (s.peak_memory_bytes - buffers)
                     if s.peak_memory_bytes is not None and buffers else None})
    return rows


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real ``specsweep`` command line, as a user runs it."""
    code = "import sys; from specsweep.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def reports(work: Path, db: Path, run_id: int, memory: list[dict]) -> list[dict]:
    """The run's full report into WORK/report (frontier plot included) and two `report --budget` choices."""
    measured = sorted(m["measured"] for m in memory if m["measured"])
    tight = measured[len(measured) // 2] if measured else parse_size("24GiB")  # the median server: a real choice
    budgets = []
    # The full report (and its plot) with the budget that makes a choice; the 24 GiB one as text.
    for i, budget in enumerate((f"{tight / 2 ** 20:.0f}MiB", "24GiB")):
        args = ["report", str(run_id), "--db", str(db), "--budget", budget]
        done = cli(*args, *(["--out", str(work / "report")] if i == 0 else []))
        text = done.stdout.strip() if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"
        if i > 0 and done.returncode == 0:  # the whole report.md on stdout: keep its budget paragraph
            start = text.find("**Memory budget")
            text = text[start:text.find("\n## ", start)].strip() if start >= 0 else "no memory figures in this run"
        else:  # with --out it prints the files it wrote, then the budget paragraph
            text = "\n".join(line for line in text.splitlines() if not line.endswith((".png", ".html", ".csv",
                                                                                        ".json", ".md")))
        budgets.append({"command": f"specsweep report {run_id} --db bench.db --budget {budget}"
                                   + (" --out report" if i == 0 else ""), "text": text})
    return budgets


def _machine() -> str:
    found = gpus()
    return ((f"{'; '.join(found)} (CUDA {cuda_version()}), " if found else "")
            + f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}")


def _quant_arg(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH to an existing file, got {text!r}")
    return label, Path(path)


def summary_of(facts: dict) -> dict:
    """The headline figures, one line each in the printed JSON."""
    seq, par, agree = facts.get("sequential") or {}, facts.get("parallel") or {}, facts.get("agreement") or []
    tax = {f"{m}/d{d}": {k: round(v[k], 4) for k in ("ratio_of_sums", "median", "tps_traced", "tps_untraced")}
           | {"ci": [round(x, 4) for x in v["geo_ci"]], "pairs": v["pairs"]}
           for m, by_depth in ((facts.get("trace_tax") or {}).get("by_model") or {}).items()
           for d, v in by_depth.items()}
    complete = seq.get("state") == par.get("state") == "complete"
    speedup = seq["wall"] / par["wall"] if complete and par.get("wall") and seq.get("wall") else None
    return {"machine": facts.get("machine"), "engine": facts.get("engine"), "trace_tax": tax,
            "tool_share": seq.get("tool_share"), "in_request_share": seq.get("in_request_share"),
            "beyond_timed_work_share": seq.get("beyond_timed_work_share"),
            "sequential_wall": seq.get("wall"), "parallel_wall": par.get("wall"), "parallel_speedup": speedup,
            "cells_agreeing": f"{sum(a['agree'] is True for a in agree)}/{len(agree)}",
            "memory": [(m["model"], m["depth"], m["device_buffers"] or m["host_buffers"], m["measured"], m["source"])
                       for m in facts.get("memory") or []],
            "budget": [b["text"].splitlines()[0] if b["text"] else "" for b in facts.get("budgets") or []],
            "deadline_hit": facts.get("deadline_hit"), "total_seconds": facts.get("total_seconds"),
            "goals_met": facts.get("goals_met")}


def save(out: Path, facts: dict) -> str:
    """Write every figure so far (also after a section, so a cut-short run keeps what it measured)."""
    (out / "gpu-speed.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
    (out / "summary.json").write_text(json.dumps(summary_of(facts), indent=1, default=str) + "\n")
    text = write_markdown(facts)
    (out / "gpu-speed.md").write_text(text)
    return text


def keep(work: Path, out: Path, db: Path) -> None:
    """The files that come back from a GPU host: the store as one plain SQLite file, and the report's
    markdown with its two speed plots."""
    with sqlite3.connect(db) as source, sqlite3.connect(out / "bench.db") as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    (out / "report").mkdir(exist_ok=True)
    for name in ("report.md", "memory_frontier.png", "speed_vs_depth.png"):
        if (work / "report" / name).exists():
            shutil.copy(work / "report" / name, out / "report" / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the seven result files (created; earlier ones replaced)")
    parser.add_argument("--work", type=Path, help="folder for quants, logs and the full report (kept; default: "
                                                  "a temporary folder, removed at the end)")
    parser.add_argument("--smollm", type=Path, help="SmolLM2-135M-Instruct GGUF for the trace tax (F16 on the GPU)")
    parser.add_argument("--smollm-draft", type=Path, help="its drafter at depth > 0, draft-simple (default: itself)")
    parser.add_argument("--target", type=Path, help="default: the committed gemma4-mini F16 target")
    parser.add_argument("--assistant", type=Path, help="default: the committed gemma4-mini MTP assistant")
    parser.add_argument("--quant", type=_quant_arg, action="append", default=[], metavar="LABEL=PATH",
                        help="a quant of the target made beforehand (repeatable); default: the scale's quants, "
                             "made here the way `specsweep quantize` makes them")
    parser.add_argument("--scale", choices=sorted(SCALES), help="default: gpu with a GPU engine, else tiny")
    parser.add_argument("--deadline", type=float, default=400.0,
                        help="seconds after which measuring stops and the results so far are written (default 400)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    engine = resolve_engine()
    on_gpu = engine.backend == "cuda" or (engine.backend == "unknown" and bool(gpus()))
    scale_name = args.scale or ("gpu" if on_gpu else "tiny")
    scale = SCALES[scale_name]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    db, logs = work / "bench.db", work / "logs"
    for stale in [*work.glob("bench.db*"), *out.glob("bench.db*")]:
        stale.unlink()
    settings = _settings(scale, on_gpu)
    target = args.target or trained_file("gemma4-mini", "target")
    assistant = args.assistant or trained_file("gemma4-mini", "assistant")
    facts: dict = {
        "scale": scale_name, "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "PYTHONPATH=src python benchmarks/gpu_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": _machine(), "engine": f"{engine.version()} ({engine.backend}, {engine.server})",
        "idle_gpu_bytes": gpu_used_bytes(),  # before any server: in every "nvidia-smi-device" figure
        "scale_settings": asdict(scale), "k": scale.parallel, "server_args": settings.argv(),
        "protocol": (f"mixed-5 ({scale.prompts} prompts), {scale.max_tokens} tokens, temperature 0.3, thinking off; "
                     f"sweeps: draft-mtp depths {', '.join(map(str, scale.depths))}, {scale.reps} reps; "
                     f"server settings `{' '.join(settings.argv())}`"),
    }
    deadline = Deadline(args.deadline)
    try:
        quants = dict(args.quant)
        if not quants:
            rungs = build_ladder(engine, target, list(scale.quants), work / "ladder", threads=scale.threads)
            quants = {r.qtype: r.path for r in rungs}
        facts["quants"] = {label: str(path) for label, path in quants.items()}
        models = [ModelSpec("F16", target, draft_model=assistant)]
        models += [ModelSpec(label, path, draft_model=assistant) for label, path in quants.items()]

        print("2. sequential sweep", flush=True)
        seq_id, seq_wall, seq_state = run_sweep(engine, sweep_config(models, scale, settings, db, "sequential"), logs)
        store = Store(db)
        facts["sequential"] = {**overhead(store, seq_id, seq_wall), "state": seq_state, "run": seq_id}
        facts["memory"] = memory_check(store, seq_id)
        store.close()
        save(out, facts)

        # K one-slot servers per cell (each request decoded as alone), then K slots of one server (the default).
        for mode, suffix in (("servers", ""), ("slots", "_slots")):
            if deadline.hit:
                break
            print(f"3. sweep with --parallel {scale.parallel} --side-by-side {mode}", flush=True)
            par_id, par_wall, par_state = run_sweep(
                engine, sweep_config(models, scale, settings, db, f"parallel-{mode}", scale.parallel, mode), logs)
            store = Store(db)
            facts["parallel" + suffix] = {"wall": par_wall, "state": par_state, "run": par_id, "mode": mode,
                                          "n_requests": len(store.requests(par_id, status="ok")),
                                          **parallel_time(store, par_id, scale.parallel)}
            facts["agreement" + suffix] = agreement(store, seq_id, par_id)
            store.close()
            save(out, facts)

        # Last: a deadline here still leaves every complete traced/untraced pair measured so far.
        tax_models = {}
        if args.smollm:
            tax_models["SmolLM2-135M"] = (args.smollm, args.smollm_draft or args.smollm, "draft-simple")
        tax_models["gemma4-mini-F16"] = (target, assistant, "draft-mtp")
        if not deadline.hit:
            print(f"1. trace tax: {', '.join(tax_models)}, depths {scale.tax_depths}", flush=True)
            facts["trace_tax"] = trace_tax(engine, tax_models, scale, settings, logs)
            save(out, facts)
    except KeyboardInterrupt:
        pass  # the deadline fell between two sections
    finally:
        deadline.cancel()
    facts["deadline_hit"] = deadline.hit
    if "sequential" in facts:
        print("5. report and --budget", flush=True)
        facts["budgets"] = reports(work, db, facts["sequential"]["run"], facts.get("memory") or [])
        keep(work, out, db)
    facts["total_seconds"] = time.perf_counter() - started
    seq, par = facts.get("sequential") or {}, facts.get("parallel") or {}
    facts["goals_met"] = {
        "tool_share_under_1pct": seq.get("tool_share") is not None and seq["tool_share"] < GOAL_TOOL_SHARE,
        "parallel_3x": (seq.get("state") == par.get("state") == "complete"
                        and seq["wall"] / par["wall"] >= GOAL_PARALLEL),
        "acceptance_agrees": bool(facts.get("agreement")) and all(a["agree"] is True for a in facts["agreement"])}
    text = save(out, facts)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    print("SUMMARY " + json.dumps(summary_of(facts), default=str))
    return 0 if all(facts["goals_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
