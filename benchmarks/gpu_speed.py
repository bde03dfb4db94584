"""Speed you can trust (issue 13): the trace tax, the tool's own time, --parallel, memory and the budget.

One command, on the committed Gemma-4 miniature (models/gemma4-mini: F16 target + MTP assistant,
draft-mtp; Q8_0 and Q4_K_M made from the F16 with the tool's own quantizer), writing everything
into OUT:

    .venv/bin/python benchmarks/gpu_speed.py OUT [--scale gpu|cpu]

1. Trace tax: decode speed with LLAMA_TRACE=1 against without, servers alternated (traced first
   in even rounds, untraced first in odd ones), the same requests on both, depths 0 and 3.
2. A sequential sweep (speed from untraced servers, per-position counts from /metrics or a
   traced replay) and where its wall time goes: server starts, requests, the tool's own phases.
3. The same sweep with --parallel K: wall time against sequential, acceptance cell by cell
   (paired on prompt and seed, bootstrap interval of the difference), identical generations.
4. Memory: the buffers each server logged at load against what nvidia-smi (GPU) or the OS
   (peak RSS, CPU) reported for the process.
5. The report of the sequential run with the speed-memory frontier and two --budget choices.

Files: OUT/gpu-speed.md (the write-up), OUT/gpu-speed.json (every figure), OUT/bench.db (both
runs), OUT/report/ (report.md, results.*, PNG plots incl. memory_frontier.png, report.html).
The engine is found as always (SPECSWEEP_LLAMA_SERVER, SPECSWEEP_LLAMA_QUANTIZE, …); with a CUDA
build every layer of target and drafter is offloaded and flash attention is on. On a 2-core CPU
(--scale cpu) everything is shrunk so the whole run takes a few minutes: that is how it is tested.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
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
from specsweep.modelspec import ModelSpec
from specsweep.prompts import load_prompts
from specsweep.provenance import cpu_model, cuda_version, gpus
from specsweep.quantize import build_ladder
from specsweep.report import write_report
from specsweep.store import Store
from specsweep.sweep import Sweep, prepare
from specsweep.trained import trained_file


@dataclass(frozen=True)
class Scale:
    max_tokens: int
    prompts: int  # of mixed-5
    seeds: int  # trace tax: seeds per prompt
    tax_rounds: int  # trace tax: alternations of traced / untraced servers
    tax_depths: tuple[int, ...]
    quants: tuple[str, ...]  # made from the F16 target; F16 itself is swept too
    depths: tuple[int, ...]
    reps: int
    parallel: int
    threads: int | None
    ctx_size: int


SCALES = {
    "gpu": Scale(max_tokens=200, prompts=5, seeds=2, tax_rounds=3, tax_depths=(0, 3), quants=("Q8_0", "Q4_K_M"),
                 depths=(0, 1, 2, 3), reps=4, parallel=4, threads=None, ctx_size=1024),
    "cpu": Scale(max_tokens=32, prompts=2, seeds=2, tax_rounds=2, tax_depths=(0, 3), quants=("Q8_0",),
                 depths=(0, 3), reps=2, parallel=4, threads=2, ctx_size=512),
}
TOOL_PHASES = ("metrics", "log", "tokenize", "record", "store")


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


def trace_tax(engine, target: Path, assistant: Path, scale: Scale, settings: ServerSettings, logs: Path) -> dict:
    """Traced / untraced decode speed of the same requests, servers alternated."""
    prompts = load_prompts("mixed-5", limit=scale.prompts)
    seeds = [2000 + s for s in range(scale.seeds)]
    rows, transport = [], []
    for depth in scale.tax_depths:
        options = ServerOptions(model=target, draft_model=assistant if depth else None,
                                spec_type="draft-mtp" if depth else None, draft_n_max=depth or None,
                                settings=settings if depth else replace(settings, draft_gpu_layers=None))
        for rnd in range(scale.tax_rounds):
            for traced in ((True, False) if rnd % 2 == 0 else (False, True)):
                name = f"tax-d{depth}-r{rnd}-{'traced' if traced else 'untraced'}.log"
                with LlamaServer(engine.server, options, logs / name, traced=traced) as server:
                    measure_request(server, chat_body([{"role": "user", "content": "Say hello."}], 8, 0.3, 1, False),
                                    timeout=600)  # warm-up
                    if rnd == 0 and not traced:  # the HTTP floor: a request that does no work
                        for _ in range(30):
                            started = time.perf_counter()
                            server.client.get("/health")
                            transport.append((time.perf_counter() - started) * 1000.0)
                    for prompt in prompts:
                        for seed in seeds:
                            out = measure_request(server, chat_body(prompt.messages, scale.max_tokens, 0.3, seed,
                                                                    False), timeout=600)
                            rows.append({"depth": depth, "round": rnd, "traced": traced, "prompt": prompt.id,
                                         "seed": seed, "tps": _tps(out.timings),
                                         "predicted_n": out.timings.get("predicted_n"),
                                         "predicted_ms": out.timings.get("predicted_ms"),
                                         "content": (out.response.get("choices") or [{}])[0].get("message", {})
                                         .get("content")})
    summary = {}
    for depth in scale.tax_depths:
        pairs = {}
        for row in rows:
            if row["depth"] == depth and row["tps"]:
                pairs.setdefault((row["round"], row["prompt"], row["seed"]), {})[row["traced"]] = row
        both = [p for p in pairs.values() if True in p and False in p]
        ratios = [p[True]["tps"] / p[False]["tps"] for p in both]
        sums = {t: (sum(p[t]["predicted_n"] for p in both), sum(p[t]["predicted_ms"] for p in both)) for t in (True, False)}
        geo, low, high = _geo_mean_ci(ratios)
        summary[depth] = {"pairs": len(ratios), "median": statistics.median(ratios), "geo_mean": geo,
                          "geo_ci": [low, high], "min": min(ratios), "max": max(ratios),
                          "ratio_of_sums": (sums[True][0] / sums[True][1]) / (sums[False][0] / sums[False][1]),
                          "tps_traced": 1000.0 * sums[True][0] / sums[True][1],
                          "tps_untraced": 1000.0 * sums[False][0] / sums[False][1],
                          "identical": sum(1 for p in both if p[True]["content"] == p[False]["content"])}
    for row in rows:
        row.pop("content")
    return {"by_depth": summary, "requests": rows, "health_ms_median": statistics.median(transport)}


def sweep_config(models: list[ModelSpec], scale: Scale, settings: ServerSettings, db: Path, name: str,
                 parallel: int = 1) -> SweepConfig:
    return check_config(SweepConfig(
        models=tuple(models), drafting=Drafting(spec_type="draft-mtp", depths=scale.depths), prompts="mixed-5",
        prompt_limit=scale.prompts, sampling=Sampling(max_tokens=scale.max_tokens, reps=scale.reps, temperature=0.3,
                                                      thinking=False),
        server=settings, db=db, name=name, parallel=parallel))


def run_sweep(engine, config: SweepConfig, logs: Path) -> tuple[Sweep, float]:
    sweep = Sweep(prepare(config, engine), Store(config.db), logs)
    started = time.perf_counter()
    result = sweep.execute()
    if result.run.state != "complete":
        raise SystemExit(f"sweep {config.name} ended {result.run.state}: {result.failed} failed requests")
    return sweep, time.perf_counter() - started


def overhead(sweep: Sweep, wall: float, store: Store) -> dict:
    seconds = dict(sweep.clock.seconds)
    records = [r for r in store.requests(sweep.run.id, status="ok")]
    timed_work = sum((r.prompt_ms or 0) + (r.predicted_ms or 0) for r in records) / 1000.0
    accounted = sum(seconds.values())
    tool = {phase: seconds.get(phase, 0.0) for phase in TOOL_PHASES}
    tool["between requests (unaccounted)"] = wall - accounted
    requests = seconds.get("request", 0.0)
    return {"wall": wall, "server_start": seconds.get("server_start", 0.0), "server_stop": seconds.get("server_stop", 0.0),
            "replay": seconds.get("replay", 0.0), "requests": requests, "timed_work": timed_work,
            "n_requests": len(records), "n_replayed": sum(1 for r in records if r.counts_from == "replay"),
            "counts_from": {s: sum(1 for r in records if r.counts_from == s)
                            for s in sorted({str(r.counts_from) for r in records})},
            "tool": tool, "tool_total": sum(tool.values()), "tool_share": sum(tool.values()) / requests}


def agreement(store: Store, seq_run: int, par_run: int) -> list[dict]:
    seq = by_drafting(store.requests(seq_run, status="ok"))
    par = by_drafting(store.requests(par_run, status="ok"))
    seq_cells = {(c.key.model_label, c.key.depth): c for c in summarize(seq)}
    par_cells = {(c.key.model_label, c.key.depth): c for c in summarize(par)}
    out = []
    for key, a in seq_cells.items():
        if key[1] == 0 or key not in par_cells:
            continue
        b = par_cells[key]
        in_a = [r for r in seq if (r.model_label, r.depth) == key]
        in_b = [r for r in par if (r.model_label, r.depth) == key]
        cmp = paired_difference(in_b, in_a)
        same = {(r.prompt_id, r.rep): r.content for r in in_a}
        out.append({"model": key[0], "depth": key[1], "sequential": asdict(a.acceptance),
                    "parallel": asdict(b.acceptance), "diff": cmp.diff, "diff_ci": [cmp.ci_low, cmp.ci_high],
                    "pairs": cmp.n_pairs, "agree": not cmp.significant,
                    "identical": sum(1 for r in in_b if same.get((r.prompt_id, r.rep)) == r.content),
                    "requests": len(in_b)})
    return out


def memory_check(store: Store, run_id: int) -> list[dict]:
    rows = []
    for s in store.servers(run_id):
        if s.role != "timed" or not s.memory:
            continue
        rows.append({"model": s.model_label, "depth": s.depth, "device_buffers": s.memory.get("device_bytes"),
                     "host_buffers": s.memory.get("host_bytes"), "kinds": s.memory.get("kinds"),
                     "offloaded": [(s.memory.get(r) or {}).get("offloaded") for r in ("target", "draft")],
                     "measured": s.peak_memory_bytes, "source": s.peak_memory_source})
    return rows


def _mib(n) -> str:
    return "–" if n is None else f"{n / 2 ** 20:.1f}"


def write_markdown(out: Path, facts: dict) -> str:
    tax, seq, par, agree, mem = facts["trace_tax"], facts["sequential"], facts["parallel"], facts["agreement"], facts["memory"]
    lines = [f"# Speed you can trust · {facts['scale']} scale", "",
             f"Command: `{facts['command']}` · {facts['date']}",
             f"Machine: {facts['machine']}; engine {facts['engine']}",
             "Models: the committed Gemma-4 miniature (trained here, not Gemma-4-31B): F16 target and its MTP "
             f"assistant (draft-mtp), plus {', '.join(facts['quants'])} made from the F16 by `specsweep quantize`. "
             f"{facts['protocol']}.", "",
             "## 1. Trace tax (LLAMA_TRACE=1 / without), same requests, servers alternated", "",
             "| depth | pairs | median ratio | geometric mean [95% CI] | min–max | ratio of sums | tok/s traced | "
             "tok/s untraced | identical text |", "|---|---|---|---|---|---|---|---|---|"]
    for depth, t in tax["by_depth"].items():
        lines.append(f"| {depth} | {t['pairs']} | {t['median']:.3f} | {t['geo_mean']:.3f} [{t['geo_ci'][0]:.3f}, "
                     f"{t['geo_ci'][1]:.3f}] | {t['min']:.2f}–{t['max']:.2f} | {t['ratio_of_sums']:.3f} | "
                     f"{t['tps_traced']:.1f} | {t['tps_untraced']:.1f} | {t['identical']}/{t['pairs']} |")
    lines += ["", "Below 1 = the trace log slows decoding. Depth 0 logs no step lines, so its ratio is the "
              "server-to-server noise floor. Speed figures of specsweep now come only from untraced servers.", "",
              "## 2. Where a sequential sweep's time goes", "",
              f"{seq['n_requests']} timed requests (untraced); per-position counts: "
              + ", ".join(f"{n} {k}" for k, n in seq["counts_from"].items()) + ".", "",
              "| | seconds |", "|---|---|",
              f"| sweep wall time | {seq['wall']:.2f} |",
              f"| server starts and stops (spawn → healthy → warm-up → memory sample; stop) | "
              f"{seq['server_start'] + seq['server_stop']:.2f} |",
              f"| traced replays for per-step counts ({seq['n_replayed']} requests, their servers' starts above) | "
              f"{seq['replay']:.2f} |",
              f"| requests (HTTP round trips of the timed requests = engine time) | {seq['requests']:.2f} |",
              f"| of which server-timed work (Σ prompt_ms + predicted_ms) | {seq['timed_work']:.2f} |"]
    for phase, value in seq["tool"].items():
        lines.append(f"| tool: {phase} | {value:.3f} |")
    lines += [f"| **tool total** | **{seq['tool_total']:.3f}** |", "",
              f"Everything the tool adds outside the requests is **{100 * seq['tool_share']:.2f}%** of engine time "
              f"(requests, excluding server starts and replays); target under 1%. HTTP floor: a `GET /health` round "
              f"trip takes {tax['health_ms_median']:.2f} ms (median of 30); the rest of each request's time beyond the "
              "server-timed work is the server's own request handling.", "",
              f"## 3. --parallel {facts['k']} against sequential", "",
              "| | wall s | requests |", "|---|---|---|",
              f"| sequential (speed + acceptance) | {seq['wall']:.1f} | {seq['n_requests']} |",
              f"| sequential without its replay pass | {seq['wall'] - seq['replay']:.1f} | |",
              f"| --parallel {facts['k']} (acceptance only) | {par['wall']:.1f} | {par['n_requests']} |", "",
              f"Speedup: **{seq['wall'] / par['wall']:.2f}×** ({(seq['wall'] - seq['replay']) / par['wall']:.2f}× "
              "against the sequential sweep without its replays).", "",
              "| model | depth | sequential | parallel | difference [95% CI] | pairs | agree | identical text |",
              "|---|---|---|---|---|---|---|---|"]
    for a in agree:
        s, p = a["sequential"], a["parallel"]
        lines.append(f"| {a['model']} | {a['depth']} | {100 * s['mean']:.1f} ±{100 * s['sd']:.1f}% | "
                     f"{100 * p['mean']:.1f} ±{100 * p['sd']:.1f}% | {100 * a['diff']:+.1f} pp "
                     f"[{100 * a['diff_ci'][0]:+.1f}, {100 * a['diff_ci'][1]:+.1f}] | {a['pairs']} | "
                     f"{'yes' if a['agree'] else '**no**'} | {a['identical']}/{a['requests']} |")
    lines += ["", "Acceptance mean ±1σ over reps; difference = parallel − sequential, paired on (prompt, rep), "
              "prompt-level bootstrap; agree = the interval contains 0.", "",
              "## 4. Memory: the servers' own buffers against the device or the OS", "",
              "| model | depth | buffers on device MiB | buffers on host MiB | model | KV | compute | offloaded "
              "(target, drafter) | measured MiB | source |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in mem:
        k = m["kinds"] or {}
        lines.append(f"| {m['model']} | {m['depth']} | {_mib(m['device_buffers'])} | {_mib(m['host_buffers'])} | "
                     f"{_mib(k.get('model'))} | {_mib(k.get('kv'))} | {_mib(k.get('compute'))} | "
                     f"{', '.join(str(x) for x in m['offloaded'])} | {_mib(m['measured'])} | {m['source']} |")
    idle = facts.get("idle_gpu_bytes")
    lines += ["", "nvidia-smi's figure for a process includes the CUDA context and library workspaces; the peak "
              "resident set (CPU) includes the program itself and the mapped model file's touched pages."
              + (f" Before any server started the GPUs had {_mib(idle)} MiB in use (in every nvidia-smi-device "
                 "figure)." if idle is not None else ""), "",
              "## 5. Speed against memory, and the budget choice", "",
              "Report of the sequential run: `report/report.md` (memory section), `report/memory_frontier.png`.", ""]
    for budget in facts["budgets"]:
        lines += [f"`{budget['command']}`:", "", "```", budget["text"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for every output (created)")
    parser.add_argument("--scale", choices=sorted(SCALES), help="default: gpu with a CUDA engine, else cpu")
    args = parser.parse_args(argv)
    engine = resolve_engine()
    on_gpu = engine.backend == "cuda" or (engine.backend == "unknown" and bool(gpus()))
    scale = SCALES[args.scale or ("gpu" if on_gpu else "cpu")]
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "bench.db"
    for stale in args.out.glob("bench.db*"):
        stale.unlink()
    settings = _settings(scale, on_gpu)
    idle_gpu = gpu_used_bytes()  # before any server: what "nvidia-smi-device" figures include besides the server
    target, assistant = trained_file("gemma4-mini", "target"), trained_file("gemma4-mini", "assistant")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rungs = build_ladder(engine, target, list(scale.quants), work / "ladder", threads=scale.threads)
        models = [ModelSpec("F16", target, draft_model=assistant)]
        models += [ModelSpec(r.qtype, r.path, draft_model=assistant) for r in rungs]
        print(f"trace tax: depths {scale.tax_depths}, {scale.tax_rounds} rounds", flush=True)
        tax = trace_tax(engine, target, assistant, scale, settings, work / "logs")
        print("sequential sweep", flush=True)
        seq_sweep, seq_wall = run_sweep(engine, sweep_config(models, scale, settings, db, "sequential"), work / "logs")
        store = Store(db)
        seq = overhead(seq_sweep, seq_wall, store)
        print(f"sweep with --parallel {scale.parallel}", flush=True)
        par_sweep, par_wall = run_sweep(engine, sweep_config(models, scale, settings, db, "parallel", scale.parallel),
                                        work / "logs")
        par = {"wall": par_wall, "n_requests": len(store.requests(par_sweep.run.id, status="ok"))}
        agree = agreement(store, seq_sweep.run.id, par_sweep.run.id)
        memory = memory_check(store, seq_sweep.run.id)
        measured = sorted(p for p in (m["measured"] for m in memory) if p)
        tight = measured[len(measured) // 2] if measured else parse_size("24GiB")
        budgets = []
        for label, size in (("24GiB", parse_size("24GiB")), (f"{tight}", tight)):
            paths = write_report(store, seq_sweep.run, args.out / "report", budget_bytes=size)
            text = paths["report.md"].read_text(encoding="utf-8")
            start = text.find("**Memory budget")
            budgets.append({"command": f"specsweep report {seq_sweep.run.id} --db bench.db --budget {label}",
                            "budget_bytes": size,
                            "text": text[start:text.find("\n## ", start)].strip() if start >= 0 else "none"})
        # The committed report carries the tighter budget (the one that makes a choice).
    gpu_list = gpus()
    facts = {
        "scale": args.scale or ("gpu" if on_gpu else "cpu"), "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python benchmarks/gpu_speed.py OUT" + (f" --scale {args.scale}" if args.scale else ""),
        "machine": (f"{'; '.join(gpu_list)} (CUDA {cuda_version()}), " if gpu_list else "")
                   + f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}",
        "engine": f"{engine.version()} ({engine.backend}, {engine.server})", "quants": list(scale.quants),
        "protocol": (f"mixed-5 ({scale.prompts} prompts), {scale.max_tokens} tokens, temperature 0.3, thinking off, "
                     f"depths {', '.join(map(str, scale.depths))}, {scale.reps} reps; server settings "
                     f"{' '.join(settings.argv())}"),
        "k": scale.parallel, "scale_settings": asdict(scale), "trace_tax": tax, "sequential": seq, "parallel": par,
        "agreement": agree, "memory": memory, "idle_gpu_bytes": idle_gpu, "budgets": budgets, "total_seconds": time.perf_counter() - started,
        "runs": {"sequential": seq_sweep.run.id, "parallel": par_sweep.run.id},
    }
    (args.out / "gpu-speed.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
    text = write_markdown(args.out, facts)
    (args.out / "gpu-speed.md").write_text(text + f"\nWhole benchmark: {facts['total_seconds']:.0f} s.\n")
    print(text)
    ok = all(a["agree"] for a in agree) and seq["tool_share"] < 0.01
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
