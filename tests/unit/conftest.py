"""Fixtures of the unit tier."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from specsweep.store import Store
from tests.cli_support import tiny_gguf

DEMO_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "sweep-run.db"


@pytest.fixture(scope="session")
def matplotlib_dir(request, tmp_path_factory) -> Path:
    """The unit tier's matplotlib config and font cache: pytest's own cache folder when there is one
    (.pytest_cache, kept between sessions), so that the font list (about 0.5 s) is not built again
    by every session; a session temporary folder as in tests/conftest.py otherwise."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("matplotlib") if cache is not None else tmp_path_factory.mktemp("matplotlib")


@pytest.fixture
def model(tmp_path):
    return tiny_gguf(tmp_path / "model.gguf", 120)


@pytest.fixture(scope="session")
def demo_records(tmp_path_factory) -> tuple:
    """The ok requests of the committed real demo run, read from a copy (opening a WAL database,
    even read-only, may create files beside it); a tuple, so no test can change another's."""
    copy = tmp_path_factory.mktemp("demo-run") / DEMO_RUN.name
    shutil.copy(DEMO_RUN, copy)
    store = Store(copy, readonly=True)
    return tuple(store.requests(store.run("latest").id, status="ok"))
