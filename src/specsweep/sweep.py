"""Run a sweep: check inputs, open the store, and measure every planned request.

Each server group gets one managed llama-server, run by an executor (``executors``): here one
at a time (the default), or on a Ray cluster. Every request is written to the store by this
process as soon as it finishes; a failed request is a row too (failures are data). A dead
server is restarted and the request retried a bounded number of times; a model whose server
keeps dying is skipped with its cells marked failed, and the sweep goes on. SIGINT/SIGTERM
abandon the requests in flight, stop the servers, and leave a consistent store that the same
command resumes.

Speed comes from untraced servers, per-position counts from ``/metrics`` or a traced replay, and
``parallel`` > 1 runs each cell's requests side by side for acceptance only (``executors.worker``).
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import __version__
from .config import DRAFT_MODEL_TYPES, Drafting, SweepConfig
from .degeneration import THRESHOLDS
from .engine.locate import Engine
from .engine.options import ServerSettings, transport_fields
from .engine.server import computing_environment
from .errors import EngineMissingError, Interrupted
from .executors.local import LocalExecutor
from .executors.recorder import NullProgress, Recorder, SweepResult
from .models import GGUFInfo, check_assistant, check_mtp, check_vocab, inspect_gguf
from .plan import Plan, make_plan
from .prompts import Prompt, load_prompts
from .provenance import model_provenance, run_provenance
from .store import RunRow, Store

RUN_KEY_VERSION = 1


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
    gpu_defaults: tuple[str, ...] = ()  # server flags set because the engine has a GPU backend


# What a GPU engine runs with unless the sweep says otherwise: every layer of target and drafter on
# the GPU, flash attention on (llama.cpp's own defaults leave that to heuristics).
GPU_DEFAULTS = {"gpu_layers": "all", "draft_gpu_layers": "all", "flash_attn": "on"}


def with_engine_defaults(config: SweepConfig, engine: Engine, gpus: bool = True) -> tuple[SweepConfig, tuple[str, ...]]:
    """``config`` with the GPU defaults for the settings it leaves unset (on a GPU engine whose
    servers have GPUs: not Ray slots without --gpus-per-server); also the flags set that way, for
    the report."""
    if engine.backend != "cuda" or not gpus:
        return config, ()
    unset = {name: value for name, value in GPU_DEFAULTS.items() if getattr(config.server, name) is None}
    flags = {f.name: f.metadata["flag"] for f in fields(ServerSettings)}
    return (replace(config, server=replace(config.server, **unset)),
            tuple(f"{flags[name]} {value}" for name, value in unset.items()))


def prepare(config: SweepConfig, engine: Engine, gpus: bool = True) -> Prepared:
    """Validate models, drafting and engine; any problem is one clear error, before any server starts.
    ``gpus``: the servers get GPUs (false for Ray slots given none), so GPU defaults apply."""
    Store.check_writable(Path(config.db))
    config, gpu_defaults = with_engine_defaults(config, engine, gpus)
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
    return Prepared(config, engine, prompts, models, drafters, entry_drafters=entry_drafters,
                    gpu_defaults=gpu_defaults)


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
        **({"side_by_side": cfg.side_by_side} if cfg.parallel > 1 and cfg.side_by_side != "slots" else {}),
        # Engine switches (GGML_CUDA_DISABLE_GRAPHS …) may change what is computed: a sweep under other
        # ones is another run. Only when set, so every key from before stays the same.
        **({"engine_env": env} if (env := computing_environment()) else {}),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _drafting_identity(prepared: Prepared) -> dict | list[dict]:
    """The drafting part of the run key: one entry as before this axis existed (so older runs
    resume), several as a list with each entry's label and its draft file's hash, not its path."""
    def identity(entry: Drafting) -> dict:
        out = asdict(entry)
        out.pop("draft_model")
        for unset in ("label", "ngram_size_n", "ngram_size_m"):  # fields added later: unset, the key is as before
            if out[unset] is None:
                out.pop(unset)
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


@dataclass(frozen=True)
class AdaptiveTarget:
    """Add reps (new seeds) to a cell until its acceptance interval half-width is ≤ ``half_width``."""

    half_width: float  # as a fraction, e.g. 0.01 for ±1 percentage point
    max_reps: int = 10
    max_tokens_total: int | None = None


class Sweep:
    def __init__(self, prepared: Prepared, store: Store, logs_dir: Path, progress=None,
                 reps: int | None = None, executor=None):
        self.prepared = prepared
        self.config = prepared.config
        self.store = store
        self.logs_dir = logs_dir
        self.progress = progress or NullProgress()
        self.executor = executor or LocalExecutor(prepared.engine)
        self.plan: Plan = make_plan(self.config, prepared.prompts, reps=reps)
        self.run = open_run(prepared, store)
        self.result = SweepResult(self.run)
        # An engine of unknown build may use a GPU: its servers' memory is asked of nvidia-smi.
        self.recorder = Recorder(store, self.run, self.config, logs_dir, self.progress, self.result,
                                 prompts=prepared.prompts, on_gpu=prepared.engine.backend != "cpu")

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
                "skipped_models": self.result.skipped_models, "skipped_drafting": self.result.skipped_drafting,
                "unconfirmed_drafting": self.result.unconfirmed_drafting,
                "gpu_defaults": list(self.prepared.gpu_defaults),
                **({"side_by_side": self.config.side_by_side} if self.config.parallel > 1 else {}),
                # How the lanes of --side-by-side cells shared the machine (their MPS daemon).
                **(getattr(self.executor, "run_notes", None) or {}),
                # The tool's own time of this invocation, by phase (benchmarks/gpu_speed.py reads it).
                "overhead": {"wall_seconds": round(time.perf_counter() - started, 3),
                             "phases": self.recorder.clock.to_json()}})
        self.result.run = self.store.run(self.run.id)
        return self.result

    def _run_groups(self, groups, done: set[tuple]) -> None:
        work = [(group, [r for r in group.requests if r.cell not in done]) for group in groups]
        # A group with nothing to measure may still have replays an interrupted run left pending.
        self.executor.run([(group, pending) for group, pending in work
                           if pending or self.recorder.needs_replay(group)], self.recorder)

    def _run_adaptive(self, target: AdaptiveTarget) -> None:
        """More reps for the cells whose acceptance interval (t over prompts, the one the report
        prints) is still wider than the target."""
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
                    continue  # no interval: the CLI refuses --target-ci with too few prompts
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
