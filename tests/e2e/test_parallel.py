"""--parallel K on the real server, acceptance only: K slots of one llama-server side by side, or
K one-slot servers (--side-by-side servers).

The mechanism, on CPU, against one sequential run of the same cells: a parallel run stores the same
cells, every request's own timings and its trace-log lines agree exactly, and the report says that
speed was not measured; on servers of their own every request is decoded exactly as alone. (Whether
batched slots leave acceptance unchanged is a statistical question for benchmarks/gpu_speed.py, on
enough requests.)

The model is the committed Gemma-4 miniature drafting for itself: the subject is the side-by-side
mechanism, not the model, and the miniature decodes about twice as fast as the default model. The
prompts are the short ones of the other e2e sweeps (half the packaged suite's prompt tokens: each
of the three runs took ~2 s less).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from specsweep.trained import trained_file
from tests.conftest import SHORT_PROMPTS, THREADS, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def model():
    return trained_file("gemma4-mini", "target")


def _args(model, db, *extra, threads: int | None = THREADS):
    return ["run", "--model", f"F16={model}", "--draft-model", model, "--spec-type", "draft-simple",
            "--depths", "0,2", "--reps", "2", "--prompts", SHORT_PROMPTS, "--prompt-limit", "2", "--max-tokens", "16",
            *(["--threads", str(threads)] if threads else []), "--db", db, *extra]


@pytest.fixture(scope="module")
def sequential_db(model, tmp_path_factory):
    """A database holding the sequential run; each test adds its side-by-side run to a copy."""
    db = tmp_path_factory.mktemp("parallel") / "p.db"
    sequential = run_cli(*_args(model, db, "--name", "sequential"))
    assert sequential.returncode == 0, sequential.stderr
    return db


def _run_ids(conn, name):
    by_name = dict(conn.execute("SELECT name, id FROM runs").fetchall())
    return by_name["sequential"], by_name[name]


@pytest.fixture
def db(sequential_db, tmp_path):
    copy = tmp_path / "p.db"
    shutil.copy(sequential_db, copy)
    return copy


def test_parallel_run_stores_the_same_cells_and_marks_speed_not_measured(model, db, no_orphans):
    parallel = run_cli(*_args(model, db, "--parallel", "2", "--name", "side-by-side"))
    assert parallel.returncode == 0, parallel.stderr
    with sqlite3.connect(db) as conn:
        seq_id, par_id = _run_ids(conn, "side-by-side")
        cells = {run: set(conn.execute("SELECT model_label, depth, rep, prompt_id FROM requests WHERE run_id = ?"
                                       " AND status = 'ok'", (run,)).fetchall()) for run in (seq_id, par_id)}
        rows = conn.execute("SELECT depth, slots, traced, counts_from, draft_n, draft_n_accepted, log_drafted,"
                            " log_accepted, log_summary_drafted, m_draft_tokens, m_steps, crosscheck FROM requests"
                            " WHERE run_id = ?", (par_id,)).fetchall()
        servers = conn.execute("SELECT argv, props, role, slots FROM servers WHERE run_id = ?", (par_id,)).fetchall()
    assert cells[seq_id] == cells[par_id] and len(cells[par_id]) == 8  # a different run, the same cells
    for depth, slots, traced, source, d_t, a_t, d_l, a_l, d_s, m_drafted, m_steps, check in rows:
        assert (slots, traced, check) == (2, 1, "ok")
        assert m_drafted is None and m_steps is None  # /metrics mixes the slots: not read
        if depth:  # the request's own timings and its slot's log lines agree exactly
            assert source == "trace" and d_t == d_l == d_s and a_t == a_l and d_t > 0
    assert len(servers) == 2
    for argv, props, role, slots in servers:
        argv = json.loads(argv)
        assert role == "parallel" and slots == 2 and argv[argv.index("--parallel") + 1] == "2"
        assert json.loads(props)["total_slots"] == 2
        # each slot gets the context one request has alone: 4096 × 2 for the server
        assert argv[argv.index("--ctx-size") + 1] == "8192"
    report = run_cli("report", "side-by-side", "--db", db)
    assert report.returncode == 0, report.stderr
    assert "**Speed not measured:** this run ran 2 requests side by side" in report.stdout
    speed = report.stdout.split("## Speed\n", 1)[1].split("\n## ", 1)[0]
    # Each table is followed by its caption; τ (tokens per target step) counts acceptance, not speed.
    blocks = [b.strip() for b in speed.split("\n\n") if b.strip()]
    tables = [(table, caption) for table, caption in zip(blocks, blocks[1:]) if table.startswith("|")]
    figures = [cell.strip() for table, caption in tables if not caption.startswith("_Mean acceptance length")
               for line in table.splitlines() if line.startswith("| F16 |") for cell in line.split("|")[2:-1]]
    assert len(tables) == 4 and figures and set(figures) == {"–"}  # every speed figure of the run: none
    tau = [line for table, caption in tables if caption.startswith("_Mean acceptance length")
           for line in table.splitlines() if line.startswith("| F16 |")]
    assert len(tau) == 1 and "–" not in tau[0]  # measured side by side all the same


def _one_slot_servers_run(model, db, mode: str, server_columns: str):
    """``--parallel 2 --side-by-side MODE`` without a thread count (each server gets half the cores);
    every request's text and counts must equal the sequential run's. Its server rows and notes."""
    parallel = run_cli(*_args(model, db, "--parallel", "2", "--side-by-side", mode, "--name", mode, threads=None))
    assert parallel.returncode == 0, parallel.stderr
    with sqlite3.connect(db) as conn:
        seq_id, par_id = _run_ids(conn, mode)
        rows = {run: {r[:4]: r[4:] for r in conn.execute(
            "SELECT model_label, depth, rep, prompt_id, content, draft_n, draft_n_accepted, slots, traced, crosscheck"
            " FROM requests WHERE run_id = ? AND status = 'ok'", (run,))} for run in (seq_id, par_id)}
        servers = conn.execute(f"SELECT {server_columns} FROM servers WHERE run_id = ?", (par_id,)).fetchall()
        notes = json.loads(conn.execute("SELECT notes_json FROM runs WHERE id = ?", (par_id,)).fetchone()[0])
    assert rows[seq_id].keys() == rows[par_id].keys() and len(rows[par_id]) == 8
    for cell, (content, drafted, accepted, slots, traced, check) in rows[par_id].items():
        assert (slots, traced, check) == (2, 1, "ok")
        assert (content, drafted, accepted) == rows[seq_id][cell][:3], cell
    assert sum(drafted for _, drafted, *_ in rows[par_id].values()) > 0
    return servers, notes


def _one_request_per_server(argv: list[str]) -> None:
    assert argv[argv.index("--parallel") + 1] == "1"
    assert argv[argv.index("--ctx-size") + 1] == "4096"  # one request per server: no more context
    assert argv[argv.index("--threads") + 1] == str(max(1, (os.cpu_count() or 1) // 2))


def test_parallel_on_servers_of_their_own_decodes_each_request_exactly_as_alone(model, db, no_orphans):
    """--side-by-side servers: K one-slot servers per cell, started together; every request is
    decoded as it is alone, so each cell's text and acceptance equal the sequential run's."""
    servers, notes = _one_slot_servers_run(model, db, "servers", "argv, role, slots, log_path")
    assert len(servers) == 4 and notes["side_by_side"] == "servers"  # two per cell, each with one slot
    assert len({log for *_, log in servers}) == 4
    for argv, role, slots, _ in servers:
        assert role == "parallel" and slots == 1
        _one_request_per_server(json.loads(argv))


def test_cells_side_by_side_run_at_once_each_on_a_server_of_its_own_and_decode_as_alone(model, db, no_orphans):
    """--side-by-side cells: the two cells run at once, each on one one-slot traced server (half the
    cores each), and every request's text and counts equal the sequential run's."""
    servers, notes = _one_slot_servers_run(model, db, "cells", "argv, role, slots, depth, started_at, stopped_at")
    assert (notes["side_by_side"], notes["lanes"], notes["mps"]) == ("cells", 2, "off")  # a CPU engine
    assert sorted(depth for *_, depth, _, _ in servers) == [0, 2]  # one server per cell
    (*_, start_a, stop_a), (*_, start_b, stop_b) = servers
    assert start_b < stop_a and start_a < stop_b  # at once, not one after the other
    for argv, role, slots, *_ in servers:
        assert role == "parallel" and slots == 1
        _one_request_per_server(json.loads(argv))
    report = run_cli("report", "cells", "--db", db)
    assert report.returncode == 0, report.stderr
    assert "as 2 cells at once, each on a one-slot server of its own" in report.stdout
