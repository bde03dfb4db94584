"""The Ray executor on a real local cluster: a head and two worker nodes (two raylets on this
machine), real llama-servers, the driver as the `specsweep` command.

It stores the same cells as the local executor; a worker process killed mid-sweep costs only its
request in flight and leaves no server behind; Ctrl-C on the driver stops every server and the
same command measures only what is missing. One cluster serves the module (it takes ~6-9 s).

The model is the committed Gemma-4 miniature (F16, drafting for itself), as in test_sweep.py: the
subject is the executor, not the model, and a sweep of its four groups takes about a third of the
time it takes on the default model (5 s against 14 s locally, 6.5 s against 18 s on the cluster).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from specsweep.trained import trained_file
from tests.conftest import SHORT_PROMPTS, finish, llama_server_pids, run_cli, start_cli

pytestmark = pytest.mark.e2e

MODELS, DEPTHS = ("A", "B"), (0, 1)  # one model under two labels: 4 server groups


@pytest.fixture(scope="module")
def model() -> Path:
    return trained_file("gemma4-mini", "target")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster  # here, so collecting the unit tier does not import Ray
    # Worker processes inherit the environment the nodes start with: their cache stays out of the user's,
    # and Ray reports no usage statistics.
    saved = os.environ.get("SPECSWEEP_CACHE")
    os.environ["SPECSWEEP_CACHE"] = str(tmp_path_factory.mktemp("node-cache"))
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray starts its workers (and so their llama-servers) at niceness 15: beside another pytest-xdist
    # worker's server they got almost no CPU and these tests took minutes. At 0 they share it fairly.
    os.environ["RAY_worker_niceness"] = "0"
    try:
        # The head runs no server, and no dashboard: on 2 cores Ray's own processes should stay small.
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1)  # one server slot each (--threads 1 asks for one CPU)
        cluster.wait_for_nodes()
    finally:
        if saved is None:
            os.environ.pop("SPECSWEEP_CACHE")
        else:
            os.environ["SPECSWEEP_CACHE"] = saved
    yield cluster
    cluster.shutdown()


def sweep_args(model, db, reps, prompts, tokens, *extra):
    models = [arg for label in MODELS for arg in ("--model", f"{label}={model}")]
    return ["run", *models, "--draft-model", model, "--spec-type", "draft-simple",
            "--depths", ",".join(map(str, DEPTHS)), "--reps", str(reps), "--prompts", SHORT_PROMPTS,
            "--prompt-limit", str(prompts), "--max-tokens", str(tokens), "--threads", "1", "--db", db, *extra]


def on_ray(cluster):
    return ("--executor", "ray", "--address", cluster.address)


def query(db: Path, sql: str, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def ok_cells(db: Path) -> list[tuple]:
    return query(db, "SELECT model_label, spec_type, drafting, depth, rep, prompt_id FROM requests"
                     " WHERE status = 'ok' ORDER BY 1, 2, 3, 4, 5, 6")


def ok_rows(db: Path) -> int:
    try:
        return query(db, "SELECT COUNT(*) FROM requests WHERE status = 'ok'")[0][0]
    except sqlite3.OperationalError:  # the driver has not written its schema yet
        return 0


def test_ray_stores_the_same_cells_as_the_local_executor(cluster, model, tmp_path, no_orphans):
    local = run_cli(*sweep_args(model, tmp_path / "local.db", 1, 1, 8))
    assert local.returncode == 0, local.stderr
    spread = run_cli(*sweep_args(model, tmp_path / "ray.db", 1, 1, 8, *on_ray(cluster)))
    assert spread.returncode == 0, spread.stderr
    assert "over a Ray cluster" in spread.stderr and "Traceback" not in spread.stderr
    cells = ok_cells(tmp_path / "ray.db")
    assert cells == ok_cells(tmp_path / "local.db") and len(cells) == len(MODELS) * len(DEPTHS)
    rows = query(tmp_path / "ray.db", "SELECT status, crosscheck, server_id FROM requests")
    assert len(rows) == len(cells) and all(check == "ok" for _, check, _ in rows)
    servers = query(tmp_path / "ray.db", "SELECT id, stop_reason FROM servers")
    assert len(servers) == len(MODELS) * len(DEPTHS) and {reason for _, reason in servers} == {"done"}
    assert {server for *_, server in rows} == {server for server, _ in servers}
    # Provenance names each slot's node, host, GPUs and engine build, and the groups it ran.
    provenance = json.loads(query(tmp_path / "ray.db", "SELECT provenance_json FROM runs")[0][0])
    slots = provenance["cluster"]["slots"]
    assert len({slot["node_id"] for slot in slots}) == 2  # both worker nodes took groups
    for slot in slots:
        assert slot["host"] and "gpus" in slot and slot["engine"]["found"] == "the driver's path"
        assert slot["engine"]["version"] == provenance["engine"]["version"] and slot["engine"]["build"]
    assert sorted(g for slot in slots for g in slot["groups"]) == ["A/draft-simple/d1", "A/none/d0",
                                                                     "B/draft-simple/d1", "B/none/d0"]


def test_a_killed_worker_costs_only_its_request_in_flight(cluster, model, tmp_path, no_orphans):
    reps, prompts = 2, 2
    planned = len(MODELS) * len(DEPTHS) * reps * prompts
    db = tmp_path / "kill.db"
    proc, stderr_path = start_cli(tmp_path / "cli", *sweep_args(model, db, reps, prompts, 8, *on_ray(cluster)))
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        killed = kill_a_worker_mid_group(db, per_group=reps * prompts)
        time.sleep(0.05)
    assert killed is not None, "no server was caught mid-group"
    stderr = finish(proc, stderr_path, timeout=300)
    assert proc.returncode == 0, stderr
    cells = ok_cells(db)
    assert len(cells) == planned == len(set(cells))  # every cell once: nothing lost, nothing twice
    assert not query(db, "SELECT id FROM requests WHERE status != 'ok'")
    lost = query(db, "SELECT model_label, depth, id FROM servers WHERE stop_reason = 'lost'")
    assert len(lost) == 1
    # The lost group finished on another server started after it.
    (label, depth, lost_id), = lost
    assert query(db, "SELECT COUNT(*) FROM servers WHERE model_label = ? AND depth = ? AND id > ?",
                 label, depth, lost_id)[0][0] == 1


def kill_a_worker_mid_group(db: Path, per_group: int) -> int | None:
    """SIGKILL the Ray worker process whose server stored the latest row, if its group has ≥ 2 cells to go."""
    try:
        latest = query(db, "SELECT s.argv, s.model_label, s.depth FROM requests r JOIN servers s ON s.id = r.server_id"
                           " ORDER BY r.id DESC LIMIT 1")
    except sqlite3.OperationalError:
        return None
    if not latest:
        return None
    argv, label, depth = json.loads(latest[0][0]), latest[0][1], latest[0][2]
    done = query(db, "SELECT COUNT(*) FROM requests WHERE model_label = ? AND depth = ? AND status = 'ok'",
                 label, depth)[0][0]
    if done > per_group - 2:
        return None
    port = argv[argv.index("--port") + 1]
    for pid in llama_server_pids():
        try:
            if f"--port\0{port}\0".encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # it ended meanwhile
            continue
        worker = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        os.kill(worker, signal.SIGKILL)
        return worker
    return None


def no_new_servers(before: set[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while llama_server_pids() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    return not llama_server_pids() - before


def test_an_interrupted_driver_stops_every_server_and_resumes_only_missing_cells(cluster, model, tmp_path,
                                                                                   no_orphans):
    reps, prompts = 2, 1
    planned = len(MODELS) * len(DEPTHS) * reps * prompts
    db = tmp_path / "resume.db"
    before = llama_server_pids()
    args = sweep_args(model, db, reps, prompts, 8, *on_ray(cluster))
    proc, stderr_path = start_cli(tmp_path / "cli", *args)
    deadline = time.monotonic() + 300
    while not (ok_rows(db) >= planned // 4 and llama_server_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert llama_server_pids() - before, "servers should be running mid-sweep"
    proc.send_signal(signal.SIGINT)
    stderr = finish(proc, stderr_path, timeout=120)
    assert proc.returncode == 130, stderr
    assert "resume with: specsweep run" in stderr and "Traceback" not in stderr
    assert no_new_servers(before), "every remote server stops with the driver"
    assert query(db, "SELECT state FROM runs")[0][0] == "interrupted"
    assert not query(db, "SELECT id FROM servers WHERE stopped_at IS NULL")
    partial = ok_rows(db)
    assert planned // 4 <= partial < planned
    groups_done = query(db, f"SELECT COUNT(*) FROM (SELECT model_label, depth FROM requests WHERE status = 'ok'"
                            f" GROUP BY 1, 2 HAVING COUNT(*) = {reps * prompts})")[0][0]
    servers_before = query(db, "SELECT COUNT(*) FROM servers")[0][0]

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed: {partial} requests were already done" in resumed.stderr
    cells = ok_cells(db)
    assert len(cells) == planned == len(set(cells))
    # Only the groups with missing cells started a server again.
    started = query(db, "SELECT COUNT(*) FROM servers")[0][0] - servers_before
    assert started == len(MODELS) * len(DEPTHS) - groups_done
    assert query(db, "SELECT state FROM runs")[0][0] == "complete"
