"""The driver's side of a group (executors.recorder) against a scripted worker: which calls it makes
and what it writes, for the traced replays and the side-by-side (--parallel) cells. Real SQLite;
the worker's events are written by hand (the real worker is exercised by the e2e tests)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from specsweep.config import Drafting, Sampling, SweepConfig
from specsweep.executors.events import (CountsReplayed, Drained, GaveUp, Overhead, RequestDone, RowBehind,
                                        ServerStarted, ServerStopped, Settled)
from specsweep.executors.recorder import Recorder, SweepResult
from specsweep.modelspec import ModelSpec
from specsweep.plan import make_plan
from specsweep.prompts import load_prompts
from specsweep.records import ServerRecord
from specsweep.request_rows import empty_record
from specsweep.store import Store


class Progress:
    def __init__(self):
        self.advanced = 0

    def start(self, total, completed): ...
    def describe(self, text): ...
    def stop(self): ...

    def advance(self):
        self.advanced += 1


@pytest.fixture
def setup(tmp_path):
    def make(parallel=1):
        model = tmp_path / "m.gguf"
        model.write_bytes(b"GGUF")
        config = SweepConfig(models=(ModelSpec("Q8", model, draft_model=model),),
                             drafting=Drafting(spec_type="draft-simple", depths=(2,)),
                             sampling=Sampling(max_tokens=8, reps=1), db=tmp_path / "r.db", parallel=parallel)
        prompts = load_prompts("mixed-5", limit=3)
        group = make_plan(config, prompts).groups[0]
        store = Store(tmp_path / "r.db")
        run = store.create_run(f"key{parallel}", None, {}, {}, "test")
        recorder = Recorder(store, run, config, tmp_path / "logs", Progress(), SweepResult(run), prompts=prompts)
        return recorder, group
    return make


def _server(recorder, group, role="timed"):
    return ServerRecord(run_id=recorder.run.id, model_label=group.model_label, spec_type=group.spec_type,
                        depth=group.depth, argv=[], build_info=None, props={}, log_path="x.log", started_at=0.0,
                        start_seconds=0.1, drafting_confirmed=1, drafting=group.drafting, role=role)


def _ok(recorder, request, server_key, counts_from):
    return replace(empty_record(recorder.run.id, server_key, request, 1, 1.0, None), status="ok", draft_n=4,
                   draft_n_accepted=2, predicted_n=8, counts_from=counts_from, content="text")


def test_rows_with_pending_counts_are_replayed_on_a_server_of_their_own_after_the_timed_ones(setup):
    recorder, group = setup()
    run = recorder.open(group, list(group.requests))
    full = group.requests[1].prompt.id  # every draft full length: /metrics counted it exactly
    calls, replayed = [], []
    for call in run.calls():
        calls.append(call.method)
        if call.method == "measure":
            request = call.args[0]
            first = request is group.requests[0]
            events = ([ServerStarted(1, _server(recorder, group))] if first else []) + [
                RequestDone(_ok(recorder, request, 1, "metrics" if request.prompt.id == full else "pending")),
                Overhead({"request": {"seconds": 0.5, "count": 1}})]
        elif call.method == "replay":
            row_id, record, messages = call.args
            assert messages == next(r.prompt.messages for r in group.requests if r.prompt.id == record.prompt_id)
            replayed.append(record.prompt_id)
            events = ([ServerStarted(2, _server(recorder, group, "replay"))] if len(replayed) == 1 else []) + [
                CountsReplayed(row_id, replace(record, counts_from="replay", log_steps=3))]
        elif call.method == "end" and calls.count("end") == 1:
            events = [ServerStopped(1, "done", (1234, "rss"))]
        elif call.method == "end":
            events = [ServerStopped(2, "done")]
        else:
            events = []
        run.apply(call, events)
    # The cell's timed requests, the timed server's stop, the replays of the pending rows, the replay server's stop.
    assert calls == ["begin", "measure", "measure", "measure", "end", "replay", "replay", "end"]
    ids = {r.prompt_id: r for r in recorder.store.requests(recorder.run.id)}
    assert sorted(replayed) == sorted(p for p in ids if p != full)
    assert {p: (r.counts_from, r.log_steps) for p, r in ids.items()} == {
        p: ("metrics", None) if p == full else ("replay", 3) for p in ids}
    servers = recorder.store.servers(recorder.run.id)
    assert [(s.role, s.stop_reason, s.peak_memory_bytes) for s in servers] == [("timed", "done", 1234),
                                                                              ("replay", "done", None)]
    assert recorder.clock.seconds["request"] == pytest.approx(1.5) and recorder.clock.counts["store"] == 5
    assert recorder.clock.counts["server_rows"] == 4  # per server, not per request: apart from "store"
    assert not recorder.needs_replay(group)  # nothing left for the next run of the sweep


def test_side_by_side_cell_collects_until_the_worker_is_drained(setup):
    recorder, group = setup(parallel=2)
    run = recorder.open(group, list(group.requests))
    waiting = list(group.requests)
    calls = []
    for call in run.calls():
        calls.append(call.method)
        if call.method == "start_parallel":
            assert [r for r, _ in call.args[0]] == waiting and all(before == 0 for _, before in call.args[0])
            events = [ServerStarted(1, _server(recorder, group, "parallel"))]
        elif call.method == "collect":
            request = waiting.pop(0)  # one failed try, then its row: settled once
            failed = replace(empty_record(recorder.run.id, 1, request, 1, 1.0, "boom"))
            events = [RequestDone(failed), RequestDone(_ok(recorder, request, 1, "trace")), Settled(request.cell)]
            if not waiting:
                events.append(Drained())
        else:
            events = [ServerStopped(1, "done")] if call.method == "end" else []
        run.apply(call, events)
    assert calls == ["begin", "start_parallel", "collect", "collect", "collect", "end"]
    assert run.missing() == [] and recorder.progress.advanced == 3
    assert (recorder.result.performed, recorder.result.failed) == (3, 3)


def test_side_by_side_cell_given_up_marks_the_unsettled_requests_failed(setup):
    recorder, group = setup(parallel=2)
    run = recorder.open(group, list(group.requests))
    first = group.requests[0]
    calls = []
    for call in run.calls():
        calls.append(call.method)
        events = []
        if call.method == "collect":
            events = [RequestDone(empty_record(recorder.run.id, 0, first, 1, 1.0, "server start failed: x")),
                      Settled(first.cell), GaveUp(" (x)")]
        run.apply(call, events)
    assert calls == ["begin", "start_parallel", "collect"]  # no end: the worker has no server left
    rows = recorder.store.requests(recorder.run.id)
    given_up = "Q8 · draft-simple"  # a drafter's server: only the model with that drafting entry is given up
    assert [r.error for r in rows] == (["server start failed: x"]
                                       + [f"skipped: llama-server for {given_up} kept failing (x)"] * 2)
    assert recorder.result.skipped_drafting == [given_up] and run.missing() == []


def test_a_row_finished_behind_counts_as_missing_until_it_arrives(setup):
    """The worker returns each successful request's row with the next call (it is finished while the
    next request runs): a worker lost in between must not take that cell out of what is retried."""
    recorder, group = setup()
    first, second = group.requests[0], group.requests[1]
    run = recorder.open(group, list(group.requests))
    calls = run.calls()
    assert next(calls).method == "begin"
    run.apply(next(calls), [ServerStarted(1, _server(recorder, group)), RowBehind(first.cell)])
    assert run.missing()[0] is first  # measured, but its row has not come back
    run.apply(next(calls), [RequestDone(_ok(recorder, first, 1, "metrics")), RowBehind(second.cell)])
    assert first not in run.missing() and second in run.missing()
    run.apply(next(calls), [RequestDone(_ok(recorder, second, 1, "metrics"))])  # the third one failed outright
    assert first not in run.missing() and second not in run.missing()
    assert recorder.store.completed_cells(recorder.run.id) >= {first.cell, second.cell}
