"""SQLite results store: one row per run, per server start and per request.

Every request is committed the moment it finishes (hyperfine's "export after
every benchmark, because a later one may fail"). Schema changes are an ordered
list of migration functions, tracked in ``PRAGMA user_version``; a database
written by a newer specsweep is refused rather than guessed at.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from .errors import StoreError
from .records import (REPLAY_DIFFERED, REPLAY_LOG_INCOMPLETE, RequestRecord, ServerRecord, from_row,
                      record_columns, replay_outcome, to_row)


# Request fields added by later migrations, by schema version: the first migration leaves them
# out, so a database at any version has exactly the columns that version had.
REQUEST_FIELDS_ADDED = {
    3: ("log_step_pairs",),
    4: ("degen_tokens", "degen_repeat_share", "degen_longest_repeat", "degen_whitespace_share", "degen_tail_loop",
        "degenerate"),
    7: ("replay",),
}
# ... the drafting entry (migration 5) of requests and servers, and how each was measured (migration 6).
MEASUREMENT_FIELDS = {"requests": ("traced", "slots", "counts_from"),
                      "servers": ("role", "traced", "slots", "memory", "peak_memory_bytes", "peak_memory_source")}
# What a traced replay fills into a request measured untraced (Store.set_counts).
COUNT_FIELDS = ("log_steps", "log_drafted", "log_accepted", "log_drafted_per_pos", "log_accepted_per_pos",
                "log_summary_drafted", "log_summary_accepted", "max_draft_len", "crosscheck", "log_step_pairs",
                "counts_from", "replay")
ADDED_LATER = {"requests": tuple(name for names in REQUEST_FIELDS_ADDED.values() for name in names)
               + ("drafting",) + MEASUREMENT_FIELDS["requests"],
               "servers": ("drafting",) + MEASUREMENT_FIELDS["servers"]}


def _create_table(conn: sqlite3.Connection, table: str, cls) -> None:
    later = ADDED_LATER.get(table, ())
    cols = ", ".join(f"{name} {sqltype}" for name, sqltype in record_columns(cls) if name not in later)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, {cols})")


def _m1_initial(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE runs (
        id INTEGER PRIMARY KEY, run_key TEXT UNIQUE NOT NULL, name TEXT, state TEXT NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL,
        owner_pid INTEGER, owner_host TEXT, tool_version TEXT,
        config_json TEXT NOT NULL, provenance_json TEXT NOT NULL, notes_json TEXT)""")
    _create_table(conn, "servers", ServerRecord)
    _create_table(conn, "requests", RequestRecord)
    conn.execute("CREATE INDEX requests_by_cell ON requests "
                 "(run_id, model_label, spec_type, depth, rep, prompt_id, status)")


def _m2_fidelity(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE fidelity (
        id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, model_label TEXT NOT NULL,
        reference TEXT NOT NULL, measured_at REAL NOT NULL, result_json TEXT NOT NULL,
        UNIQUE (run_id, model_label))""")


def _add_request_columns(conn: sqlite3.Connection, version: int) -> None:
    types = dict(record_columns(RequestRecord))
    for name in REQUEST_FIELDS_ADDED[version]:
        conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {types[name]}")


def _m3_step_pairs(conn: sqlite3.Connection) -> None:
    """Per-step (accepted, drafted) pairs: what the conditional per-position acceptance needs.
    Older rows keep NULL there, and the statistics say what they cannot compute from them."""
    _add_request_columns(conn, 3)


def _m4_degeneration(conn: sqlite3.Connection) -> None:
    """Per-request degeneration measures and the degenerate mark. Older rows keep NULL there:
    the report says "not measured" for them rather than guessing from their text."""
    _add_request_columns(conn, 4)


def _m5_drafting(conn: sqlite3.Connection) -> None:
    """The drafting entry of every request and server: one run can compare several methods.
    Rows from before had one method per run, named by its spec type (the default label)."""
    for table in ("requests", "servers"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN drafting TEXT")
        conn.execute(f"UPDATE {table} SET drafting = spec_type")


def _m6_measurement(conn: sqlite3.Connection) -> None:
    """How each request and server was measured: traced or not, slots side by side, where the
    per-position counts come from, and each server's memory. Every row from before ran with the
    trace on one slot, its counts from its own trace log (when the log slice was complete)."""
    for table, cls in (("requests", RequestRecord), ("servers", ServerRecord)):
        types = dict(record_columns(cls))
        for name in MEASUREMENT_FIELDS[table]:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {types[name]}")
        conn.execute(f"UPDATE {table} SET traced = 1, slots = 1")
    conn.execute("UPDATE servers SET role = 'timed'")
    conn.execute("UPDATE requests SET counts_from = CASE WHEN depth = 0 THEN NULL"
                 " WHEN log_steps IS NOT NULL THEN 'trace' ELSE 'approx' END WHERE status = 'ok'")


def _replay_from_crosscheck(crosscheck: str | None, counts_from: str | None) -> str | None:
    """What a replay found, read back from the words schema 6 wrote it in (migration 7 only)."""
    check = crosscheck or ""
    if f"{REPLAY_DIFFERED} (" in check:
        differing = check.split(f"{REPLAY_DIFFERED} (", 1)[1].split(")", 1)[0].split(", ")
        return replay_outcome(differing, log_complete=True)
    if REPLAY_LOG_INCOMPLETE in check:
        return replay_outcome([], log_complete=False)
    return replay_outcome([], log_complete=True) if counts_from == "replay" else None


def _m7_replay(conn: sqlite3.Connection) -> None:
    """What each traced replay found, as a value rather than words inside ``crosscheck``; older rows
    get it from those words, which schema 6 wrote in one fixed form."""
    _add_request_columns(conn, 7)
    rows = conn.execute("SELECT id, crosscheck, counts_from FROM requests WHERE counts_from IN ('replay', 'approx')")
    for row_id, crosscheck, counts_from in rows.fetchall():
        outcome = _replay_from_crosscheck(crosscheck, counts_from)
        if outcome is not None:
            conn.execute("UPDATE requests SET replay = ? WHERE id = ?", (outcome, row_id))


# Append only: a database at version k has had exactly the first k applied.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1_initial, _m2_fidelity, _m3_step_pairs,
                                                          _m4_degeneration, _m5_drafting, _m6_measurement,
                                                          _m7_replay]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class RunRow:
    id: int
    run_key: str
    name: str | None
    state: str
    created_at: float
    updated_at: float
    finished_at: float | None
    owner_pid: int | None
    owner_host: str | None
    tool_version: str | None
    config: dict
    provenance: dict
    notes: dict


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    def __init__(self, path: Path | str, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise StoreError(f"no results database at {self.path}")
        if not readonly:
            self.check_writable(self.path)
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
            self.conn = sqlite3.connect(uri, uri=readonly, timeout=10.0, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}, newer than this specsweep "
                                 f"understands ({SCHEMA_VERSION})", hint="upgrade specsweep to read it")
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self._migrate(version)
            elif version < SCHEMA_VERSION:
                self._upgrade_in_memory(version)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable specsweep database: {exc}") from None

    @staticmethod
    def check_writable(path: Path) -> None:
        """Fail before any server starts if results could not be saved."""
        parent = path.parent if str(path.parent) else Path(".")
        if path.exists():
            if path.is_dir() or not os.access(path, os.W_OK):
                raise StoreError(f"cannot write results database {path}")
            return
        if not parent.exists():
            raise StoreError(f"cannot write results database {path}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise StoreError(f"cannot write results database {path}: folder {parent} is not writable")

    def _migrate(self, version: int) -> None:
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                migration(self.conn)
                self.conn.execute(f"PRAGMA user_version = {number}")

    def _upgrade_in_memory(self, version: int) -> None:
        """Read an older database without writing to it: migrate a private in-memory copy."""
        memory = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.backup(memory)
        self.conn.close()
        self.conn = memory
        self.conn.row_factory = sqlite3.Row
        self._migrate(version)

    def transaction(self):
        return _Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()

    # runs -------------------------------------------------------------------
    def find_run(self, run_key: str) -> RunRow | None:
        row = self.conn.execute("SELECT * FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return self._run_row(row) if row else None

    def create_run(self, run_key: str, name: str | None, config: dict, provenance: dict,
                   tool_version: str) -> RunRow:
        now = time.time()
        with self.transaction():
            self.conn.execute(
                "INSERT INTO runs (run_key, name, state, created_at, updated_at, tool_version, config_json,"
                " provenance_json, notes_json) VALUES (?, ?, 'new', ?, ?, ?, ?, ?, '{}')",
                (run_key, name, now, now, tool_version, json.dumps(config), json.dumps(provenance)))
        return self.find_run(run_key)

    def claim_run(self, run: RunRow) -> None:
        """Mark the run as being written by this process; refuse if another live sweep holds it."""
        host = socket.gethostname()
        with self.transaction():
            row = self.conn.execute("SELECT state, owner_pid, owner_host FROM runs WHERE id = ?",
                                    (run.id,)).fetchone()
            if (row["state"] == "running" and row["owner_pid"] and row["owner_pid"] != os.getpid()
                    and row["owner_host"] == host and _pid_alive(row["owner_pid"])):
                raise StoreError(f"run {run.id} in {self.path} is being written by another sweep "
                                 f"(pid {row['owner_pid']})", hint="wait for it to finish, or use another --db")
            self.conn.execute("UPDATE runs SET state = 'running', owner_pid = ?, owner_host = ?, updated_at = ?"
                              " WHERE id = ?", (os.getpid(), host, time.time(), run.id))

    def set_run_state(self, run_id: int, state: str, notes: dict | None = None) -> None:
        now = time.time()
        with self.transaction():
            self.conn.execute("UPDATE runs SET state = ?, updated_at = ?, owner_pid = NULL,"
                              " finished_at = CASE WHEN ? = 'complete' THEN ? ELSE finished_at END WHERE id = ?",
                              (state, now, state, now, run_id))
            if notes is not None:
                self.conn.execute("UPDATE runs SET notes_json = ? WHERE id = ?", (json.dumps(notes), run_id))

    def update_provenance(self, run_id: int, provenance: dict) -> None:
        with self.transaction():
            self.conn.execute("UPDATE runs SET provenance_json = ? WHERE id = ?",
                              (json.dumps(provenance), run_id))

    def update_config(self, run_id: int, config: dict) -> None:
        """Settings that change only how results are counted (never what is measured), such as
        --exclude-degenerate, follow the latest invocation of the same run."""
        with self.transaction():
            self.conn.execute("UPDATE runs SET config_json = ? WHERE id = ?", (json.dumps(config), run_id))

    def runs(self) -> list[RunRow]:
        return [self._run_row(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY id")]

    def run(self, ref: str | int) -> RunRow:
        """A run by id, by key (or key prefix) or by name; the latest run for ``latest``."""
        text = str(ref)
        if text == "latest":
            row = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        elif text.isdigit():
            row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (int(text),)).fetchone()
        else:
            row = self.conn.execute("SELECT * FROM runs WHERE run_key LIKE ? OR name = ? ORDER BY id DESC",
                                    (text + "%", text)).fetchone()
        if row is None:
            raise StoreError(f"no run {text!r} in {self.path}", hint="'specsweep runs' lists them")
        return self._run_row(row)

    @staticmethod
    def _run_row(row: sqlite3.Row) -> RunRow:
        return RunRow(id=row["id"], run_key=row["run_key"], name=row["name"], state=row["state"],
                      created_at=row["created_at"], updated_at=row["updated_at"],
                      finished_at=row["finished_at"], owner_pid=row["owner_pid"],
                      owner_host=row["owner_host"], tool_version=row["tool_version"],
                      config=json.loads(row["config_json"]), provenance=json.loads(row["provenance_json"]),
                      notes=json.loads(row["notes_json"] or "{}"))

    # servers and requests -----------------------------------------------------
    def _insert(self, table: str, record) -> int:
        names = [f.name for f in fields(record)]
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        with self.transaction():
            cursor = self.conn.execute(sql, to_row(record))
            self.conn.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (time.time(), record.run_id))
        return int(cursor.lastrowid)

    def add_server(self, record: ServerRecord) -> int:
        return self._insert("servers", record)

    def server_stopped(self, server_id: int, reason: str, peak_memory: tuple[int, str] | None = None) -> None:
        """``peak_memory``: (bytes, source) sampled just before the stop."""
        peak, source = peak_memory or (None, None)
        with self.transaction():
            self.conn.execute("UPDATE servers SET stopped_at = ?, stop_reason = ?,"
                              " peak_memory_bytes = COALESCE(?, peak_memory_bytes),"
                              " peak_memory_source = COALESCE(?, peak_memory_source) WHERE id = ?",
                              (time.time(), reason, peak, source, server_id))

    def add_request(self, record: RequestRecord) -> int:
        return self._insert("requests", record)

    def requests(self, run_id: int, status: str | None = None) -> list[RequestRecord]:
        sql = "SELECT * FROM requests WHERE run_id = ?" + (" AND status = ?" if status else "") + " ORDER BY id"
        args = (run_id, status) if status else (run_id,)
        return [from_row(RequestRecord, dict(r)) for r in self.conn.execute(sql, args)]

    def pending_counts(self, run_id: int, model_label: str, drafting: str, depth: int) -> list[tuple[int, RequestRecord]]:
        """(row id, record) of the ok requests of one cell whose per-position counts await a traced replay."""
        rows = self.conn.execute("SELECT * FROM requests WHERE run_id = ? AND model_label = ? AND"
                                 " COALESCE(drafting, spec_type) = ? AND depth = ? AND status = 'ok' AND"
                                 " counts_from = 'pending' ORDER BY id", (run_id, model_label, drafting, depth))
        return [(r["id"], from_row(RequestRecord, dict(r))) for r in rows]

    def set_counts(self, request_id: int, record: RequestRecord) -> None:
        """Write the per-position counts (the trace-log fields, ``max_draft_len``, ``crosscheck`` and
        ``counts_from``) of ``record`` into an existing request row; nothing else of it changes."""
        row = dict(zip((f.name for f in fields(record)), to_row(record)))
        with self.transaction():
            self.conn.execute(f"UPDATE requests SET {', '.join(f'{n} = ?' for n in COUNT_FIELDS)} WHERE id = ?",
                              (*(row[n] for n in COUNT_FIELDS), request_id))

    def servers(self, run_id: int) -> list[ServerRecord]:
        rows = self.conn.execute("SELECT * FROM servers WHERE run_id = ? ORDER BY id", (run_id,))
        return [from_row(ServerRecord, dict(r)) for r in rows]

    def completed_cells(self, run_id: int) -> set[tuple]:
        # A row written without a drafting label has the one the plan gives it: its spec type.
        rows = self.conn.execute("SELECT DISTINCT model_label, spec_type, COALESCE(drafting, spec_type), depth, rep,"
                                 " prompt_id"
                                 " FROM requests WHERE run_id = ? AND status = 'ok'", (run_id,))
        return {tuple(r) for r in rows}

    def attempts(self, run_id: int) -> dict[tuple, int]:
        rows = self.conn.execute("SELECT model_label, spec_type, COALESCE(drafting, spec_type) AS label, depth, rep,"
                                 " prompt_id, MAX(attempt) FROM requests WHERE run_id = ?"
                                 " GROUP BY model_label, spec_type, label, depth, rep, prompt_id", (run_id,))
        return {tuple(r)[:6]: r[6] for r in rows}

    def mean_wall_ms(self, model_label: str, depth: int) -> float | None:
        """Typical request time for a model label and depth in any run: for --dry-run estimates."""
        row = self.conn.execute("SELECT AVG(wall_ms) FROM requests WHERE model_label = ? AND depth = ?"
                                " AND status = 'ok'", (model_label, depth)).fetchone()
        return row[0]

    # fidelity -------------------------------------------------------------------
    def save_fidelity(self, run_id: int, model_label: str, reference: str, result: dict) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO fidelity (run_id, model_label, reference, measured_at,"
                              " result_json) VALUES (?, ?, ?, ?, ?)",
                              (run_id, model_label, reference, time.time(), json.dumps(result)))

    def fidelity(self, run_id: int) -> dict[str, dict]:
        rows = self.conn.execute("SELECT model_label, reference, result_json FROM fidelity WHERE run_id = ?",
                                 (run_id,))
        return {r["model_label"]: {"reference": r["reference"], **json.loads(r["result_json"])} for r in rows}


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (KeyboardInterrupt included)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False
