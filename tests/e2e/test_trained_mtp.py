"""draft-mtp on the committed miniatures (trained here, not the real models), on the real server.

Both MTP flavours llama.cpp has: a Gemma-4 target drafted by its separate MTP assistant
(``-md``), and a Qwen3.5 model drafting with the MTP head inside its own GGUF. At depths 1–3
the server must draft and accept, and the three tallies (response timings, /metrics deltas,
trace log of the request or of its replay) must agree exactly.
"""

from __future__ import annotations

import sqlite3

import pytest

from specsweep.trained import trained_file
from tests.conftest import SHORT_PROMPTS, THREADS, run_cli

pytestmark = pytest.mark.e2e

TALLIES = ("SELECT depth, draft_n, m_draft_tokens, log_drafted, draft_n_accepted, m_accepted, log_accepted,"
           " m_steps, log_steps, crosscheck, counts_from, max_draft_len FROM requests WHERE status = 'ok'")


def sweep(tmp_path, *model_args):
    db = tmp_path / "mtp.db"
    done = run_cli("run", *model_args, "--spec-type", "draft-mtp", "--depths", "1-3", "--reps", "1",
                   "--prompts", SHORT_PROMPTS, "--prompt-limit", "2", "--max-tokens", "32", "--threads", THREADS,
                   "--db", db)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute(TALLIES).fetchall()
        confirmed = conn.execute("SELECT depth, drafting_confirmed FROM servers WHERE role = 'timed'").fetchall()
    assert sorted(d for d, *_ in rows) == [1, 1, 2, 2, 3, 3]
    assert all(flag == 1 for _, flag in confirmed)
    for depth, d_t, d_m, d_l, a_t, a_m, a_l, s_m, s_l, check, source, longest in rows:
        assert d_t == d_m and a_t == a_m and check == "ok"
        # Timed without the trace: /metrics is exact when every draft was full length; otherwise a traced
        # replay of the same request gave the per-step counts, and all three tallies agree.
        assert longest <= depth
        assert source == "metrics" and d_t == s_m * longest or source == "replay" and (d_l, a_l, s_l) == (d_t, a_t, s_m)
    for depth in (1, 2, 3):
        assert sum(r[1] for r in rows if r[0] == depth) > 0, f"nothing drafted at depth {depth}"
        assert sum(r[4] for r in rows if r[0] == depth) > 0, f"nothing accepted at depth {depth}"
    return rows


def test_gemma4_target_drafted_by_its_mtp_assistant(tmp_path, no_orphans):
    sweep(tmp_path, "--model", f"F16={trained_file('gemma4-mini', 'target')}",
          "--draft-model", trained_file("gemma4-mini", "assistant"))


def test_qwen35_model_drafts_with_its_own_mtp_head(tmp_path, no_orphans):
    sweep(tmp_path, "--model", f"F16={trained_file('qwen35-mini', 'target')}")
