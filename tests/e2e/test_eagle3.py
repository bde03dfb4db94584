"""draft-eagle3 on the real server: the default model drafted by the EAGLE-3 head trained here.

At depths 1–3 the head must draft and the target accept, and the three tallies (response
timings, /metrics deltas, and the server log of a traced replay where a draft was cut short) must
agree exactly, as for the MTP drafters.
"""

from __future__ import annotations

import sqlite3

import pytest

from specsweep.trained import trained_file
from tests.conftest import SHORT_PROMPTS, THREADS, run_cli

pytestmark = pytest.mark.e2e


def test_default_model_drafted_by_its_eagle3_head(tmp_path, model_path, no_orphans):
    db = tmp_path / "eagle3.db"
    done = run_cli("run", "--model", f"Q4_1={model_path}", "--draft-model", trained_file("eagle3-smollm2", "head"),
                   "--spec-type", "draft-eagle3", "--depths", "1-3", "--reps", "1", "--prompts", SHORT_PROMPTS,
                   "--prompt-limit", "2", "--max-tokens", "32", "--threads", THREADS, "--db", db)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT depth, spec_type, draft_n, m_draft_tokens, log_drafted, draft_n_accepted,"
                            " m_accepted, log_accepted, m_steps, log_steps, crosscheck, counts_from, max_draft_len"
                            " FROM requests WHERE status = 'ok'").fetchall()
        confirmed = conn.execute("SELECT drafting_confirmed FROM servers WHERE role = 'timed'").fetchall()
    assert sorted(r[0] for r in rows) == [1, 1, 2, 2, 3, 3]
    assert confirmed and all(flag == 1 for (flag,) in confirmed)
    for depth, spec, d_t, d_m, d_l, a_t, a_m, a_l, s_m, s_l, check, source, longest in rows:
        assert spec == "draft-eagle3" and d_t == d_m and a_t == a_m and check == "ok" and longest <= depth
        # timed untraced: /metrics is exact for full-length drafts, else a traced replay's log agrees
        assert source == "metrics" and d_t == s_m * longest or source == "replay" and (d_l, a_l, s_l) == (d_t, a_t, s_m)
    for depth in (1, 2, 3):
        assert sum(r[2] for r in rows if r[0] == depth) > 0, f"nothing drafted at depth {depth}"
        assert sum(r[5] for r in rows if r[0] == depth) > 0, f"nothing accepted at depth {depth}"
