import sqlite3
from dataclasses import replace

import pytest

from specsweep.errors import StoreError
from specsweep.records import RequestRecord, ServerRecord, record_columns, to_row
from specsweep.store import SCHEMA_VERSION, Store


def request(run_id, **over):
    values = {name: None for name in RequestRecord.__dataclass_fields__}
    values.update(run_id=run_id, server_id=1, model_label="A", spec_type="draft-simple", depth=2, rep=0, seed=1,
                  prompt_id="p0", category="coding", attempt=1, status="ok", started_at=1.0,
                  m_accepted_per_pos=[3, 1], draft_n=10, draft_n_accepted=4)
    values.update(over)
    return RequestRecord(**values)


def test_migrations_from_blank_database_match_the_records(tmp_path):
    store = Store(tmp_path / "r.db")
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    for table, cls in (("requests", RequestRecord), ("servers", ServerRecord)):
        columns = [(r[1], r[2]) for r in store.conn.execute(f"PRAGMA table_info({table})")][1:]
        assert columns == record_columns(cls)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_request_roundtrip_and_cells(tmp_path):
    store = Store(tmp_path / "r.db")
    run = store.create_run("k1", "n", {"a": 1}, {"p": 2}, "0.1")
    store.add_request(request(run.id))
    store.add_request(request(run.id, prompt_id="p1", status="failed", error="boom"))
    rows = store.requests(run.id)
    assert rows[0] == request(run.id)
    assert store.completed_cells(run.id) == {("A", "draft-simple", "draft-simple", 2, 0, "p0")}
    assert store.attempts(run.id)[("A", "draft-simple", "draft-simple", 2, 0, "p1")] == 1
    store.add_request(request(run.id, prompt_id="p2", drafting="mtp-q8"))
    assert ("A", "draft-simple", "mtp-q8", 2, 0, "p2") in store.completed_cells(run.id)
    assert store.run("k1").id == run.id and store.run("latest").id == run.id


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_unwritable_location_is_refused_before_work(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "r.db")
    with pytest.raises(StoreError):
        Store(tmp_path)  # a directory


def test_not_a_database(tmp_path):
    path = tmp_path / "r.db"
    path.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable"):
        Store(path)


def test_run_held_by_live_process_is_refused(tmp_path):
    import subprocess
    store = Store(tmp_path / "r.db")
    run = store.create_run("k", None, {}, {}, "0")
    other = subprocess.Popen(["sleep", "30"])
    try:
        import socket
        store.conn.execute("UPDATE runs SET state='running', owner_pid=?, owner_host=? WHERE id=?",
                           (other.pid, socket.gethostname(), run.id))
        with pytest.raises(StoreError, match="another sweep"):
            store.claim_run(run)
    finally:
        other.kill()
        other.wait()
    store.claim_run(run)  # the holder is gone: the run can be resumed
    assert store.run(run.id).state == "running"


def test_failed_transaction_rolls_back(tmp_path):
    store = Store(tmp_path / "r.db")
    run = store.create_run("k", None, {}, {}, "0")
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.conn.execute("UPDATE runs SET name = 'x' WHERE id = ?", (run.id,))
            raise KeyboardInterrupt
    assert store.run(run.id).name is None


def test_older_database_opens_read_only_without_being_written(tmp_path):
    """The committed fixture predates per-step pairs (schema 2): it reads, unchanged on disk."""
    import hashlib
    import shutil
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "sweep-run.db"
    db = tmp_path / "old.db"
    shutil.copy(fixture, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION
    store = Store(db, readonly=True)
    run = store.run("latest")
    rows = store.requests(run.id, status="ok")
    assert rows and all(r.log_step_pairs is None for r in rows)
    assert store.fidelity(run.id)
    store.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


BEFORE_6 = {"traced": 1, "slots": 1, "counts_from": "approx"}  # what migration 6 says of a row without a log


def _database_at(path, version, run_id=1):
    """A database as schema ``version`` left it, with one run and one request of that time."""
    from specsweep.store import MEASUREMENT_FIELDS, MIGRATIONS, REQUEST_FIELDS_ADDED
    conn = sqlite3.connect(path, isolation_level=None)
    for number, migration in enumerate(MIGRATIONS[:version], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO runs (run_key, state, created_at, updated_at, config_json, provenance_json)"
                 " VALUES ('k', 'complete', 1, 1, '{}', '{}')")
    later = {name for v, names in REQUEST_FIELDS_ADDED.items() if v > version for name in names}
    later |= ({"drafting"} if version < 5 else set()) | set(MEASUREMENT_FIELDS["requests"])
    old = request(run_id, log_step_pairs="1/2" if version >= 3 else None)
    names = [name for name in RequestRecord.__dataclass_fields__ if name not in later]
    values = [v for name, v in zip(RequestRecord.__dataclass_fields__, to_row(old)) if name not in later]
    conn.execute(f"INSERT INTO requests ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)
    conn.close()
    return old


def test_migration_to_step_pairs_keeps_rows_and_stores_new_ones(tmp_path):
    path = tmp_path / "r.db"
    old = _database_at(path, 2)
    store = Store(path)
    store.add_request(request(1, prompt_id="p1", log_step_pairs="2/2*3 0/1"))
    rows = store.requests(1)
    # schema 5 names every older row's drafting entry by its spec type (one method per run then);
    # schema 6 says every older row ran traced on one slot (its counts: /metrics, the log slice was not kept)
    assert rows[0] == replace(old, drafting=old.spec_type, **BEFORE_6) and rows[0].log_step_pairs is None
    assert rows[1].log_step_pairs == "2/2*3 0/1"


def test_migration_to_degeneration_keeps_old_rows_not_measured(tmp_path):
    path = tmp_path / "r.db"
    old = _database_at(path, 3)
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.add_request(request(1, prompt_id="p1", degen_tokens=200, degen_repeat_share=0.91, degen_longest_repeat=180,
                              degen_whitespace_share=0.02, degen_tail_loop=190, degenerate=1))
    first, second = store.requests(1)
    assert first == replace(old, drafting=old.spec_type, **BEFORE_6) and first.log_step_pairs == "1/2"
    assert first.degenerate is None and first.degen_repeat_share is None  # not measured, not "clean"
    assert second.degenerate == 1 and second.degen_repeat_share == 0.91 and second.degen_tail_loop == 190


def test_migration_to_measurement_marks_old_rows_traced_and_keeps_them_readable(tmp_path):
    path = tmp_path / "r.db"
    _database_at(path, 5)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO servers (run_id, model_label, spec_type, depth, argv, log_path, started_at, drafting)"
                 " VALUES (1, 'A', 'draft-simple', 2, '[]', 'x.log', 1.0, 'draft-simple')")
    conn.execute("UPDATE requests SET log_steps = 3")  # this one had its trace log
    conn.commit()
    conn.close()
    reader = Store(path, readonly=True)  # an old database reads without being written
    (row,) = reader.requests(1)
    assert (row.traced, row.slots, row.counts_from) == (1, 1, "trace")
    (server,) = reader.servers(1)
    assert (server.role, server.traced, server.slots, server.memory) == ("timed", 1, 1, None)
    reader.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 5
    store = Store(path)
    store.add_request(request(1, prompt_id="p1", traced=0, slots=1, counts_from="pending"))
    store.server_stopped(1, "done", (123456, "rss"))
    first, second = store.requests(1)
    assert first.counts_from == "trace" and (second.traced, second.counts_from) == (0, "pending")
    assert store.servers(1)[0].peak_memory_bytes == 123456 and store.servers(1)[0].peak_memory_source == "rss"


def test_replay_counts_fill_only_the_count_fields_of_a_pending_row(tmp_path):
    store = Store(tmp_path / "r.db")
    run = store.create_run("k", None, {}, {}, "0")
    store.add_request(request(run.id, traced=0, slots=1, counts_from="pending", drafting="draft-simple",
                              predicted_ms=250.0, m_steps=4))
    store.add_request(request(run.id, prompt_id="p1", traced=0, counts_from="metrics", drafting="draft-simple"))
    ((row_id, pending),) = store.pending_counts(run.id, "A", "draft-simple", 2)
    counted = replace(pending, counts_from="replay", log_steps=4, log_step_pairs="2/2 1/2 0/2 1/1", max_draft_len=2,
                      predicted_ms=999.0)  # a replay never changes the timed figures
    store.set_counts(row_id, counted)
    stored = store.requests(run.id)[0]
    assert stored.counts_from == "replay" and stored.log_step_pairs == "2/2 1/2 0/2 1/1" and stored.max_draft_len == 2
    assert stored.predicted_ms == 250.0 and stored.traced == 0
    assert store.pending_counts(run.id, "A", "draft-simple", 2) == []


def test_migration_to_replay_outcomes_reads_them_from_the_old_crosscheck_words(tmp_path):
    path = tmp_path / "r.db"
    _database_at(path, 6)
    conn = sqlite3.connect(path)
    words = [("replay", "ok"), ("approx", "replay differed (draft_n, draft_n_accepted)"),
             ("approx", "per-position: metrics=[48, 12] log=[47, 13]; replay differed (draft_n)"),
             ("approx", "replay differed (predicted_n, draft_n, content)"), ("approx", "replay log slice incomplete"),
             ("metrics", "ok"), ("trace", "ok")]
    conn.execute("DELETE FROM requests")
    for i, (counts_from, crosscheck) in enumerate(words):
        conn.execute("INSERT INTO requests (run_id, server_id, model_label, spec_type, depth, rep, seed, prompt_id,"
                     " category, attempt, status, started_at, counts_from, crosscheck)"
                     " VALUES (1, 1, 'A', 'draft-mtp', 2, 0, 1, ?, 'c', 1, 'ok', 1.0, ?, ?)",
                     (f"p{i}", counts_from, crosscheck))
    conn.commit()
    conn.close()
    found = [r.replay for r in Store(path, readonly=True).requests(1)]
    assert found == ["same", "other drafts", "other drafts", "other text", "log incomplete", None, None]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 6  # read without writing
