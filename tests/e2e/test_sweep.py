"""The sweep on the real server: exact row counts, three tallies that agree, and a resume with nothing
left to do. Ctrl-C (SIGINT) in the middle of a sweep, then resuming it, is in test_faults.py."""

from __future__ import annotations

import json
import sqlite3

import pytest

from specsweep.records import decode_steps
from tests.conftest import SHORT_PROMPTS, run_cli

pytestmark = pytest.mark.e2e

DEPTHS = (0, 1, 2)
REPS = 2
PROMPTS = 2


def sweep_args(model_path, second_model, db):
    return ["run", "--model", f"Q4_1={model_path}", "--model", f"Q8_0={second_model}",
            "--draft-model", model_path, "--spec-type", "draft-simple", "--depths", ",".join(map(str, DEPTHS)),
            "--reps", str(REPS), "--prompts", SHORT_PROMPTS, "--prompt-limit", str(PROMPTS), "--max-tokens", "16",
            "--threads", "2", "--db", db]


def rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


EXPECTED = 2 * len(DEPTHS) * REPS * PROMPTS


def test_sweep_stores_every_request_and_resumes_with_zero_work(model_path, second_model, tmp_path, no_orphans):
    db = tmp_path / "sweep.db"
    first = run_cli(*sweep_args(model_path, second_model, db))
    assert first.returncode == 0, first.stderr
    stored = rows(db, "SELECT depth, draft_n, status, crosscheck FROM requests")
    assert len(stored) == EXPECTED
    assert all(status == "ok" for _, _, status, _ in stored)
    assert all(draft_n > 0 for depth, draft_n, _, _ in stored if depth >= 1)
    assert all(draft_n == 0 for depth, draft_n, _, _ in stored if depth == 0)
    assert all(check == "ok" for *_, check in stored)
    servers = rows(db, "SELECT model_label, depth, drafting_confirmed FROM servers")
    assert len(servers) == 2 * len(DEPTHS)
    assert all(confirmed == 1 for _, depth, confirmed in servers if depth > 0)
    assert "n=1" in first.stderr and "%" in first.stderr  # the acceptance table is printed at the end

    # Three independent tallies of every request agree exactly: timings, /metrics deltas, server log.
    tallies = rows(db, "SELECT draft_n, m_draft_tokens, log_drafted, log_summary_drafted, draft_n_accepted,"
                       " m_accepted, log_accepted, log_summary_accepted, m_steps, log_steps,"
                       " m_accepted_per_pos, log_accepted_per_pos FROM requests WHERE depth > 0")
    for (d_t, d_m, d_l, d_s, a_t, a_m, a_l, a_s, s_m, s_l, pos_m, pos_l) in tallies:
        assert d_t == d_m == d_l == d_s and a_t == a_m == a_l == a_s and s_m == s_l
        pos_m, pos_l = json.loads(pos_m), json.loads(pos_l)
        assert pos_l[:len(pos_m)] == pos_m and not any(pos_l[len(pos_m):])
    # The per-step pairs are stored compactly and agree with the per-position tallies.
    for steps, drafted, accepted in rows(db, "SELECT log_step_pairs, log_drafted_per_pos, log_accepted_per_pos"
                                             " FROM requests WHERE depth > 0"):
        pairs = decode_steps(steps)
        width = len(json.loads(drafted))
        assert [sum(1 for _, d in pairs if d > i) for i in range(width)] == json.loads(drafted)
        assert [sum(1 for a, _ in pairs if a > i) for i in range(width)] == json.loads(accepted)

    again = run_cli(*sweep_args(model_path, second_model, db))
    assert again.returncode == 0, again.stderr
    assert "0 requests measured" in again.stderr
    assert len(rows(db, "SELECT id FROM requests")) == EXPECTED
    assert len(rows(db, "SELECT id FROM servers")) == 2 * len(DEPTHS)  # no server was started
