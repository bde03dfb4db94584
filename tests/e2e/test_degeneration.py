"""Degenerate generations on the real server: a prompt the default model answers with a loop at
temperature 0, one it answers cleanly, and the report's acceptance with and without the loop."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from tests.conftest import THREADS, run_cli

pytestmark = pytest.mark.e2e

# At temperature 0 SmolLM2-135M Q4_1 answers the LRU prompt with "lambda_lambda_lambda…" and repeated
# blocks (4-gram repeat share about 0.75 of 200 tokens), and the capital question in a few tokens.
PROMPTS = [
    {"id": "loops", "category": "coding",
     "prompt": "Implement an LRU (least recently used) cache class in Python without using functools.lru_cache or "
               "OrderedDict. It should support `get(key)` and `put(key, value)` in O(1) time with a fixed capacity. "
               "Explain how your linked list and dictionary work together and show a short usage example."},
    {"id": "clean", "category": "facts", "prompt": "What is the capital of France? Answer in one sentence."},
]


def sweep_args(model_path, drafter, prompts, db, *extra):
    return ["run", "--model", f"Q4_1={model_path}", "--draft-model", str(drafter), "--spec-type", "draft-simple",
            "--depths", "1", "--reps", "1", "--seed", "7", "--temperature", "0", "--prompts", str(prompts),
            "--max-tokens", "200", "--threads", THREADS, "--db", str(db), *extra]


def test_a_looping_request_is_marked_and_the_report_shows_acceptance_with_and_without_it(
        model_path, second_model, tmp_path, no_orphans):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    db = tmp_path / "degen.db"
    result = run_cli(*sweep_args(model_path, second_model, prompts, db))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        stored = dict((row[0], row[1:]) for row in conn.execute(
            "SELECT prompt_id, degenerate, degen_repeat_share, degen_tokens, predicted_n, draft_n FROM requests"))
    assert stored["loops"][0] == 1 and stored["loops"][1] >= 0.5, stored
    assert stored["clean"][0] == 0, stored
    assert all(tokens and draft_n for _, _, tokens, _, draft_n in stored.values())

    out = tmp_path / "report"
    assert run_cli("report", "--db", str(db), "--out", str(out)).returncode == 0
    md = (out / "report.md").read_text()
    section = md[md.index("## Degenerate generations"):md.index("## Speed")]
    assert "**1 of 2** measured ok requests are degenerate" in section
    row = next(line for line in section.splitlines() if line.startswith("| Q4_1 | 1 |"))
    assert "1 / 2 (50%)" in row
    assert "(n=1 reps, 2 requests)" in row and "(n=1 reps, 1 request)" in row  # with and without, each with n
    assert "| Q4_1 | 1 | 0 | loops |" in section  # the worst generation, listed first with its excerpt
    csv_row = next(csv.DictReader((out / "results.csv").open()))
    assert csv_row["acceptance_all_mean"] and csv_row["acceptance_clean_mean"] and csv_row["degenerate_n"] == "1"
    assert csv_row["acceptance_mean"] == csv_row["acceptance_all_mean"]  # counted by default

    # Asking to exclude them re-counts the same run: nothing is measured again, the headline changes.
    again = run_cli(*sweep_args(model_path, second_model, prompts, db, "--exclude-degenerate"))
    assert again.returncode == 0, again.stderr
    assert "0 requests measured" in again.stderr
    assert run_cli("report", "--db", str(db), "--out", str(out)).returncode == 0
    csv_row = next(csv.DictReader((out / "results.csv").open()))
    assert csv_row["acceptance_mean"] == csv_row["acceptance_clean_mean"] and csv_row["n_requests"] == "1"
    assert "left out of this and every headline figure" in (out / "report.md").read_text()
