"""Reports from a store: the flat record, Markdown sections, CSV/JSON, plots, HTML, compare.

The runs are synthetic (``tests/synthetic_run.py``: three quants with falling α, depths 0-3,
3 reps × 4 prompts, optionally partial); a real stored run is covered by the golden files
(tests/unit/test_report_golden.py).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import fields

import pytest

from specsweep.errors import UsageError
from specsweep.report import (ReportRow, build_report, compare_cells, export_csv, export_json, render_compare,
                              render_markdown, report_columns, write_report)
from specsweep.report.document import document
from specsweep.report.render import blocks_to_markdown
from specsweep.store import Store
from tests.plot_resolution import coarse_plots
from tests.synthetic_run import DEPTHS, MODELS, PROMPTS, REPS, build_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Reading requests back from the store dominates test time, so each stored run and its
# outputs are made once per module and shared by the tests that only read them.
@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("full") / "full.db", disagreement=True)


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("partial") / "partial.db", partial=True, fidelity=False)


@pytest.fixture(scope="module")
def full_out(full, tmp_path_factory):
    return write_report(*full, tmp_path_factory.mktemp("full-out") / "new" / "folder")


@pytest.fixture(scope="module")
def partial_out(partial, tmp_path_factory):
    with coarse_plots():  # only full_out's plots are looked at
        return write_report(*partial, tmp_path_factory.mktemp("partial-out"))


@pytest.fixture(scope="module")
def full_report(full):
    return build_report(*full)


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}\n")
    end = md.find("\n## ", start + 1)
    return md[start:end if end >= 0 else None]


def test_report_row_has_one_row_per_cell_and_drives_csv_header(full_report, full_out):
    report = full_report
    assert [(r.model, r.depth) for r in report.rows] == [(m, d) for m in MODELS for d in DEPTHS]
    with full_out["results.csv"].open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [f.name for f in fields(ReportRow) if f.name != "drafting"] == report_columns(report.rows)
    assert len(rows) == 1 + len(MODELS) * len(DEPTHS)
    q8_d1 = next(r for r in report.rows if r.model == "Q8_0" and r.depth == 1)
    assert q8_d1.n_reps == REPS and q8_d1.n_requests == REPS * len(PROMPTS) and q8_d1.missing == 0
    assert 0.8 < q8_d1.acceptance_mean < 1 and q8_d1.acceptance_ci_low <= q8_d1.acceptance_mean
    assert q8_d1.file_size_bytes == MODELS["Q8_0"][1] and q8_d1.top1_pct == MODELS["Q8_0"][4]
    q4_d1 = next(r for r in report.rows if r.model == "Q4_K_M" and r.depth == 1)
    assert q4_d1.vs_prev_model == "Q8_0" and q4_d1.vs_prev_diff < 0  # this − previous: the worse quant loses


def test_export_functions_write_what_write_report_writes(full, full_out, tmp_path):
    assert export_csv(*full, tmp_path / "r.csv").read_text() == full_out["results.csv"].read_text()
    assert export_json(*full, tmp_path / "r.json").read_text() == full_out["results.json"].read_text()


def test_acceptance_table_matches_the_published_layout(full_out):
    table = _section(full_out["report.md"].read_text(), "Acceptance")
    lines = table.splitlines()
    assert lines[2] == "| Model | n=1 | n=2 | n=3 |"
    assert lines[3] == "|---|---|---|---|"
    assert [line.split(" | ")[0] for line in lines[4:7]] == ["| Q8_0", "| Q4_K_M", "| Q2_K"]
    assert re.fullmatch(r"\| Q8_0 \| \d+\.\d ±\d+\.\d% \| \d+\.\d ±\d+\.\d% \| \d+\.\d ±\d+\.\d% \|", lines[4])
    assert f"mean ±1σ over n={REPS} reps" in table


def test_markdown_has_every_section(full, full_out):
    md = full_out["report.md"].read_text()
    assert render_markdown(*full, plots=[p for p in full_out if p.endswith(".png")]) == md
    for title in ("Acceptance", "Speed", "Acceptance by draft position", "Acceptance by prompt category",
                  "Theory vs measurement", "Neighbouring models", "Fidelity and acceptance", "All cells",
                  "Completeness", "Cross-check of the three tallies", "Provenance"):
        assert f"## {title}\n" in md, title
    assert "**Recommendation:** fastest is" in md
    assert "Smallest model file within 1σ" in md or "No smaller model file" in md
    fid = _section(md, "Fidelity and acceptance")
    assert "Pearson r" in fid and "Spearman ρ" in fid and "top-1 agreement" in fid and "mean KLD" in fid
    assert "(0.33)" in fid  # exact Spearman p for 3 models, not the t approximation's 0
    prov = _section(md, "Provenance")
    assert "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e" in prov
    assert "NVIDIA H100" in prov and "temperature 0.3" in prov and "max_tokens 64" in prov
    assert "seeds 1000…1002" in prov and "key `key-full`" in prov
    cross = _section(md, "Cross-check of the three tallies")
    assert "1 of" in cross and "timings draft_n 31 != metrics 30" in cross
    assert "All 144 planned requests" in _section(md, "Completeness")


def test_columns_that_do_not_vary_are_not_printed(full_out):
    md = full_out["report.md"].read_text()
    cells = _section(md, "All cells")
    header = cells.splitlines()[2]
    assert "spec_type" not in header and "n_reps" not in header and "n_failed" not in header
    assert "model" in header and "acceptance" in header and "file_size_bytes" in header
    assert "spec_type draft-simple" in cells and f"n_reps {REPS}" in cells  # stated once instead
    assert "spec type" not in _section(md, "Acceptance")  # one drafting type: no column for it


def test_partial_run_lists_missing_and_failed_requests(partial, partial_out):
    md = partial_out["report.md"].read_text()
    assert "Run state **interrupted**" in md
    comp = _section(md, "Completeness")
    q2_d3 = next(line for line in comp.splitlines() if line.startswith("| Q2_K | 3 |"))
    assert "8 / 12" in q2_d3 and "rep 2: p-code-1, p-code-2, p-math-1, p-math-2" in q2_d3
    q8_d1 = next(line for line in comp.splitlines() if line.startswith("| Q8_0 | 1 |"))
    assert "11 / 12" in q8_d1 and "rep 0: p-code-2" in q8_d1 and "| 1 | 0 |" in q8_d1
    q8_d2 = next(line for line in comp.splitlines() if line.startswith("| Q8_0 | 2 |"))
    assert "12 / 12" in q8_d2 and "| 2 | 2 | none |" in q8_d2  # two failed attempts, two retries, recovered
    assert "2× `request timed out after 90 s`" in comp and "1× `HTTP 500`" in comp
    with partial_out["results.csv"].open(newline="") as fh:
        rows = {(r["model"], r["depth"]): r for r in csv.DictReader(fh)}
    assert rows[("Q2_K", "3")]["missing"] == "4" and rows[("Q2_K", "3")]["n_reps"] == "2"
    assert rows[("Q8_0", "2")]["n_failed"] == "2" and rows[("Q8_0", "2")]["missing"] == "0"
    assert "Fidelity" not in md and rows[("Q8_0", "2")]["kld_mean"] == ""  # no fidelity: no section, empty
    assert "acceptance_vs_top1.png" not in partial_out
    data = json.loads(partial_out["results.json"].read_text())
    assert {"rep": 2, "prompt_id": "p-math-2"} in next(
        c["missing"] for c in data["completeness"] if c["model"] == "Q2_K" and c["depth"] == 3)


def test_acceptance_cells_say_their_n_when_it_differs(partial_out):
    table = _section(partial_out["report.md"].read_text(), "Acceptance")
    assert "unless marked" in table and "(n=2)" in table.splitlines()[6]  # Q2_K at depth 3 has 2 reps


def test_a_run_with_nothing_stored_still_reports(tmp_path):
    store = Store(tmp_path / "empty.db")
    run = store.create_run("k", None, {"models": [{"label": "A"}], "drafting": {"spec_type": "draft-simple",
                                                                                "depths": [0, 1]},
                                       "sampling": {"reps": 2}}, {}, "0.1.0")
    with coarse_plots():
        paths = write_report(store, run, tmp_path / "out")
    md = paths["report.md"].read_text()
    assert "No requests are stored" in md and "## Provenance" in md
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_json_holds_rows_metadata_and_positions(full_out, full_report):
    data = json.loads(full_out["results.json"].read_text())
    assert data["run"]["run_key"] == "key-full" and data["run"]["config"]["sampling"]["reps"] == REPS
    assert data["run"]["provenance"]["engine"]["source"]["version"] == "0.3.36"
    assert list(data["rows"][0]) == report_columns(full_report.rows)
    assert len(data["rows"]) == len(MODELS) * len(DEPTHS)
    pooled = [p for p in data["per_position"] if p["depth"] is None and p["model"] == "Q8_0"]
    assert [p["position"] for p in pooled] == [0, 1, 2]
    assert data["recommendation"]["model_label"] in MODELS
    assert {c["against"] for c in data["correlations"]} == {"top1_pct", "kld_mean"}


def test_no_nan_in_any_output(full_out, partial_out):
    for paths in (full_out, partial_out):
        for name in ("report.md", "results.csv", "results.json", "report.html"):
            text = paths[name].read_text()
            assert not re.search(r"\b(nan|inf|infinity)\b", text, re.IGNORECASE), name


def test_theory_section_compares_predicted_and_measured(full_report, full_out):
    q8 = next(t for t in full_report.theory if t.model == "Q8_0")
    assert abs(q8.alpha - MODELS["Q8_0"][0]) < 0.03  # the generator's α comes back
    assert q8.draft_cost is not None and 0 < q8.draft_cost < 1
    assert q8.predicted_best_depth is not None and q8.measured_best_depth is not None
    theory = _section(full_out["report.md"].read_text(), "Theory vs measurement")
    assert "τ predicted" in theory and "speedup measured" in theory


def test_plots_are_real_pngs(full_report, full_out):
    from specsweep.report import plots
    images = plots.render_plots(full_report)
    assert sorted(images) == ["acceptance_vs_depth.png", "acceptance_vs_top1.png", "memory_frontier.png",
                              "per_position.png", "speed_vs_depth.png"]
    for name, data in images.items():
        assert data[:8] == PNG_SIGNATURE and len(data) > 20_000, name
        assert data == full_out[name].read_bytes()  # deterministic bytes


def test_write_report_writes_everything_and_links_plots(full_out):
    assert set(full_out) == {"report.md", "results.csv", "results.json", "report.html", "acceptance_vs_depth.png",
                             "speed_vs_depth.png", "per_position.png", "acceptance_vs_top1.png", "memory_frontier.png"}
    md = full_out["report.md"].read_text()
    assert "![acceptance vs draft depth](acceptance_vs_depth.png)" in md
    page = full_out["report.html"].read_text()
    assert page.count('src="data:image/png;base64,') == 4  # no memory figures in this run: no frontier shown
    assert "http://" not in page and "https://" not in page  # self-contained


def test_bad_out_dir_fails_at_once_with_a_usage_error(full, tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("computed a report before checking the output paths")
    monkeypatch.setattr("specsweep.report.exports.build_report", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_report(*full, blocker)
    with pytest.raises(UsageError, match="cannot create"):
        write_report(*full, blocker / "sub")
    (tmp_path / "out" / "report.html").mkdir(parents=True)  # the last text output cannot be opened
    with pytest.raises(UsageError, match="cannot write .*report.html"):
        write_report(*full, tmp_path / "out")
    with pytest.raises(UsageError, match="cannot write"):
        export_csv(*full, tmp_path / "missing" / "r.csv")


def test_compare_of_a_run_with_itself_is_all_zero(full):
    store, run = full
    rows = compare_cells(store, run, store, run)
    assert rows and all(r.diff == 0.0 and not r.marked for r in rows if r.diff is not None)
    assert {r.metric for r in rows} == {"acceptance", "speedup", "decode_tps"}
    md = render_compare(store, run, store, run)
    body = [line for line in md.splitlines() if line.startswith("| Q")]
    assert body and not any("✱" in line or "+" in line for line in body)
    assert "| Q8_0 | 0.0 ±" in md


def test_compare_matches_by_label_and_marks_large_differences(full, tmp_path):
    # B has two of A's labels; its Q8_0 drafts are accepted far less often (α 0.5 instead of 0.9).
    b = build_run(tmp_path / "b.db", models=["Q8_0", "Q2_K"], fidelity=False, alphas={"Q8_0": 0.5})
    rows = compare_cells(*full, *b)
    only_a = [r for r in rows if r.model == "Q4_K_M"]
    assert only_a and all(r.diff is None and r.b is None for r in only_a)
    worse = [r for r in rows if r.model == "Q8_0" and r.metric == "acceptance" and r.depth > 0]
    assert len(worse) == 3 and all(r.marked and r.diff < -0.2 for r in worse)
    md = render_compare(*full, *b)
    assert "only in A" in md and "✱" in md
    assert all(math.isfinite(r.spread) for r in rows if r.spread is not None)


def test_spec_type_is_shown_only_when_drafting_types_vary(tmp_path):
    store, run = build_run(tmp_path / "two.db", models=["Q8_0", "Q2_K"], fidelity=False)
    store.conn.execute("UPDATE requests SET spec_type = 'ngram-simple' WHERE depth = 3")
    report = build_report(store, run)
    assert report.spec_types == ["draft-simple", "ngram-simple"]
    md = blocks_to_markdown(document(report))
    assert _section(md, "Acceptance").splitlines()[2] == "| Model | spec type | n=1 | n=2 | n=3 |"
    assert "| Q8_0 | ngram-simple | – | – | " in md
    assert "spec_type" in _section(md, "All cells").splitlines()[2]
    assert {spec for spec, _ in report.comparisons} == {"draft-simple", "ngram-simple"}


def test_print_main_table_still_prints_the_acceptance_table(full, full_report, capsys):
    from specsweep.report.render import acceptance_table, print_main_table
    print_main_table(*full)
    out = capsys.readouterr().err  # the sweep's console is stderr: stdout stays for data
    assert "acceptance" in out and "Q4_K_M" in out and "n=3" in out
    rows, note = acceptance_table(full_report.cells)
    assert rows[0] == ["model", "n=1", "n=2", "n=3"]
    assert note.startswith("mean ±1σ over") and all("%" in cell or cell == "–" for cell in rows[1][1:])


def test_engine_source_line_names_a_modified_tree_by_its_content_not_a_missing_sdist_hash():
    from specsweep.report.document import _source_line
    pinned = {"name": "llama-cpp-python", "version": "0.3.36", "sdist_sha256": "832db069" * 8}
    assert _source_line(pinned) == f"llama-cpp-python 0.3.36 sdist sha256 `{'832db069' * 8}`"
    patched = {"name": "llama-cpp-python", "version": "0.3.36+modified", "sdist_sha256": None,
               "origin": "tree, modified from llama-cpp-python 0.3.36", "content_id": "039e125e50ec" + "0" * 52}
    line = _source_line(patched)
    assert "None" not in line and "sdist" not in line
    assert "0.3.36+modified" in line and "modified from" in line and "039e125e50ec" in line


def test_the_engine_environment_is_recorded_and_shown(monkeypatch):
    from specsweep.engine.server import engine_environment
    from specsweep.report.document import _environment_text
    for name in list(__import__("os").environ):
        if name.startswith(("GGML_", "LLAMA_", "CUDA_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GGML_CUDA_DISABLE_GRAPHS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "64")  # removed before any server starts: not passed on
    monkeypatch.setenv("LLAMA_TRACE", "1")  # the tool's own, set per server
    monkeypatch.setenv("SPECSWEEP_UNRELATED", "x")
    environment = engine_environment()
    assert environment == {"CUDA_VISIBLE_DEVICES": "0", "GGML_CUDA_DISABLE_GRAPHS": "1"}
    assert _environment_text(environment) == "; environment `CUDA_VISIBLE_DEVICES=0`, `GGML_CUDA_DISABLE_GRAPHS=1`"
    assert _environment_text({}) == "" and _environment_text(None) == ""  # older runs: nothing to say
    # what may change the computation is part of the run key; the device and log format are not
    from specsweep.engine.server import computing_environment
    monkeypatch.setenv("LLAMA_LOG_COLORS", "0")
    assert computing_environment() == {"GGML_CUDA_DISABLE_GRAPHS": "1"}
