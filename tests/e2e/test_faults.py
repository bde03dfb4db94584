"""Fault injection against the real server: every completed request survives, the final cell set
equals the planned one, and no llama-server is left running.

Faults: SIGSTOP of the server (a hang) and then kill -9 of the next server in one sweep, SIGINT
(Ctrl-C) and then SIGTERM to the tool (each stop resumed), a model whose server dies at every
start (skipped, the sweep goes on) and a draft file that cannot load (only its entry is skipped).
Faults that need a sweep each share one where they assert different things: a sweep with its
servers costs seconds on 2 cores. Every test runs the committed Gemma-4 miniature (drafting for
itself in the two sweeps; the broken drafter is a copy of its bytes): the faults are the subject,
not the model, and a server of the miniature starts and answers in about a third of the time of one
of the default model.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from specsweep.trained import trained_file
from tests.conftest import SHORT_PROMPTS, THREADS, finish, llama_server_pids, run_cli, start_cli

pytestmark = pytest.mark.e2e

REPS, PROMPTS, DEPTHS = 2, 3, (0, 1)
PLANNED = REPS * PROMPTS * len(DEPTHS)


@pytest.fixture(scope="module")
def model():
    return trained_file("gemma4-mini", "target")


def args(model, db, *extra):
    return ["run", "--model", f"m={model}", "--draft-model", model, "--spec-type", "draft-simple",
            "--depths", ",".join(map(str, DEPTHS)), "--reps", str(REPS), "--prompts", SHORT_PROMPTS,
            "--prompt-limit", str(PROMPTS), "--max-tokens", "24", "--threads", THREADS, "--db", db, *extra]


def query(db: Path, sql: str):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def ok_rows(db: Path) -> int:
    try:
        return query(db, "SELECT COUNT(*) FROM requests WHERE status = 'ok'")[0][0]
    except sqlite3.OperationalError:  # not created yet, or its schema not yet written
        return 0


def children_servers(pid: int) -> list[int]:
    return [p for p in llama_server_pids() if _ppid(p) == pid]


def _ppid(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1
    return int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])


def start_sweep(model, db, *extra) -> tuple[subprocess.Popen, Path]:
    return start_cli(db.parent / "cli", *args(model, db, *extra))


def wait_for(predicate, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def assert_complete_and_unique(db: Path):
    cells = query(db, "SELECT depth, rep, prompt_id, COUNT(*) FROM requests WHERE status = 'ok'"
                      " GROUP BY depth, rep, prompt_id")
    assert len(cells) == PLANNED
    assert all(count == 1 for *_, count in cells)


def test_hung_then_killed_server_is_replaced_and_the_request_retried(model, tmp_path, no_orphans):
    """Two server faults in one sweep, each met by a fresh server and a retry: the depth-0 server
    hangs (SIGSTOP: alive, answering nothing) and its request times out; later the depth-1 server
    is killed (-9) in the middle of the sweep."""
    db = tmp_path / "f.db"
    proc, stderr_path = start_sweep(model, db, "--request-timeout", "8")
    wait_for(lambda: ok_rows(db) >= 2)
    hung = wait_for(lambda: children_servers(proc.pid))[0]
    os.kill(hung, signal.SIGSTOP)  # alive but answering nothing: a hang
    try:
        wait_for(lambda: ok_rows(db) >= PLANNED // 2 + 1)  # past the hang, inside the depth-1 server
        before = ok_rows(db)
        killed = wait_for(lambda: children_servers(proc.pid))[0]
        os.kill(killed, signal.SIGKILL)
        stderr = finish(proc, stderr_path, timeout=300)
    finally:
        if Path(f"/proc/{hung}").exists():
            os.kill(hung, signal.SIGCONT)
    assert proc.returncode == 0, stderr
    assert ok_rows(db) == PLANNED >= before
    assert_complete_and_unique(db)
    # The hang: its request timed out, and the server was replaced.
    errors = [e for (e,) in query(db, "SELECT error FROM requests WHERE status = 'failed' AND depth = 0")]
    assert any("timed out" in e or "metrics" in e for e in errors), errors
    assert hung not in llama_server_pids()
    assert len(query(db, "SELECT id FROM servers WHERE depth = 0 AND role = 'timed'")) == 2  # replaced once
    # The kill: the request in flight is recorded as failed, with the server's log tail.
    failed = query(db, "SELECT error, attempt FROM requests WHERE status = 'failed' AND depth = 1")
    assert failed, "the request in flight must be recorded as failed"
    assert any("exited with code" in error or "died" in error or "failed" in error for error, _ in failed)
    assert "--- server log tail ---" in failed[0][0]
    assert len(query(db, "SELECT id FROM servers WHERE depth = 1 AND role = 'timed'")) == 2  # restarted once
    retried = query(db, "SELECT COUNT(*) FROM requests WHERE status = 'ok' AND attempt > 1")[0][0]
    assert retried >= 2  # one retry after each fault


def test_signals_to_the_tool_stop_it_cleanly_and_each_resume_goes_on(model, tmp_path, no_orphans):
    """SIGINT (what Ctrl-C sends) stops the sweep; the resumed sweep is stopped by SIGTERM; the
    next resume completes it. One sweep for both signals: each stop is checked the same way."""
    db = tmp_path / "f.db"
    done = 0
    for n, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        proc, stderr_path = start_cli(tmp_path / f"cli-{n}", *args(model, db))
        wait_for(lambda: ok_rows(db) >= done + 3)
        servers = wait_for(lambda: children_servers(proc.pid))
        done_before = ok_rows(db)
        proc.send_signal(sig)
        stderr = finish(proc, stderr_path, timeout=120)
        assert proc.returncode == 130, (sig, stderr)
        assert "Traceback" not in stderr and "resume with: specsweep run" in stderr
        assert not set(servers) & llama_server_pids()
        partial = ok_rows(db)
        assert done_before <= partial < PLANNED  # nothing measured was lost, and the sweep was cut short
        assert query(db, "PRAGMA integrity_check")[0][0] == "ok"
        assert query(db, "SELECT state FROM runs")[0][0] == "interrupted"
        done = partial
    resumed = run_cli(*args(model, db))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed: {done} requests were already done" in resumed.stderr
    assert_complete_and_unique(db)
    assert query(db, "SELECT state FROM runs")[0][0] == "complete"


def test_ctrl_c_at_a_terminal_lets_every_cells_lane_finish_its_request(model, tmp_path, no_orphans):
    """A terminal's Ctrl-C signals its whole foreground process group: llama-servers too, unless they
    run in a session of their own. With ``--side-by-side cells`` each lane's request in flight must then
    end measured, not as a failed row for a server the signal killed; every server row is closed and
    the resume completes the sweep."""
    db = tmp_path / "t.db"
    cells = ("--parallel", "2", "--side-by-side", "cells")
    proc, stderr_path = start_cli(tmp_path / "cli", *args(model, db, *cells), new_session=True)
    wait_for(lambda: ok_rows(db) >= 3)
    os.killpg(proc.pid, signal.SIGINT)
    stderr = finish(proc, stderr_path, timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "resume with: specsweep run" in stderr
    assert query(db, "SELECT COUNT(*) FROM requests WHERE status != 'ok'")[0][0] == 0
    assert 3 <= ok_rows(db) < PLANNED
    assert query(db, "SELECT COUNT(*) FROM servers WHERE stopped_at IS NULL")[0][0] == 0
    assert query(db, "SELECT state FROM runs")[0][0] == "interrupted"
    resumed = run_cli(*args(model, db, *cells))
    assert resumed.returncode == 0, resumed.stderr
    assert_complete_and_unique(db)


def broken_model(path: Path) -> Path:
    """A well-formed GGUF that llama-server cannot load (unknown architecture): it dies at every start."""
    import gguf
    writer = gguf.GGUFWriter(str(path), "specsweep-broken")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_model_that_keeps_crashing_is_skipped_and_the_sweep_goes_on(model, tmp_path, no_orphans):
    db = tmp_path / "f.db"
    broken = broken_model(tmp_path / "broken.gguf")
    result = run_cli("run", "--model", f"broken={broken}", "--model", f"good={model}", "--spec-type",
                     "ngram-simple", "--depths", "0,1", "--reps", "1", "--prompts", SHORT_PROMPTS, "--prompt-limit",
                     "2", "--max-tokens", "8", "--threads", THREADS, "--db", db)
    assert result.returncode == 1, result.stderr  # the run is partial, and says so
    assert "Traceback" not in result.stderr
    good = query(db, "SELECT COUNT(*) FROM requests WHERE model_label = 'good' AND status = 'ok'")[0][0]
    assert good == 4
    broken_cells = query(db, "SELECT depth, rep, prompt_id FROM requests WHERE model_label = 'broken'"
                             " GROUP BY depth, rep, prompt_id")
    assert len(broken_cells) == 4  # every planned cell of the broken model is marked, none silently dropped
    assert query(db, "SELECT COUNT(*) FROM requests WHERE model_label = 'broken' AND status = 'ok'")[0][0] == 0
    assert query(db, "SELECT state FROM runs")[0][0] == "partial"


def unknown_architecture_copy(model: Path, path: Path) -> Path:
    """The model with its architecture renamed in place: complete, same vocabulary, so every check
    before a server passes, but llama-server cannot load it (as a pruned file with stale per-layer
    metadata fails)."""
    data = bytearray(model.read_bytes())
    key = b"general.architecture"
    at = data.index(key) + len(key) + 4  # then the value type (u32), the string's length (u64), the name
    length = int.from_bytes(data[at:at + 8], "little")
    name = bytes(data[at + 8:at + 8 + length])
    assert name.isalnum(), name
    data[at + 8 + length - 1:at + 8 + length] = b"x" if not name.endswith(b"x") else b"y"  # same length
    path.write_bytes(data)
    return path


def test_a_draft_file_that_cannot_load_skips_only_its_own_entry(model, tmp_path, no_orphans):
    """A broken drafter fails its servers; the model's baseline and its other drafting entry are
    still measured (before, the whole model was given up on)."""
    db = tmp_path / "f.db"
    broken = unknown_architecture_copy(model, tmp_path / "broken-draft.gguf")
    result = run_cli("run", "--model", f"m={model}", "--drafting", f"bad=draft-simple:{broken}",
                     "--drafting", "ngram=ngram-simple", "--depths", "0,1", "--reps", "1", "--prompts", SHORT_PROMPTS,
                     "--prompt-limit", "2", "--max-tokens", "8", "--threads", THREADS, "--db", db)
    assert result.returncode == 1, result.stderr  # partial: the bad entry's cells failed
    counts = dict(((d, s), n) for d, s, n in query(
        db, "SELECT drafting, status, COUNT(*) FROM requests GROUP BY drafting, status"))
    assert counts[("none", "ok")] == 2 and counts[("ngram", "ok")] == 2
    assert counts[("bad", "failed")] >= 2 and ("bad", "ok") not in counts
    notes = json.loads(query(db, "SELECT notes_json FROM runs")[0][0])
    assert notes["skipped_drafting"] == ["m · bad"] and notes["skipped_models"] == []
