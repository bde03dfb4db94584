"""Bad input through ``main(argv)``, in-process: one ``Error:`` line, exit code 2, no traceback.

Every error here is raised before any server starts, so none needs the engine or the default
model: the models are tiny GGUF files written here, the engine a shell script that only answers
``--help``.
"""

from __future__ import annotations

import sqlite3

import pytest

from tests.cli_support import assert_one_line, fake_engine, run_main, sweep, tiny_gguf


@pytest.mark.parametrize("text, where", [('name = "x"\n[drafting]\ndepths = = [0]\n', "line 3, column 10"),
                                         ('name = "x"\n[drafting]\ndepths = [0, 1\n', "line 3, column 15")])
def test_invalid_toml_names_line_and_column(tmp_path, capsys, text, where):
    config = tmp_path / "s.toml"
    config.write_text(text)
    assert_one_line(run_main(capsys, "run", "--config", config), where)


def test_mistyped_key_names_file_line_and_key(tmp_path, capsys, model):
    config = tmp_path / "s.toml"
    config.write_text(f'[[models]]\nlabel = "a"\npath = "{model}"\n\n[sampling]\ntemprature = 0.3\n')
    assert_one_line(run_main(capsys, "run", "--config", config), f"{config}:6: unknown key 'temprature'")


@pytest.mark.parametrize("depths", ["0,-1", "0,1.5", "two"])
def test_bad_depths(tmp_path, capsys, model, depths):
    assert_one_line(run_main(capsys, "run", "--model", f"m={model}", "--depths", depths, "--db", tmp_path / "r.db"),
                    "not a non-negative integer")


def test_temperature_out_of_range(tmp_path, capsys, model):
    assert_one_line(sweep(capsys, tmp_path, model, "--temperature", "3"), "temperature")


def test_unknown_flag_and_choice(capsys):
    assert_one_line(run_main(capsys, "run", "--no-such-flag"), "unrecognized arguments")
    assert_one_line(run_main(capsys, "run", "--flash-attn", "maybe"), "invalid choice")


def test_output_path_that_cannot_be_written_is_refused_first(tmp_path, capsys, model):
    assert_one_line(sweep(capsys, tmp_path, model, "--db", tmp_path / "no" / "such" / "dir" / "r.db"),
                    "does not exist")


def test_missing_engine(tmp_path, capsys, model, monkeypatch):
    monkeypatch.setenv("SPECSWEEP_LLAMA_SERVER", str(tmp_path / "nope"))
    result = run_main(capsys, "run", "--model", f"m={model}", "--spec-type", "ngram-simple", "--depths", "0",
                      "--db", tmp_path / "r.db")
    assert_one_line(result, "not an executable file")


def test_engine_without_the_spec_type(tmp_path, capsys, model):
    result = run_main(capsys, "run", "--model", f"m={model}", "--spec-type", "draft-mtp", "--depths", "0,1",
                      "--db", tmp_path / "r.db", "--llama-server", fake_engine(tmp_path))
    assert_one_line(result, "does not support --spec-type draft-mtp")


def test_draft_model_with_another_vocabulary(tmp_path, capsys, model):
    other = tiny_gguf(tmp_path / "other-vocab.gguf", 100)
    result = run_main(capsys, "run", "--model", f"m={model}", "--draft-model", other, "--depths", "0,1",
                      "--db", tmp_path / "r.db", "--llama-server", fake_engine(tmp_path))
    assert_one_line(result, "different vocabulary")


def test_newer_database_is_refused(tmp_path, capsys):
    db = tmp_path / "r.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert_one_line(run_main(capsys, "runs", "--db", db), "newer")


def test_runs_without_a_database_points_at_the_demo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line(run_main(capsys, "runs"), "no results database at specsweep.db")
    (tmp_path / "specsweep-demo").mkdir()
    sqlite3.connect(tmp_path / "specsweep-demo" / "demo.db").close()
    for command in ("runs", "report"):
        assert_one_line(run_main(capsys, command), "the demo's results are in specsweep-demo/demo.db")


def bad_model_run(capsys, tmp_path, model_arg, spec_type="ngram-simple"):
    return run_main(capsys, "run", "--model", model_arg, "--spec-type", spec_type, "--depths", "0,1",
                    "--reps", "1", "--prompt-limit", "1", "--max-tokens", "8", "--db", tmp_path / "r.db",
                    "--llama-server", fake_engine(tmp_path, "none|draft-mtp|ngram-simple"))


def test_truncated_gguf(tmp_path, capsys, model):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(model.read_bytes()[:-100])
    assert_one_line(bad_model_run(capsys, tmp_path, f"t={truncated}"), "truncated")


def test_text_file_named_gguf(tmp_path, capsys):
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are my notes, not a model\n")
    assert_one_line(bad_model_run(capsys, tmp_path, f"x={fake}"), "not a GGUF file")


def test_missing_model_path(tmp_path, capsys):
    assert_one_line(bad_model_run(capsys, tmp_path, f"x={tmp_path / 'nope.gguf'}"), "not found")


def test_draft_mtp_on_a_model_without_mtp_layers(tmp_path, capsys, model):
    assert_one_line(bad_model_run(capsys, tmp_path, f"smol={model}", "draft-mtp"), "MTP layers")
    assert not (tmp_path / "r-logs").exists()  # refused before any server started


def test_target_ci_with_too_few_prompts_for_an_interval(tmp_path, capsys, model):
    # --prompt-limit 1: no interval over prompts can be trusted, so no target can be met
    assert_one_line(sweep(capsys, tmp_path, model, "--target-ci", "2"), "--target-ci needs at least 3 prompts")
    assert not (tmp_path / "r.db").exists()  # refused before anything was measured or stored
