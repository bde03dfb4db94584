"""How requests are measured (issue 13): untraced speed, exact counts without the trace, replays,
requests side by side, memory from the server's own log, the frontier and the budget choice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from specsweep.analysis import (CellKey, Estimate, MemoryPoint, budget_choice, mark_frontier, memory_by_cell,
                                parse_size, per_position, summarize)
from specsweep.client import LogTally, Outcome, parse_log_slice
from specsweep.engine.caveats import mtp_cuda_graphs_caveat
from specsweep.engine.memory import MIB, parse_load_log
from specsweep.overhead import Stopwatch
from specsweep.records import ServerRecord, drafts_that_did_not_replay, encode_steps
from specsweep.report.render import blocks_to_markdown
from specsweep.report.speed import measurement_blocks
from specsweep.request_rows import counts_source, with_replay_counts
from tests.records import baseline, rec

FIXTURES = Path(__file__).parent / "fixtures"


def outcome(drafted, steps, per_pos, n_max, traced=False, log=None, timings=None) -> Outcome:
    metrics = {"spec_decode_num_draft_tokens_total": drafted, "spec_decode_num_drafts_total": steps,
               "spec_decode_num_accepted_tokens_total": sum(per_pos)}
    return Outcome(wall_ms=10.0, response={"timings": timings or {"draft_n": drafted, "draft_n_accepted": sum(per_pos)}},
                   metrics_delta=metrics, accepted_per_pos=per_pos, log=log or LogTally(), traced=traced,
                   metrics_after=({}, {}), n_max=n_max)


def test_untraced_counts_are_exact_only_when_every_draft_was_full_length():
    full = outcome(drafted=30, steps=10, per_pos=[7, 4, 1], n_max=3)
    short = outcome(drafted=28, steps=10, per_pos=[7, 4, 1], n_max=3)  # two tokens short: drafts near the end
    assert full.all_drafts_full() and counts_source(full, depth=3) == "metrics"
    assert not short.all_drafts_full() and counts_source(short, depth=3) == "pending"
    assert counts_source(outcome(0, 0, [], n_max=3), depth=3) == "metrics"  # nothing drafted: nothing unknown
    assert counts_source(full, depth=0) is None
    assert full.crosscheck() == "ok"  # timings and /metrics agree; an untraced request has no log to compare


def test_metrics_exact_records_give_exact_conditional_acceptance():
    # Steps (accepted, drafted), all full length at depth 3: what a trace log would have said.
    steps = [(3, 3), (0, 3), (1, 3), (2, 3), (3, 3), (1, 3)]
    per_pos = [sum(1 for a, _ in steps if a > i) for i in range(3)]
    traced = rec(depth=3, log_step_pairs=encode_steps(steps), m_steps=6, m_accepted_per_pos=per_pos)
    untraced = rec(depth=3, log_step_pairs=None, m_steps=6, m_accepted_per_pos=per_pos, max_draft_len=3,
                   counts_from="metrics", traced=0)
    assert per_position([untraced]) == per_position([traced])
    assert per_position([untraced])[2].cond_steps == 3  # steps that reached position 2: accepted ≥ 2
    approx = replace(untraced, counts_from="approx")  # without that guarantee α_i beyond 0 stays unknown
    assert per_position([approx])[1].cond_steps is None


def test_speed_comes_from_untraced_requests_where_a_cell_has_them_and_never_from_shared_servers():
    records = [baseline(rep=r, traced=0, predicted_ms=1000.0) for r in range(2)]
    records += [rec(rep=r, traced=1, predicted_ms=500.0) for r in range(2)]  # traced: slower by the log, say
    records += [rec(rep=r, traced=0, predicted_ms=400.0, prompt_id="p1") for r in range(2)]
    cells = {c.key.depth: c for c in summarize(records)}
    assert cells[2].speed_from == "untraced" and cells[2].decode_tps.mean == pytest.approx(500.0)
    assert cells[2].acceptance.n == 2 and cells[2].n_requests == 4  # acceptance still counts every request
    shared = [replace(r, slots=4) for r in records]
    cells = {c.key.depth: c for c in summarize(shared)}
    assert cells[2].speed_from is None and cells[2].decode_tps is None and cells[2].speedup is None
    assert cells[2].acceptance is not None
    old = [replace(r, traced=None, slots=None) for r in records]  # stored before schema 6: traced, one slot
    assert {c.speed_from for c in summarize(old)} == {"traced"}


def test_replay_counts_are_taken_only_from_an_identical_generation():
    steps = [(2, 2), (0, 2), (1, 1)]
    log = LogTally(steps=steps, summary_accepted=3, summary_drafted=5, complete=True)
    timed = rec(depth=2, draft_n=5, draft_n_accepted=3, predicted_n=8, content="abc", m_draft_tokens=5,
                m_accepted=3, m_steps=3, m_accepted_per_pos=[2, 1], max_draft_len=None, counts_from="pending",
                traced=0)
    response = {"timings": {"draft_n": 5, "draft_n_accepted": 3, "predicted_n": 8},
                "choices": [{"message": {"content": "abc"}}]}
    replay = Outcome(wall_ms=1.0, response=response, metrics_delta={}, accepted_per_pos=[], log=log)
    counted = with_replay_counts(timed, replay)
    assert counted.counts_from == "replay" and counted.crosscheck == "ok"
    assert counted.log_step_pairs == "2/2 0/2 1/1" and counted.max_draft_len == 2 and counted.log_drafted_per_pos == [3, 2]
    assert counted.predicted_ms == timed.predicted_ms and counted.traced == 0  # the timed figures stay
    other = replace(replay, response={**response, "choices": [{"message": {"content": "abd"}}]})
    differed = with_replay_counts(timed, other)
    assert differed.counts_from == "approx" and "replay differed (content)" in differed.crosscheck
    assert differed.log_step_pairs is None


def test_log_lines_of_one_slot_are_told_apart_from_the_others():
    text = (FIXTURES / "server-two-slots-traced.log").read_text()  # the real server, 2 slots, both drafting
    both = parse_log_slice(text)
    slot0, slot1 = parse_log_slice(text, slot=0), parse_log_slice(text, slot=1)
    assert slot0.complete and slot1.complete
    assert (slot0.accepted, slot0.drafted) == (slot0.summary_accepted, slot0.summary_drafted) == (6, 63)
    assert (slot1.accepted, slot1.drafted) == (6, 63)
    assert len(both.steps) == len(slot0.steps) + len(slot1.steps)  # unfiltered, the slots would be summed
    assert parse_log_slice(text, slot=2).steps == []


def test_memory_from_the_servers_own_load_log():
    memory = parse_load_log((FIXTURES / "server-load-gemma4-mtp-cpu.log").read_text())
    target, draft = memory["target"]["buffers"], memory["draft"]["buffers"]
    assert target["model"] == {"CPU_Mapped": round(46.92 * MIB)}  # the F16 target file, mapped
    assert target["kv"] == {"CPU": round(3.00 * MIB) + round(3.38 * MIB)}  # sliding and full-attention caches
    assert draft["model"] == {"CPU_Mapped": round(2.13 * MIB)}  # the MTP assistant
    assert draft["compute"] == {"CPU": round(6.25 * MIB)}  # reserved twice, counted once at its largest
    assert memory["device_bytes"] == 0 and memory["host_bytes"] == sum(memory["kinds"].values())


def test_device_wide_memory_is_a_servers_only_while_it_runs_alone(monkeypatch):
    """Where nvidia-smi does not list the server's process (a container), the GPU's memory in use
    stands for it only when no other server of the sweep shares the GPU (side-by-side lanes)."""
    from specsweep.engine import memory as mem
    monkeypatch.setattr(mem, "gpu_process_bytes", lambda pid: None)
    monkeypatch.setattr(mem, "gpu_used_bytes", lambda: 700 * MIB)
    assert mem.sample_peak(1234, on_gpu=True) == (700 * MIB, "nvidia-smi-device")
    assert mem.sample_peak(1234, on_gpu=True, alone=False) is None
    monkeypatch.setattr(mem, "gpu_process_bytes", lambda pid: 300 * MIB)  # listed: its own figure either way
    assert mem.sample_peak(1234, on_gpu=True, alone=False) == (300 * MIB, "nvidia-smi")


def test_memory_on_a_gpu_skips_fit_probes_and_splits_device_from_host():
    # The pinned engine's format strings (src/llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp).
    log = "\n".join([
        "llama_model_loader: loaded meta data with 38 key-value pairs and 333 tensors from t.gguf (version GGUF V3)",
        "load_tensors:          CPU model buffer size =     0.00 MiB",  # a -fit probe: nothing allocated
        "llama_model_loader: loaded meta data with 38 key-value pairs and 333 tensors from t.gguf (version GGUF V3)",
        "load_tensors: offloaded 25/25 layers to GPU",
        "load_tensors:        CUDA0 model buffer size =    46.92 MiB",
        "load_tensors:   CPU_Mapped model buffer size =     2.00 MiB",
        "llama_kv_cache:      CUDA0 KV buffer size =    12.00 MiB",
        "sched_reserve:      CUDA0 compute buffer size =    30.00 MiB",
        "sched_reserve:  CUDA_Host compute buffer size =     1.00 MiB",
        "common_speculative_init_result: loading draft model 'a.gguf'",
        "load_tensors: offloaded 3/3 layers to GPU",
        "load_tensors:        CUDA0 model buffer size =     2.13 MiB"])
    memory = parse_load_log(log)
    assert memory["target"]["offloaded"] == "25/25" and memory["draft"]["offloaded"] == "3/3"
    assert memory["device_bytes"] == sum(round(x * MIB) for x in (46.92, 12.0, 30.0, 2.13))
    assert memory["host_bytes"] == round(2.0 * MIB) + round(1.0 * MIB)
    assert parse_load_log("llama_model_loader: loaded meta data with 1 key-value pairs from x (version 3)\n"
                          "load_tensors: CPU model buffer size = 0.00 MiB") is None


def _server(depth, role="timed", peak=None, memory=None, label="draft-mtp"):
    return ServerRecord(run_id=1, model_label="Q8_0", spec_type=label if depth else "none", depth=depth, argv=[],
                        build_info=None, props=None, log_path="x", started_at=0.0, start_seconds=1.0,
                        drafting_confirmed=None, drafting=label if depth else "none", role=role, traced=0, slots=1,
                        memory=memory, peak_memory_bytes=peak, peak_memory_source="rss" if peak else None)


def test_cell_memory_prefers_the_timed_servers_peak_then_buffers_then_file_size():
    logged = {"kinds": {"model": 10, "kv": 5, "compute": 3}, "device_bytes": 0, "host_bytes": 18,
              "target": {"offloaded": None}, "draft": None}
    memory = memory_by_cell([_server(0, peak=100), _server(3, peak=120), _server(3, role="replay", peak=999),
                             _server(2, memory=logged)], {"Q8_0": 50})
    assert memory[("Q8_0", "none", 0)][:2] == (100, "rss")
    assert memory[("Q8_0", "draft-mtp", 3)][:2] == (120, "rss")  # the traced replay server does not count
    assert memory[("Q8_0", "draft-mtp", 2)][:2] == (18, "buffers") and memory[("Q8_0", "draft-mtp", 2)][2]["kv"] == 5
    assert memory_by_cell([_server(1)], {"Q8_0": 50})[("Q8_0", "draft-mtp", 1)][:2] == (50, "file size")


def point(model, depth, memory, tps, sd=1.0):
    return MemoryPoint(CellKey(model, "draft-mtp" if depth else "none", depth), memory, "rss", {},
                       Estimate(tps, sd, 2) if tps is not None else None)


def test_frontier_keeps_only_cells_that_no_smaller_cell_beats():
    marked = mark_frontier([point("Q4", 0, 100, 50.0), point("Q4", 2, 110, 70.0), point("Q8", 0, 200, 60.0),
                            point("Q8", 2, 210, 90.0), point("Q8", 3, 210, None)])
    assert [p.on_frontier for p in marked] == [True, True, False, True, False]


def test_budget_picks_the_fastest_that_fits_and_the_cells_not_significantly_slower():
    records = []
    for rep in range(3):
        for prompt in range(4):
            jitter = (prompt - 1.5) * 20.0
            noise = (12.0, -10.0, 9.0, -8.0)[prompt]  # Q8 is as fast as Q4 within the prompts' spread
            records += [rec(model_label="Q4", depth=2, rep=rep, prompt_id=f"p{prompt}", predicted_ms=1000.0 + jitter),
                        rec(model_label="Q8", depth=2, rep=rep, prompt_id=f"p{prompt}",
                            predicted_ms=1000.0 + jitter + noise),
                        rec(model_label="Q2", depth=2, rep=rep, prompt_id=f"p{prompt}", predicted_ms=2000.0 + jitter)]
    cells = {c.key.model_label: c for c in summarize(records)}
    points = [MemoryPoint(cells[m].key, size, "rss", {}, cells[m].decode_tps)
              for m, size in (("Q2", 50), ("Q4", 100), ("Q8", 200))]
    choice = budget_choice(points, records, budget_bytes=150)
    assert choice.best.key.model_label == "Q4" and (choice.fitting, choice.over) == (2, 1)
    assert choice.runners_up == []  # Q2 takes twice as long: significantly slower
    wide = budget_choice(points, records, budget_bytes=10 ** 9)
    assert wide.best.key.model_label == "Q4" and [r.point.key.model_label for r in wide.runners_up] == ["Q8"]
    assert wide.runners_up[0].ratio.ci_low < 1.0 <= wide.runners_up[0].ratio.ci_high
    assert budget_choice(points, records, budget_bytes=10).best is None


@pytest.mark.parametrize("text, value", [("24GiB", 24 * 2 ** 30), ("512 MiB", 512 * 2 ** 20), ("8GB", 8 * 10 ** 9),
                                         ("1.5g", 1_500_000_000), ("1000", 1000)])
def test_budget_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "24 parsecs", "0GiB", "-1GB"])
def test_bad_budget_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_stopwatch_counts_nested_time_once():
    clock = Stopwatch()
    with clock.phase("request"):
        with clock.phase("metrics"):
            pass
    assert set(clock.seconds) == {"request", "metrics"} and clock.counts == {"request": 1, "metrics": 1}
    assert clock.to_json()["metrics"]["count"] == 1 and list(clock.to_json()) == ["metrics", "request"]


@pytest.mark.parametrize("budget_mib, drawn", [(80, True), (24 * 1024, False)])
def test_frontier_plot_draws_the_budget_line_only_where_it_keeps_the_cells_readable(budget_mib, drawn):
    from types import SimpleNamespace

    from specsweep.analysis import BudgetChoice
    from specsweep.report import plots
    speed = Estimate(mean=100.0, sd=5.0, n=3)
    points = mark_frontier([MemoryPoint(CellKey("Q4", "none", 0), 50 * MIB, "rss", {}, speed),
                            MemoryPoint(CellKey("Q8", "none", 0), 100 * MIB, "rss", {}, replace(speed, mean=120.0))])
    report = SimpleNamespace(memory=points, budget=BudgetChoice(budget_mib * MIB, points[0], [], 1, 1),
                             run=SimpleNamespace(id=1))
    plt = plots._pyplot()
    fig = plots._memory_frontier(plt, report)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if list(line.get_xdata()) == [budget_mib, budget_mib]]
    assert bool(lines) == drawn and ax.get_xlim()[1] < (200 if not drawn else 120)  # the cells keep the width
    assert drawn or any("memory budget 24.00 GiB" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_the_report_states_the_gpu_defaults_a_run_was_given():
    def bullets(notes):
        report = SimpleNamespace(records=[], cells=[], memory=[], run=SimpleNamespace(notes=notes, provenance={}))
        return blocks_to_markdown(measurement_blocks(report))

    text = bullets({"gpu_defaults": ["--gpu-layers all", "--spec-draft-ngl all", "--flash-attn on"]})
    assert ("so its servers ran with `--gpu-layers all`, `--spec-draft-ngl all`, `--flash-attn on` (the drafter's "
            "only where there is a draft model)") in text
    assert "GPU defaults" not in bullets({"gpu_defaults": []})  # a CPU engine, or every setting given


def test_the_report_says_when_replays_of_the_same_text_drafted_differently():
    def record(counts_from, replay):
        return SimpleNamespace(status="ok", depth=2, spec_type="draft-mtp", counts_from=counts_from, replay=replay,
                               traced=0, slots=1)

    def text(records):
        report = SimpleNamespace(records=records, cells=[], memory=[], run=SimpleNamespace(notes={}, provenance={}))
        return blocks_to_markdown(measurement_blocks(report))

    same_text_other_drafts = record("approx", "other drafts")
    other_text = record("approx", "other text")
    reproduced = record("replay", "same")
    assert "**Drafts not reproducible:** 1 of 3 traced replays" in text(
        [same_text_other_drafts, other_text, reproduced, record("metrics", None)])
    assert "not reproducible" not in text([other_text, reproduced])  # a different text is sampling, not drafting
    log_cut_short = record("approx", "log incomplete")
    assert drafts_that_did_not_replay([same_text_other_drafts, same_text_other_drafts, reproduced,
                                       log_cut_short, record("metrics", None)]) == (2, 4)


def test_mtp_on_one_slot_cuda_servers_with_graphs_on_is_warned_about_in_the_run_and_the_report():
    def bullets(backend, environment, spec_type="draft-mtp", slots=1, side_by_side=None, buffers=None, mps=None):
        records = [SimpleNamespace(status="ok", depth=d, spec_type=spec_type if d else "none", counts_from="metrics",
                                   replay=None, traced=0, slots=slots) for d in (0, 2)]
        notes = {"side_by_side": side_by_side} if side_by_side else {}
        run = SimpleNamespace(notes={**notes, **({"mps": mps} if mps else {})},
                              provenance={"engine": {"backend": backend, "environment": environment}})
        # the cell's load-log totals (``buffers``), as the report's memory points carry them
        memory = [SimpleNamespace(key=SimpleNamespace(spec_type=spec_type), buffers=buffers)] if buffers else []
        return blocks_to_markdown(measurement_blocks(SimpleNamespace(records=records, cells=[], run=run,
                                                                     memory=memory)))

    warned = "**Acceptance on this engine:** draft-mtp on one-slot CUDA servers with CUDA graphs on"
    assert warned in bullets("cuda", {})
    assert warned in bullets("cuda", None)  # a run from before the environment was recorded
    assert warned in bullets("cuda", {}, slots=4, side_by_side="servers")  # K one-slot servers still use graphs
    assert warned not in bullets("cuda", {"GGML_CUDA_DISABLE_GRAPHS": "1"})
    assert warned not in bullets("cuda", {"GGML_CUDA_DISABLE_GRAPHS": "0"})  # ggml only asks whether it is set
    assert warned not in bullets("cpu", {})
    assert warned not in bullets("cuda", {}, spec_type="draft-simple")
    assert warned not in bullets("cuda", {}, slots=4)  # slots decode side by side: no graphs
    # a CUDA build whose servers held nothing on a GPU (Ray slots without one) ran on the CPU backend
    assert warned in bullets("cuda", {}, buffers={"device": 60 * MIB, "host": 2 * MIB})
    assert warned not in bullets("cuda", {}, buffers={"device": 0, "host": 62 * MIB})
    assert mtp_cuda_graphs_caveat("cuda", {"CUDA_VISIBLE_DEVICES": "0"}, True) is not None
    assert mtp_cuda_graphs_caveat("cuda", {}, False) is None
    assert mtp_cuda_graphs_caveat("cuda", {}, True, mtp_on_device=False) is None
    # one-slot servers side by side without MPS time-slice the GPU: their drafts read low, graphs or not
    sliced = "**Acceptance on this engine:** draft-mtp on one-slot CUDA servers that shared one GPU without MPS"
    off = {"GGML_CUDA_DISABLE_GRAPHS": "1"}
    for mode in ("servers", "cells"):
        assert sliced in bullets("cuda", off, slots=4, side_by_side=mode)  # a run from before the note: no MPS
        assert sliced in bullets("cuda", off, slots=4, side_by_side=mode, mps="off")
        assert sliced in bullets("cuda", off, slots=4, side_by_side=mode, mps="unavailable: not found")
        assert sliced not in bullets("cuda", off, slots=4, side_by_side=mode, mps="private daemon")
        assert sliced not in bullets("cuda", off, slots=4, side_by_side=mode, mps="already running")
        assert sliced not in bullets("cpu", off, slots=4, side_by_side=mode)
        assert sliced not in bullets("cuda", off, slots=4, side_by_side=mode, spec_type="draft-simple")
        assert sliced not in bullets("cuda", off, slots=4, side_by_side=mode, buffers={"device": 0, "host": MIB})
    assert sliced not in bullets("cuda", off, slots=4)  # slots of one server: one process


def test_a_replay_says_what_it_found_in_a_value_and_in_words():
    steps = [(2, 2), (0, 2), (1, 1)]
    timed = rec(depth=2, draft_n=5, draft_n_accepted=3, predicted_n=8, content="abc", m_draft_tokens=5,
                m_accepted=3, m_steps=3, m_accepted_per_pos=[2, 1], counts_from="pending", traced=0)

    def replayed(content="abc", draft_n=5, accepted=3, complete=True):
        response = {"timings": {"draft_n": draft_n, "draft_n_accepted": accepted, "predicted_n": 8},
                    "choices": [{"message": {"content": content}}]}
        log = LogTally(steps=steps, summary_accepted=3, summary_drafted=5, complete=complete)
        return with_replay_counts(timed, Outcome(wall_ms=1.0, response=response, metrics_delta={},
                                                 accepted_per_pos=[], log=log))

    assert replayed().replay == "same"
    other_drafts = replayed(draft_n=6, accepted=2)
    assert other_drafts.replay == "other drafts"
    assert other_drafts.crosscheck == "replay differed (draft_n, draft_n_accepted)"
    assert replayed(content="abd").replay == "other text"
    assert replayed(complete=False).replay == "log incomplete"
    assert timed.replay is None  # no replay ran
