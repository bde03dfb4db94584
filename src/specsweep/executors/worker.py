"""Measure one server group on the machine this runs on, without touching the store.

``ServerWorker`` starts the group's llama-server on 127.0.0.1, warms it up, measures the
requests it is handed one at a time, and stops it. Whatever happens comes back as events
(``events``: server started or stopped, a request row, a model given up on, the stopwatch) that
the driver writes to the store in order; the store ids of servers are the driver's business, so
a worker names its servers by a counter of its own. The local executor calls a worker
in-process; the Ray executor calls the same methods on a Ray actor on a cluster node.

Speed is measured on servers without the per-step trace log (its cost would sit inside every
speed figure). A request's per-position counts then come from ``/metrics``, exact whenever every
draft was full length; the requests with shorter drafts (near ``max_tokens``, n-gram drafts)
are sent again after the cell's timed requests (``replay``: same prompt, seed and server
settings) to a traced server of the same cell, and take the replay's per-step counts when it
generated the same tokens (``request_rows.with_replay_counts``); the replay's own timings are
not kept. With ``parallel`` > 1 a cell runs on K slots of one traced server side by side
(``parallel.SideBySide``), or on K one-slot servers: acceptance only, speed not measured.

A dead server is restarted and the request retried a bounded number of times; a server that
keeps failing to start gives the model up (the driver marks its remaining cells failed).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..client import Outcome, chat_body, generated_text, measure_request, tokenize
from ..config import Sampling
from ..engine.memory import parse_load_log, sample_peak
from ..engine.options import ServerOptions
from ..engine.server import LlamaServer
from ..errors import RequestError, ServerError
from ..overhead import Stopwatch
from ..plan import PlannedRequest, ServerGroup
from ..records import RequestRecord, ServerRecord
from ..request_rows import empty_record, record_from, with_replay_counts
from .events import (CountsReplayed, GaveUp, Overhead, RequestDone, RowBehind, ServerStarted, ServerStopped,
                     Unconfirmed)
from .parallel import SideBySide

WARMUP_MESSAGES = ({"role": "user", "content": "Count from one to twenty in words."},)
ROLES = ("timed", "replay", "parallel")


@dataclass(frozen=True)
class GroupTask:
    """What a worker needs to run one server group (its requests are handed over one by one)."""

    run_id: int
    group: ServerGroup  # with requests=(): they travel with each measure call
    sampling: Sampling
    logs_dir: Path
    file_sizes: dict[str, int]  # model and draft files as the driver sees them: a node checks its copies
    parallel: int = 1  # requests side by side (--parallel K): acceptance only
    side_by_side: str = "slots"  # on K slots of one server, or on K one-slot "servers"
    on_gpu: bool = False  # the engine may use a GPU: memory comes from nvidia-smi


class ServerWorker:
    """One llama-server at a time on this machine: ``begin`` a group, ``measure`` its requests
    (or ``start_parallel`` and ``collect`` them), ``replay`` the ones that need per-step counts, ``end``.
    Every public method returns the events it caused, the stopwatch's reading last."""

    def __init__(self, server_binary: Path, log_tag: str = ""):
        self.binary = Path(server_binary)
        self.log_tag = log_tag  # keeps log names apart when several machines share the logs folder
        self.task: GroupTask | None = None
        self.server: LlamaServer | None = None
        self.role: str | None = None  # what the running server is for (ROLES)
        self.key = 0
        self.start_failures = 0
        self.clock = Stopwatch()  # the tool's own time per phase (specsweep.overhead), reported with each call
        self.slot_run: SideBySide | None = None
        self.server_key = 0  # the key of ``server``
        self._key_lock = threading.Lock()  # side-by-side servers start on threads of their own
        self._first_peak: tuple[int, str] | None = None  # the running server's memory after its warm-up
        self._last_metrics = None  # the /metrics scrape after the last request on the running server
        self._replay_failed = False
        self._walls: dict[str, float] = {}  # slowest request per model label so far (ms)
        self._behind: ThreadPoolExecutor | None = None  # finishes a request's row while the next one runs
        self._finishing: Future | None = None

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

    def note_wall(self, model_label: str, wall_ms: float) -> None:
        self._walls[model_label] = max(self._walls.get(model_label, 0.0), wall_ms)

    def _report(self, events: list) -> list:
        """``events`` and the stopwatch's reading since the last report (then it starts again)."""
        if self.clock.seconds:
            events.append(Overhead(self.clock.to_json()))
            self.clock = Stopwatch()
        return events

    # the group ------------------------------------------------------------------
    def begin(self, task: GroupTask) -> list:
        events = self._end("done") if self.server is not None or self.slot_run is not None else []
        self.task = task
        self.start_failures = 0
        self._replay_failed = False
        return self._report(events)

    def end(self, reason: str = "done") -> list:
        """Stop the group's server (if one runs); ``reason`` is stored with it."""
        return self._report(self._end(reason))

    def _end(self, reason: str) -> list:
        if self.slot_run is not None:  # stop the server first: the requests in flight end with it
            slot_run, self.slot_run = self.slot_run, None
            events = self.stop_server(reason)
            return events + slot_run.close(reason)
        return self.stop_server(reason)

    def measure(self, request: PlannedRequest, attempt: int) -> list:
        """One planned request, retried up to ``retries`` times; ``attempt`` = attempts stored before."""
        retries = self.task.group.options.settings.retries
        events: list = []
        for _ in range(retries + 1):
            attempt += 1
            if self.server is None or not self.server.alive() or self.role != "timed":
                if self.server is not None:
                    events += self.stop_server("died" if self.role == "timed" else "done")
                try:
                    events += self.start_server("timed")
                    self.start_failures = 0
                except (ServerError, RequestError) as exc:
                    self.start_failures += 1
                    events.append(self.failure(request, 0, attempt, f"server start failed: {exc}",
                                               getattr(exc, "log_tail", "")))
                    if self.start_failures > retries:
                        events.append(GaveUp(f" ({exc})"))
                        return self._report(events)
                    continue
            failed = self._measure_one(request, attempt, events)
            if failed is None:
                break
            events.append(failed)
        return self._report(events)

    def start_parallel(self, requests: list[tuple[PlannedRequest, int]]) -> list:
        """A side-by-side cell: ``requests`` with the attempts stored before each; ``collect`` runs them."""
        events = self._end("done") if self.server is not None else []
        self.slot_run = SideBySide(self, requests)
        return self._report(events)

    def collect(self) -> list:
        """Keep the cell's slots busy until at least one request finished; its rows come back."""
        return self._report(self.slot_run.collect())

    def replay(self, row_id: int, record: RequestRecord, messages) -> list:
        """Send a stored request again to a traced server of the cell for its per-step counts.
        A replay that fails leaves the request pending (the next run of the sweep replays it, and the
        report counts it from /metrics meanwhile); so do the group's later ones."""
        events: list = []
        if self._replay_failed:
            return events
        if self.server is None or not self.server.alive() or self.role != "replay":
            if self.server is not None:
                events += self.stop_server("done")
            try:
                events += self.start_server("replay")
            except (ServerError, RequestError):
                self._replay_failed = True
                return self._report(events)
        sampling = self.task.sampling
        body = chat_body(messages, sampling.max_tokens, sampling.temperature, record.seed, sampling.thinking)
        with self.clock.phase("replay"):
            try:
                outcome = measure_request(self.server, body, timeout=self.request_timeout(record.model_label),
                                          before=self._last_metrics)
            except (RequestError, ServerError):
                self._replay_failed = True
                self._last_metrics = None
                return self._report(events)
            self._last_metrics = outcome.metrics_after
            events.append(CountsReplayed(row_id, with_replay_counts(record, outcome)))
        return self._report(events)

    # servers --------------------------------------------------------------------
    def start_server(self, role: str = "timed") -> list:
        """A server for the group: "timed" (untraced, one slot: speed), "replay" (traced, one slot:
        per-step counts) or "parallel" (traced, ``task.parallel`` slots: acceptance only)."""
        slots = self.task.parallel if role == "parallel" else 1
        server, key, peak, events = self.spawn(role, slots, {"timed": "", "replay": "-replay",
                                                             "parallel": f"-np{slots}"}[role], self.clock)
        self.server, self.role, self._first_peak, self.server_key = server, role, peak, key
        self._last_metrics = server.warm_metrics if slots == 1 else None
        return events

    def spawn(self, role: str, slots: int, suffix: str, clock: Stopwatch, options: ServerOptions | None = None,
              alone: bool = True) -> tuple[LlamaServer, int, tuple | None, list]:
        """Start and warm up one server of the group (thread-safe apart from ``clock``): the server,
        its key, its memory after the warm-up, and the events (``ServerStarted`` first).
        ``options``: the group's, changed (side-by-side servers share the cores); ``alone``: no other
        server of the sweep is on the device."""
        group = self.task.group
        options = options or group.options
        tag = f"-{self.log_tag}" if self.log_tag else ""
        log_path = (self.task.logs_dir / f"run{self.task.run_id}-{group.model_label}-{group.drafting}"
                                         f"-d{group.depth}{suffix}{tag}.log")
        server = LlamaServer(self.binary, options, log_path, start_timeout=self.start_timeout(options),
                             traced=role != "timed", slots=slots)
        spawned = time.time()
        events: list = []
        with clock.phase("server_start"):
            server.start()
            try:
                confirmed = self._warm_up(server, events)
            except BaseException:
                server.stop()
                raise
            peak = sample_peak(server.pid, self.task.on_gpu, alone)
        with self._key_lock:
            self.key += 1
            key = self.key
        record = ServerRecord(run_id=self.task.run_id, model_label=group.model_label, spec_type=group.spec_type,
                              depth=group.depth, argv=server.argv, build_info=server.props.get("build_info"),
                              props=server.props, log_path=str(log_path), started_at=spawned,
                              start_seconds=round(time.time() - spawned, 3), drafting_confirmed=confirmed,
                              drafting=group.drafting, role=role, traced=int(server.traced), slots=slots,
                              memory=parse_load_log(server.load_log()),
                              peak_memory_bytes=peak[0] if peak else None, peak_memory_source=peak[1] if peak else None)
        return server, key, peak, [ServerStarted(key, record), *events]

    def stop_server(self, reason: str) -> list:
        """Stop the group's server (its last row finished first) and say why."""
        events = self._finished()  # its last row needs the server's tokenizer
        server, self.server = self.server, None
        self._last_metrics = None
        if server is None:
            return events
        return events + self.retire(server, self.server_key, self._first_peak, reason, self.clock)

    def retire(self, server: LlamaServer, key: int, first_peak: tuple | None, reason: str, clock: Stopwatch,
               alone: bool = True) -> list:
        """Sample a server's memory once more (its peak), then stop it and say why."""
        with clock.phase("server_stop"):
            peak = sample_peak(server.pid, self.task.on_gpu, alone) if server.alive() else None
            if first_peak is not None and (peak is None or (peak[1] == first_peak[1] and first_peak[0] > peak[0])):
                peak = first_peak  # device memory is sampled, not a high-water mark: keep the larger sample
            server.stop()
        return [ServerStopped(key, reason, peak)]

    def _warm_up(self, server: LlamaServer, events: list) -> int | None:
        """One short unrecorded request; also checks that the server speculates iff asked to."""
        group, sampling = self.task.group, self.task.sampling
        expected_model = Path(group.options.model).resolve()
        reported = server.props.get("model_path")
        if reported and Path(reported).resolve() != expected_model:
            raise ServerError(f"llama-server reports model {reported}, expected {expected_model}")
        if server.props.get("total_slots") not in (None, server.slots):
            raise ServerError(f"llama-server runs {server.props.get('total_slots')} slots, expected {server.slots}")
        body = chat_body(WARMUP_MESSAGES, 8, sampling.temperature, sampling.seed, sampling.thinking)
        outcome = measure_request(server, body, timeout=self.request_timeout(group.model_label) + 60.0,
                                  read_metrics=True)
        server.warm_metrics = outcome.metrics_after  # the scrape before the first measured request
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

    def _measure_one(self, request: PlannedRequest, attempt: int, events: list) -> RequestDone | None:
        """Send ``request``; None when it succeeded (its row is finished behind, ``_finish_behind``),
        else its failed row. The row finished behind for the previous request joins ``events``."""
        sampling, server = self.task.sampling, self.server
        body = chat_body(request.prompt.messages, sampling.max_tokens, sampling.temperature, request.seed,
                         sampling.thinking)
        started = time.time()
        try:
            # At depth 0 there is nothing for /metrics to count: its scrape would be pure overhead.
            outcome = measure_request(server, body, timeout=self.request_timeout(request.model_label),
                                      before=self._last_metrics, clock=self.clock, read_metrics=request.depth > 0,
                                      retokenize=False)
        except (RequestError, ServerError) as exc:
            self._last_metrics = None
            events += self._finished()  # while the server may still tokenize its answer
            tail = getattr(exc, "log_tail", "") or server.log_tail()
            if isinstance(exc, RequestError):
                server.stop_unanswered()
            return self.failure(request, self.server_key, attempt, str(exc), tail, started)
        self._last_metrics = outcome.metrics_after
        self.note_wall(request.model_label, outcome.wall_ms)
        events += self._finished()
        self._finish_behind(request, attempt, started, outcome)
        events.append(RowBehind(request.cell))
        return None

    def _finish_behind(self, request: PlannedRequest, attempt: int, started: float, outcome: Outcome) -> None:
        """Tokenize the answer again (the degeneration check) and build its row on a thread of its own,
        while the driver writes rows and the next request runs: neither then sits between two requests.
        ``_finished`` collects the row, at the latest before the server stops."""
        if self._behind is None:
            self._behind = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish-row")
        server, key, run_id = self.server, self.server_key, self.task.run_id

        def finish() -> tuple[RequestRecord, Stopwatch]:
            clock = Stopwatch()
            with clock.phase("behind"):
                text = generated_text(outcome.response)
                tokens = tokenize(server, text) if text is not None else None
                record = record_from(run_id, key, request, attempt, started, replace(outcome, tokens=tokens))
            return record, clock

        self._finishing = self._behind.submit(finish)

    def _finished(self) -> list:
        """The row being finished behind, if any (waiting for it when it is not done yet)."""
        if self._finishing is None:
            return []
        future, self._finishing = self._finishing, None
        with self.clock.phase("finish_wait"):
            record, clock = future.result()
        self.clock.merge(clock)
        return [RequestDone(record)]

    def failure(self, request: PlannedRequest, server_key: int, attempt: int, error: str, log_tail: str = "",
                started: float | None = None) -> RequestDone:
        message = error if not log_tail else f"{error}\n--- server log tail ---\n{log_tail}"
        return RequestDone(empty_record(self.task.run_id, server_key, request, attempt, started or time.time(),
                                        message))
