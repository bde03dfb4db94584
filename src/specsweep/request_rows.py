"""One measured request as the row the store keeps: an ``Outcome`` becomes a ``RequestRecord``.

Also where each row's per-position counts come from (``counts_from``): its own trace log, the
``/metrics`` deltas when every draft was full length (then they are exact), or a traced replay
of the same prompt and seed (``with_replay_counts``).
"""

from __future__ import annotations

from dataclasses import replace

from .client import Outcome
from .degeneration import measure
from .plan import PlannedRequest
from .records import (REPLAY_DIFFERED, REPLAY_LOG_INCOMPLETE, REPLAY_SAME, RequestRecord, encode_steps,
                      replay_outcome)


def counts_source(outcome: Outcome, depth: int) -> str | None:
    """Where this request's per-position counts come from (see ``RequestRecord.counts_from``)."""
    if depth == 0:
        return None
    if outcome.log.complete:
        return "trace"
    if outcome.all_drafts_full():
        return "metrics"
    return "pending" if not outcome.traced else "approx"


def _log_fields(outcome: Outcome) -> dict:
    """The trace-log fields of a record: None for each when the request has no complete log slice."""
    log = outcome.log
    if not log.complete:
        return {"log_steps": None, "log_drafted": None, "log_accepted": None, "log_drafted_per_pos": None,
                "log_accepted_per_pos": None, "log_step_pairs": None,
                "log_summary_drafted": log.summary_drafted, "log_summary_accepted": log.summary_accepted}
    return {"log_steps": len(log.steps), "log_drafted": log.drafted, "log_accepted": log.accepted,
            "log_drafted_per_pos": log.drafted_per_pos(), "log_accepted_per_pos": log.accepted_per_pos(),
            "log_step_pairs": encode_steps(log.steps),
            "log_summary_drafted": log.summary_drafted, "log_summary_accepted": log.summary_accepted}


def _max_draft_len(outcome: Outcome, counts_from: str | None) -> int | None:
    """The longest draft: from the log; without one, n_max when every draft was full length."""
    if outcome.log.complete:
        return max((d for _, d in outcome.log.steps), default=0)
    if counts_from == "metrics":
        steps = outcome.metrics_delta.get("spec_decode_num_drafts_total", 0)
        return int(outcome.n_max or 0) if steps else 0
    return None


def record_from(run_id: int, server_id: int, request: PlannedRequest, attempt: int, started: float,
                outcome: Outcome, slots: int = 1) -> RequestRecord:
    t = outcome.timings
    choice = (outcome.response.get("choices") or [{}])[0]
    usage = outcome.response.get("usage") or {}
    m = outcome.metrics_delta
    metrics = outcome.metrics_read
    counts_from = counts_source(outcome, request.depth)
    return RequestRecord(
        run_id=run_id, server_id=server_id, model_label=request.model_label,
        spec_type=request.spec_type, depth=request.depth, rep=request.rep, seed=request.seed,
        prompt_id=request.prompt.id, category=request.prompt.category, attempt=attempt, status="ok",
        error=None, started_at=started, wall_ms=round(outcome.wall_ms, 3),
        finish_reason=choice.get("finish_reason"), prompt_n=t.get("prompt_n"), prompt_ms=t.get("prompt_ms"),
        predicted_n=t.get("predicted_n"), predicted_ms=t.get("predicted_ms"),
        predicted_per_second=t.get("predicted_per_second"), draft_n=t.get("draft_n", 0),
        draft_n_accepted=t.get("draft_n_accepted", 0),
        # /metrics counters mix the slots of a server that runs requests side by side: not read there.
        m_draft_tokens=int(m.get("spec_decode_num_draft_tokens_total", 0)) if metrics else None,
        m_accepted=int(m.get("spec_decode_num_accepted_tokens_total", 0)) if metrics else None,
        m_steps=int(m.get("spec_decode_num_drafts_total", 0)) if metrics else None,
        m_accepted_per_pos=outcome.accepted_per_pos if metrics else None,
        max_draft_len=_max_draft_len(outcome, counts_from),
        completion_tokens=usage.get("completion_tokens"), crosscheck=outcome.crosscheck(),
        content=(choice.get("message") or {}).get("content"), drafting=request.drafting,
        traced=int(outcome.traced), slots=slots, counts_from=counts_from,
        **_log_fields(outcome),
        **_degeneration_fields(outcome.tokens, choice.get("finish_reason"), t.get("predicted_n")),
    )


def _degeneration_fields(tokens: list[tuple[int, object]] | None, finish_reason: str | None,
                         predicted_n: int | None) -> dict:
    """The RequestRecord's degen_* fields; none (not measured) without tokens."""
    if tokens is None:
        return {}
    # predicted_n counts the end-of-generation token of a request that stopped by itself; it has no text.
    generated = predicted_n - (finish_reason == "stop") if isinstance(predicted_n, int) else None
    m = measure([i for i, _ in tokens], [p for _, p in tokens], hit_max_tokens=finish_reason == "length",
                generated=generated)
    return {"degen_tokens": m.tokens, "degen_repeat_share": m.repeat_share, "degen_longest_repeat": m.longest_repeat,
            "degen_whitespace_share": m.whitespace_share, "degen_tail_loop": m.tail_loop,
            "degenerate": int(m.degenerate)}


def empty_record(run_id: int, server_id: int, request: PlannedRequest, attempt: int, started: float,
                 error: str) -> RequestRecord:
    empty = {name: None for name in RequestRecord.__dataclass_fields__}
    empty.update(run_id=run_id, server_id=server_id, model_label=request.model_label,
                 spec_type=request.spec_type, depth=request.depth, rep=request.rep, seed=request.seed,
                 prompt_id=request.prompt.id, category=request.prompt.category, attempt=attempt,
                 status="failed", error=error, started_at=started, drafting=request.drafting)
    return RequestRecord(**empty)


def same_generation(record: RequestRecord, replay: Outcome) -> list[str]:
    """The fields in which the replay differs from the timed request (text, token and draft counts);
    empty when it generated the same."""
    t = replay.timings
    choice = (replay.response.get("choices") or [{}])[0]
    pairs = {"predicted_n": (record.predicted_n, t.get("predicted_n")),
             "draft_n": (record.draft_n, t.get("draft_n", 0)),
             "draft_n_accepted": (record.draft_n_accepted, t.get("draft_n_accepted", 0)),
             "content": (record.content, (choice.get("message") or {}).get("content"))}
    return [name for name, (a, b) in pairs.items() if a != b]


def with_replay_counts(record: RequestRecord, replay: Outcome) -> RequestRecord:
    """The timed (untraced) record with the per-step counts of its traced replay, cross-checked
    against the record's own timings and /metrics; "approx" when the replay differs or its log
    slice is incomplete (the record then keeps its /metrics counts)."""
    differ = same_generation(record, replay)
    outcome = replay_outcome(differ, replay.log.complete)
    if outcome != REPLAY_SAME:
        why = f"{REPLAY_DIFFERED} ({', '.join(differ)})" if differ else REPLAY_LOG_INCOMPLETE
        check = why if record.crosscheck in (None, "ok") else f"{record.crosscheck}; {why}"
        return replace(record, counts_from="approx", crosscheck=check, replay=outcome)
    timed = Outcome(wall_ms=0.0, response={"timings": {"draft_n": record.draft_n,
                                                          "draft_n_accepted": record.draft_n_accepted}},
                    metrics_delta={"spec_decode_num_draft_tokens_total": record.m_draft_tokens or 0,
                                   "spec_decode_num_accepted_tokens_total": record.m_accepted or 0,
                                   "spec_decode_num_drafts_total": record.m_steps or 0},
                    accepted_per_pos=list(record.m_accepted_per_pos or []), log=replay.log, traced=True,
                    metrics_after=({}, {}) if record.m_steps is not None else None)
    return replace(record, counts_from="replay", replay=outcome, crosscheck=timed.crosscheck(), **_log_fields(replay),
                   max_draft_len=max((d for _, d in replay.log.steps), default=0))

