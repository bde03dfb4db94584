"""report.html in a real browser: headless Chromium renders it, and its DOM holds the plots
(embedded as data URIs) and the acceptance table.

Uses the committed real run ``tests/fixtures/sweep-run.db`` (fidelity included, so all four plots
appear). It starts no llama-server, but a browser: e2e tier. The page and a full-page screenshot are kept under ``test-artifacts/report_html/`` (gitignored) for a look.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from specsweep.report import write_html
from specsweep.store import Store

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "sweep-run.db"
ARTIFACTS = ROOT / "test-artifacts" / "report_html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")]


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    # Flags: no sandbox (root in a container), nothing reaching the network, a throwaway profile.
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def _store(tmp_path: Path):
    shutil.copy(FIXTURE, tmp_path / FIXTURE.name)
    store = Store(tmp_path / FIXTURE.name, readonly=True)
    return store, store.run("latest")


def test_report_html_renders_in_chromium(tmp_path):
    store, run = _store(tmp_path)
    page = write_html(store, run, tmp_path / "out")
    expected_plots = ["acceptance_vs_depth.png", "speed_vs_depth.png", "memory_frontier.png", "per_position.png",
                      "acceptance_vs_top1.png"]
    assert store.fidelity(run.id)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(page, ARTIFACTS / "report.html")
    shot = ARTIFACTS / "screenshot.png"
    shot.unlink(missing_ok=True)
    url = page.resolve().as_uri()
    result = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000",
                       "--hide-scrollbars", url)
    assert shot.exists(), f"chromium wrote no screenshot (exit {result.returncode}):\n{result.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 100_000, len(data)  # a rendered page, not a blank one

    dom = _chromium(tmp_path / "profile2", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for name in expected_plots:
        assert re.search(rf'<img src="data:image/png;base64,[A-Za-z0-9+/=]{{1000,}}"[^>]*data-name="{name}"', html), name
    assert html.count('<img src="data:image/png;base64,') == len(expected_plots)
    section = html[html.index("<h2>Acceptance</h2>"):]
    table = section[:section.index("</table>")]
    assert "<th>Model</th><th>n=1</th>" in table
    assert re.search(r'<td class="num">\d+\.\d ±\d+\.\d%</td>', table)
    assert "<link" not in html and "<script" not in html  # nothing fetched, nothing run
