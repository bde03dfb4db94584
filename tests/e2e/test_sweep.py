"""The sweep on the real server: exact row counts, three tallies that agree, and a resume with nothing
left to do. Ctrl-C (SIGINT) in the middle of a sweep, then resuming it, is in test_faults.py.

The models are the committed Gemma-4 miniature (F16, drafting for both) and its Q8_0: the subject is
the sweep's bookkeeping, not the model, and the miniature decodes about twice as fast as the default
model."""

from __future__ import annotations

import json
import sqlite3

import pytest

from specsweep.records import decode_steps
from specsweep.trained import trained_file
from tests.conftest import SHORT_PROMPTS, THREADS, run_cli

pytestmark = pytest.mark.e2e

DEPTHS = (0, 1, 2)
REPS = 2
PROMPTS = 2


@pytest.fixture(scope="module")
def model():
    return trained_file("gemma4-mini", "target")


@pytest.fixture(scope="module")
def second_model(gemma4_q8_0):
    """A second real model: the miniature quantized to Q8_0."""
    return gemma4_q8_0


def sweep_args(model, second_model, db):
    # --p-min 0.999: the drafter stops a draft where it is less sure than that, so some drafts are cut
    # short and need a traced replay. Drafting for itself, the v6 miniature is sure enough of every
    # token at the default p-min that every draft would be full length, leaving the replay path untested.
    return ["run", "--model", f"F16={model}", "--model", f"Q8_0={second_model}",
            "--draft-model", model, "--spec-type", "draft-simple", "--depths", ",".join(map(str, DEPTHS)),
            "--p-min", "0.999", "--reps", str(REPS), "--prompts", SHORT_PROMPTS, "--prompt-limit", str(PROMPTS),
            "--max-tokens", "16", "--threads", THREADS, "--db", db]


def rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


EXPECTED = 2 * len(DEPTHS) * REPS * PROMPTS


def test_sweep_stores_every_request_and_resumes_with_zero_work(model, second_model, tmp_path, no_orphans):
    db = tmp_path / "sweep.db"
    # A CUDA-only engine switch (the CPU engine ignores it): the servers inherit it and the run records it.
    first = run_cli(*sweep_args(model, second_model, db), env={"GGML_CUDA_DISABLE_GRAPHS": "1"})
    assert first.returncode == 0, first.stderr
    (provenance,) = rows(db, "SELECT provenance_json FROM runs")[0]
    assert json.loads(provenance)["engine"]["environment"].get("GGML_CUDA_DISABLE_GRAPHS") == "1"
    stored = rows(db, "SELECT depth, draft_n, status, crosscheck FROM requests")
    assert len(stored) == EXPECTED
    assert all(status == "ok" for _, _, status, _ in stored)
    assert all(draft_n > 0 for depth, draft_n, _, _ in stored if depth >= 1)
    assert all(draft_n == 0 for depth, draft_n, _, _ in stored if depth == 0)
    assert all(check == "ok" for *_, check in stored)
    timed = rows(db, "SELECT model_label, depth, drafting_confirmed FROM servers WHERE role = 'timed'")
    assert len(timed) == 2 * len(DEPTHS)
    assert all(confirmed == 1 for _, depth, confirmed in timed if depth > 0)
    assert "n=1" in first.stderr and "%" in first.stderr  # the acceptance table is printed at the end

    # Speed is measured without the trace log; timings and /metrics agree on every speculative request
    # (at depth 0 there is nothing for /metrics to count, so it is not read).
    tallies = rows(db, "SELECT depth, traced, slots, counts_from, draft_n, m_draft_tokens, draft_n_accepted, m_accepted,"
                       " m_steps, max_draft_len, log_drafted, log_accepted, log_steps, log_step_pairs,"
                       " log_drafted_per_pos, log_accepted_per_pos, m_accepted_per_pos FROM requests")
    for (depth, traced, slots, source, d_t, d_m, a_t, a_m, steps, longest, d_l, a_l, s_l, pairs, drafted, accepted,
         per_pos) in tallies:
        assert (traced, slots) == (0, 1)
        if depth == 0:
            assert source is None and d_m is None and d_t == 0
            continue
        assert d_t == d_m and a_t == a_m
        if source == "metrics":  # every draft full length: /metrics alone is exact
            assert d_t == steps * depth and longest == depth and pairs is None
        else:  # shorter drafts: the counts of a traced replay that generated the same tokens
            assert source == "replay", source
            assert (d_l, a_l, s_l) == (d_t, a_t, steps) and longest <= depth
            steps_list = decode_steps(pairs)
            width = len(json.loads(drafted))
            assert [sum(1 for _, d in steps_list if d > i) for i in range(width)] == json.loads(drafted)
            assert [sum(1 for a, _ in steps_list if a > i) for i in range(width)] == json.loads(accepted)
            assert json.loads(accepted)[:len(json.loads(per_pos))] == json.loads(per_pos)
    sources = [source for depth, _, _, source, *_ in tallies if depth > 0]
    assert "metrics" in sources and "replay" in sources  # full-length drafts and drafts cut short by p-min
    # The CPU engine replays exactly: every replay found the same text and counts, and says so.
    assert rows(db, "SELECT DISTINCT replay FROM requests WHERE counts_from = 'replay'") == [("same",)]
    assert rows(db, "SELECT COUNT(*) FROM requests WHERE replay IS NOT NULL AND counts_from != 'replay'") == [(0,)]
    servers = rows(db, "SELECT depth, role, traced, slots, memory, peak_memory_bytes, peak_memory_source FROM servers")
    assert {(role, traced) for _, role, traced, *_ in servers} == {("timed", 0), ("replay", 1)}
    for depth, role, traced, slots, memory, peak, source in servers:
        memory = json.loads(memory)
        assert slots == 1 and source == "rss" and peak > memory["host_bytes"] > 0  # the process holds its buffers
        assert memory["kinds"]["model"] > 0 and memory["kinds"]["kv"] > 0 and memory["kinds"]["compute"] > 0
        assert (memory["draft"] is not None) == (depth > 0)
    report = run_cli("report", "--db", db, "--budget", "1GiB")
    assert report.returncode == 0, report.stderr
    assert "## Measurement" in report.stdout and "without the per-step trace log" in report.stdout
    assert "`GGML_CUDA_DISABLE_GRAPHS=1`" in report.stdout  # the Provenance section names it
    assert "## Memory" in report.stdout and "**Memory budget 1.00 GiB:** fastest that fits is" in report.stdout
    bad = run_cli("report", "--db", db, "--budget", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: --budget:") and "Traceback" not in bad.stderr

    # The engine switch is part of the run's identity: without it (or with another value) the same
    # sweep is another run with everything to do; with it, this run with nothing left.
    for other in ({}, {"GGML_CUDA_DISABLE_GRAPHS": "0"}):
        dry = run_cli(*sweep_args(model, second_model, db), "--dry-run", env=other)
        assert dry.returncode == 0 and f"({EXPECTED} to do)" in dry.stdout, dry.stdout + dry.stderr
    again = run_cli(*sweep_args(model, second_model, db), env={"GGML_CUDA_DISABLE_GRAPHS": "1"})
    assert again.returncode == 0, again.stderr
    assert "0 requests measured" in again.stderr
    assert len(rows(db, "SELECT id FROM requests")) == EXPECTED
    assert len(rows(db, "SELECT id FROM servers")) == len(servers)  # no server was started

    # A replay that an interrupted sweep left pending is done by the next run of the same sweep.
    with sqlite3.connect(db) as conn:
        (row_id, pairs), = conn.execute("SELECT id, log_step_pairs FROM requests WHERE counts_from = 'replay'"
                                        " ORDER BY id LIMIT 1").fetchall()
        conn.execute("UPDATE requests SET counts_from = 'pending', log_step_pairs = NULL, log_steps = NULL"
                     " WHERE id = ?", (row_id,))
    resumed = run_cli(*sweep_args(model, second_model, db), env={"GGML_CUDA_DISABLE_GRAPHS": "1"})
    assert resumed.returncode == 0 and "0 requests measured" in resumed.stderr, resumed.stderr
    assert rows(db, f"SELECT counts_from, log_step_pairs FROM requests WHERE id = {row_id}") == [("replay", pairs)]
    assert rows(db, "SELECT role FROM servers ORDER BY id DESC LIMIT 1") == [("replay",)]

