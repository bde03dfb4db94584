"""Models from patterns (labels, splits, projectors, drafters), the published protocol, assistant pairing."""

from __future__ import annotations

import numpy as np
import pytest

from specsweep.cli import main
from specsweep.config import PROTOCOLS, load_toml
from specsweep.discover import models_from_patterns, quant_tag
from specsweep.errors import ModelError
from specsweep.models import check_assistant, inspect_gguf
from specsweep.trained import trained_file

FILE_TYPES = {"Q8_0": 7, "Q5_K_S": 16, "IQ4_XS": 30, "IQ2_M": 29, "F16": 1}


def gguf_file(path, arch="gemma4", file_type="Q8_0", width=64, n_embd_out=None, split=None, typed=True, layers=2):
    import gguf
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_token_list([f"tok{i}" for i in range(32)])
    writer.add_block_count(layers)
    writer.add_embedding_length(width)
    if typed:
        writer.add_file_type(FILE_TYPES[file_type])
    if n_embd_out is not None:
        writer.add_uint32(f"{arch}.embedding_length_out", n_embd_out)
    if split is not None:
        writer.add_uint16("split.no", split[0] - 1)
        writer.add_uint16("split.count", split[1])
    writer.add_tensor("token_embd.weight", np.zeros((32, width), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("name, tag", [("gemma-4-31B-it-IQ4_XS.gguf", "IQ4_XS"), ("model.Q5_K_S.gguf", "Q5_K_S"),
                                       ("x-Q8_0-00001-of-00003.gguf", "Q8_0"), ("gemma4-mini-F16.gguf", "F16"),
                                       ("mtp-Q4_K_M.gguf", "Q4_K_M"), ("plain.gguf", None)])
def test_quant_tag_from_file_name(name, tag):
    assert quant_tag(name) == tag


def test_a_download_folder_becomes_a_labelled_ladder(tmp_path):
    gguf_file(tmp_path / "m-Q8_0.gguf", file_type="Q8_0")
    gguf_file(tmp_path / "m-IQ2_M.gguf", file_type="IQ2_M")
    for i in (1, 2):  # a split quant: one model, labelled by the first part
        gguf_file(tmp_path / f"m-IQ4_XS-0000{i}-of-00002.gguf", file_type="IQ4_XS", split=(i, 2))
    gguf_file(tmp_path / "mmproj-m-F16.gguf", arch="clip", file_type="F16")  # a projector is no target
    assistant = gguf_file(tmp_path / "m-assistant-F16.gguf", arch="gemma4-assistant", file_type="F16",
                          width=32, n_embd_out=64)
    specs, notes = models_from_patterns([str(tmp_path / "*.gguf")], draft_model=None)
    assert [s.label for s in specs] == ["Q8_0", "IQ4_XS", "IQ2_M"]  # most bits per weight first
    assert specs[1].path.name == "m-IQ4_XS-00001-of-00002.gguf"
    assert any(assistant.name in n and "drafter" in n for n in notes)
    with_draft, _ = models_from_patterns([str(tmp_path)], draft_model=assistant)
    assert all(s.draft_model == assistant for s in with_draft) and len(with_draft) == 3


def test_incomplete_split_and_empty_pattern_are_clear_errors(tmp_path):
    gguf_file(tmp_path / "m-Q8_0-00001-of-00003.gguf", split=(1, 3))
    with pytest.raises(ModelError, match="m-Q8_0-00002-of-00003.gguf"):
        models_from_patterns([str(tmp_path / "*.gguf")])
    with pytest.raises(ModelError, match="matches no GGUF"):
        models_from_patterns([str(tmp_path / "nothing-*.gguf")])


def test_same_quant_twice_falls_back_to_file_names(tmp_path):
    gguf_file(tmp_path / "a-Q8_0.gguf")
    gguf_file(tmp_path / "b-Q8_0.gguf")
    specs, _ = models_from_patterns([str(tmp_path)])
    assert sorted(s.label for s in specs) == ["a-Q8_0", "b-Q8_0"]


def test_an_assistant_must_fit_its_target(tmp_path):
    target = inspect_gguf(gguf_file(tmp_path / "t.gguf", width=64))
    fits = inspect_gguf(gguf_file(tmp_path / "a.gguf", arch="gemma4-assistant", width=32, n_embd_out=64))
    check_assistant(target, fits)
    wide = inspect_gguf(gguf_file(tmp_path / "w.gguf", arch="gemma4-assistant", width=32, n_embd_out=128))
    with pytest.raises(ModelError, match="hidden width 128, but t.gguf has 64"):
        check_assistant(target, wide)
    other = inspect_gguf(gguf_file(tmp_path / "l.gguf", arch="llama", width=64))
    with pytest.raises(ModelError, match="drafts for gemma4 models"):
        check_assistant(other, fits)


def test_assistant_of_another_width_is_refused_before_any_server(tmp_path, capsys):
    target = gguf_file(tmp_path / "t-Q8_0.gguf", width=64)
    wide = gguf_file(tmp_path / "w.gguf", arch="gemma4-assistant", width=32, n_embd_out=128)
    server = tmp_path / "llama-server"
    server.write_text("#!/bin/sh\necho '--spec-type [none|draft-mtp]'\n")
    server.chmod(0o755)
    code = main(["run", "--model", f"x={target}", "--draft-model", str(wide), "--spec-type", "draft-mtp",
                 "--prompt-limit", "1", "--db", str(tmp_path / "r.db"), "--llama-server", str(server)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "hidden width 128" in err[0]


def test_published_protocol_in_toml_is_a_base_the_file_can_override(tmp_path):
    model = gguf_file(tmp_path / "m.gguf")
    toml = tmp_path / "s.toml"
    toml.write_text(f'protocol = "published"\n[[models]]\nlabel = "a"\npath = "{model}"\n'
                    '[sampling]\nmax_tokens = 64\n')
    config = load_toml(toml)
    published = PROTOCOLS["published"]
    assert config.protocol == "published" and config.sampling.max_tokens == 64
    assert config.sampling.reps == published["sampling"]["reps"] and config.drafting.spec_type == "draft-mtp"
    toml.write_text('protocol = "publshed"\n')
    with pytest.raises(Exception, match="unknown protocol 'publshed'"):
        load_toml(toml)


def test_a_damaged_trained_model_is_named(tmp_path):
    damaged = tmp_path / "gemma4-mini"
    damaged.mkdir()
    (damaged / "gemma4-mini-F16.gguf").write_bytes(b"GGUF not really")
    with pytest.raises(ModelError, match="damaged or replaced"):
        trained_file("gemma4-mini", "target", models_dir=tmp_path)
    with pytest.raises(ModelError, match="missing"):
        trained_file("gemma4-mini", "assistant", models_dir=tmp_path)
