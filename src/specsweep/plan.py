"""The plan: a pure function of the config.

Cells are model × drafting entry × depth × rep × prompt. This llama.cpp takes
the draft depth only as a server flag, so requests are grouped into one server
per (model, drafting entry, depth), and one model's servers run back to back (a
31B model loads slowly unless it is still in the page cache). Per model, the
depth-0 baseline runs once, first, whichever entries list depth 0 (no
speculation is the same measurement for every method); then each entry in config
order with its own depths in its order. An n-gram type ignores the depth, so it
runs one speculative server, keyed by its own draft cap (``config.server_depths``).
Within a server, reps run in order and prompts in suite order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from .config import BASELINE, Drafting, SweepConfig
from .engine.options import NGRAM_TYPES, ServerOptions, ServerSettings
from .prompts import Prompt


@dataclass(frozen=True)
class PlannedRequest:
    model_label: str
    spec_type: str  # "none" at depth 0
    depth: int
    rep: int
    seed: int
    prompt: Prompt
    drafting: str = BASELINE  # the drafting entry's label (its spec type unless named); "none" at depth 0

    @property
    def cell(self) -> tuple[str, str, str, int, int, str]:
        """Identity of a measurement within a run: what resume skips when it is done."""
        return (self.model_label, self.spec_type, self.drafting, self.depth, self.rep, self.prompt.id)


@dataclass(frozen=True)
class ServerGroup:
    model_label: str
    spec_type: str
    depth: int
    options: ServerOptions
    requests: tuple[PlannedRequest, ...]
    drafting: str = BASELINE


@dataclass(frozen=True)
class Plan:
    groups: tuple[ServerGroup, ...]

    @property
    def n_requests(self) -> int:
        return sum(len(g.requests) for g in self.groups)

    @property
    def n_servers(self) -> int:
        return len(self.groups)

    def requests(self) -> list[PlannedRequest]:
        return [r for g in self.groups for r in g.requests]


def server_options(config: SweepConfig, model_index: int, depth: int,
                   drafting: Drafting | None = None) -> ServerOptions:
    model = config.models[model_index]
    drafting = drafting or config.drafting_entries()[0]
    speculating = depth > 0
    draft_file = drafting.draft_file(model) if speculating else None
    uses_draft_model = draft_file is not None
    settings = replace(config.server, extra_args=tuple(config.server.extra_args) + tuple(model.server_args))
    if config.parallel > 1 and config.side_by_side == "slots" and settings.ctx_size:
        # every slot gets the context one request has alone (one-slot servers have it already)
        settings = replace(settings, ctx_size=settings.ctx_size * config.parallel)
    if not uses_draft_model:  # settings for a draft model mean nothing without one
        settings = replace(settings, **{f.name: None for f in fields(ServerSettings) if f.metadata.get("draft_only")})
    ngram = NGRAM_TYPES.get(drafting.spec_type) if speculating else None
    if ngram is not None:  # its own flags, spelled out (depth = its draft cap); the draft-model flags do not apply
        return ServerOptions(model=Path(model.path), spec_type=drafting.spec_type, settings=settings,
                             ngram_size_n=(drafting.ngram_size_n or ngram.size_n) if ngram.size_n_flag else None,
                             ngram_size_m=depth if ngram.size_m_flag else None,
                             ngram_n_min=drafting.n_min if ngram.n_min_flag else None)
    return ServerOptions(
        model=Path(model.path),
        draft_model=draft_file,
        spec_type=drafting.spec_type if speculating else None,
        draft_n_max=depth if speculating else None,
        draft_n_min=drafting.n_min if speculating else None,
        draft_p_min=drafting.p_min if speculating else None,
        settings=settings,
    )


def make_plan(config: SweepConfig, prompts: list[Prompt], reps: int | None = None) -> Plan:
    """Every request of the sweep, grouped by server, in the order they will run."""
    reps = config.sampling.reps if reps is None else reps
    entries = config.drafting_entries()
    if len(entries) == 1:  # one method: its depths in their own order, the baseline among them
        servers = [(entries[0], depth) for depth in entries[0].server_depths()]
    else:
        servers = [(entries[0], 0)] if any(0 in e.depths for e in entries) else []
        servers += [(entry, depth) for entry in entries for depth in entry.server_depths() if depth > 0]
    groups = []
    for index, model in enumerate(config.models):
        for entry, depth in servers:
            spec_type, label = (entry.spec_type, entry.name) if depth > 0 else (BASELINE, BASELINE)
            requests = tuple(
                PlannedRequest(model.label, spec_type, depth, rep, config.sampling.seed + rep, prompt, label)
                for rep in range(reps) for prompt in prompts)
            groups.append(ServerGroup(model.label, spec_type, depth, server_options(config, index, depth, entry),
                                      requests, label))
    return Plan(tuple(groups))
