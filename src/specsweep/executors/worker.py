"""Measure one server group on the machine this runs on, without touching the store.

``ServerWorker`` starts the group's llama-server on 127.0.0.1, warms it up, measures the
requests it is handed one at a time, and stops it. Whatever happens comes back as events
(server started or stopped, a request row, a model given up on) that the driver writes to the
store in order; the store ids of servers are the driver's business, so a worker names its
servers by a counter of its own. The local executor calls a worker in-process; the Ray
executor calls the same methods on a Ray actor on a cluster node.

A dead server is restarted and the request retried a bounded number of times; a server that
keeps failing to start gives the model up (the driver marks its remaining cells failed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..client import Outcome, chat_body, measure_request
from ..config import Sampling
from ..degeneration import measure
from ..engine.options import ServerOptions
from ..engine.server import LlamaServer
from ..errors import RequestError, ServerError
from ..plan import PlannedRequest, ServerGroup
from ..records import RequestRecord, ServerRecord, encode_steps

WARMUP_MESSAGES = ({"role": "user", "content": "Count from one to twenty in words."},)
# A server that left a request unanswered gets this long to exit on SIGTERM before SIGKILL: a busy
# one stops within a decode step, a hung one never does (the default 10 s is only waiting).
UNANSWERED_STOP_GRACE_S = 3.0


@dataclass(frozen=True)
class GroupTask:
    """What a worker needs to run one server group (its requests are handed over one by one)."""

    run_id: int
    group: ServerGroup  # with requests=(): they travel with each measure call
    sampling: Sampling
    logs_dir: Path
    file_sizes: dict[str, int]  # model and draft files as the driver sees them: a node checks its copies


# Events, in the order the driver applies them ---------------------------------------------
@dataclass(frozen=True)
class ServerStarted:
    key: int  # the worker's own number for this server; requests name it in server_id
    record: ServerRecord


@dataclass(frozen=True)
class ServerStopped:
    key: int
    reason: str  # "done", "died", "interrupted"


@dataclass(frozen=True)
class RequestDone:
    record: RequestRecord  # server_id is the worker's key (0: no server)


@dataclass(frozen=True)
class Unconfirmed:
    """The warm-up drafted nothing although drafting was asked for (normal for n-gram types)."""

    group: str


@dataclass(frozen=True)
class GaveUp:
    """The group's server kept failing to start: the model is skipped."""

    cause: str


class ServerWorker:
    """One llama-server at a time on this machine: ``begin`` a group, ``measure`` its requests, ``end``."""

    def __init__(self, server_binary: Path, log_tag: str = ""):
        self.binary = Path(server_binary)
        self.log_tag = log_tag  # keeps log names apart when several machines share the logs folder
        self.task: GroupTask | None = None
        self.server: LlamaServer | None = None
        self.key = 0
        self.start_failures = 0
        self._walls: dict[str, float] = {}  # slowest request per model label so far (ms)

    # timeouts scaled to the expected work -----------------------------------
    def start_timeout(self, options: ServerOptions) -> float:
        if options.settings.start_timeout:
            return options.settings.start_timeout
        size = sum(Path(p).stat().st_size for p in (options.model, options.draft_model) if p)
        return 60.0 + 30.0 * size / 1e9

    def request_timeout(self, model_label: str) -> float:
        settings = self.task.group.options.settings
        if settings.request_timeout:
            return settings.request_timeout
        # Before anything is measured, allow a slow machine 2 s a token; afterwards 10× the slowest
        # request of this model so far (deeper drafts cost more), never under a minute.
        ceiling = 120.0 + 2.0 * self.task.sampling.max_tokens
        seen = self._walls.get(model_label)
        return ceiling if seen is None else min(ceiling, max(60.0, 10.0 * seen / 1000.0))

    # the group ------------------------------------------------------------------
    def begin(self, task: GroupTask) -> list:
        events = self.end("done") if self.server is not None else []
        self.task = task
        self.start_failures = 0
        return events

    def end(self, reason: str = "done") -> list:
        """Stop the group's server (if one runs); ``reason`` is stored with it."""
        server, self.server = self.server, None
        if server is None:
            return []
        server.stop()
        return [ServerStopped(self.key, reason)]

    def measure(self, request: PlannedRequest, attempt: int) -> list:
        """One planned request, retried up to ``retries`` times; ``attempt`` = attempts stored before."""
        retries = self.task.group.options.settings.retries
        events: list = []
        for _ in range(retries + 1):
            attempt += 1
            if self.server is None or not self.server.alive():
                if self.server is not None:
                    events += self.end("died")
                try:
                    events += self._start_server()
                    self.start_failures = 0
                except (ServerError, RequestError) as exc:
                    self.start_failures += 1
                    events.append(self._failure(request, 0, attempt, f"server start failed: {exc}",
                                                getattr(exc, "log_tail", "")))
                    if self.start_failures > retries:
                        events.append(GaveUp(f" ({exc})"))
                        return events
                    continue
            done = self._measure_one(request, attempt)
            events.append(done)
            if done.record.status == "ok":
                break
        return events

    def _start_server(self) -> list:
        group = self.task.group
        tag = f"-{self.log_tag}" if self.log_tag else ""
        log_path = (self.task.logs_dir
                    / f"run{self.task.run_id}-{group.model_label}-{group.drafting}-d{group.depth}{tag}.log")
        server = LlamaServer(self.binary, group.options, log_path, start_timeout=self.start_timeout(group.options))
        spawned = time.time()
        server.start()
        events: list = []
        try:
            confirmed = self._warm_up(server, events)
        except BaseException:
            server.stop()
            raise
        self.server = server
        self.key += 1
        record = ServerRecord(run_id=self.task.run_id, model_label=group.model_label, spec_type=group.spec_type,
                              depth=group.depth, argv=server.argv, build_info=server.props.get("build_info"),
                              props=server.props, log_path=str(log_path), started_at=spawned,
                              start_seconds=round(time.time() - spawned, 3), drafting_confirmed=confirmed,
                              drafting=group.drafting)
        return [ServerStarted(self.key, record), *events]

    def _warm_up(self, server: LlamaServer, events: list) -> int | None:
        """One short unrecorded request; also checks that the server speculates iff asked to."""
        group, sampling = self.task.group, self.task.sampling
        expected_model = Path(group.options.model).resolve()
        reported = server.props.get("model_path")
        if reported and Path(reported).resolve() != expected_model:
            raise ServerError(f"llama-server reports model {reported}, expected {expected_model}")
        if server.props.get("total_slots") not in (None, 1):
            raise ServerError(f"llama-server runs {server.props.get('total_slots')} slots, expected 1")
        body = chat_body(WARMUP_MESSAGES, 8, sampling.temperature, sampling.seed, sampling.thinking)
        outcome = measure_request(server, body, timeout=self.request_timeout(group.model_label) + 60.0)
        drafted = outcome.metrics_delta.get("spec_decode_num_draft_tokens_total", 0)
        if group.depth == 0:
            if drafted:
                raise ServerError("llama-server drafted tokens although no speculation was asked for")
            return None
        if not drafted:
            # n-gram types draft only when the context repeats itself: not an error, but say so.
            events.append(Unconfirmed(f"{group.model_label}/{group.drafting}/d{group.depth}"))
            return 0
        return 1

    def _measure_one(self, request: PlannedRequest, attempt: int) -> RequestDone:
        sampling, server = self.task.sampling, self.server
        body = chat_body(request.prompt.messages, sampling.max_tokens, sampling.temperature, request.seed,
                         sampling.thinking)
        started = time.time()
        try:
            outcome = measure_request(server, body, timeout=self.request_timeout(request.model_label))
        except (RequestError, ServerError) as exc:
            tail = getattr(exc, "log_tail", "") or server.log_tail()
            if isinstance(exc, RequestError) and server.alive():
                # a hung or confused server is restarted before the retry
                server.stop(grace=UNANSWERED_STOP_GRACE_S)
            return self._failure(request, self.key, attempt, str(exc), tail, started)
        self._walls[request.model_label] = max(self._walls.get(request.model_label, 0.0), outcome.wall_ms)
        return RequestDone(_record(self.task.run_id, request, self.key, attempt, started, outcome))

    def _failure(self, request: PlannedRequest, server_key: int, attempt: int, error: str, log_tail: str = "",
                 started: float | None = None) -> RequestDone:
        message = error if not log_tail else f"{error}\n--- server log tail ---\n{log_tail}"
        return RequestDone(failed_record(self.task.run_id, server_key, request, attempt, started or time.time(),
                                         message))


def _record(run_id: int, request: PlannedRequest, server_id: int, attempt: int, started: float,
            outcome: Outcome) -> RequestRecord:
    t = outcome.timings
    choice = (outcome.response.get("choices") or [{}])[0]
    usage = outcome.response.get("usage") or {}
    m = outcome.metrics_delta
    log = outcome.log
    return RequestRecord(
        run_id=run_id, server_id=server_id, model_label=request.model_label,
        spec_type=request.spec_type, depth=request.depth, rep=request.rep, seed=request.seed,
        prompt_id=request.prompt.id, category=request.prompt.category, attempt=attempt, status="ok",
        error=None, started_at=started, wall_ms=round(outcome.wall_ms, 3),
        finish_reason=choice.get("finish_reason"), prompt_n=t.get("prompt_n"), prompt_ms=t.get("prompt_ms"),
        predicted_n=t.get("predicted_n"), predicted_ms=t.get("predicted_ms"),
        predicted_per_second=t.get("predicted_per_second"), draft_n=t.get("draft_n", 0),
        draft_n_accepted=t.get("draft_n_accepted", 0),
        m_draft_tokens=int(m.get("spec_decode_num_draft_tokens_total", 0)),
        m_accepted=int(m.get("spec_decode_num_accepted_tokens_total", 0)),
        m_steps=int(m.get("spec_decode_num_drafts_total", 0)), m_accepted_per_pos=outcome.accepted_per_pos,
        log_steps=len(log.steps) if log.complete else None,
        log_drafted=log.drafted if log.complete else None,
        log_accepted=log.accepted if log.complete else None,
        log_drafted_per_pos=log.drafted_per_pos() if log.complete else None,
        log_accepted_per_pos=log.accepted_per_pos() if log.complete else None,
        log_summary_drafted=log.summary_drafted, log_summary_accepted=log.summary_accepted,
        max_draft_len=max((d for _, d in log.steps), default=0) if log.complete else None,
        completion_tokens=usage.get("completion_tokens"), crosscheck=outcome.crosscheck(),
        content=(choice.get("message") or {}).get("content"),
        log_step_pairs=encode_steps(log.steps) if log.complete else None, drafting=request.drafting,
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


def failed_record(run_id: int, server_id: int, request: PlannedRequest, attempt: int, started: float,
                  error: str) -> RequestRecord:
    empty = {name: None for name in RequestRecord.__dataclass_fields__}
    empty.update(run_id=run_id, server_id=server_id, model_label=request.model_label,
                 spec_type=request.spec_type, depth=request.depth, rep=request.rep, seed=request.seed,
                 prompt_id=request.prompt.id, category=request.prompt.category, attempt=attempt,
                 status="failed", error=error, started_at=started, drafting=request.drafting)
    return RequestRecord(**empty)
