"""Exact per-step counts for requests timed without the trace log: a traced replay.

A timed request runs on an untraced server, so its only per-position tallies are the ``/metrics``
deltas: accepted per position and verification steps. Those are exact when every draft was full
length (then each step drafted every position). A request with shorter drafts (its last steps
before ``max_tokens``, an n-gram drafter's variable drafts) needs the per-step draft lengths:
after the cell's timed requests, each such request is sent again (same prompt, seed and server
settings) to a traced server of the same cell, and takes the replay's per-step counts when the
replay generated the same tokens with the same draft and accept totals
(``request_rows.with_replay_counts``). The replay's own timings are not kept: they carry the trace.
"""

from __future__ import annotations

from .client import chat_body, measure_request
from .errors import RequestError, ServerError
from .plan import ServerGroup
from .request_rows import with_replay_counts


def replay_counts(sweep, group: ServerGroup) -> None:
    """Replay the cell's requests whose counts are pending (``sweep``: the ``specsweep.sweep.Sweep``
    of the cell). A replay that fails leaves its request pending: the next run of the same sweep
    replays it again, and the report counts it from /metrics meanwhile."""
    pending = sweep.store.pending_counts(sweep.run.id, group.model_label, group.drafting, group.depth)
    if not pending:
        return
    sweep.progress.describe(f"{group.model_label} · {group.drafting} · depth {group.depth} · "
                            f"per-step counts of {len(pending)} requests (traced replay)")
    sampling = sweep.config.sampling
    prompts = {p.id: p for p in sweep.prepared.prompts}
    try:
        server, server_id = sweep._start_server(group, role="replay")
    except (ServerError, RequestError):
        return
    before = sweep._last_metrics  # the warm-up's scrape
    try:
        for row_id, record in pending:
            prompt = prompts.get(record.prompt_id)
            if prompt is None:  # a prompt no longer in the suite: nothing to replay
                continue
            body = chat_body(prompt.messages, sampling.max_tokens, sampling.temperature, record.seed,
                             sampling.thinking)
            with sweep.clock.phase("replay"):
                try:
                    outcome = measure_request(server, body, timeout=sweep.request_timeout(group.model_label),
                                              before=before)
                except (RequestError, ServerError):
                    break
                before = outcome.metrics_after
                sweep.store.set_counts(row_id, with_replay_counts(record, outcome))
    finally:
        sweep._stop_server(server, server_id, "done")
