"""The driver's side of every server group: what to ask a worker next, and the store writes.

Whichever executor runs a group, its worker's events come back here and are written by this
process alone, in order: a server row when it started (the worker's server number is mapped to
the store's id), every request row the moment it arrives, the server's stop. A group cut short
(Ctrl-C, a lost worker) closes its open server rows and says which of its cells have no row yet,
so a retry elsewhere measures exactly those and nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import BASELINE, SweepConfig
from ..plan import PlannedRequest, ServerGroup
from ..store import RunRow, Store
from .worker import GaveUp, GroupTask, RequestDone, ServerStarted, ServerStopped, Unconfirmed, failed_record


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
    skipped_models: list[str] = field(default_factory=list)  # whose server failed without a drafter
    skipped_drafting: list[str] = field(default_factory=list)  # "MODEL · ENTRY": failed only with that drafter
    unconfirmed_drafting: list[str] = field(default_factory=list)
    budget_hit: list[str] = field(default_factory=list)  # --target-ci cells that stopped at the budget
    reps_used: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One worker method call: ``getattr(worker, method)(*args)``."""

    method: str
    args: tuple = ()


def skip_key(group: ServerGroup) -> str:
    """What a server that keeps failing to start gives up on: the model when it ran without a
    drafter, else only that model with that drafting entry (a broken draft file must not take the
    model's other methods down with it)."""
    return group.model_label if group.depth == 0 or group.drafting == BASELINE else \
        f"{group.model_label} · {group.drafting}"


class Recorder:
    """Writes what workers report for one run; shared by all of its groups."""

    def __init__(self, store: Store, run: RunRow, config: SweepConfig, logs_dir: Path, progress, result: SweepResult):
        self.store = store
        self.run = run
        self.config = config
        self.logs_dir = logs_dir
        self.progress = progress
        self.result = result

    def open(self, group: ServerGroup, pending: list[PlannedRequest], where: str = "") -> "GroupRun | None":
        """The group's run, or None when its model, or its model with this drafter, was given up on
        earlier (its cells are marked failed)."""
        for given_up in (group.model_label, skip_key(group)):
            if given_up in self.result.skipped_models + self.result.skipped_drafting:
                self.mark_failed(pending, f"skipped: llama-server for {given_up} kept failing")
                return None
        return GroupRun(self, group, pending, where)

    def mark_failed(self, requests: list[PlannedRequest], error: str) -> None:
        """A failed row for every cell not measured: none is silently dropped."""
        for request in requests:
            self.store.add_request(failed_record(self.run.id, 0, request, 1, time.time(), error))
            self.result.failed += 1
            self.progress.advance()


class GroupRun:
    """One group on one worker: the calls to make, and the events they returned, applied in order."""

    def __init__(self, recorder: Recorder, group: ServerGroup, pending: list[PlannedRequest], where: str):
        self.recorder = recorder
        self.group = group
        self.pending = list(pending)
        self.where = where  # the node's host, shown in the progress line
        self.next_index = 0  # pending[next_index:] have no row from this run yet
        self.gave_up = False
        self._server_ids: dict[int, int] = {}  # the worker's server key -> store id, for open servers
        self._attempts = recorder.store.attempts(recorder.run.id)

    @property
    def name(self) -> str:
        return f"{self.group.model_label}/{self.group.drafting}/d{self.group.depth}"

    def task(self) -> GroupTask:
        rec, options = self.recorder, self.group.options
        files = [p for p in (options.model, options.draft_model) if p is not None]
        return GroupTask(rec.run.id, replace(self.group, requests=()), rec.config.sampling, rec.logs_dir,
                         {str(p): Path(p).stat().st_size for p in files})

    def calls(self):
        """begin, one measure per pending request, end; stops early when the model is given up on."""
        yield Call("begin", (self.task(),))
        reps = self.recorder.config.sampling.reps
        while self.next_index < len(self.pending) and not self.gave_up:
            request = self.pending[self.next_index]
            at = f" @ {self.where}" if self.where else ""
            self.recorder.progress.describe(f"{self.group.model_label} · {self.group.drafting} · depth "
                                            f"{self.group.depth} · rep {request.rep + 1}/{reps}{at}")
            yield Call("measure", (request, self._attempts.get(request.cell, 0)))
        if not self.gave_up:
            yield Call("end", ("done",))

    def apply(self, call: Call, events: list) -> None:
        """Write what ``call`` returned; a measure call settles its request (a row or more)."""
        rec = self.recorder
        cause = None
        for event in events:
            if isinstance(event, ServerStarted):
                self._server_ids[event.key] = rec.store.add_server(event.record)
            elif isinstance(event, ServerStopped):
                if event.key in self._server_ids:
                    rec.store.server_stopped(self._server_ids.pop(event.key), event.reason)
            elif isinstance(event, RequestDone):
                record = replace(event.record, server_id=self._server_ids.get(event.record.server_id, 0))
                rec.store.add_request(record)
                if record.status == "ok":
                    rec.result.performed += 1
                else:
                    rec.result.failed += 1
            elif isinstance(event, Unconfirmed):
                rec.result.unconfirmed_drafting.append(event.group)
            elif isinstance(event, GaveUp):
                cause = event.cause
        if call.method != "measure":
            return
        rec.progress.advance()
        self.next_index += 1
        if cause is not None:
            self.gave_up = True
            key = skip_key(self.group)
            skipped = rec.result.skipped_models if key == self.group.model_label else rec.result.skipped_drafting
            if key not in skipped:  # two slots may both give it up
                skipped.append(key)
            rec.mark_failed(self.missing(), f"skipped: llama-server for {key} kept failing{cause}")
            self.next_index = len(self.pending)

    def missing(self) -> list[PlannedRequest]:
        """The pending requests this run has not settled: what a retry elsewhere must measure."""
        return self.pending[self.next_index:]

    def close(self, reason: str) -> None:
        """Mark the servers still open in the store as stopped (the worker was stopped or lost)."""
        for server_id in self._server_ids.values():
            self.recorder.store.server_stopped(server_id, reason)
        self._server_ids.clear()
