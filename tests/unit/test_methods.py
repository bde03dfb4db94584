"""Drafting methods compared: n-gram types collapse to one server at their own draft cap, their
effective draft length is measured, and the ranking says how far each method is behind the leader."""

from __future__ import annotations

import csv
import random
from dataclasses import fields
from pathlib import Path

import pytest

from specsweep.analysis import by_drafting, rank_methods, speedup_gaps, summarize
from specsweep.config import ConfigError, Drafting, ModelSpec, Sampling, SweepConfig, load_toml, server_depths
from specsweep.plan import make_plan
from specsweep.prompts import Prompt
from specsweep.records import RequestRecord
from specsweep.report import build_report, write_report
from specsweep.store import Store
from specsweep.sweep import _drafting_identity
from tests.plot_resolution import coarse_plots


def plan_of(*entries: Drafting, reps: int = 1):
    config = SweepConfig(models=(ModelSpec("A", Path("a.gguf"), draft_model=Path("d.gguf")),),
                         drafting_axis=entries if len(entries) > 1 else (), drafting=entries[0],
                         sampling=Sampling(reps=reps))
    return make_plan(config, [Prompt("p0", "coding", ({"role": "user", "content": "q"},))])


def test_an_ngram_type_runs_one_server_at_its_own_cap_with_its_own_flags():
    plan = plan_of(Drafting("ngram-simple", (0, 1, 2, 3, 4)))
    assert [g.depth for g in plan.groups] == [0, 48]
    argv = plan.groups[1].options.argv()
    assert "--spec-draft-n-max" not in argv and "--spec-draft-model" not in argv
    assert argv[argv.index("--spec-ngram-simple-size-m") + 1] == "48"
    assert argv[argv.index("--spec-ngram-simple-size-n") + 1] == "12"
    assert "--spec-ngram" not in " ".join(plan.groups[0].options.argv())  # the baseline drafts nothing


def test_ngram_sizes_and_minimum_go_to_the_types_flags():
    mod = Drafting("ngram-mod", (1, 2), label="mod", ngram_size_n=8, ngram_size_m=16, n_min=4)
    plan = plan_of(Drafting("draft-simple", (0, 1), label="small"), mod, Drafting("ngram-cache", (1,), label="c"))
    assert [(g.drafting, g.depth) for g in plan.groups] == [("none", 0), ("small", 1), ("mod", 16), ("c", 8)]
    argv = plan.groups[2].options.argv()
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--spec-ngram")}
    assert flags == {"--spec-ngram-mod-n-match": "8", "--spec-ngram-mod-n-max": "16", "--spec-ngram-mod-n-min": "4"}
    assert "--spec-draft-n-min" not in argv
    cache = plan.groups[3].options.argv()  # ngram-cache drafts 8 tokens and has no flags for it
    assert "--spec-type" in cache and not any(a.startswith("--spec-ngram") or a == "--spec-draft-n-max"
                                                for a in cache)
    small = plan.groups[1].options.argv()
    assert small[small.index("--spec-draft-n-max") + 1] == "1" and "--spec-ngram-mod-n-max" not in small


def test_server_depths_keep_order_and_the_baseline():
    assert server_depths("draft-mtp", (2, 0, 1)) == (2, 0, 1)
    assert server_depths("ngram-simple", (1, 0, 3)) == (48, 0)
    assert server_depths("ngram-mod", (0,)) == (0,)
    assert server_depths("ngram-map-k", (1, 2), ngram_size_m=6) == (6,)


BASE = """
[[models]]
label = "Q8_0"
path = "t.gguf"

[[drafting]]
spec_type = "ngram-simple"
depths = [0, 1]
"""


@pytest.mark.parametrize("extra, message", [
    ("ngram_size_m = 4", "ngram-simple with ngram_size_m 4 < ngram_size_n 12 never drafts"),
    ("ngram_size_n = 0", "ngram_size_n must be an integer within 1..1024"),
    ('ngram_size_m = "8"', "ngram_size_m must be an integer within 1..1024"),
])
def test_bad_ngram_settings_are_one_error(tmp_path, extra, message):
    path = tmp_path / "s.toml"
    path.write_text(BASE + extra + "\n[[drafting]]\nspec_type = \"ngram-mod\"\n")
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ("draft-mtp", "ngram_size_m applies to n-gram types only, not draft-mtp"),
    ("ngram-cache", "ngram-cache has no ngram_size_m in this engine (it drafts 8 tokens)"),
])
def test_ngram_settings_on_other_types_are_refused(tmp_path, spec, message):
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace("ngram-simple", spec) + "ngram_size_m = 16\n[[drafting]]\nspec_type = \"ngram-mod\"\n")
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    assert message in str(err.value)


def test_ngram_settings_load_and_enter_the_run_key_only_when_set(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE + "ngram_size_n = 4\nngram_size_m = 8\n[[drafting]]\nspec_type = \"ngram-mod\"\n")
    config = load_toml(path)
    simple, mod = config.drafting_entries()
    assert (simple.ngram_size_n, simple.ngram_size_m, simple.server_depths()) == (4, 8, (0, 8))

    class Prepared:  # what _drafting_identity reads
        entry_drafters: dict = {}
    Prepared.config = config
    simple_id, mod_id = _drafting_identity(Prepared)
    assert simple_id["ngram_size_m"] == 8 and "ngram_size_m" not in mod_id and "ngram_size_n" not in mod_id


# ---- measured figures -----------------------------------------------------------------------

METHODS = {  # label: (spec type, depths, acceptance α, share of steps that draft, draft cost per token)
    "eagle": ("draft-eagle3", (1, 2), 0.85, 1.0, 0.3),
    "small": ("draft-simple", (1, 2), 0.6, 1.0, 3.0),
    "ngram": ("ngram-simple", (48,), 0.5, 0.1, 0.0),
}


def _record(run_id, model, label, depth, rep, prompt, rng, t) -> RequestRecord:
    spec, _, alpha, share, cost = METHODS.get(label, ("none", (), 0.0, 0.0, 0.0))
    produced, passes, steps, drafted, accepted = 1, 0, 0, 0, 0  # the first token comes from the prompt pass
    while produced < 96:
        passes += 1
        n = (rng.randint(4, 12) if spec.startswith("ngram") else depth) if depth and rng.random() < share else 0
        k = 0
        while k < n and rng.random() < alpha:
            k += 1
        steps += n > 0
        drafted += n
        accepted += k
        produced += k + 1
    ms = passes * 10.0 + drafted * cost
    values = {f.name: None for f in fields(RequestRecord)}
    values.update(run_id=run_id, server_id=1, model_label=model, spec_type=spec if depth else "none",
                  drafting=label if depth else "none", depth=depth, rep=rep, seed=1000 + rep, prompt_id=prompt,
                  category="coding", attempt=1, status="ok", started_at=t, wall_ms=ms + 5, predicted_n=produced,
                  predicted_ms=ms, draft_n=drafted, draft_n_accepted=accepted, m_draft_tokens=drafted,
                  m_accepted=accepted, m_steps=steps, log_steps=steps, log_drafted=drafted, log_accepted=accepted,
                  max_draft_len=12 if spec.startswith("ngram") else depth, crosscheck="ok")
    return RequestRecord(**values)


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("methods") / "methods.db")
    entries = [{"label": label, "spec_type": spec, "depths": [0, 1, 2]} for label, (spec, *_) in METHODS.items()]
    config = {"models": [{"label": "Q8_0"}, {"label": "Q4_K_M"}], "drafting": entries[0], "drafting_axis": entries,
              "sampling": {"reps": 3, "seed": 1000}, "prompt_ids": [f"p{i}" for i in range(5)]}
    run = store.create_run("methods", "methods", config, {}, "0")
    rng = random.Random(3)
    t = 1.0
    for model in ("Q8_0", "Q4_K_M"):
        for label, depths in [("none", (0,))] + [(label, m[1]) for label, m in METHODS.items()]:
            for depth in depths:
                for rep in range(3):
                    for i in range(5):
                        t += 1
                        store.add_request(_record(run.id, model, label, depth, rep, f"p{i}", rng, t))
    return store, store.run(run.id)


def test_draft_length_and_drafting_share_are_measured(methods_run):
    store, run = methods_run
    cells = {(c.key.model_label, c.key.spec_type, c.key.depth): c for c in summarize(by_drafting(store.requests(run.id)))}
    ngram, small = cells[("Q8_0", "ngram", 48)], cells[("Q8_0", "small", 2)]
    assert 6 < ngram.draft_length.mean < 10 and ngram.draft_length.n == 3  # drafts of 4..12 tokens, not 48
    assert 0.05 < ngram.drafting_share.mean < 0.2  # a lookup hit on about one step in ten
    assert small.draft_length.mean == 2.0 and small.drafting_share.mean > 0.97
    assert cells[("Q8_0", "none", 0)].draft_length is None


def test_ranking_gives_each_method_its_gap_to_the_leader(methods_run):
    store, run = methods_run
    records = by_drafting(store.requests(run.id))
    ranking = rank_methods(summarize(records))
    assert [(m.drafting, m.best.key.depth) for m in ranking if m.model_label == "Q8_0"][0] == ("eagle", 2)
    gaps = {(g.model_label, g.drafting): g for g in speedup_gaps(records, ranking)}
    assert set(gaps) == {(m, d) for m in ("Q8_0", "Q4_K_M") for d in ("small", "ngram")}
    for gap in gaps.values():
        best = {m.drafting: m.best for m in ranking if m.model_label == gap.model_label}
        assert gap.leader == "eagle" and gap.leader_depth == 2 and gap.n_pairs == 15
        assert gap.diff == pytest.approx(best["eagle"].speedup.mean - best[gap.drafting].speedup.mean, abs=0.03)
        assert gap.diff > 0 and gap.significant and gap.ci_low > 0


def test_methods_section_shows_ngram_without_a_depth(methods_run, tmp_path):
    store, run = methods_run
    report = build_report(store, run)
    assert report.ngram_methods == {"ngram", "ngram-simple"}
    assert [(g.depth, g.drafters) for g in report.grids] == [(1, ["eagle", "small"]), (2, ["eagle", "small"])]
    with coarse_plots():
        paths = write_report(store, run, tmp_path / "out")
    md = paths["report.md"].read_text()
    section = md[md.index("## Drafting methods"):]
    row = next(line for line in section.splitlines() if line.startswith("| Q8_0 | 3 | ngram |"))
    assert "| – (≤48) |" in row and "× [" in row and "✱" in row
    assert "| Q8_0 | 1 | eagle | draft-eagle3 | 2 |" in section and "| leader |" in section
    rows = {(r["model"], r["drafting"], r["depth"]): r for r in csv.DictReader(paths["drafting.csv"].open())}
    ngram = rows[("Q8_0", "ngram", "48")]
    assert ngram["is_ngram"] == "True" and 6 < float(ngram["draft_length_mean"]) < 10
    assert float(ngram["speedup_behind_leader"]) > 0 and ngram["speedup_behind_significant"] == "True"
    assert rows[("Q8_0", "eagle", "2")]["speedup_behind_leader"] == ""
    assert paths["drafting_methods.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the command line -----------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--keep", "4"], "--keep 4: keep between 1 and 3 of the model's 4 layers"),
    (["--keep", "0"], "--keep 0: keep between 1 and 3"),
    (["--keep", "2", "--keep-last", "3"], "--keep-last 3: between 0 and --keep (2)"),
])
def test_prune_refuses_impossible_layer_counts_in_one_line(tmp_path, capsys, argv, message):
    from specsweep.cli import main
    from tests.hf_layout import tiny_gguf
    model = tiny_gguf(tmp_path / "m.gguf", n_tensors=4)
    code = main(["models", "prune", str(model), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: ") and message in err and err.count("\n") == 1


def test_a_pruning_the_engine_could_not_load_is_refused_in_one_line(capsys):
    from specsweep.cli import main
    from specsweep.quantize import default_keep_last
    from specsweep.trained import trained_file
    gemma4 = trained_file("gemma4-mini", "target")  # full attention at layers 3, 7, …, 23
    code = main(["models", "prune", str(gemma4), "--keep", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "layers [0, 1] of gemma4-mini-F16.gguf are all sliding-window layers" in err and "--keep-last 1" in err
    assert [default_keep_last(gemma4, keep) for keep in (2, 3, 4)] == [1, 1, 0]


def test_models_without_full_attention_tensors_prune_as_asked(tmp_path):
    from specsweep.quantize import check_loadable_layers, default_keep_last
    from tests.hf_layout import tiny_gguf
    model = tiny_gguf(tmp_path / "m.gguf", n_tensors=4)
    assert default_keep_last(model, 1) == 0
    check_loadable_layers(model, (0,))  # no sliding-window pattern: nothing to refuse


def test_kept_layers_take_the_first_and_the_last():
    from specsweep.quantize import kept_layers
    assert kept_layers(30, 4) == (0, 1, 2, 3)
    assert kept_layers(30, 4, keep_last=1) == (0, 1, 2, 29)
    assert kept_layers(30, 2, keep_last=2) == (28, 29)


def test_ngram_size_flags_reach_ngram_entries_only(tmp_path, capsys):
    from specsweep.cli import build_parser, main
    from specsweep.cli.options import config_from_args
    model = tmp_path / "m.gguf"
    args = build_parser().parse_args(["run", "--model", f"m={model}", "--drafting", "s=draft-simple:d.gguf",
                                      "--drafting", "mod=ngram-mod", "--depths", "0-2", "--ngram-size-m", "8"])
    small, mod = config_from_args(args).drafting_entries()
    assert (small.ngram_size_m, mod.ngram_size_m, mod.server_depths()) == (None, 8, (0, 8))
    code = main(["run", "--model", f"m={model}", "--spec-type", "draft-mtp", "--ngram-size-n", "3", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "Error: --ngram-size-n applies to n-gram types only" in err and err.count("\n") == 1


def test_prune_layers_drops_the_other_layers_once(tmp_path):
    import stat
    from specsweep.quantize import prune_layers
    from tests.hf_layout import tiny_gguf
    tool = tmp_path / "llama-quantize"  # records its argv and writes the output like the real one
    tool.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\ncp "$4" "$5"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)

    class Engine:
        def tool(self, name):
            return tool

        def version(self):
            return "b1-test"
    model = tiny_gguf(tmp_path / "m.gguf", n_tensors=6)
    out = prune_layers(Engine(), model, 3, keep_last=1, out=tmp_path / "p.gguf")
    again = prune_layers(Engine(), model, 3, keep_last=1, out=tmp_path / "p.gguf")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert out == again == tmp_path / "p.gguf" and out.is_file()
    assert calls == [f"--allow-requantize --prune-layers 2,3,4 {model} {out} Q8_0"]  # made once: keeps 0, 1, 5


def test_pruning_slices_per_layer_metadata_arrays(tmp_path):
    """llama-quantize --prune-layers keeps per-layer arrays whole; the engine then refuses the file
    (found on Gemma-4: "head_count_kv has wrong array length; expected 4, got 24")."""
    import gguf
    import numpy as np
    from specsweep.quantize import slice_layer_arrays
    path = tmp_path / "pruned.gguf"
    writer = gguf.GGUFWriter(path, "gemma4")
    writer.add_block_count(3)  # what llama-quantize writes: the new count, the old arrays
    writer.add_array("gemma4.attention.head_count_kv", [2, 2, 2, 1, 2, 2])
    writer.add_array("gemma4.attention.sliding_window_pattern", [True, True, True, False, True, False])
    writer.add_array("gemma4.some_pair", [7, 8])  # not per-layer: left as it is
    writer.add_token_list(["a", "b", "c", "d", "e", "f"])  # as long as the layers, but not the arch's
    writer.add_tensor("blk.0.weight", np.arange(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert slice_layer_arrays(path, [0, 1, 5], block_count=6) == [
        "gemma4.attention.head_count_kv", "gemma4.attention.sliding_window_pattern"]
    reader = gguf.GGUFReader(path)
    assert reader.get_field("gemma4.attention.head_count_kv").contents() == [2, 2, 2]
    assert reader.get_field("gemma4.attention.sliding_window_pattern").contents() == [True, True, False]
    assert reader.get_field("gemma4.some_pair").contents() == [7, 8]
    assert len(reader.get_field("tokenizer.ggml.tokens").contents()) == 6
    assert np.array_equal(reader.tensors[0].data, np.arange(8, dtype=np.float32))
    assert slice_layer_arrays(path, [0, 1, 2], block_count=6) == []  # nothing left to slice: untouched
