"""--side-by-side cells: the lanes executor against scripted workers (real SQLite, real threads), and
its private MPS daemon against a stand-in control program. The real servers side by side are
exercised by tests/e2e/test_parallel.py; a real MPS daemon needs an NVIDIA GPU
(benchmarks/gpu-speed-h200-cells.md)."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from specsweep.config import Drafting, Sampling, SweepConfig
from specsweep.engine import mps as mps_module
from specsweep.engine.mps import PrivateMps
from specsweep.executors import lanes as lanes_module
from specsweep.executors.events import Drained, RequestDone, ServerStarted, ServerStopped, Settled
from specsweep.executors.lanes import LanesExecutor
from specsweep.executors.recorder import Recorder, SweepResult
from specsweep.modelspec import ModelSpec
from specsweep.plan import make_plan
from specsweep.prompts import load_prompts
from specsweep.records import ServerRecord
from specsweep.request_rows import empty_record
from specsweep.store import Store
from specsweep.sweep import stop_signals_as_interrupt


class Progress:
    def start(self, total, completed): ...
    def describe(self, text): ...
    def advance(self): ...
    def stop(self): ...


class ScriptedWorker:
    """A worker that runs a side-by-side cell one request per ``collect``; counts the lanes busy at once."""

    busy = 0
    most_busy = 0
    lock = threading.Lock()
    fail_on: str | None = None  # the depth ("d2") whose cell's first collect raises
    slow_on: str | None = None  # the depth whose collects take 2 s
    ended: list = []

    def __init__(self, server_binary):
        self.todo = []
        self.task = None

    def begin(self, task):
        self.task = task
        return []

    def start_parallel(self, requests):
        self.todo = [r for r, _ in requests]
        group = self.task.group
        record = ServerRecord(run_id=self.task.run_id, model_label=group.model_label, spec_type=group.spec_type,
                              depth=group.depth, argv=[], build_info=None, props={}, log_path="x.log",
                              started_at=time.time(), start_seconds=0.0, drafting_confirmed=1,
                              drafting=group.drafting, role="parallel", slots=1)
        return [ServerStarted(1, record)]

    def collect(self):
        cls = type(self)
        with cls.lock:
            cls.busy += 1
            cls.most_busy = max(cls.most_busy, cls.busy)
        try:
            time.sleep(2.0 if cls.slow_on == f"d{self.task.group.depth}" else 0.03)
            if cls.fail_on == f"d{self.task.group.depth}":
                raise RuntimeError("a lane broke")
            if not self.todo:
                return [Drained()]
            request = self.todo.pop(0)
            row = replace(empty_record(self.task.run_id, 1, request, 1, time.time(), None), status="ok",
                          draft_n=4, draft_n_accepted=3, predicted_n=8, slots=self.task.parallel)
            return [RequestDone(row), Settled(request.cell)]
        finally:
            with cls.lock:
                cls.busy -= 1

    def end(self, reason="done"):
        type(self).ended.append((self.task.group.depth, reason))
        return [ServerStopped(1, reason)]


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(lanes_module, "ServerWorker", ScriptedWorker)
    ScriptedWorker.busy = ScriptedWorker.most_busy = 0
    ScriptedWorker.fail_on = ScriptedWorker.slow_on = None
    ScriptedWorker.ended = []
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    config = SweepConfig(models=(ModelSpec("Q8", model, draft_model=model),),
                         drafting=Drafting(spec_type="draft-simple", depths=(1, 2, 3, 4, 5)),
                         sampling=Sampling(max_tokens=8, reps=1), db=tmp_path / "r.db", parallel=2,
                         side_by_side="cells")
    prompts = load_prompts("mixed-5", limit=3)
    plan = make_plan(config, prompts)
    store = Store(tmp_path / "r.db")
    run = store.create_run("key", None, {}, {}, "test")
    recorder = Recorder(store, run, config, tmp_path / "logs", Progress(), SweepResult(run), prompts=prompts)
    engine = type("Engine", (), {"server": tmp_path / "llama-server", "backend": "cpu"})()
    return LanesExecutor(engine, 2), [(g, list(g.requests)) for g in plan.groups], recorder


def test_cells_run_k_at_a_time_and_every_cell_gets_its_row(sweep):
    executor, work, recorder = sweep
    executor.run(work, recorder)
    rows = recorder.store.requests(recorder.run.id)
    assert len(rows) == 15 and {r.status for r in rows} == {"ok"}  # 5 cells × 3 prompts
    assert ScriptedWorker.most_busy == 2  # two lanes at once, never a third
    servers = recorder.store.servers(recorder.run.id)
    assert len(servers) == 5 and {s.stop_reason for s in servers} == {"done"}
    assert executor.run_notes == {"lanes": 2, "mps": "off"}  # a CPU engine: no daemon


def test_a_lane_that_breaks_stops_the_others_after_their_call_and_keeps_their_rows(sweep):
    executor, work, recorder = sweep
    ScriptedWorker.fail_on = "d2"
    with pytest.raises(RuntimeError, match="a lane broke"):
        executor.run(work, recorder)
    rows = recorder.store.requests(recorder.run.id)
    assert rows and all(r.depth != 2 for r in rows)  # what the other lane measured is stored
    assert (1, "interrupted") in ScriptedWorker.ended  # depth 1 was mid-cell beside it
    servers = recorder.store.servers(recorder.run.id)
    assert all(s.stop_reason is not None for s in servers)  # no server row left open
    assert any(s.depth == 2 and s.stop_reason == "interrupted" for s in servers)


def test_a_second_stop_signal_ends_the_wait_and_leaves_no_server_row_open(sweep):
    """SIGTERM while the lanes finish their calls after a first stop raises ``Interrupted``, as a
    second Ctrl-C raises KeyboardInterrupt: the wait ends, the first error is the one raised, and
    every server still open is written as interrupted."""
    executor, work, recorder = sweep
    ScriptedWorker.fail_on, ScriptedWorker.slow_on = "d2", "d1"  # d1's call in flight outlasts the signal
    with stop_signals_as_interrupt():
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(RuntimeError, match="a lane broke"):
            executor.run(work, recorder)
    servers = recorder.store.servers(recorder.run.id)
    assert {s.depth for s in servers} == {1, 2}
    assert {s.stop_reason for s in servers} == {"interrupted"}


# --- the private MPS daemon --------------------------------------------------------------------

def test_a_control_daemon_is_told_by_its_process_name(tmp_path):
    for pid, name in ((1, "bash"), (7, "nvidia-cuda-mps"), (9, "llama-server")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(name + "\n")
    assert mps_module.control_daemon_running(tmp_path)
    (tmp_path / "7" / "comm").write_text("nvidia-smi\n")
    assert not mps_module.control_daemon_running(tmp_path)


def _control(tmp_path: Path, body: str) -> str:
    """A stand-in for nvidia-cuda-mps-control: ``-d`` makes its control pipe, stdin ``quit`` is logged."""
    path = tmp_path / "control"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_private_daemon_is_started_for_the_servers_and_told_to_quit(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.delenv("CUDA_MPS_LOG_DIRECTORY", raising=False)
    monkeypatch.setattr(mps_module, "DEFAULT_PIPE", tmp_path / "none")
    log = tmp_path / "quit.log"
    control = _control(tmp_path, f'if [ "$1" = -d ]; then touch "$CUDA_MPS_PIPE_DIRECTORY/control"; exit 0; fi\n'
                                 f'cat > "{log}"; echo "$CUDA_MPS_PIPE_DIRECTORY" >> "{log}"\n')
    daemon = PrivateMps(control)
    assert daemon.start() == "private daemon"
    pipe = os.environ["CUDA_MPS_PIPE_DIRECTORY"]  # what the servers inherit
    assert Path(pipe, "control").exists() and pipe.startswith(str(daemon.folder))
    daemon.stop()
    assert log.read_text().split() == ["quit", pipe]  # told to quit, through its own pipe
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and not Path(pipe).exists()


def test_a_daemon_that_forks_but_never_answers_or_is_interrupted_is_told_to_quit(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(mps_module, "DEFAULT_PIPE", tmp_path / "none")
    monkeypatch.setattr(mps_module, "START_WAIT", 0.2)
    log = tmp_path / "quit.log"
    # "-d" succeeds but no control pipe appears: the daemon may still be running, so it gets "quit"
    control = _control(tmp_path, f'[ "$1" = -d ] && exit 0\n'
                                 f'cat >> "{log}"; echo "$CUDA_MPS_PIPE_DIRECTORY" >> "{log}"\n')
    silent = PrivateMps(control)
    assert silent.start() == "unavailable: its control pipe did not appear"
    quit_word, pipe = log.read_text().split()
    assert quit_word == "quit" and "specsweep-mps-" in pipe and not Path(pipe).exists()  # its own pipe, removed
    assert silent.folder is None and "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    # Ctrl-C while it waits for the pipe: told to quit as well, and the interrupt goes on
    log.unlink()

    def interrupted(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(mps_module.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        PrivateMps(control).start()
    assert log.read_text().split()[0] == "quit" and "CUDA_MPS_PIPE_DIRECTORY" not in os.environ


def test_a_running_daemon_is_used_and_a_missing_or_failing_one_is_said(tmp_path, monkeypatch):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "control").touch()
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "pipe"))
    monkeypatch.setattr(mps_module, "control_daemon_running", lambda: True)
    assert PrivateMps(_control(tmp_path, "exit 1\n")).start() == "already running"
    # the same pipe left behind by a daemon that died: no daemon, so the sweep tries its own
    monkeypatch.setattr(mps_module, "control_daemon_running", lambda: False)
    assert PrivateMps(_control(tmp_path, "exit 1\n")).start() == "unavailable: exit status 1"
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY")
    monkeypatch.setattr(mps_module, "DEFAULT_PIPE", tmp_path / "none")
    monkeypatch.setattr(mps_module.shutil, "which", lambda name: None)
    assert PrivateMps().start() == "unavailable: nvidia-cuda-mps-control not found"
    failing = PrivateMps(_control(tmp_path, "echo 'cannot start: permission denied' >&2; exit 1\n"))
    assert failing.start() == "unavailable: cannot start: permission denied"
    assert failing.folder is None and "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    failing.stop()  # nothing to stop: no error
