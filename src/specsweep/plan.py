"""The plan: a pure function of the config.

Cells are model × depth × rep × prompt. This llama.cpp takes the draft depth
only as a server flag, so requests are grouped into one server per
(model, spec type, depth), and one model's servers run back to back (a 31B
model loads slowly unless it is still in the page cache). Within a server,
reps run in order and prompts in suite order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from .config import SweepConfig
from .engine.options import ServerOptions, ServerSettings
from .prompts import Prompt


@dataclass(frozen=True)
class PlannedRequest:
    model_label: str
    spec_type: str  # "none" at depth 0
    depth: int
    rep: int
    seed: int
    prompt: Prompt

    @property
    def cell(self) -> tuple[str, str, int, int, str]:
        """Identity of a measurement within a run: what resume skips when it is done."""
        return (self.model_label, self.spec_type, self.depth, self.rep, self.prompt.id)


@dataclass(frozen=True)
class ServerGroup:
    model_label: str
    spec_type: str
    depth: int
    options: ServerOptions
    requests: tuple[PlannedRequest, ...]


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


def server_options(config: SweepConfig, model_index: int, depth: int) -> ServerOptions:
    model = config.models[model_index]
    drafting = config.drafting
    speculating = depth > 0
    uses_draft_model = speculating and model.draft_model is not None
    settings = replace(config.server, extra_args=tuple(config.server.extra_args) + tuple(model.server_args))
    if not uses_draft_model:  # settings for a draft model mean nothing without one
        settings = replace(settings, **{f.name: None for f in fields(ServerSettings) if f.metadata.get("draft_only")})
    return ServerOptions(
        model=Path(model.path),
        draft_model=model.draft_model if uses_draft_model else None,
        spec_type=drafting.spec_type if speculating else None,
        draft_n_max=depth if speculating else None,
        draft_n_min=drafting.n_min if speculating else None,
        draft_p_min=drafting.p_min if speculating else None,
        settings=settings,
    )


def make_plan(config: SweepConfig, prompts: list[Prompt], reps: int | None = None) -> Plan:
    """Every request of the sweep, grouped by server, in the order they will run."""
    reps = config.sampling.reps if reps is None else reps
    groups = []
    for index, model in enumerate(config.models):
        for depth in config.drafting.depths:
            spec_type = config.drafting.spec_type if depth > 0 else "none"
            requests = tuple(
                PlannedRequest(model.label, spec_type, depth, rep, config.sampling.seed + rep, prompt)
                for rep in range(reps) for prompt in prompts)
            groups.append(ServerGroup(model.label, spec_type, depth, server_options(config, index, depth),
                                      requests))
    return Plan(tuple(groups))
