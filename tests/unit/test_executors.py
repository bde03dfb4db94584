"""The executor layer without a cluster: slot counting, node affinity, and the Ray flags' errors."""

from __future__ import annotations

import builtins
import json

import pytest

from specsweep.engine.options import ServerOptions, ServerSettings
from specsweep.errors import EngineMissingError, UsageError
from specsweep.executors.parallel import lane_options
from specsweep.executors.placement import Placement, slot_count, slots_per_node
from tests.cli_support import assert_one_line, sweep


def node(node_id, cpus, gpus=0, alive=True):
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_slots_follow_cpus_and_gpus_and_the_limit():
    nodes = [node("head", 0), node("a", 16, 8), node("b", 16, 2), node("gone", 64, 8, alive=False)]
    assert slots_per_node(nodes, cpus=1, gpus=1) == {"a": 8, "b": 2}
    assert slots_per_node(nodes, cpus=4, gpus=1) == {"a": 4, "b": 2}  # CPUs run out first on a
    assert slots_per_node(nodes, cpus=1, gpus=0.5) == {"a": 16, "b": 4}
    assert slot_count(nodes, 1, 1, limit=None, groups=100) == 10
    assert slot_count(nodes, 1, 1, limit=3, groups=100) == 3
    assert slot_count(nodes, 1, 1, limit=None, groups=4) == 4  # never more slots than groups
    assert slot_count(nodes, 1, 4, limit=None, groups=9) == 2  # only a has room for 4 GPUs twice
    assert slot_count([node("head", 0)], 1, 0, limit=None, groups=9) == 0


def test_a_models_groups_stay_on_the_node_that_read_it():
    work = [(m, f"{m}{d}") for m in ("Q8", "Q4", "Q2") for d in range(3)]
    place = Placement(work)
    # Two nodes ask in turn: each takes a model of its own and keeps it.
    taken = {"A": [], "B": []}
    while len(place):
        for name in ("A", "B"):
            item = place.next_for(name)
            if item is not None:
                taken[name].append(item)
    assert taken["A"][:3] == ["Q80", "Q81", "Q82"] and taken["B"][:3] == ["Q40", "Q41", "Q42"]
    # The third model went to whichever node was free first, and only there.
    assert {x[:2] for x in taken["A"][3:]} | {x[:2] for x in taken["B"][3:]} == {"Q2"}
    assert place.home == {"Q8": "A", "Q4": "B", "Q2": "A"}


def test_an_idle_node_helps_the_model_with_most_groups_left_and_a_lost_group_goes_first():
    place = Placement([("Q8", "Q80"), ("Q8", "Q81"), ("Q4", "Q40"), ("Q8", "Q82")])
    assert place.next_for("A") == "Q80" and place.next_for("B") == "Q40"
    assert place.next_for("B") == "Q81"  # Q4 is done; B steals from Q8, which A still owns
    place.put_back("Q4", "Q40-rest", lost_node="B")  # B died mid-group
    assert place.home == {"Q8": "A"}
    assert place.next_for("C") == "Q40-rest" and place.home["Q4"] == "C"
    assert place.next_for("A") == "Q82" and place.next_for("A") is None


def test_ray_flags_need_the_ray_executor(capsys, tmp_path, model):  # noqa: F811
    assert_one_line(sweep(capsys, tmp_path, model, "--address", "auto"), "--address only apply with --executor ray")
    assert_one_line(sweep(capsys, tmp_path, model, "--executor", "ray", "--gpu-layers", "all"),
                    "needs --gpus-per-server")
    assert_one_line(sweep(capsys, tmp_path, model, "--executor", "ray", "--max-concurrent-servers", "0"),
                    "--max-concurrent-servers must be at least 1")


def test_ray_missing_is_one_error_line(capsys, tmp_path, model, monkeypatch):  # noqa: F811
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert_one_line(sweep(capsys, tmp_path, model, "--executor", "ray"), "--executor ray needs Ray")
    assert not (tmp_path / "r.db").exists()  # nothing started, nothing written


def test_an_unreachable_cluster_is_an_error_at_once():
    from specsweep.executors.ray_cluster import probe_address  # imports no Ray
    for address in ("127.0.0.1:9", "ray://127.0.0.1:9", "nonsense"):
        with pytest.raises(UsageError, match=f"cannot reach the Ray cluster at {address}"):
            probe_address(address)
    with pytest.raises(UsageError, match=r"at auto \(127.0.0.1:9\)"):
        probe_address("127.0.0.1:9", shown="auto")  # the address Ray found for 'auto'
    probe_address(None)  # no address: Ray starts a local instance


def fake_build(root, key: str, version: str = "1 (0c1e570)"):
    """A specsweep build folder (bin/llama-server answering --version, engine.json with its key)."""
    server = root / key / "bin" / "llama-server"
    server.parent.mkdir(parents=True)
    server.write_text(f"#!/bin/sh\necho 'version: {version}'\n")
    server.chmod(0o755)
    (root / key / "engine.json").write_text(json.dumps({"key": key}))
    return server


def test_a_node_finds_the_runs_engine_or_says_why_not(tmp_path):
    from specsweep.engine.build import engines_dir
    from specsweep.executors.node import EngineSpec, find_engine
    driver = fake_build(tmp_path / "driver", "k1")
    spec = EngineSpec(driver, "b1-0c1e570", {"key": "k1", "source": {"origin": "tarball"}})
    assert find_engine(spec) == (driver, "the driver's path")  # the node sees the driver's path
    cached = fake_build(engines_dir(), "k1")  # the node's own build with the same key
    elsewhere = EngineSpec(tmp_path / "not-here" / "llama-server", spec.version, spec.build)
    assert find_engine(elsewhere) == (cached, "this node's build cache")
    with pytest.raises(EngineMissingError, match="no specsweep build k2"):
        find_engine(EngineSpec(elsewhere.server, spec.version, {"key": "k2", "source": {"origin": "tarball"}}))
    with pytest.raises(EngineMissingError, match="is llama-server b2-0c1e570, the run uses b1-0c1e570"):
        find_engine(EngineSpec(fake_build(tmp_path / "other", "k1", "2 (0c1e570)"), spec.version, spec.build))


def test_side_by_side_servers_share_the_cores_unless_the_sweep_sets_threads(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    options = ServerOptions(model=tmp_path / "m.gguf", settings=ServerSettings())
    assert lane_options(options, 4).settings.threads == 4
    assert "--threads" in (argv := lane_options(options, 4).argv()) and argv[argv.index("--threads") + 1] == "4"
    assert lane_options(options, 32).settings.threads == 1  # never none
    own = ServerOptions(model=tmp_path / "m.gguf", settings=ServerSettings(threads=2))
    assert lane_options(own, 4) is own
