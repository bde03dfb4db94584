"""Fixtures of the unit tier."""

from __future__ import annotations

import pytest

from tests.cli_support import tiny_gguf


@pytest.fixture
def model(tmp_path):
    return tiny_gguf(tmp_path / "model.gguf", 120)
