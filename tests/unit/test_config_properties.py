"""Property tests: config parsing never crashes with anything but a ConfigError."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from specsweep.config import load_toml, parse_depths
from specsweep.errors import ConfigError

keys = st.sampled_from(["name", "db", "prompts", "depths", "reps", "temperature", "spec_type", "label", "path",
                        "max_tokens", "seed", "ctx_size", "flash_attn", "typo_key"])
values = st.one_of(st.integers(-5, 10_000), st.floats(allow_nan=True), st.text(string.printable, max_size=12),
                   st.booleans(), st.lists(st.integers(-3, 9), max_size=5))
sections = st.sampled_from(["", "[drafting]", "[sampling]", "[server]", "[[models]]", "[bogus]"])


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "nan"
    return str(value).replace("'", '"')


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(sections, keys, values), max_size=8))
@example(entries=[("[[models]]", "label", 0), ("", "path", 0)])  # path = 0 was a TypeError, found by this test
def test_any_toml_gives_a_config_or_one_config_error(tmp_path, entries):
    lines = []
    for section, key, value in entries:
        if section:
            lines.append(section)
        lines.append(f"{key} = {toml_value(value)}")
    path = tmp_path / "fuzz.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        config = load_toml(path)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
    else:
        assert config.models and all(d >= 0 for d in config.drafting.depths)
        assert 0 <= config.sampling.temperature <= 2


@settings(max_examples=200, deadline=None)
@given(st.text(string.digits + ",- x.", max_size=12))
def test_depth_flags_parse_or_fail_cleanly(text):
    try:
        depths = parse_depths(text)
    except ConfigError:
        return
    assert all(isinstance(d, int) and d >= 0 for d in depths)
