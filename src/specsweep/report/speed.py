"""The report's sections about speed: how it was measured (untraced, side by side, where the
per-position counts came from, the tool's own time), the recommendation, the memory each cell
used with the speed-memory frontier (figures from ``specsweep.analysis.frontier``), and the
``--budget`` choice."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..analysis import MemoryPoint
from ..config import ONE_SLOT_SERVERS
from ..engine.caveats import mtp_cuda_graphs_caveat, mtp_time_sliced_caveat
from ..overhead import per_request_tool_phases
from ..records import drafts_that_did_not_replay
from .blocks import DASH, Bullets, Heading, Image, Para, Table, _plural, _pm, _size

if TYPE_CHECKING:
    from .model import Report

SOURCES = {"nvidia-smi": "peak device memory of the server process (nvidia-smi)",
           "nvidia-smi-device": "peak memory in use on the GPU while the server ran alone (nvidia-smi)",
           "rss": "peak resident set of the server process (VmHWM)",
           "buffers": "buffers llama.cpp logged at load", "file size": "model file size"}


def speed_note(report: "Report") -> str | None:
    sources = Counter(c.speed_from for c in report.cells if c.n_requests)
    slots = max((r.slots or 1 for r in report.records if r.status == "ok"), default=1)
    if not sources:
        return None
    if set(sources) == {None}:
        mode = (report.run.notes or {}).get("side_by_side")
        mps = (report.run.notes or {}).get("mps")
        how = f"one request per server{f'; MPS: {mps}' if mps and mps != 'off' else ''}"
        if mode == "servers":
            where = f"on {slots} one-slot servers per cell (--parallel {slots} --side-by-side servers; {how})"
        elif mode == "cells":
            where = (f"as {slots} cells at once, each on a one-slot server of its own (--parallel {slots} "
                     f"--side-by-side cells; {how})")
        else:
            where = f"on {slots} slots of one server per cell (--parallel {slots}; batched decoding)"
        return (f"**Speed not measured:** this run ran {slots} requests side by side {where}, for acceptance only. "
                "Each request's response timings still count its own drafted and accepted tokens exactly.")
    if sources.get("traced"):
        return (f"Speed of {_plural(sources['traced'], 'cell')} comes from requests on servers that logged every "
                "step (LLAMA_TRACE): they were stored before speed was measured without the trace, and that "
                "log's cost is inside those figures.")
    return None


def measurement_blocks(report: "Report") -> list:
    """How speed and the per-position counts were measured, and the tool's own time."""
    ok = [r for r in report.records if r.status == "ok"]
    speculative = [r for r in ok if r.depth > 0]
    counts = Counter(r.counts_from or "approx" for r in speculative)
    untraced = sum(1 for r in ok if r.traced == 0 and (r.slots or 1) == 1)
    items = []
    if untraced:
        items.append(f"Speed: {untraced} of {len(ok)} ok requests ran on servers of their own without the per-step "
                     "trace log; every speed figure comes from them.")
    note = speed_note(report)
    if note:
        items.append(note)
    gpu_defaults = (report.run.notes or {}).get("gpu_defaults")
    if gpu_defaults:
        drafter = any(flag.startswith("--spec-draft") for flag in gpu_defaults)
        items.append(f"GPU defaults: the engine has a CUDA backend and the sweep left these unset, so its servers "
                     f"ran with {', '.join(f'`{flag}`' for flag in gpu_defaults)}"
                     + (" (the drafter's only where there is a draft model)." if drafter else "."))
    names = {"trace": "their own trace log", "metrics": "/metrics (every draft full length, so exact)",
             "replay": "a traced replay of the same prompt and seed that generated the same tokens",
             "pending": "/metrics assuming full-length drafts (a replay is still due: run the sweep again)",
             "approx": "/metrics assuming full-length drafts (no per-step data)"}
    redrafted, replayed = drafts_that_did_not_replay(speculative)
    if redrafted:
        items.append(f"**Drafts not reproducible:** {redrafted} of {replayed} traced replays generated the same text as "
                     "their timed request but drafted or accepted a different number of tokens. With the target's "
                     "tokens identical, only the drafter's proposals changed between two identical requests, so "
                     "acceptance on this engine and machine carries more than sampling noise (on CUDA builds of the "
                     "pinned engine this is CUDA graphs: with GGML_CUDA_DISABLE_GRAPHS=1 every count reproduces, as "
                     "on the CPU build: benchmarks/gpu-draft-counts.md).")
    engine = report.run.provenance.get("engine") or {}
    servers_mode = (report.run.notes or {}).get("side_by_side") in ONE_SLOT_SERVERS
    mtp_on_one_slot = any(r.spec_type == "draft-mtp" and ((r.slots or 1) == 1 or servers_mode) for r in speculative)
    # Whether the draft-mtp cells' servers held buffers on a GPU, where their load logs say.
    logged = [p.buffers for p in report.memory if p.key.spec_type == "draft-mtp" and p.buffers]
    mtp_on_device = any(b.get("device") for b in logged) if logged else None
    caveat = mtp_cuda_graphs_caveat(engine.get("backend"), engine.get("environment"), mtp_on_one_slot, mtp_on_device)
    if caveat:
        items.append(f"**Acceptance on this engine:** {caveat}")
    mtp_on_shared = servers_mode and any(r.spec_type == "draft-mtp" for r in speculative)
    sliced = mtp_time_sliced_caveat(engine.get("backend"), mtp_on_shared, (report.run.notes or {}).get("mps"),
                                    mtp_on_device)
    if sliced:
        items.append(f"**Acceptance on this engine:** {sliced}")
    if counts:
        items.append("Per-position counts of the speculative requests: " + "; ".join(
            f"{n} from {names.get(source, source)}" for source, n in sorted(counts.items(), key=lambda kv: -kv[1])) + ".")
    overhead = (report.run.notes or {}).get("overhead") or {}
    phases = overhead.get("phases") or {}
    if phases:
        request_s = (phases.get("request") or {}).get("seconds", 0.0)
        tool = per_request_tool_phases(phases)
        items.append(f"The tool's own time in the last invocation: {sum(tool.values()):.2f} s outside "
                     f"{request_s:.1f} s of requests (" + ", ".join(f"{k} {v:.2f} s" for k, v in tool.items()) + ").")
    return [Heading(2, "Measurement"), Bullets(items)] if items else []


def recommendation_blocks(report: Report) -> list:
    rec = report.recommendation
    if rec is None:
        return [Para("**Recommendation:** none (no cell has a decode speed).")]
    cell = report.cell(rec.model_label, rec.spec_type, rec.depth)
    where = (f"**{rec.model_label}** without speculation (depth 0)" if rec.depth == 0
             else f"**{rec.model_label}** at depth {rec.depth} ({rec.spec_type})")
    text = f"**Recommendation:** fastest is {where}: {_pm(cell.decode_tps, 'f1')} tok/s (n={cell.decode_tps.n})"
    if rec.speedup is not None and rec.depth > 0:
        text += f", speedup {_pm(rec.speedup, 'x2')} over depth 0 (n={rec.speedup.n})"
    text += "."
    sizes = {label: info.get("size_bytes") for label, info in (report.run.provenance.get("models") or {}).items()}
    if rec.smallest_model_within_1sd is None:
        text += " No model file size is recorded, so no smaller file can be suggested."
    elif rec.smallest_model_within_1sd == rec.model_label:
        text += f" No smaller model file comes within 1σ of it ({_size(sizes.get(rec.model_label))})."
    else:
        small = rec.smallest_model_within_1sd
        text += (f" Smallest model file within 1σ of it: **{small}** ({_size(sizes.get(small))}, vs "
                 f"{_size(sizes.get(rec.model_label))}).")
    return [Para(text)]


def memory_blocks(report: "Report") -> list:
    points = [p for p in report.memory if p.memory_bytes is not None]
    if not points:
        return []
    sources = sorted({p.memory_source for p in points})
    show_spec = len(report.spec_types) > 1
    logged = any(p.buffers.get("model") is not None for p in points)
    offloaded = any(p.buffers.get("offloaded") for p in points)
    header = ["Model", *([report.method_header] if show_spec else []), "depth", "memory",
              *(["model", "KV cache", "compute"] if logged else []),
              *(["layers offloaded (target/drafter)"] if offloaded else []), "decode tok/s", "frontier"]
    rows = []
    for p in sorted(points, key=lambda p: (p.memory_bytes, p.key.model_label, p.key.depth)):
        b = p.buffers
        rows.append([p.key.model_label, *([p.key.spec_type] if show_spec else []), str(p.key.depth),
                     _size(p.memory_bytes), *([_size(b.get(k)) for k in ("model", "kv", "compute")] if logged else []),
                     *([b.get("offloaded") or DASH] if offloaded else []),
                     _pm(p.decode_tps, "f1") if p.decode_tps else "not measured", "✓" if p.on_frontier else ""])
    note = ("Memory = " + "; ".join(SOURCES.get(s, s) for s in sources) + "."
            + (" Model, KV cache and compute are the buffers llama.cpp logged at load, target and drafter together."
               if logged else "")
            + " ✓ = on the speed-memory frontier: no cell uses as little memory and is faster (mean decode speed).")
    blocks: list = [Heading(2, "Memory"), Table(header, rows, note), Image("memory_frontier.png",
                                                                            "decode speed vs memory")]
    return blocks + budget_blocks(report)


def budget_blocks(report: "Report") -> list:
    choice = report.budget
    if choice is None:
        return []
    if choice.best is None:
        smallest = min((p for p in report.memory if p.memory_bytes is not None and p.decode_tps is not None),
                       key=lambda p: p.memory_bytes, default=None)
        why = (f" The smallest cell with a speed needs {_size(smallest.memory_bytes)} ({_where(smallest)})."
               if smallest else " No cell has a decode speed.")
        return [Para(f"**Memory budget {_size(choice.budget_bytes)}:** nothing fits.{why}")]
    best = choice.best
    e = best.decode_tps
    interval = f", 95% CI [{e.ci_low:.1f}, {e.ci_high:.1f}]" if e.ci_low is not None else ""
    text = (f"**Memory budget {_size(choice.budget_bytes)}:** fastest that fits is {_where(best)}: "
            f"{_pm(e, 'f1')} tok/s (n={e.n}{interval}) in {_size(best.memory_bytes)}; "
            f"{choice.fitting} of {choice.fitting + choice.over} cells with a speed fit.")
    if not choice.runners_up:
        return [Para(text + " No other cell that fits comes within its interval.")]
    items = [f"{_where(r.point)}: {_pm(r.point.decode_tps, 'f1')} tok/s in {_size(r.point.memory_bytes)}, "
             f"{r.ratio.mean:.3f}× the fastest (95% CI [{r.ratio.ci_low:.3f}, {r.ratio.ci_high:.3f}], n={r.ratio.n})"
             for r in choice.runners_up]
    return [Para(text + " Not significantly slower (the paired speed ratio's interval reaches 1):"), Bullets(items)]


def _where(p: MemoryPoint) -> str:
    return (f"**{p.key.model_label}** without speculation" if p.key.depth == 0
            else f"**{p.key.model_label}** {p.key.spec_type} depth {p.key.depth}")

