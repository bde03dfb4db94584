"""Bad input through the CLI: one clear line, exit code 2, no traceback, no server started."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def assert_one_line(result, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def sweep(tmp_path, model, *extra):
    return run_cli("run", "--model", f"m={model}", "--spec-type", "ngram-simple", "--depths", "0,1",
                   "--reps", "1", "--prompt-limit", "1", "--max-tokens", "8", "--db", tmp_path / "r.db", *extra,
                   timeout=120)


@pytest.mark.parametrize("text, where", [('name = "x"\n[drafting]\ndepths = = [0]\n', "line 3, column 10"),
                                         ('name = "x"\n[drafting]\ndepths = [0, 1\n', "line 3, column 15")])
def test_invalid_toml_names_line_and_column(tmp_path, text, where, no_orphans):
    config = tmp_path / "s.toml"
    config.write_text(text)
    assert_one_line(run_cli("run", "--config", config), where)


def test_mistyped_key_names_file_line_and_key(tmp_path, model_path, no_orphans):
    config = tmp_path / "s.toml"
    config.write_text(f'[[models]]\nlabel = "a"\npath = "{model_path}"\n\n[sampling]\ntemprature = 0.3\n')
    assert_one_line(run_cli("run", "--config", config), f"{config}:6: unknown key 'temprature'")


@pytest.mark.parametrize("depths, needle", [("0,-1", "not a non-negative integer"),
                                            ("0,1.5", "not a non-negative integer"),
                                            ("two", "not a non-negative integer")])
def test_bad_depths(tmp_path, model_path, depths, needle, no_orphans):
    assert_one_line(run_cli("run", "--model", f"m={model_path}", "--depths", depths, "--db", tmp_path / "r.db"),
                    needle)


def test_temperature_out_of_range(tmp_path, model_path, no_orphans):
    assert_one_line(sweep(tmp_path, model_path, "--temperature", "3"), "temperature")


def test_output_path_that_cannot_be_written_is_refused_first(tmp_path, model_path, no_orphans):
    result = run_cli("run", "--model", f"m={model_path}", "--spec-type", "ngram-simple", "--depths", "0",
                     "--db", tmp_path / "no" / "such" / "dir" / "r.db")
    assert_one_line(result, "does not exist")


def test_missing_engine(tmp_path, model_path, no_orphans):
    result = run_cli("run", "--model", f"m={model_path}", "--spec-type", "ngram-simple", "--depths", "0",
                     "--db", tmp_path / "r.db", env={"SPECSWEEP_LLAMA_SERVER": str(tmp_path / "nope")})
    assert_one_line(result, "not an executable file")


def test_engine_without_the_spec_type(tmp_path, model_path, no_orphans):
    old = tmp_path / "llama-server"  # an engine whose --help lists no MTP drafting
    old.write_text("#!/bin/sh\necho '--spec-type [none|draft-simple|ngram-simple]'\n")
    old.chmod(old.stat().st_mode | stat.S_IEXEC)
    result = run_cli("run", "--model", f"m={model_path}", "--spec-type", "draft-mtp", "--depths", "0,1",
                     "--db", tmp_path / "r.db", "--llama-server", old)
    assert_one_line(result, "does not support --spec-type draft-mtp")


def test_draft_model_with_another_vocabulary(tmp_path, model_path, no_orphans):
    import gguf
    other = tmp_path / "other-vocab.gguf"
    writer = gguf.GGUFWriter(str(other), "llama")
    writer.add_token_list([f"tok{i}" for i in range(100)])
    writer.add_tensor("token_embd.weight", np.zeros((100, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = run_cli("run", "--model", f"m={model_path}", "--draft-model", other, "--depths", "0,1",
                     "--db", tmp_path / "r.db")
    assert_one_line(result, "different vocabulary")


def test_newer_database_is_refused(tmp_path, model_path, no_orphans):
    import sqlite3
    db = tmp_path / "r.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert_one_line(run_cli("runs", "--db", db), "newer")
