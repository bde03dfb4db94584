"""Helpers for in-process CLI tests: ``main(argv)`` with its stderr, the one-line error check,
a GGUF with a vocabulary, and an engine stand-in that only answers ``--help`` (for errors raised
before any server starts)."""

from __future__ import annotations

import stat

import numpy as np

from specsweep.cli import main


def run_main(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line(result, needle: str) -> None:
    code, err = result
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), err
    assert needle in lines[0], lines[0]


def tiny_gguf(path, n_vocab: int):
    import gguf
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list([f"tok{i}" for i in range(n_vocab)])
    writer.add_tensor("token_embd.weight", np.zeros((n_vocab, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def fake_engine(tmp_path, spec_types: str = "none|draft-simple|ngram-simple"):
    server = tmp_path / "llama-server"  # answers --help like the real one, lists only these types
    server.write_text(f"#!/bin/sh\necho '--spec-type [{spec_types}]'\n")
    server.chmod(server.stat().st_mode | stat.S_IEXEC)
    return server


def sweep(capsys, tmp_path, model, *extra):
    return run_main(capsys, "run", "--model", f"m={model}", "--spec-type", "ngram-simple", "--depths", "0,1",
                    "--reps", "1", "--prompt-limit", "1", "--max-tokens", "8", "--db", tmp_path / "r.db",
                    "--llama-server", fake_engine(tmp_path), *extra)
