"""The flat record types that everything downstream of the engine agrees on.

One frozen dataclass per record. SQLite columns, CSV headers and JSON keys are
derived from these fields (``record_columns``), never from a hand-kept list.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from typing import Any, get_type_hints


@dataclass(frozen=True)
class RequestRecord:
    """One request against one managed server: what was asked, what came back, what was counted.

    Three independent tallies of speculation are kept side by side and compared
    (``crosscheck``): the response ``timings`` (``draft_n``…), the ``/metrics``
    counter deltas around the request (``m_*``) and the server's own trace log
    (``log_*``: one "accepted a/b draft tokens" line per verification step).
    """

    run_id: int
    server_id: int
    model_label: str
    spec_type: str  # "none" at depth 0
    depth: int  # --spec-draft-n-max; 0 = no speculation
    rep: int
    seed: int
    prompt_id: str
    category: str
    attempt: int  # 1 for the first try of this cell, 2 for its first retry …
    status: str  # "ok" or "failed"
    error: str | None
    started_at: float  # unix time
    wall_ms: float | None  # client-side wall time of the HTTP request
    finish_reason: str | None
    prompt_n: int | None
    prompt_ms: float | None
    predicted_n: int | None
    predicted_ms: float | None
    predicted_per_second: float | None
    draft_n: int | None  # timings: tokens drafted
    draft_n_accepted: int | None  # timings: drafted tokens accepted
    m_draft_tokens: int | None  # /metrics delta: spec_decode_num_draft_tokens_total
    m_accepted: int | None  # /metrics delta: spec_decode_num_accepted_tokens_total
    m_steps: int | None  # /metrics delta: spec_decode_num_drafts_total (verification steps)
    m_accepted_per_pos: list[int] | None  # /metrics delta per draft position (0-indexed)
    log_steps: int | None  # trace log: verification steps
    log_drafted: int | None  # trace log: Σ draft length
    log_accepted: int | None  # trace log: Σ accepted
    log_drafted_per_pos: list[int] | None  # steps whose draft had ≥ i+1 tokens
    log_accepted_per_pos: list[int] | None  # steps that accepted ≥ i+1 tokens
    log_summary_drafted: int | None  # the server's end-of-request "draft acceptance" line
    log_summary_accepted: int | None
    max_draft_len: int | None  # longest draft seen: the effective depth (n-gram types ignore n_max)
    completion_tokens: int | None
    crosscheck: str | None  # "ok", or what disagreed
    content: str | None  # generated text, for inspection
    # trace log: (accepted, drafted) of every verification step in order, as encode_steps writes
    # it; None for requests stored before schema 3 or whose log slice was incomplete.
    log_step_pairs: str | None = None
    # How degenerate the generation is (specsweep.degeneration), from its text tokenized again by
    # the target's tokenizer. All None = not measured: stored before schema 4, a failed request,
    # or text the server could not tokenize.
    degen_tokens: int | None = None  # tokens measured
    degen_repeat_share: float | None = None  # share of 4-grams seen earlier in the same generation
    degen_longest_repeat: int | None = None  # longest token span occurring twice
    degen_whitespace_share: float | None = None  # share of whitespace-only tokens
    degen_tail_loop: int | None = None  # tokens in the loop that ends the generation
    degenerate: int | None = None  # 1 = a degeneration threshold was reached, 0 = clean
    # The drafting entry (its label; the spec type unless named), "none" at depth 0: two entries
    # may share a spec type (draft-mtp with the assistant at F16 and at Q8_0). Schema 5.
    drafting: str | None = None
    # How this request was measured (schema 6; every row stored before ran traced on one slot).
    traced: int | None = None  # 1 = its server logged every step (LLAMA_TRACE): its speed carries that cost
    slots: int | None = None  # requests its server ran side by side (--parallel); speed is measured only at 1
    # Where the per-position counts come from: "trace" (this request's own trace log), "metrics"
    # (/metrics deltas, exact because every draft was full length), "replay" (the trace log of a
    # traced replay of the same prompt and seed that generated the same tokens), "pending" (a replay
    # is still due), "approx" (the replay failed or differed: /metrics assuming full-length drafts).
    # None at depth 0.
    counts_from: str | None = None
    # What the traced replay of this request found (schema 7): REPLAY_SAME, REPLAY_OTHER_TEXT,
    # REPLAY_OTHER_DRAFTS or REPLAY_LOG_CUT; None when no replay ran. ``crosscheck`` says the same in words.
    replay: str | None = None

    @property
    def cell(self) -> tuple:
        """The planned request this row measured (``plan.PlannedRequest.cell``)."""
        return (self.model_label, self.spec_type, self.drafting, self.depth, self.rep, self.prompt_id)


@dataclass(frozen=True)
class ServerRecord:
    """One start of llama-server: the exact argv and what the server reported back."""

    run_id: int
    model_label: str
    spec_type: str
    depth: int
    argv: list[str]
    build_info: str | None
    props: dict | None
    log_path: str
    started_at: float
    start_seconds: float | None  # spawn -> healthy
    drafting_confirmed: int | None  # 1 if speculative counters moved on the warm-up, 0 if not, None at depth 0
    stopped_at: float | None = None
    stop_reason: str | None = None
    drafting: str | None = None  # as RequestRecord.drafting
    # Schema 6: what the server was for, and the memory it used.
    role: str | None = None  # "timed" (untraced; traced before schema 6), "replay" (traced, for counts), "parallel"
    traced: int | None = None
    slots: int | None = None
    memory: dict | None = None  # buffers from the server's load log (specsweep.engine.memory.parse_load_log)
    peak_memory_bytes: int | None = None  # largest memory in use by the server process, sampled
    peak_memory_source: str | None = None  # "nvidia-smi" (device memory) or "rss" (peak resident set, VmHWM)


# What a traced replay of a request found (``RequestRecord.replay``, request_rows.with_replay_counts):
REPLAY_SAME = "same"  # the same text and counts: its trace log gave the per-position counts
REPLAY_OTHER_TEXT = "other text"  # the target generated other tokens: sampling, not drafting
REPLAY_OTHER_DRAFTS = "other drafts"  # the same text with other draft counts: only the drafter changed
REPLAY_LOG_CUT = "log incomplete"  # the same generation, but its trace-log slice was incomplete
# ``crosscheck`` words for the last three: "replay differed (FIELD, …)" with FIELD among predicted_n,
# draft_n, draft_n_accepted, content; "replay log slice incomplete".
REPLAY_DIFFERED = "replay differed"
REPLAY_LOG_INCOMPLETE = "replay log slice incomplete"


def replay_outcome(differing: list[str], log_complete: bool) -> str:
    """What a replay found, from the fields in which it differed from the timed request."""
    if {"content", "predicted_n"} & set(differing):
        return REPLAY_OTHER_TEXT
    if differing:
        return REPLAY_OTHER_DRAFTS
    return REPLAY_SAME if log_complete else REPLAY_LOG_CUT


def drafts_that_did_not_replay(records) -> tuple[int, int]:
    """(traced replays that generated their request's text with other draft counts, traced replays).
    With the target's tokens identical only the drafter's proposals can have changed: seen on CUDA
    builds, never on the CPU one (benchmarks/gpu-draft-counts.md)."""
    replays = [r.replay for r in records if r.replay is not None]
    return sum(outcome == REPLAY_OTHER_DRAFTS for outcome in replays), len(replays)


def encode_steps(steps) -> str:
    """``[(3, 3), (3, 3), (1, 3), (0, 2)]`` -> ``"3/3*2 1/3 0/2"``: "accepted/drafted" per step,
    a run of identical steps written once with ``*count``. About 4 bytes a step, often less."""
    runs: list[list] = []
    for accepted, drafted in steps:
        pair = (int(accepted), int(drafted))
        if runs and runs[-1][0] == pair:
            runs[-1][1] += 1
        else:
            runs.append([pair, 1])
    return " ".join(f"{a}/{d}" + (f"*{n}" if n > 1 else "") for (a, d), n in runs)


def decode_steps(text: str) -> list[tuple[int, int]]:
    """The inverse of ``encode_steps``."""
    steps: list[tuple[int, int]] = []
    for token in text.split():
        pair, _, count = token.partition("*")
        accepted, _, drafted = pair.partition("/")
        steps += [(int(accepted), int(drafted))] * (int(count) if count else 1)
    return steps


_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


def record_columns(cls) -> list[tuple[str, str]]:
    """(column name, SQLite type) for each field; lists and dicts are stored as JSON text."""
    hints = get_type_hints(cls)
    columns = []
    for fld in fields(cls):
        base = hints[fld.name]
        args = [a for a in getattr(base, "__args__", ()) if a is not type(None)]
        concrete = args[0] if args else base
        columns.append((fld.name, _SQL_TYPES.get(concrete, "TEXT")))
    return columns


@functools.lru_cache(maxsize=None)
def _json_fields(cls) -> frozenset[str]:
    # One get_type_hints per class: it evaluates every annotation string (about 3 ms per call),
    # and once per field it was most of the first row's store write.
    hints = get_type_hints(cls)
    return frozenset(name for name, hint in hints.items()
                     if (text := str(hint)).startswith(("list", "dict")) or "list[" in text or "dict" in text)


def is_json_field(cls, name: str) -> bool:
    """Stored as JSON text (lists and dicts); asked for every field of every row written or read."""
    return name in _json_fields(cls)


def to_row(record) -> list[Any]:
    cls = type(record)
    return [json.dumps(getattr(record, f.name)) if is_json_field(cls, f.name) and getattr(record, f.name) is not None
            else getattr(record, f.name) for f in fields(cls)]


def from_row(cls, row: dict) -> Any:
    values = {}
    for fld in fields(cls):
        value = row[fld.name]
        if value is not None and is_json_field(cls, fld.name):
            value = json.loads(value)
        values[fld.name] = value
    return cls(**values)
