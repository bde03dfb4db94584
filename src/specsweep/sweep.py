"""Run a sweep: check inputs, open the store, and measure every planned request.

Each server group gets one managed llama-server. Every request is written to
the store as soon as it finishes; a failed request is a row too (failures are
data). A dead server is restarted and the request retried a bounded number of
times; a model whose server keeps dying is skipped with its cells marked
failed, and the sweep goes on. SIGINT/SIGTERM abandon the request in flight,
stop the server, and leave a consistent store that the same command resumes.

Speed is measured on servers without the per-step trace log (its cost would sit inside every
speed figure). A request's per-position counts then come from ``/metrics``, exact whenever every
draft was full length; the few requests with shorter drafts (near ``max_tokens``) are replayed on
a traced server of the same cell after the timed ones, and take their counts from the replay
when it generated the same tokens. With ``parallel`` > 1 a cell runs on K slots of one traced
server side by side (``specsweep.parallel``): acceptance only, speed not measured.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import __version__
from .client import chat_body, measure_request
from .config import DRAFT_MODEL_TYPES, Drafting, SweepConfig
from .degeneration import THRESHOLDS
from .engine.locate import Engine
from .engine.memory import parse_load_log, sample_peak
from .engine.options import ServerOptions, transport_fields
from .engine.server import LlamaServer
from .errors import EngineMissingError, Interrupted, RequestError, ServerError
from .models import GGUFInfo, check_assistant, check_mtp, check_vocab, inspect_gguf
from .overhead import Stopwatch
from .parallel import run_parallel_group
from .replay import replay_counts
from .plan import Plan, PlannedRequest, ServerGroup, make_plan
from .prompts import Prompt, load_prompts
from .provenance import model_provenance, run_provenance
from .records import ServerRecord
from .request_rows import empty_record, record_from
from .store import RunRow, Store

RUN_KEY_VERSION = 1
WARMUP_MESSAGES = ({"role": "user", "content": "Count from one to twenty in words."},)


@dataclass
class Prepared:
    """Everything checked before the first server starts."""

    config: SweepConfig
    engine: Engine
    prompts: list[Prompt]
    models: dict[str, GGUFInfo]
    drafters: dict[str, GGUFInfo]
    model_provenance: dict[str, dict] = field(default_factory=dict)
    entry_drafters: dict[str, GGUFInfo] = field(default_factory=dict)  # drafting label -> its own draft file


def prepare(config: SweepConfig, engine: Engine) -> Prepared:
    """Validate models, drafting and engine; any problem is one clear error, before any server starts."""
    Store.check_writable(Path(config.db))
    prompts = load_prompts(config.prompts, limit=config.prompt_limit)
    entries = [d for d in config.drafting_entries() if any(depth > 0 for depth in d.depths)]
    supported = engine.spec_types() if entries else ()
    for entry in entries:
        if supported and entry.spec_type not in supported:
            raise EngineMissingError(f"{engine.server} does not support --spec-type {entry.spec_type} "
                                     f"(it has: {', '.join(supported)})")
    # An entry's own draft file is read once, and hashed into the run key (see _drafting_identity).
    entry_drafters = {d.name: inspect_gguf(d.draft_model) for d in config.drafting_entries() if d.draft_model}
    models, drafters = {}, {}
    for model in config.models:
        info = inspect_gguf(model.path)
        models[model.label] = info
        if model.draft_model:
            drafters[model.label] = inspect_gguf(model.draft_model)
        for entry in entries:
            drafter = None
            if entry.draft_file(model) is not None:
                drafter = entry_drafters[entry.name] if entry.draft_model else drafters.get(model.label)
            if entry.spec_type == "draft-mtp":
                check_mtp(info, drafter)
                if drafter is not None:
                    check_assistant(info, drafter)
                    check_vocab(info, drafter)
            if drafter is not None and entry.spec_type in DRAFT_MODEL_TYPES:
                check_vocab(info, drafter)
    return Prepared(config, engine, prompts, models, drafters, entry_drafters=entry_drafters)


def config_json(config: SweepConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def run_key(prepared: Prepared) -> str:
    """Versioned hash of everything that changes results; transport settings and reps stay out.

    Reps are left out on purpose: adding reps (or ``--target-ci``) extends the same run.
    """
    cfg = prepared.config
    if not prepared.model_provenance:
        specs = {m.label: m for m in cfg.models}
        prepared.model_provenance = {label: model_provenance(info, specs.get(label))
                                     for label, info in prepared.models.items()}
    drafter_hashes = {label: model_provenance(info)["sha256"] for label, info in prepared.drafters.items()}
    server = asdict(cfg.server)
    for transport in transport_fields():
        server.pop(transport)
    sampling = asdict(cfg.sampling)
    sampling.pop("reps")
    engine = prepared.engine
    identity = {
        "key_version": RUN_KEY_VERSION,
        "engine": {"version": engine.version(), "backend": engine.backend,
                   "source": (engine.provenance.get("source") or {}).get("source_id"),
                   "server": None if engine.provenance.get("source") else str(engine.server)},
        "models": [{"label": m.label, "sha256": prepared.model_provenance[m.label]["sha256"],
                    "draft_sha256": drafter_hashes.get(m.label), "server_args": list(m.server_args),
                    **({"parts_sha256": parts} if (parts := prepared.model_provenance[m.label].get("parts_sha256"))
                       else {})}
                   for m in cfg.models],
        "drafting": _drafting_identity(prepared),
        "prompts": [p.content_hash() for p in prepared.prompts],
        "sampling": sampling,
        "server": server,
        # Side by side: what is measured differs (no speed), so such a sweep is its own run.
        **({"parallel": cfg.parallel} if cfg.parallel > 1 else {}),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _drafting_identity(prepared: Prepared) -> dict | list[dict]:
    """The drafting part of the run key: one entry as before this axis existed (so older runs
    resume), several as a list with each entry's label and its draft file's hash, not its path."""
    def identity(entry: Drafting) -> dict:
        out = asdict(entry)
        out.pop("draft_model")
        if entry.label is None:
            out.pop("label")
        if entry.draft_model is not None:
            out["draft_sha256"] = model_provenance(prepared.entry_drafters[entry.name])["sha256"]
        return out
    entries = prepared.config.drafting_entries()
    return identity(entries[0]) if not prepared.config.drafting_axis else [identity(e) for e in entries]


def open_run(prepared: Prepared, store: Store) -> RunRow:
    key = run_key(prepared)
    run = store.find_run(key)
    if run is None:
        provenance = run_provenance(prepared.engine, prepared.model_provenance)
        # The planned prompt ids go with the config, so a report knows what is missing from the store alone;
        # the degeneration thresholds, so it knows what "degenerate" meant when the requests were marked.
        config = {**config_json(prepared.config), "prompt_ids": [p.id for p in prepared.prompts],
                  "degeneration_thresholds": asdict(THRESHOLDS)}
        run = store.create_run(key, prepared.config.name, config, provenance, __version__)
    elif run.config.get("exclude_degenerate", False) != prepared.config.exclude_degenerate:
        # Counting, not measuring: the same run, resumed or re-reported under the latest choice.
        store.update_config(run.id, {**run.config, "exclude_degenerate": prepared.config.exclude_degenerate})
        run = store.find_run(key)
    store.claim_run(run)
    return run


@contextmanager
def stop_signals_as_interrupt():
    """SIGINT and SIGTERM both take the clean path: abandon the request, stop the server, flush.

    SIGINT is set explicitly because a process started in the background of a non-interactive
    shell inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt.
    """
    def on_term(signum, frame):
        raise Interrupted("stopped by SIGTERM")
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class NullProgress:
    def start(self, total: int, completed: int) -> None: ...
    def describe(self, text: str) -> None: ...
    def advance(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class SweepResult:
    run: RunRow
    performed: int = 0
    failed: int = 0
    skipped_done: int = 0
    skipped_models: list[str] = field(default_factory=list)
    unconfirmed_drafting: list[str] = field(default_factory=list)
    budget_hit: list[str] = field(default_factory=list)  # --target-ci cells that stopped at the budget
    reps_used: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AdaptiveTarget:
    """Add reps (new seeds) to a cell until its acceptance interval half-width is ≤ ``half_width``."""

    half_width: float  # as a fraction, e.g. 0.01 for ±1 percentage point
    max_reps: int = 10
    max_tokens_total: int | None = None


class Sweep:
    def __init__(self, prepared: Prepared, store: Store, logs_dir: Path, progress=None,
                 reps: int | None = None):
        self.prepared = prepared
        self.config = prepared.config
        self.store = store
        self.logs_dir = logs_dir
        self.progress = progress or NullProgress()
        self.plan: Plan = make_plan(self.config, prepared.prompts, reps=reps)
        self.run = open_run(prepared, store)
        self.result = SweepResult(self.run)
        self._walls: dict[str, float] = {}
        self.clock = Stopwatch()  # the tool's own time per phase (specsweep.overhead)
        self.on_gpu = prepared.engine.backend != "cpu"  # an engine of unknown build may use a GPU: ask nvidia-smi
        self._peaks: dict[int, tuple[int, str] | None] = {}  # server id -> memory sampled after its warm-up
        self._last_metrics = None  # the /metrics scrape after the last request on the running server

    # timeouts scaled to the expected work -----------------------------------
    def start_timeout(self, options: ServerOptions) -> float:
        if self.config.server.start_timeout:
            return self.config.server.start_timeout
        size = sum(Path(p).stat().st_size for p in (options.model, options.draft_model) if p)
        return 60.0 + 30.0 * size / 1e9

    def request_timeout(self, model_label: str) -> float:
        if self.config.server.request_timeout:
            return self.config.server.request_timeout
        # Before anything is measured, allow a slow machine 2 s a token; afterwards 10× the slowest
        # request of this model so far (deeper drafts cost more), never under a minute.
        ceiling = 120.0 + 2.0 * self.config.sampling.max_tokens
        seen = self._walls.get(model_label)
        return ceiling if seen is None else min(ceiling, max(60.0, 10.0 * seen / 1000.0))

    # the run ------------------------------------------------------------------
    def execute(self, adaptive: AdaptiveTarget | None = None) -> SweepResult:
        done = self.store.completed_cells(self.run.id)
        todo = [r for r in self.plan.requests() if r.cell not in done]
        self.result.skipped_done = self.plan.n_requests - len(todo)
        self.progress.start(total=self.plan.n_requests, completed=self.result.skipped_done)
        state = "interrupted"
        started = time.perf_counter()
        try:
            with stop_signals_as_interrupt():
                self._run_groups(self.plan.groups, done)
                if adaptive is not None:
                    self._run_adaptive(adaptive)
            complete = self.store.completed_cells(self.run.id) >= {r.cell for r in self.plan.requests()}
            state = "complete" if complete else "partial"
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
        finally:
            self.progress.stop()
            self.store.set_run_state(self.run.id, state, notes={
                "skipped_models": self.result.skipped_models,
                "unconfirmed_drafting": self.result.unconfirmed_drafting,
                # The tool's own time of this invocation, by phase (benchmarks/gpu_speed.py reads it).
                "overhead": {"wall_seconds": round(time.perf_counter() - started, 3), "phases": self.clock.to_json()}})
        self.result.run = self.store.run(self.run.id)
        return self.result

    def _run_groups(self, groups, done: set[tuple]) -> None:
        for group in groups:
            pending = [r for r in group.requests if r.cell not in done]
            if not pending:
                if group.depth > 0 and self.config.parallel == 1:
                    replay_counts(self, group)  # replays an earlier invocation left pending
                continue
            if group.model_label in self.result.skipped_models:
                self._mark_skipped(group, pending)
                continue
            self._run_group(group, pending)

    def _run_adaptive(self, target: AdaptiveTarget) -> None:
        """More reps for the cells whose bootstrap interval is still wider than the target."""
        from .analysis import by_drafting, summarize
        reps = {(g.model_label, g.drafting, g.depth): self.config.sampling.reps for g in self.plan.groups}
        while True:
            records = self.store.requests(self.run.id, status="ok")
            if self.config.exclude_degenerate:  # a degenerate request is no evidence for the interval
                records = [r for r in records if r.degenerate != 1]
            tokens = sum(r.predicted_n or 0 for r in records)
            wide = []
            for cell in summarize(by_drafting(records)):
                acc = cell.acceptance
                key = (cell.key.model_label, cell.key.spec_type, cell.key.depth)  # spec_type: the label here
                if cell.key.depth == 0 or acc is None or acc.ci_low is None:
                    continue
                if (acc.ci_high - acc.ci_low) / 2 > target.half_width:
                    wide.append(key)
            if not wide:
                break
            over_tokens = target.max_tokens_total is not None and tokens >= target.max_tokens_total
            growable = [key for key in wide if reps[key] < target.max_reps]
            if over_tokens or not growable:
                self.result.budget_hit = [f"{m}/{label}/d{d}" for m, label, d in wide]
                break
            for key in growable:
                reps[key] += 1
            bigger = make_plan(self.config, self.prepared.prompts, reps=max(reps.values()))
            groups = [replace(g, requests=tuple(r for r in g.requests
                                                if r.rep < reps[(g.model_label, g.drafting, g.depth)]))
                      for g in bigger.groups if (g.model_label, g.drafting, g.depth) in growable]
            self.progress.start(total=sum(len(g.requests) for g in groups), completed=0)
            self._run_groups(groups, self.store.completed_cells(self.run.id))
        self.result.reps_used = {f"{m}/{label}/d{d}": n for (m, label, d), n in reps.items()}

    def _mark_skipped(self, group: ServerGroup, pending: list[PlannedRequest], cause: str = "") -> None:
        """A failed row for every cell of a model that was given up on: none is silently dropped."""
        for request in pending:
            self.store_failure(request, 0, attempt=1,
                                error=f"skipped: llama-server for {group.model_label} kept failing{cause}")
            self.progress.advance()

    def _start_server(self, group: ServerGroup, role: str = "timed") -> tuple[LlamaServer, int]:
        """A server for ``group``: "timed" (untraced, one slot: speed), "replay" (traced, one slot:
        per-step counts) or "parallel" (traced, ``config.parallel`` slots: acceptance only)."""
        slots = self.config.parallel if role == "parallel" else 1
        suffix = {"timed": "", "replay": "-replay", "parallel": f"-np{slots}"}[role]
        log_path = self.logs_dir / f"run{self.run.id}-{group.model_label}-{group.drafting}-d{group.depth}{suffix}.log"
        server = LlamaServer(self.prepared.engine.server, group.options, log_path,
                             start_timeout=self.start_timeout(group.options), traced=role != "timed", slots=slots)
        spawned = time.time()
        with self.clock.phase("server_start"):
            server.start()
            try:
                confirmed = self._warm_up(server, group)
            except BaseException:
                server.stop()
                raise
            peak = sample_peak(server.pid, self.on_gpu)
        record = ServerRecord(run_id=self.run.id, model_label=group.model_label, spec_type=group.spec_type,
                              depth=group.depth, argv=server.argv, build_info=server.props.get("build_info"),
                              props=server.props, log_path=str(log_path), started_at=spawned,
                              start_seconds=round(time.time() - spawned, 3), drafting_confirmed=confirmed,
                              drafting=group.drafting, role=role, traced=int(server.traced), slots=slots,
                              memory=parse_load_log(server.load_log()),
                              peak_memory_bytes=peak[0] if peak else None, peak_memory_source=peak[1] if peak else None)
        server_id = self.store.add_server(record)
        self._peaks[server_id] = peak
        return server, server_id

    def _stop_server(self, server: LlamaServer, server_id: int, reason: str) -> None:
        """Sample the server's memory once more (its peak), then stop it and say why."""
        with self.clock.phase("server_stop"):
            peak = sample_peak(server.pid, self.on_gpu) if server.alive() else None
            first = self._peaks.get(server_id)
            if first is not None and (peak is None or (peak[1] == first[1] and first[0] > peak[0])):
                peak = first
            server.stop()
            self.store.server_stopped(server_id, reason, peak)
            self._last_metrics = None

    def _warm_up(self, server: LlamaServer, group: ServerGroup) -> int | None:
        """One short unrecorded request; also checks that the server speculates iff asked to."""
        expected_model = Path(group.options.model).resolve()
        reported = server.props.get("model_path")
        if reported and Path(reported).resolve() != expected_model:
            raise ServerError(f"llama-server reports model {reported}, expected {expected_model}")
        if server.props.get("total_slots") not in (None, server.slots):
            raise ServerError(f"llama-server runs {server.props.get('total_slots')} slots, expected {server.slots}")
        body = chat_body(WARMUP_MESSAGES, 8, self.config.sampling.temperature, self.config.sampling.seed,
                         self.config.sampling.thinking)
        outcome = measure_request(server, body, timeout=self.request_timeout(group.model_label) + 60.0,
                                  read_metrics=True)
        self._last_metrics = outcome.metrics_after if server.slots == 1 else None
        drafted = outcome.metrics_delta.get("spec_decode_num_draft_tokens_total", 0)
        if group.depth == 0:
            if drafted:
                raise ServerError("llama-server drafted tokens although no speculation was asked for")
            return None
        if not drafted:
            # n-gram types draft only when the context repeats itself: not an error, but say so.
            self.result.unconfirmed_drafting.append(f"{group.model_label}/{group.drafting}/d{group.depth}")
            return 0
        return 1

    def _run_group(self, group: ServerGroup, pending: list[PlannedRequest]) -> None:
        if self.config.parallel > 1:
            run_parallel_group(self, group, pending)
            return
        retries = self.config.server.retries
        attempts = self.store.attempts(self.run.id)
        server, server_id = None, 0
        start_failures = 0
        try:
            for request in pending:
                self.progress.describe(f"{group.model_label} · {group.drafting} · depth {group.depth} · "
                                       f"rep {request.rep + 1}/{self.config.sampling.reps}")
                attempt = attempts.get(request.cell, 0)
                for _ in range(retries + 1):
                    attempt += 1
                    if server is None or not server.alive():
                        if server is not None:
                            self._stop_server(server, server_id, "died")
                        try:
                            server, server_id = self._start_server(group)
                            start_failures = 0
                        except (ServerError, RequestError) as exc:
                            server = None
                            start_failures += 1
                            self.store_failure(request, 0, attempt, f"server start failed: {exc}",
                                               getattr(exc, "log_tail", ""))
                            if start_failures > retries:
                                self._skip_model(group, pending, request, exc)
                                return
                            continue
                    if self._measure_one(server, server_id, request, attempt):
                        break
                self.progress.advance()
        finally:
            if server is not None:
                self._stop_server(server, server_id, "done")
        if group.depth > 0:
            replay_counts(self, group)

    def _skip_model(self, group: ServerGroup, pending: list[PlannedRequest], failed_at: PlannedRequest,
                    exc: Exception) -> None:
        self.result.skipped_models.append(group.model_label)
        self.progress.advance()
        self._mark_skipped(group, pending[pending.index(failed_at) + 1:], f" ({exc})")

    def _measure_one(self, server: LlamaServer, server_id: int, request: PlannedRequest, attempt: int) -> bool:
        sampling = self.config.sampling
        body = chat_body(request.prompt.messages, sampling.max_tokens, sampling.temperature, request.seed,
                         sampling.thinking)
        started = time.time()
        try:
            # At depth 0 there is nothing for /metrics to count: its scrape would be pure overhead.
            outcome = measure_request(server, body, timeout=self.request_timeout(request.model_label),
                                      before=self._last_metrics, clock=self.clock, read_metrics=request.depth > 0)
        except (RequestError, ServerError) as exc:
            self._last_metrics = None
            tail = getattr(exc, "log_tail", "") or server.log_tail()
            if isinstance(exc, RequestError) and server.alive():
                server.stop()  # a hung or confused server is restarted before the retry
            self.store_failure(request, server_id, attempt, str(exc), tail, started)
            return False
        self._last_metrics = outcome.metrics_after
        with self.clock.phase("record"):
            record = record_from(self.run.id, server_id, request, attempt, started, outcome)
        with self.clock.phase("store"):
            self.store.add_request(record)
        self.note_wall(request.model_label, outcome.wall_ms)
        self.result.performed += 1
        return True

    def note_wall(self, model_label: str, wall_ms: float) -> None:
        self._walls[model_label] = max(self._walls.get(model_label, 0.0), wall_ms)

    def store_failure(self, request: PlannedRequest, server_id: int, attempt: int, error: str,
                      log_tail: str = "", started: float | None = None) -> None:
        message = error if not log_tail else f"{error}\n--- server log tail ---\n{log_tail}"
        self.store.add_request(empty_record(self.run.id, server_id, request, attempt, started or time.time(),
                                            message))
        self.result.failed += 1


def estimate_seconds(plan: Plan, store: Store | None, done: set[tuple]) -> float | None:
    """Seconds for the remaining requests, from earlier measurements of the same labels and depths."""
    if store is None:
        return None
    total = 0.0
    for group in plan.groups:
        remaining = sum(1 for r in group.requests if r.cell not in done)
        if not remaining:
            continue
        wall = store.mean_wall_ms(group.model_label, group.depth)
        if wall is None:
            return None
        total += remaining * wall / 1000.0
    return total
