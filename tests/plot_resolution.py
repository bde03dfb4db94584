"""``coarse_plots()``: a report's plots at 30 dpi instead of the 110 of real reports.

For tests that need a report's PNG files (written, linked, embedded) but assert nothing about
their pixels or size: matplotlib lays out and draws the same figures, about 15% faster. The
plots at the real resolution, their size and their determinism are tests/unit/test_report.py's.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

COARSE_DPI = 30


@contextmanager
def coarse_plots():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("specsweep.report.plots.DPI", COARSE_DPI)
        yield
