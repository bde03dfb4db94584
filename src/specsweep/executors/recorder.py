"""The driver's side of every server group: what to ask a worker next, and the store writes.

Whichever executor runs a group, its worker's events come back here and are written by this
process alone, in order: a server row when it started (the worker's server number is mapped to
the store's id), every request row the moment it arrives, the server's stop. A group cut short
(Ctrl-C, a lost worker) closes its open server rows and says which of its cells have no row yet,
so a retry elsewhere measures exactly those and nothing twice.

After a cell's timed requests, the ones whose per-position counts are still pending (shorter
drafts, which ``/metrics`` cannot count) are handed back to the worker for a traced replay; a
replay an interrupted run left pending is done when the sweep runs again. The workers' stopwatch
readings add up here, with the time the store writes take (``clock``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import BASELINE, SweepConfig
from ..overhead import Stopwatch
from ..plan import PlannedRequest, ServerGroup
from ..prompts import Prompt
from ..request_rows import empty_record
from ..store import RunRow, Store
from .events import (CountsReplayed, Drained, GaveUp, Overhead, RequestDone, RowBehind, ServerStarted, ServerStopped,
                     Settled, Unconfirmed)
from .worker import GroupTask


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

    def __init__(self, store: Store, run: RunRow, config: SweepConfig, logs_dir: Path, progress, result: SweepResult,
                 prompts: list[Prompt] = (), on_gpu: bool = False):
        self.store = store
        self.run = run
        self.config = config
        self.logs_dir = logs_dir
        self.progress = progress
        self.result = result
        self.prompts = {p.id: p for p in prompts}  # what a replay sends again
        self.on_gpu = on_gpu  # an engine that may use a GPU: servers' memory from nvidia-smi
        self.clock = Stopwatch()  # the tool's own time per phase, the workers' included (specsweep.overhead)

    def needs_replay(self, group: ServerGroup) -> bool:
        """Requests of the group's cell still wait for a traced replay (an earlier run was cut short)."""
        return (group.depth > 0 and self.config.parallel == 1
                and bool(self.store.pending_counts(self.run.id, group.model_label, group.drafting, group.depth)))

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
            self.store.add_request(empty_record(self.run.id, 0, request, 1, time.time(), error))
            self.result.failed += 1
            self.progress.advance()


class GroupRun:
    """One group on one worker: the calls to make, and the events they returned, applied in order."""

    def __init__(self, recorder: Recorder, group: ServerGroup, pending: list[PlannedRequest], where: str):
        self.recorder = recorder
        self.group = group
        self.pending = list(pending)
        self.where = where  # the node's host, shown in the progress line
        self.next_index = 0  # pending[next_index:] have no row from this run yet (one request at a time)
        self.behind: set[tuple] = set()  # cells measured whose row the worker is still finishing
        self.settled: set[tuple] = set()  # cells side by side that have their final row
        self.drained = False  # the worker has nothing of a side-by-side cell left
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
                         {str(p): Path(p).stat().st_size for p in files}, parallel=rec.config.parallel,
                         side_by_side=rec.config.side_by_side,
                         on_gpu=rec.on_gpu)

    @property
    def side_by_side(self) -> bool:
        return self.recorder.config.parallel > 1

    def calls(self):
        """begin, the pending requests (one measure each, or side by side), end, then the traced
        replays the cell's requests need (on a server of their own), end; stops early when the model
        is given up on."""
        yield Call("begin", (self.task(),))
        at = f" @ {self.where}" if self.where else ""
        describe = self.recorder.progress.describe
        if self.side_by_side:
            if self.pending:
                config = self.recorder.config
                describe(f"{self.name} · {config.parallel} {config.side_by_side} side by side{at}")
                yield Call("start_parallel", ([(r, self._attempts.get(r.cell, 0)) for r in self.pending],))
            while self.missing() and not self.drained and not self.gave_up:
                yield Call("collect")
        reps = self.recorder.config.sampling.reps
        while not self.side_by_side and self.next_index < len(self.pending) and not self.gave_up:
            request = self.pending[self.next_index]
            describe(f"{self.group.model_label} · {self.group.drafting} · depth {self.group.depth} · "
                     f"rep {request.rep + 1}/{reps}{at}")
            yield Call("measure", (request, self._attempts.get(request.cell, 0)))
        if self.gave_up:
            return
        yield Call("end", ("done",))
        if not self.recorder.needs_replay(self.group):
            return
        rec = self.recorder
        pending = rec.store.pending_counts(rec.run.id, self.group.model_label, self.group.drafting, self.group.depth)
        describe(f"{self.name} · per-step counts of {len(pending)} requests (traced replay){at}")
        for row_id, record in pending:
            prompt = rec.prompts.get(record.prompt_id)
            if prompt is not None:  # a prompt no longer in the suite: nothing to replay
                yield Call("replay", (row_id, record, prompt.messages))
        yield Call("end", ("done",))

    def apply(self, call: Call, events: list) -> None:
        """Write what ``call`` returned; a measure call settles its request (a row or more), a
        collect call the side-by-side requests it names (``Settled``)."""
        rec = self.recorder
        cause = None
        for event in events:
            if isinstance(event, ServerStarted):
                with rec.clock.phase("server_rows"):
                    self._server_ids[event.key] = rec.store.add_server(event.record)
            elif isinstance(event, ServerStopped):
                if event.key in self._server_ids:
                    with rec.clock.phase("server_rows"):
                        rec.store.server_stopped(self._server_ids.pop(event.key), event.reason, event.peak_memory)
            elif isinstance(event, RowBehind):
                self.behind.add(event.cell)
            elif isinstance(event, RequestDone):
                record = replace(event.record, server_id=self._server_ids.get(event.record.server_id, 0))
                self.behind.discard(record.cell)
                with rec.clock.phase("store"):
                    rec.store.add_request(record)
                if record.status == "ok":
                    rec.result.performed += 1
                else:
                    rec.result.failed += 1
            elif isinstance(event, Settled):
                self.settled.add(event.cell)
                rec.progress.advance()
            elif isinstance(event, CountsReplayed):
                with rec.clock.phase("store"):
                    rec.store.set_counts(event.row_id, event.record)
            elif isinstance(event, Overhead):
                rec.clock.merge(Stopwatch.from_json(event.phases))
            elif isinstance(event, Drained):
                self.drained = True
            elif isinstance(event, Unconfirmed):
                rec.result.unconfirmed_drafting.append(event.group)
            elif isinstance(event, GaveUp):
                cause = event.cause
        if call.method == "measure":
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
            self.settled = {r.cell for r in self.pending}

    def missing(self) -> list[PlannedRequest]:
        """The pending requests this run has not settled: what a retry elsewhere must measure."""
        if self.side_by_side:
            return [r for r in self.pending if r.cell not in self.settled]
        return [r for r in self.pending[:self.next_index] if r.cell in self.behind] + self.pending[self.next_index:]

    def close(self, reason: str) -> None:
        """Mark the servers still open in the store as stopped (the worker was stopped or lost)."""
        for server_id in self._server_ids.values():
            self.recorder.store.server_stopped(server_id, reason)
        self._server_ids.clear()
