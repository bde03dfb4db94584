"""The write-up of benchmarks/gpu_speed.py: its figures (gpu-speed.json) as markdown, section by section.

A section whose measurement did not run (the deadline came first) says so instead of a table.
"""

from __future__ import annotations


def _mib(n) -> str:
    return "–" if n is None else f"{n / 2 ** 20:.1f}"


def _acc(e: dict) -> str:
    """An acceptance estimate: mean ±sd [interval]."""
    interval = "" if e.get("ci_low") is None else f" [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]"
    return f"{100 * e['mean']:.1f} ±{100 * (e['sd'] or 0):.1f}%{interval}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _tax(facts: dict) -> list[str]:
    tax = facts.get("trace_tax")
    lines = ["## 1. Trace tax: the same requests with LLAMA_TRACE=1 and without, servers alternated", ""]
    if not tax or not tax["by_model"]:
        return lines + ["Not measured (the deadline came first).", ""]
    lines += ["| model | depth | pairs | tok/s untraced | tok/s traced | difference | ratio of sums | median ratio | "
              "geometric mean [95% CI] | min–max | identical text |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, by_depth in tax["by_model"].items():
        for depth, t in by_depth.items():
            lines.append(f"| {model} | {depth} | {t['pairs']} | {t['tps_untraced']:.1f} | {t['tps_traced']:.1f} | "
                         f"{t['tps_difference']:+.1f} | {t['ratio_of_sums']:.3f} | {t['median']:.3f} | "
                         f"{t['geo_mean']:.3f} [{t['geo_ci'][0]:.3f}, {t['geo_ci'][1]:.3f}] | "
                         f"{t['min']:.2f}–{t['max']:.2f} | {t['identical']}/{t['pairs']} |")
    lines += ["", "Ratio = traced / untraced decode speed (Σ predicted_n / Σ predicted_ms); below 1 the trace log "
              "slows decoding. Depth 0 logs no step lines, so its ratio is the server-to-server noise floor. "
              "Every speed figure of specsweep now comes from untraced servers."
              + (" **Cut short by the deadline** (complete pairs only)." if tax.get("cut_short") else ""), ""]
    return lines


def _overhead(facts: dict) -> list[str]:
    seq = facts.get("sequential")
    lines = ["## 2. Where a sequential sweep's time goes", ""]
    if not seq:
        return lines + ["Not measured.", ""]
    lines += [f"Run {seq['run']} ({seq['state']}): {seq['n_requests']} timed requests (untraced); per-position "
              "counts from " + ", ".join(f"{k}: {n}" for k, n in seq["counts_from"].items() if k != "None")
              + f" (depth 0: {seq['counts_from'].get('None', 0)}, nothing to count).", "",
              "| | seconds |", "|---|---|",
              f"| sweep wall time | {seq['wall']:.2f} |",
              f"| server starts (spawn → healthy → warm-up → memory sample) | {seq['server_start']:.2f} |",
              f"| server stops (memory sample, stop) | {seq['server_stop']:.2f} |",
              f"| the servers' store rows (started, stopped) | {seq['server_rows']:.2f} |",
              f"| traced replays for exact per-step counts ({seq['n_replayed']} requests; their servers' starts "
              f"above) | {seq['replay']:.2f} |",
              f"| **engine time**: HTTP round trips of the timed requests | {seq['requests']:.2f} |",
              f"| of which server-timed work (Σ prompt_ms + predicted_ms) | {seq['timed_work']:.2f} |",
              f"| tokenizing answers again and building rows, behind the next request (overlapped: not added) | "
              f"{seq.get('behind', 0.0):.2f} |"]
    for phase, value in seq["tool"].items():
        lines.append(f"| tool: {phase} | {value:.3f} |")
    health = (facts.get("trace_tax") or {}).get("health_ms_median")
    lines += [f"| **tool total** | **{seq['tool_total']:.3f}** |", "",
              f"Everything the tool adds outside the requests is **{_pct(seq['tool_share'])}** of engine time "
              "(excluding what each server costs once, and the replays); goal under 1%. Inside the requests, "
              f"{_pct(seq['in_request_share'])} of their time is beyond the server-timed work (HTTP, the server's "
              "request handling)"
              + (f"; a `GET /health` round trip takes {health:.2f} ms (median of 30)" if health else "")
              + f". Both together: {_pct(seq.get('beyond_timed_work_share'))} of the server-timed work.", ""]
    return lines


def _parallel_time(k: int, runs: list[tuple[str, dict | None]]) -> list[str]:
    """Where each --parallel run's time went (runs made before this breakdown existed have none)."""
    rows = [(name, r) for name, r in runs if r and r.get("lane_utilization") is not None]
    if not rows:
        return []
    return ["| --parallel run | sweep wall s | server starts s | server stops s | Σ request s | lanes busy |",
            "|---|---|---|---|---|---|",
            *[f"| {name} | {r['wall_in_sweep']:.1f} | {r['server_start']:.1f} | {r['server_stop']:.1f} | "
              f"{r['request_seconds']:.1f} | {100 * r['lane_utilization']:.0f}% |" for name, r in rows],
            "", f"Lanes busy = Σ request wall time / ({k} × sweep wall time): the rest is server starts and stops, "
            "the tail of each cell (fewer requests left than lanes) and the driver. Starts and stops are summed "
            "over servers: one-slot servers start side by side, so their sum can exceed the wall time.", ""]


def _parallel(facts: dict) -> list[str]:
    seq, par, agree = facts.get("sequential"), facts.get("parallel"), facts.get("agreement") or []
    slots = facts.get("parallel_slots")
    lines = [f"## 3. --parallel {facts['k']} against sequential", ""]
    if not seq or not par:
        return lines + ["Not measured (the deadline came first).", ""]
    lines += ["| | wall s | requests | state |", "|---|---|---|---|",
              f"| sequential (speed + acceptance) | {seq['wall']:.1f} | {seq['n_requests']} | {seq['state']} |",
              f"| sequential without its replay pass | {seq['wall'] - seq['replay']:.1f} | | |",
              f"| --parallel {facts['k']} on {facts['k']} one-slot servers per cell (acceptance only) | "
              f"{par['wall']:.1f} | {par['n_requests']} | {par['state']} |",
              *([f"| --parallel {facts['k']} on {facts['k']} slots of one server (acceptance only) | "
                 f"{slots['wall']:.1f} | {slots['n_requests']} | {slots['state']} |"] if slots else []), "",
              (f"Speedup: **{seq['wall'] / par['wall']:.2f}×** (goal ≥ 3×); "
               f"{(seq['wall'] - seq['replay']) / par['wall']:.2f}× against the sequential sweep without its replays"
               + (f"; on slots of one server {seq['wall'] / slots['wall']:.2f}×" if slots and slots["state"] == "complete"
                  else "") + "."
               if seq["state"] == par["state"] == "complete" else
               "Speedup: not comparable (a run was cut short: see its state)."),
              ""] + _parallel_time(facts['k'], [("one-slot servers", par), ("slots of one server", slots)]) + [
              "| model | depth | sequential | parallel | difference [95% CI] | pairs | agree | overlap | "
              "identical text |", "|---|---|---|---|---|---|---|---|---|"]
    for a in agree:
        s, p = a["sequential"], a["parallel"]
        low, high = a["diff_ci"]
        interval = "–" if low is None else f"[{100 * low:+.1f}, {100 * high:+.1f}]"
        diff = "–" if a["diff"] is None else f"{100 * a['diff']:+.1f} pp"
        verdict = {True: "yes", False: "**no**", None: "no interval"}[a["agree"]]
        overlap = {True: "yes", False: "**no**", None: "–"}[a["intervals_overlap"]]
        lines.append(f"| {a['model']} | {a['depth']} | {_acc(s)} | {_acc(p)} | {diff} {interval} | {a['pairs']} | "
                     f"{verdict} | {overlap} | {a['identical']}/{a['requests']} |")
    lines += ["", "Acceptance mean ±1σ over reps [95% interval, t over prompts] on the one-slot servers; difference = "
              "parallel − sequential, paired on (prompt, rep), its 95% interval t over prompts; agree = that interval "
              "contains 0; overlap = the two cells' own intervals overlap.", ""]
    slot_agree = facts.get("agreement_slots") or []
    if slot_agree:
        lines += [f"On {facts['k']} slots of one server (batched decoding): "
                  f"{sum(a['agree'] is True for a in slot_agree)} of {len(slot_agree)} cells agree; identical text in "
                  f"{sum(a['identical'] for a in slot_agree)} of {sum(a['requests'] for a in slot_agree)} requests; "
                  "differences " + ", ".join(f"{a['model']} d{a['depth']} "
                                             + ("–" if a["diff"] is None else f"{100 * a['diff']:+.1f} pp")
                                             for a in slot_agree) + ".", ""]
    return lines


def _memory(facts: dict) -> list[str]:
    lines = ["## 4. Memory: each server's own buffers against the device or the OS", ""]
    memory = facts.get("memory")
    if not memory:
        return lines + ["Not measured.", ""]
    lines += ["| model | depth | buffers on device MiB | buffers on host MiB | model | KV | compute | offloaded "
              "(target, drafter) | measured MiB | source | measured − buffers MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in memory:
        k = m["kinds"] or {}
        lines.append(f"| {m['model']} | {m['depth']} | {_mib(m['device_buffers'])} | {_mib(m['host_buffers'])} | "
                     f"{_mib(k.get('model'))} | {_mib(k.get('kv'))} | {_mib(k.get('compute'))} | "
                     f"{', '.join(str(x) for x in m['offloaded'])} | {_mib(m['measured'])} | {m['source']} | "
                     f"{_mib(m['measured_minus_buffers'])} |")
    idle = facts.get("idle_gpu_bytes")
    lines += ["", "Buffers: the sizes the server logged at load (device buffers on a GPU, host buffers on CPU). "
              "nvidia-smi's figure for a process adds the CUDA context and library workspaces; the peak resident "
              "set (CPU) adds the program itself and the touched pages of the mapped model file."
              + (f" Before any server started the GPUs had {_mib(idle)} MiB in use (inside every "
                 "nvidia-smi-device figure)." if idle is not None else ""), ""]
    return lines


def _budget(facts: dict) -> list[str]:
    lines = ["## 5. Speed against memory, and the budget choice", ""]
    if not facts.get("budgets"):
        return lines + ["Not measured.", ""]
    lines += ["The sequential run's report, written with the first budget below: `report/report.md` (its Memory "
              "section has the frontier table), `report/memory_frontier.png`, `report/speed_vs_depth.png`.", ""]
    for budget in facts["budgets"]:
        lines += [f"`{budget['command']}`:", "", "```", budget["text"], "```", ""]
    return lines


def write_markdown(facts: dict) -> str:
    goals = facts.get("goals_met") or {}
    lines = [f"# Speed you can trust (issue 13) · {facts['scale']} scale", "",
             f"Command: `{facts['command']}` · {facts['date']}", f"Machine: {facts['machine']}",
             f"Engine: {facts['engine']}",
             "Models: the committed Gemma-4 miniature (trained here, not Gemma-4-31B): F16 target and its MTP "
             f"assistant (draft-mtp), and {', '.join(facts.get('quants') or {}) or 'no quants'} made from the F16; "
             f"SmolLM2-135M-Instruct for the trace tax where given. Protocol: {facts['protocol']}.", ""]
    if goals:
        lines += ["Goals: " + "; ".join(f"{name.replace('_', ' ')}: {'met' if ok else '**not met**'}"
                                        for name, ok in goals.items())
                  + (" · **the deadline cut the measurement short**" if facts.get("deadline_hit") else ""), ""]
    for section in (_tax, _overhead, _parallel, _memory, _budget):
        lines += section(facts)
    if facts.get("total_seconds") is not None:
        lines.append(f"Whole benchmark: {facts['total_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
