from pathlib import Path

import pytest

from specsweep.config import load_toml, parse_depths, parse_model_flag, check_config, SweepConfig, ModelSpec, Sampling
from specsweep.errors import ConfigError
from dataclasses import replace


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


GOOD = """
name = "t"
db = "out.db"
prompts = "mixed-5"

[[models]]
label = "Q8"
path = "a.gguf"
draft_model = "ref.gguf"

[drafting]
spec_type = "draft-simple"
depths = [0, 1, 2]

[sampling]
temperature = 0.5
reps = 2

[server]
ctx_size = 2048
gpu_layers = 99
"""


def test_good_file_loads_with_paths_relative_to_it(tmp_path):
    config = load_toml(write(tmp_path, GOOD))
    assert config.models[0].path == tmp_path / "a.gguf"
    assert config.models[0].draft_model == tmp_path / "ref.gguf"
    assert config.drafting.depths == (0, 1, 2)
    assert config.sampling.temperature == 0.5 and config.sampling.max_tokens == 200
    assert config.server.gpu_layers == "99"
    assert config.db == tmp_path / "out.db"


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD.replace("reps = 2", "repz = 2"))
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    line = GOOD.replace("reps = 2", "repz = 2").splitlines().index("repz = 2") + 1
    assert f"{path}:{line}" in str(err.value)
    assert "'repz'" in str(err.value) and "'reps'" in str(err.value)


def test_unknown_top_level_and_model_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'dbb'"):
        load_toml(write(tmp_path, "dbb = 1\n" + GOOD))
    with pytest.raises(ConfigError, match="unknown key 'pth'"):
        load_toml(write(tmp_path, GOOD.replace('path = "a.gguf"', 'pth = "a.gguf"')))


def test_invalid_toml_reports_line_and_column(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3, column"):
        load_toml(write(tmp_path, 'name = "x"\n\nreps = = 3\n'))


@pytest.mark.parametrize("text, message", [
    ("depths = [0, -1]", "not a non-negative integer"),
    ("depths = [0, 1.5]", "not a non-negative integer"),
    ("depths = []", "depths is empty"),
    ("depths = [1, 1]", "repeat"),
])
def test_bad_depths(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_toml(write(tmp_path, GOOD.replace("depths = [0, 1, 2]", text)))


@pytest.mark.parametrize("temperature", [-0.1, 2.5])
def test_temperature_out_of_range(tmp_path, temperature):
    with pytest.raises(ConfigError, match="temperature"):
        load_toml(write(tmp_path, GOOD.replace("temperature = 0.5", f"temperature = {temperature}")))


def test_draft_types_need_a_draft_model():
    config = SweepConfig(models=(ModelSpec("a", Path("a.gguf")),))
    config = replace(config, drafting=replace(config.drafting, spec_type="draft-simple"))
    with pytest.raises(ConfigError, match="needs a draft model"):
        check_config(config)


def test_parse_depths():
    assert parse_depths("0,1,2") == (0, 1, 2)
    assert parse_depths("0-4") == (0, 1, 2, 3, 4)
    for bad in ("-1", "a", "1.5", "1,,2"):
        with pytest.raises(ConfigError):
            parse_depths(bad)


def test_parse_model_flag():
    assert parse_model_flag("Q4=/m/x.gguf") == ModelSpec("Q4", Path("/m/x.gguf"))
    assert parse_model_flag("/m/x.gguf").label == "x"
    with pytest.raises(ConfigError):
        check_config(SweepConfig(models=(ModelSpec("bad label", Path("x")),)))


def test_sampling_validation():
    base = SweepConfig(models=(ModelSpec("a", Path("a.gguf")),))
    base = replace(base, drafting=replace(base.drafting, spec_type="ngram-simple"))
    for bad in (Sampling(reps=0), Sampling(max_tokens=0), Sampling(reps=True), Sampling(seed=-1)):
        with pytest.raises(ConfigError):
            check_config(replace(base, sampling=bad))
