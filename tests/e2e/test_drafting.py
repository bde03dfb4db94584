"""The drafting axis on the real server: the Qwen3.5 miniature's in-model MTP head against
ngram-simple in one sweep, one shared baseline, both stored, the section rendered; and a
layer-pruned copy of the default model drafting for it."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from specsweep.trained import trained_file
from tests.conftest import THREADS, run_cli

pytestmark = pytest.mark.e2e

QWEN = Path(__file__).resolve().parents[2] / "models" / "qwen35-mini" / "qwen35-mini-mtp-F16.gguf"


def rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_mtp_head_and_ngram_in_one_sweep(tmp_path, no_orphans):
    db = tmp_path / "axis.db"
    args = ["run", "--model", f"F16={QWEN}", "--drafting", "mtp=draft-mtp", "--drafting", "ngram=ngram-simple",
            "--depths", "0-2", "--reps", "1", "--prompt-limit", "2", "--max-tokens", "32", "--threads", THREADS,
            "--db", db]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    stored = rows(db, "SELECT drafting, spec_type, depth, status, draft_n, draft_n_accepted, m_draft_tokens,"
                      " log_drafted, m_accepted, log_accepted, max_draft_len, counts_from FROM requests")
    by_label = {label: [r for r in stored if r[0] == label] for label in ("none", "mtp", "ngram")}
    # one baseline, shared; the n-gram type ignores the depth: one server, keyed by its own cap
    assert [len(v) for v in by_label.values()] == [2, 4, 2] and len(stored) == 8
    assert all(r[3] == "ok" for r in stored)
    for _, spec, depth, _, drafted, accepted, m_drafted, l_drafted, m_acc, l_acc, longest, source in by_label["mtp"]:
        assert spec == "draft-mtp" and drafted > 0 and drafted == m_drafted and accepted == m_acc
        assert source in ("metrics", "replay") and longest <= depth
        if source == "replay":  # shorter drafts: the counts of a traced replay of the same request
            assert drafted == l_drafted and accepted == l_acc
    # n-gram drafts vary in length: their per-step counts come from the replay, with the effective length
    assert all(r[1] == "ngram-simple" and r[2] == 48 and r[10] is not None for r in by_label["ngram"])
    assert all(r[11] in ("replay", "metrics") for r in by_label["ngram"] if r[4])
    servers = rows(db, "SELECT drafting, depth, argv FROM servers WHERE role = 'timed' ORDER BY id")
    assert [s[:2] for s in servers] == [("none", 0), ("mtp", 1), ("mtp", 2), ("ngram", 48)]
    ngram_argv = json.loads(servers[-1][2])
    assert "--spec-draft-n-max" not in ngram_argv
    assert ngram_argv[ngram_argv.index("--spec-ngram-simple-size-m") + 1] == "48"

    again = run_cli(*args)  # the same command resumes with nothing to do
    assert again.returncode == 0 and "8 requests were already done" in again.stderr
    report = run_cli("report", "--db", db, "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Drafting methods" in md and "| F16 | mtp |" in md and "| F16 | ngram |" in md
    assert "| – (≤48) |" in md  # the n-gram entry has no depth, only its cap
    methods = list(csv.DictReader((tmp_path / "report" / "drafting.csv").open()))
    assert {(r["drafting"], r["spec_type"]) for r in methods} == {("mtp", "draft-mtp"), ("ngram", "ngram-simple")}
    assert all(float(r["draft_length_mean"]) <= float(r["depth"]) for r in methods if r["draft_length_mean"])


def test_a_pruned_copy_of_a_model_drafts_for_it(tmp_path, no_orphans):
    # The Gemma-4 miniature: its full-attention layers own a tensor (rope_freqs) that a copy of
    # sliding-window layers only would leave unread, and the engine refused such a file; --keep-last 1
    # keeps its last layer, a full-attention one. It also decodes about twice as fast as SmolLM2.
    model_path = trained_file("gemma4-mini", "target")
    pruned = run_cli("models", "prune", model_path, "--keep", "3", "--keep-last", "1")
    assert pruned.returncode == 0, pruned.stderr
    drafter = Path(pruned.stdout.strip())
    assert drafter.is_file() and "3 of 24 layers" in pruned.stderr
    db = tmp_path / "pruned.db"
    run = run_cli("run", "--model", f"F16={model_path}", "--drafting", f"pruned=draft-simple:{drafter}",
                  "--depths", "0,2", "--reps", "1", "--prompt-limit", "2", "--max-tokens", "24", "--threads", THREADS,
                  "--db", db)
    assert run.returncode == 0, run.stderr
    stored = rows(db, "SELECT draft_n, m_draft_tokens, log_drafted, draft_n_accepted, m_accepted, log_accepted,"
                      " max_draft_len, counts_from FROM requests WHERE depth = 2")
    assert len(stored) == 2
    for drafted, m_drafted, l_drafted, accepted, m_acc, l_acc, longest, source in stored:
        assert drafted > 0 and drafted == m_drafted and accepted == m_acc and longest == 2
        # /metrics is exact when every draft was full length; otherwise a traced replay gave the counts
        assert source == "metrics" or source == "replay" and (l_drafted, l_acc) == (drafted, accepted)
