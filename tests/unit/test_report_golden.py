"""Golden report files for the committed real run ``tests/fixtures/sweep-run.db``.

The report of a stored run is deterministic (fixed bootstrap seed, times from the store, fixed
ordering), so report.md, results.csv and results.json are compared byte for byte with
``tests/golden/sweep-run/``.

The fixture is the database of a real ``specsweep demo`` run (3 quants of SmolLM2-135M drafted by
its F16 reference, depths 0-4, 3 reps, mixed-5, with fidelity). Regenerate it with:

    .venv/bin/specsweep demo --out /tmp/fixture-demo && cp /tmp/fixture-demo/demo.db tests/fixtures/sweep-run.db

Regenerate the golden files after an intended change to the report, or after regenerating the fixture:

    SPECSWEEP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_report_golden.py

then review ``git diff tests/golden/`` before committing. Until the fixture exists these tests
fail; a missing golden file fails with the command above.
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path

import pytest

from specsweep.report import write_report
from specsweep.store import Store
from tests.plot_resolution import coarse_plots

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "sweep-run.db"
GOLDEN = TESTS / "golden" / "sweep-run"
FILES = ("report.md", "results.csv", "results.json")
UPDATE = os.environ.get("SPECSWEEP_UPDATE_GOLDEN") == "1"
REGENERATE = "SPECSWEEP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_report_golden.py"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    if not FIXTURE.exists():
        pytest.fail(f"{FIXTURE.relative_to(TESTS.parent)} is missing; see this module's docstring")
    # A copy: opening a WAL database, even read-only, may need to create files beside it.
    work = tmp_path_factory.mktemp("golden")
    db = work / FIXTURE.name
    shutil.copy(FIXTURE, db)
    store = Store(db, readonly=True)
    run = store.run("latest")
    with coarse_plots():  # the plots are written, never compared
        return write_report(store, run, work / "out")


@pytest.mark.parametrize("name", FILES)
def test_report_matches_golden(outputs, name):
    got = outputs[name].read_text(encoding="utf-8")
    golden = GOLDEN / name
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
        pytest.skip(f"updated {golden.relative_to(TESTS.parent)}: review with git diff")
    if not golden.exists():
        pytest.fail(f"{golden.relative_to(TESTS.parent)} is missing; generate it with: {REGENERATE}")
    want = golden.read_text(encoding="utf-8")
    if got != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                 f"golden/{name}", f"now/{name}"))[:80])
        pytest.fail(f"{name} differs from the golden file (if intended: {REGENERATE}):\n{diff}")


def test_golden_acceptance_table_has_the_published_shape(outputs):
    """Whatever the numbers, the headline table keeps the hand-made experiment's layout."""
    md = outputs["report.md"].read_text(encoding="utf-8")
    section = md[md.index("## Acceptance\n"):]
    lines = section.splitlines()
    assert lines[2].startswith("| Model | n=1 |") and lines[3].startswith("|---|---|")
    assert "mean ±1σ over n=" in section.split("\n## ")[0]
