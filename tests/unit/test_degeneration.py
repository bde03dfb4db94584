"""Degenerate generations: the measures on constructed texts, and the report's figures with and
without degenerate requests on a stored run."""

from __future__ import annotations

import csv
import json
import re

import pytest

from specsweep.degeneration import (THRESHOLDS, excerpt, longest_repeat, measure, repeat_share, tail_loop)
from specsweep.report import build_report
from specsweep.report.document import document
from specsweep.report.exports import CSV, JSON, MARKDOWN, export
from specsweep.report.render import blocks_to_markdown
from specsweep.store import Store
from tests.synthetic_run import build_run

PROSE = ("Speculative decoding lets a small draft model propose several tokens that the large target model then "
         "verifies in one forward pass. When the draft agrees with the target, the accepted tokens come almost for "
         "free; when it disagrees, the target's own token replaces the first rejected one and nothing is lost but "
         "the draft's time. How much it helps depends on the acceptance rate, on how many tokens are drafted per "
         "step, and on how expensive one draft step is compared with a target step. Quantizing the target changes "
         "its distribution a little, and so it changes how often the draft is right.")
CODE = '''def merge_intervals(intervals):
    """Merge overlapping closed intervals and return them sorted by start."""
    if not intervals:
        return []
    ordered = sorted(intervals, key=lambda pair: pair[0])
    merged = [list(ordered[0])]
    for start, end in ordered[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def test_merge_intervals():
    assert merge_intervals([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]
    assert merge_intervals([]) == []
'''
LOOP_LINE = "The ocean is a sea of dreams,\n"


def tokens(text: str) -> tuple[list[int], list[str]]:
    """A stand-in BPE: words with their leading space, punctuation runs, each other whitespace character
    on its own (as a model emits a blank run token by token); ids by first sight."""
    pieces = re.findall(r" ?\w+| ?[^\w\s]+|\s", text)
    ids: dict[str, int] = {}
    return [ids.setdefault(p, len(ids)) for p in pieces], pieces


def measured(text: str, cut: bool):
    ids, pieces = tokens(text)
    assert "".join(pieces) == text
    return measure(ids, pieces, hit_max_tokens=cut)


def test_clean_prose_is_not_degenerate_even_when_cut_at_max_tokens():
    m = measured(PROSE, cut=True)
    assert m.tokens > 100 and not m.degenerate
    assert m.repeat_share < 0.1 and m.whitespace_share < 0.1 and m.tail_loop < THRESHOLDS.tail_loop


def test_code_with_indentation_is_not_degenerate():
    m = measured(CODE, cut=True)
    assert not m.degenerate, m.reasons()
    assert 0.1 < m.whitespace_share < THRESHOLDS.whitespace_share  # indentation is whitespace, but not a run
    assert m.repeat_share < THRESHOLDS.repeat_share


def test_a_loop_cut_by_max_tokens_is_degenerate_on_every_measure():
    m = measured(LOOP_LINE * 30, cut=True)
    period = len(tokens(LOOP_LINE)[0])
    assert m.degenerate and len(m.reasons()) == 2  # repeats and max_tokens inside the loop
    assert m.repeat_share > 0.9
    assert m.tail_loop == m.tokens  # the whole generation is the loop
    assert m.longest_repeat == m.tokens - period


def test_whitespace_runs_are_degenerate_though_they_end_the_generation_cleanly():
    text = "Here is the answer:" + "".join("\n" + " " * (i % 7) + "\t" for i in range(80)) + "Done."
    m = measured(text, cut=False)
    assert m.whitespace_share > THRESHOLDS.whitespace_share
    assert m.degenerate and any("whitespace" in r for r in m.reasons())


def test_whitespace_that_tokenizes_into_fewer_tokens_still_counts():
    """Generated token by token, a blank run merges when tokenized again (or is trimmed from the end
    of the message): the generated tokens the text does not account for are that whitespace."""
    pieces = ["Answer", ":", "\n" * 60]
    m = measure([1, 2, 3], pieces, hit_max_tokens=True, generated=62)
    assert m.whitespace_share == pytest.approx(60 / 62, abs=1e-4) and m.degenerate
    assert measure([1, 2, 3], pieces, hit_max_tokens=True).whitespace_share == pytest.approx(1 / 3, abs=1e-4)


def test_a_loop_that_starts_halfway_is_caught_by_where_the_generation_ended():
    clean_ids, _ = tokens(PROSE)
    text = PROSE + " " + LOOP_LINE * 14
    m = measured(text, cut=True)
    assert m.tail_loop >= m.tokens - len(clean_ids) - 8  # the loop spans the second half
    assert m.repeat_share < THRESHOLDS.repeat_share  # half the text is clean: repeats alone would not say so
    assert m.degenerate and m.reasons() == [f"max_tokens inside a {m.tail_loop}-token loop"]
    # The same text that ended on its own (EOS) is a finished answer with a repeated coda, not a cut loop.
    assert not measured(text, cut=False).degenerate


def test_measures_on_exact_sequences():
    assert repeat_share([1, 2, 3, 4, 1, 2, 3, 4]) == pytest.approx(1 / 5)
    assert repeat_share([1, 2, 3]) == 0.0
    assert longest_repeat([1, 2, 3, 1, 2, 3, 1, 2]) == 5  # overlapping occurrences at 0 and 3
    assert longest_repeat([5, 6, 7, 8]) == 0
    assert tail_loop([9, 8, 1, 2, 3, 1, 2, 3, 1, 2]) == 8  # period 3 from index 2 onward
    assert tail_loop([1, 2, 3, 4, 5, 6]) == 0
    assert tail_loop([7, 1, 1]) == 2  # a repeated last token is a loop of period 1 (too short to count)
    with pytest.raises(ValueError):
        measure([1, 2], ["a"], hit_max_tokens=False)


def test_short_or_empty_generations_are_never_degenerate():
    assert not measured("ok ok ok", cut=True).degenerate
    assert measure([], [], hit_max_tokens=True).tokens == 0


def test_excerpt_shows_start_and_end_on_one_line():
    text = "Start of the answer\n" + "loop\n" * 100
    shown = excerpt(text, width=20)
    assert "\n" not in shown and shown.startswith("Start of the answer⏎") and shown.endswith("loop⏎")
    assert " … " in shown and excerpt(None) == ""


# The report ---------------------------------------------------------------------------------------------

LOOPED = ("Q4_K_M", ("p-code-1", "p-math-1"))  # at depth ≥ 1, rep 0: degenerate, every draft accepted


def _mark(store: Store, run_id: int) -> None:
    """Give every stored request clean measures, and make LOOPED's requests degenerate loops that the
    drafter predicts perfectly (every drafted token accepted)."""
    store.conn.execute("UPDATE requests SET degen_tokens = 64, degen_repeat_share = 0.1, degen_longest_repeat = 4,"
                       " degen_whitespace_share = 0.05, degen_tail_loop = 0, degenerate = 0 WHERE run_id = ?",
                       (run_id,))
    store.conn.execute(f"UPDATE requests SET degen_repeat_share = 0.93, degen_tail_loop = 60, degenerate = 1,"
                       f" draft_n_accepted = draft_n, content = ? WHERE run_id = ? AND model_label = ? AND depth > 0"
                       f" AND rep = 0 AND prompt_id IN ({', '.join('?' * len(LOOPED[1]))})",
                       ("Sure!\n" + LOOP_LINE * 12, run_id, LOOPED[0], *LOOPED[1]))


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    store, run = build_run(tmp_path_factory.mktemp("degen") / "degen.db", fidelity=False)
    _mark(store, run.id)
    return store, run


def test_report_shows_acceptance_with_and_without_degenerate_requests(marked, tmp_path):
    store, run = marked
    # The text outputs only: the plots and the HTML page do not show degeneration (test_report.py covers them).
    paths = export(store, run, (MARKDOWN, CSV, JSON), tmp_path / "out")
    md = paths["report.md"].read_text()
    section = md[md.index("## Degenerate generations"):md.index("## Speed")]
    assert "**6 of 144** measured ok requests are degenerate" in section
    assert "Protocol default: degenerate requests are kept in the store, marked, and counted in every figure" in section
    row = next(line for line in section.splitlines() if line.startswith("| Q4_K_M | 1 |"))
    assert "2 / 12 (17%)" in row and "(n=3 reps, 12 requests)" in row and "(n=3 reps, 10 requests)" in row
    assert row.rstrip(" |").endswith("⚠")
    assert "- Q4_K_M depth 1 (draft-simple): acceptance" in section  # a warning per driven cell
    assert "vs Q8_0:" in section  # … and one for the difference from the neighbouring quant
    assert "- Q2_K depth 1 (draft-simple): vs Q4_K_M:" in section  # clean itself, but its neighbour is not
    worst = section[section.index("| Model | depth | rep | prompt |"):]
    first = worst.splitlines()[2]
    assert first.startswith("| Q4_K_M |") and "4-gram repeats 0.93" in first and "The ocean is a sea" in first

    rows = list(csv.DictReader(paths["results.csv"].open()))
    q4 = next(r for r in rows if r["model"] == "Q4_K_M" and r["depth"] == "1")
    assert q4["degenerate_n"] == "2" and q4["degenerate_measured"] == "12" and q4["clean_requests"] == "10"
    assert float(q4["acceptance_all_mean"]) > float(q4["acceptance_clean_mean"])
    assert q4["acceptance_mean"] == q4["acceptance_all_mean"]  # the protocol default counts them
    assert float(q4["degenerate_shift"]) == pytest.approx(
        float(q4["acceptance_clean_mean"]) - float(q4["acceptance_all_mean"]), abs=1e-5)
    q8 = next(r for r in rows if r["model"] == "Q8_0" and r["depth"] == "1")
    assert q8["degenerate_n"] == "0" and q8["degenerate_warning"] == ""

    data = json.loads(paths["results.json"].read_text())
    deg = data["degeneration"]
    assert deg["degenerate"] == 6 and deg["excluded_from_headline"] is False
    assert deg["protocol_default_excluded"] is False and deg["thresholds"]["repeat_share"] == THRESHOLDS.repeat_share
    assert deg["worst"][0]["degenerate"] == 1 and "The ocean is a sea" in deg["worst"][0]["excerpt"]


def test_exclude_degenerate_changes_the_headline_figures_only(marked):
    store, run = marked
    counted_report = build_report(store, run)
    counted = {(r.model, r.depth): r for r in counted_report.rows}
    excluded_run = type(run)(**{**run.__dict__, "config": {**run.config, "exclude_degenerate": True}})
    report = build_report(store, excluded_run)
    rows = {(r.model, r.depth): r for r in report.rows}
    q4, q4_counted = rows[("Q4_K_M", 1)], counted[("Q4_K_M", 1)]
    assert q4.acceptance_mean == pytest.approx(q4.acceptance_clean_mean)
    assert q4.acceptance_mean < q4_counted.acceptance_mean
    assert q4.n_requests == 10 and q4_counted.n_requests == 12
    assert q4.acceptance_all_mean == pytest.approx(q4_counted.acceptance_mean)  # still shown beside it
    assert rows[("Q8_0", 1)].acceptance_mean == pytest.approx(counted[("Q8_0", 1)].acceptance_mean)
    assert len(report.records) == len(counted_report.records)  # kept in the store, marked
    md = blocks_to_markdown(document(report))
    assert "left out of this and every headline figure" in md
    assert "in this run they are left out of the headline figures (`--exclude-degenerate`)" in md


def test_a_run_stored_without_measures_says_not_measured(tmp_path):
    store, run = build_run(tmp_path / "old.db", fidelity=False, models=["Q8_0"])
    report = build_report(store, run)
    assert report.degeneration.measured == 0
    assert all(r.degenerate_n is None and r.acceptance_clean_mean is None and r.degenerate_measured == 0
               for r in report.rows)
    md = blocks_to_markdown(document(report))
    assert "Not measured: the 48 ok requests of this run were stored before" in md
