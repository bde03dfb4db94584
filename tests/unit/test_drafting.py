"""The drafting axis: several [[drafting]] entries in one sweep, from config to report."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import fields, replace
from pathlib import Path

import pytest

from specsweep.cli import main
from specsweep.config import Drafting, ModelSpec, Sampling, SweepConfig, load_toml, parse_drafting_flag
from specsweep.errors import ConfigError
from specsweep.plan import make_plan
from specsweep.prompts import Prompt
from specsweep.records import RequestRecord
from specsweep.report import build_report, write_report
from specsweep.store import Store
from tests.plot_resolution import coarse_plots

AXIS = """
[[models]]
label = "Q8_0"
path = "t.gguf"

[[drafting]]
label = "mtp"
spec_type = "draft-mtp"
depths = [0, 1, 2]

[[drafting]]
spec_type = "ngram-simple"
depths = [1, 2]

[[drafting]]
label = "small"
spec_type = "draft-simple"
draft_model = "small.gguf"
depths = [0, 3]
p_min = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_drafting_tables_load_with_labels_files_and_depths(tmp_path):
    config = load_toml(write(tmp_path, AXIS))
    mtp, ngram, small = config.drafting_entries()
    assert (mtp.name, ngram.name, small.name) == ("mtp", "ngram-simple", "small")
    assert small.draft_model == tmp_path / "small.gguf" and small.p_min == 0.5 and small.depths == (0, 3)
    assert ngram.draft_file(config.models[0]) is None and mtp.draft_file(config.models[0]) is None


def test_a_single_drafting_table_is_still_one_entry(tmp_path):
    config = load_toml(write(tmp_path, AXIS.split("[[drafting]]")[0] + '[drafting]\nspec_type = "draft-mtp"\n'))
    assert config.drafting_axis == () and [d.name for d in config.drafting_entries()] == ["draft-mtp"]


@pytest.mark.parametrize("change, message", [
    (('label = "mtp"', 'label = "small"'), "drafting labels must be unique; repeated: small"),
    (('spec_type = "ngram-simple"', 'spec_type = "ngram-simple"\nlabel = "mtp"'), "repeated: mtp"),
    (('spec_type = "draft-mtp"', 'spec_type = "draft-mpt"'), "drafting 'mtp': unknown spec type 'draft-mpt'"),
    (('depths = [1, 2]', 'depths = []'), "drafting 'ngram-simple': depths is empty"),
    (('draft_model = "small.gguf"\n', ''), "drafting 'small': --spec-type draft-simple needs a draft model"),
    (('label = "mtp"', 'label = "none"'), "drafting label 'none'"),
    (('label = "mtp"', 'lable = "mtp"'), "unknown key 'lable' in [drafting] (did you mean 'label'?)"),
])
def test_bad_drafting_entries_are_one_error(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        load_toml(write(tmp_path, AXIS.replace(*change)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_drafting_flag_parses_and_refuses_bad_input():
    assert parse_drafting_flag("q8=draft-mtp:asst-Q8_0.gguf") == Drafting(
        spec_type="draft-mtp", label="q8", draft_model=Path("asst-Q8_0.gguf"))
    assert parse_drafting_flag("ng=ngram-mod").draft_model is None
    for bad in ("draft-mtp", "x=", "=draft-mtp", "x=draft-nope"):
        with pytest.raises(ConfigError, match="--drafting"):
            parse_drafting_flag(bad)


@pytest.mark.parametrize("argv, message", [
    (["--drafting", "a=draft-mtp", "--spec-type", "draft-mtp"], "either --drafting"),
    (["--drafting", "a=draft-mtp", "--drafting", "a=ngram-simple"], "drafting labels must be unique"),
    (["--drafting", "a:draft-mtp"], "expected LABEL=SPEC_TYPE"),
])
def test_cli_drafting_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    code = main(["run", "--model", f"m={tmp_path / 'm.gguf'}", *argv, "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: ") and message in err and err.count("\n") == 1


def prompts(n):
    return [Prompt(f"p{i}", "coding", ({"role": "user", "content": f"q{i}"},)) for i in range(n)]


def test_plan_runs_one_baseline_per_model_then_each_entry():
    config = SweepConfig(
        models=(ModelSpec("A", Path("a.gguf"), draft_model=Path("asst.gguf")), ModelSpec("B", Path("b.gguf"))),
        drafting_axis=(Drafting("draft-mtp", (0, 1, 2), label="f16"),
                       Drafting("draft-mtp", (0, 2), label="q8", draft_model=Path("asst-q8.gguf")),
                       Drafting("ngram-simple", (1,))),
        sampling=Sampling(reps=1))
    plan = make_plan(config, prompts(2))
    assert [(g.model_label, g.drafting, g.spec_type, g.depth) for g in plan.groups] == [
        ("A", "none", "none", 0), ("A", "f16", "draft-mtp", 1), ("A", "f16", "draft-mtp", 2),
        ("A", "q8", "draft-mtp", 2), ("A", "ngram-simple", "ngram-simple", 48),
        ("B", "none", "none", 0), ("B", "f16", "draft-mtp", 1), ("B", "f16", "draft-mtp", 2),
        ("B", "q8", "draft-mtp", 2), ("B", "ngram-simple", "ngram-simple", 48)]
    files = {(g.model_label, g.drafting, g.depth): g.options.draft_model for g in plan.groups}
    assert files[("A", "f16", 1)] == Path("asst.gguf") and files[("A", "q8", 2)] == Path("asst-q8.gguf")
    assert files[("B", "f16", 1)] is None and files[("A", "ngram-simple", 48)] is None  # n-gram: no file
    assert files[("A", "none", 0)] is None
    cells = [r.cell for r in plan.requests()]
    assert len(cells) == len(set(cells)) and make_plan(config, prompts(2)) == plan


TARGETS = {"Q8_0": 0.0, "Q4_K_M": -0.04, "Q2_K": -0.12}  # acceptance shift by target quant
DRAFTERS = {"asst-F16": 0.0, "asst-Q8_0": -0.01, "asst-Q4_K_M": -0.02}  # … and by assistant quant


def _record(run_id, model, label, depth, rep, prompt, alpha, rng, started) -> RequestRecord:
    drafted = accepted = steps = produced = 0
    while produced < 64:
        n = depth
        k = 0
        while k < n and rng.random() < alpha:
            k += 1
        steps += 1
        drafted += n
        accepted += k
        produced += k + 1
    ms = steps * 10.0 + drafted * 1.0
    values = {f.name: None for f in fields(RequestRecord)}
    values.update(run_id=run_id, server_id=1, model_label=model, spec_type="draft-mtp" if depth else "none",
                  drafting=label if depth else "none", depth=depth, rep=rep, seed=1000 + rep, prompt_id=prompt,
                  category="coding", attempt=1, status="ok", started_at=started, wall_ms=ms + 5,
                  predicted_n=produced, predicted_ms=ms, draft_n=drafted, draft_n_accepted=accepted,
                  m_draft_tokens=drafted, m_accepted=accepted, m_steps=steps if depth else 0, log_steps=steps,
                  log_drafted=drafted, log_accepted=accepted, max_draft_len=depth, crosscheck="ok")
    return RequestRecord(**values)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """Three targets × the assistant at three quants (issue 10), depths 0-2, 3 reps × 4 prompts:
    the target quant moves acceptance far more than the assistant's."""
    store = Store(tmp_path_factory.mktemp("grid") / "grid.db")
    entries = [{"label": d, "spec_type": "draft-mtp", "draft_model": f"{d}.gguf", "depths": [0, 1, 2]}
               for d in DRAFTERS]
    config = {"models": [{"label": m} for m in TARGETS], "drafting": entries[0], "drafting_axis": entries,
              "sampling": {"reps": 3, "seed": 1000}, "prompt_ids": ["p0", "p1", "p2", "p3"]}
    run = store.create_run("grid", "grid", config, {}, "0")
    rng = random.Random(7)
    t = 1.0
    for model, shift in TARGETS.items():
        for label, dshift in [("none", 0.0)] + list(DRAFTERS.items()):
            for depth in ([0] if label == "none" else [1, 2]):
                for rep in range(3):
                    for i in range(4):
                        t += 1
                        store.add_request(_record(run.id, model, label, depth, rep, f"p{i}",
                                                  0.85 + shift + dshift, rng, t))
    return store, store.run(run.id)


def test_report_ranks_methods_and_says_which_axis_moves_acceptance(grid_run, tmp_path):
    store, run = grid_run
    report = build_report(store, run)
    assert report.several_drafting and [g.depth for g in report.grids] == [1, 2]
    assert [(m.model_label, m.rank) for m in report.methods][:3] == [("Q8_0", 1), ("Q8_0", 2), ("Q8_0", 3)]
    for grid in report.grids:
        assert grid.target_spread.value > grid.drafter_spread.value
        assert grid.difference.significant and grid.difference.ci_low > 0
        assert all(e.n == 3 for e in grid.cells.values())
    with coarse_plots():
        paths = write_report(store, run, tmp_path / "out")
    md = paths["report.md"].read_text()
    assert "## Drafting methods" in md and "## Target quant × drafter" in md
    assert "the **target quant** moves acceptance more" in md
    assert "| Model | drafting | n=1 | n=2 |" in md  # entries keyed by label, though all are draft-mtp
    assert {"drafting.csv", "drafter_grid.csv", "drafting_methods.png"} <= set(paths)
    rows = list(csv.DictReader(paths["drafting.csv"].open()))
    assert len(rows) == 3 * 3 * 2 and {r["spec_type"] for r in rows} == {"draft-mtp"}
    assert sum(r["is_best_depth"] == "True" for r in rows) == 9
    grid = list(csv.DictReader(paths["drafter_grid.csv"].open()))
    assert {r["figure"] for r in grid} == {"cell", "target mean", "drafter mean", "target spread",
                                           "drafter spread", "difference"}
    data = json.loads(paths["results.json"].read_text())
    assert data["drafting_methods"] and data["drafter_grid"] and "drafting" in data["rows"][1]
    assert list(csv.reader(paths["results.csv"].open()))[0][2] == "drafting"


def test_one_entry_adds_no_section_and_no_file(grid_run, tmp_path, monkeypatch):
    store, run = grid_run
    # The plots of a one-entry run are rendered for real by tests/unit/test_report.py (three
    # models, depths 0-3); here only which files are written and linked matters, and those come
    # from the run's config (plots.plot_names), so a PNG signature stands in for each image.
    from specsweep.report import plots
    monkeypatch.setattr(plots, "render_plots", lambda report: {
        name: b"\x89PNG\r\n\x1a\n" for name in plots.plot_names(bool(report.fidelity), report.several_drafting)})
    config = {**run.config, "drafting_axis": []}
    single = store.create_run("single", "single", config, {}, "0")
    for r in store.requests(run.id):
        if r.drafting in ("none", "asst-F16"):
            store.add_request(replace(r, run_id=single.id, drafting=r.spec_type))
    single = store.run(single.id)
    paths = write_report(store, single, tmp_path / "one")
    md = paths["report.md"].read_text()
    assert "Drafting methods" not in md and "× drafter" not in md and "| drafting |" not in md
    assert "drafting.csv" not in paths and "drafting_methods.png" not in paths
    assert "drafting" not in list(csv.reader(paths["results.csv"].open()))[0]
