"""Speed against memory: which cells are on the frontier, and the fastest cell under a budget.

A cell's memory is what its server used: the peak device memory ``nvidia-smi`` reported for the
process on a GPU host, else its peak resident set; for runs stored before those were sampled, the
buffers the server logged at load, else the model and draft file sizes. Each point says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from collections import defaultdict

from ..records import RequestRecord, ServerRecord
from .cells import CellKey, CellSummary
from .estimates import Estimate, _is_ok, _speedup_estimate, speed_sample


@dataclass(frozen=True)
class MemoryPoint:
    key: CellKey
    memory_bytes: int | None
    memory_source: str | None  # "nvidia-smi", "rss", "buffers" (load log), "file size"; None: unknown
    buffers: dict[str, int]  # load-log totals by kind (model, kv, compute, output), target and drafter together
    decode_tps: Estimate | None
    on_frontier: bool = False  # no other cell uses no more memory and is faster (by mean decode speed)


@dataclass(frozen=True)
class RunnerUp:
    point: MemoryPoint
    ratio: Estimate | None  # decode speed / the best cell's, paired on (prompt, rep), with its t interval over prompts


@dataclass(frozen=True)
class BudgetChoice:
    budget_bytes: int
    best: MemoryPoint | None  # the fastest cell that fits (None: none fits, or none has a speed)
    runners_up: list[RunnerUp]  # cells that fit and are not significantly slower: the ratio's interval reaches 1
    fitting: int  # cells with a speed that fit the budget
    over: int  # cells with a speed that do not (or whose memory is unknown)


def mark_frontier(points: Sequence[MemoryPoint]) -> list[MemoryPoint]:
    """The points with ``on_frontier`` set: a point with a speed and a memory figure is on the
    frontier when no other such point has memory ≤ its own and a higher mean decode speed
    (equal memory and equal speed: both stay)."""
    timed = [p for p in points if p.decode_tps is not None and p.memory_bytes is not None]
    return [replace(p, on_frontier=any(p is t for t in timed) and not any(
        q.memory_bytes <= p.memory_bytes and q.decode_tps.mean > p.decode_tps.mean for q in timed))
        for p in points]


def budget_choice(points: Sequence[MemoryPoint], records: Sequence[RequestRecord], budget_bytes: int,
                  level: float = 0.95) -> BudgetChoice:
    """The fastest cell (highest mean decode speed) whose memory fits ``budget_bytes``, and the
    other fitting cells whose decode speed is not significantly below it: their speed ratio to
    the best, paired on (prompt, rep) with its interval over prompts (``analysis.intervals``),
    reaches 1; with too few prompts for an interval there are no runners-up.
    ``records`` are the run's requests keyed like the points (spec type = drafting label)."""
    timed = [p for p in points if p.decode_tps is not None]
    fits = [p for p in timed if p.memory_bytes is not None and p.memory_bytes <= budget_bytes]
    if not fits:
        return BudgetChoice(budget_bytes, None, [], 0, len(timed))
    best = max(fits, key=lambda p: p.decode_tps.mean)

    def cell_records(key: CellKey) -> list[RequestRecord]:
        ok = [r for r in records if _is_ok(r) and (r.model_label, r.depth) == (key.model_label, key.depth)
              and (key.depth == 0 or r.spec_type == key.spec_type)]
        return speed_sample(ok)[0]

    best_records = cell_records(best.key)
    runners = []
    for p in fits:
        if p is best:
            continue
        ratio = _speedup_estimate(cell_records(p.key), best_records, True, level)
        if ratio is not None and ratio.ci_high is not None and ratio.ci_high >= 1.0:
            runners.append(RunnerUp(p, ratio))
    runners.sort(key=lambda r: -r.point.decode_tps.mean)
    return BudgetChoice(budget_bytes, best, runners, len(fits), len(timed) - len(fits))


def _cell_of(server: ServerRecord) -> tuple[str, str, int]:
    """The report's key of a server's cell: its drafting label stands for the spec type when they differ
    (as ``by_drafting`` does for requests)."""
    label = server.drafting if server.drafting and server.drafting != server.spec_type else server.spec_type
    return (server.model_label, label, server.depth)


def memory_by_cell(servers: Sequence[ServerRecord], model_sizes: dict[str, int]) -> dict[tuple, tuple]:
    """(model, spec type, depth) -> (bytes, source, buffers): from the timed servers of a cell when
    it has any (the settings its speed was measured with), the largest sampled peak among them;
    without a sample the buffers of the load log; else the model file size (``model_sizes``).
    ``buffers`` holds the load log's bytes per kind (model, kv, compute, output), "device" and
    "host" totals and "offloaded" ("target/drafter" layers offloaded to the GPU)."""
    by_cell: dict[tuple, list[ServerRecord]] = defaultdict(list)
    for s in servers:
        by_cell[_cell_of(s)].append(s)
    out = {}
    for key, group in by_cell.items():
        chosen = [s for s in group if (s.role or "timed") == "timed"] or group
        logged = [s.memory for s in chosen if s.memory]
        buffers: dict = {}
        if logged:
            memory = max(logged, key=lambda m: (m.get("device_bytes", 0), m.get("host_bytes", 0)))
            layers = [(memory.get(role) or {}).get("offloaded") for role in ("target", "draft") if memory.get(role)]
            buffers = {**(memory.get("kinds") or {}), "device": memory.get("device_bytes"),
                       "host": memory.get("host_bytes"),
                       "offloaded": "/".join(str(n or "–") for n in layers) if any(layers) else None}
        peaks = [(s.peak_memory_bytes, s.peak_memory_source) for s in chosen if s.peak_memory_bytes]
        if peaks:
            size, source = max(peaks)
        elif buffers:
            size, source = (buffers.get("device") or 0) + (buffers.get("host") or 0), "buffers"
        elif isinstance(model_sizes.get(key[0]), int):
            size, source = model_sizes[key[0]], "file size"
        else:
            size, source = None, None
        out[key] = (size, source, buffers)
    return out


def cell_memory(cells: Sequence[CellSummary], memory: dict[tuple, tuple[int | None, str | None, dict]]) -> list[MemoryPoint]:
    """One MemoryPoint per cell; ``memory`` maps (model, spec type, depth) to (bytes, source, buffers)."""
    points = []
    for c in cells:
        size, source, buffers = memory.get((c.key.model_label, c.key.spec_type, c.key.depth), (None, None, {}))
        points.append(MemoryPoint(c.key, size, source, buffers, c.decode_tps))
    return mark_frontier(points)


UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
         "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


def parse_size(text: str) -> int:
    """``24GiB``, ``512 MiB``, ``8GB``, ``1.5g``, ``1000000`` -> bytes; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 24GiB, 512MiB, 8GB)")
    value = float(match.group(1)) * UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive size")
    return int(value)
