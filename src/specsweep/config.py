"""The sweep config: TOML file or flags -> one frozen ``SweepConfig``.

Unknown keys are rejected with file, line and key; values are checked here so
that a bad sweep fails before any server starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .engine.options import NGRAM_TYPES, ServerSettings
from .errors import ConfigError
from .modelspec import ModelSpec


KNOWN_SPEC_TYPES = ("draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark",
                    "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
DRAFT_MODEL_TYPES = ("draft-simple", "draft-eagle3", "draft-dflash", "draft-dspark")
MAX_DEPTH = 64  # llama.cpp drafts far fewer tokens than this per step
MAX_PARALLEL = 64  # slots of one server side by side (--parallel)
NGRAM_PREFIX = "ngram-"  # n-gram types draft from the context: no draft file, and they ignore n_max
BASELINE = "none"  # spec type and drafting label of depth 0 (no speculation), shared by every entry
LABEL_RE = re.compile(r"^[A-Za-z0-9_.+\-]+$")


@dataclass(frozen=True)
class Drafting:
    """One drafting method of a sweep: ``[drafting]``, or one ``[[drafting]]`` entry of several."""

    spec_type: str = "draft-mtp"
    depths: tuple[int, ...] = (0, 1, 2, 3, 4)
    p_min: float | None = None
    n_min: int | None = None
    label: str | None = None  # names the entry in the store and the report; default: the spec type
    draft_model: Path | None = None  # this entry's drafter; default: the model's draft_model
    # n-gram types only (default: the engine's): the n-gram looked up, and the most tokens one step
    # drafts, which stands in for the depth they ignore (see NGRAM_TYPES)
    ngram_size_n: int | None = None
    ngram_size_m: int | None = None

    @property
    def name(self) -> str:
        return self.label or self.spec_type

    def server_depths(self) -> tuple[int, ...]:
        """The depths its servers run at (see ``server_depths``)."""
        return server_depths(self.spec_type, self.depths, self.ngram_size_m)

    def draft_file(self, model: "ModelSpec") -> Path | None:
        """The file this entry drafts with against ``model``: n-gram types use none."""
        if self.spec_type.startswith(NGRAM_PREFIX):
            return None
        return self.draft_model or model.draft_model


def ngram_cap(spec_type: str | None, size_m: int | None = None) -> int | None:
    """The most tokens one step of an n-gram type drafts (its size_m); None for other types."""
    kind = NGRAM_TYPES.get(spec_type or "")
    return None if kind is None else (size_m or kind.size_m)


def server_depths(spec_type: str | None, depths, ngram_size_m: int | None = None) -> tuple[int, ...]:
    """The listed depths, except that an n-gram type, which ignores --spec-draft-n-max, runs one
    speculative server whatever depths are listed, stored under its own draft cap (``ngram_cap``):
    the depth of a cell is always the most tokens one step may draft."""
    cap = ngram_cap(spec_type, ngram_size_m)
    if cap is None:
        return tuple(depths)
    out: list[int] = []
    for depth in depths:
        value = 0 if depth == 0 else cap
        if value not in out:
            out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.3
    max_tokens: int = 200
    reps: int = 3
    seed: int = 1000  # rep r uses seed + r
    thinking: bool = False


@dataclass(frozen=True)
class SweepConfig:
    models: tuple[ModelSpec, ...]
    drafting: Drafting = field(default_factory=Drafting)
    prompts: str = "mixed-5"
    prompt_limit: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    server: ServerSettings = field(default_factory=ServerSettings)
    db: Path = Path("specsweep.db")
    name: str | None = None
    protocol: str | None = None  # a named protocol the settings came from (see PROTOCOLS)
    # Degenerate requests (loops, whitespace runs) stay in the store, marked; with this they are
    # left out of the headline figures and of --target-ci's evidence. Not in the run key: it
    # changes how results are counted, not what is measured.
    exclude_degenerate: bool = False

    # Several drafting methods on the same models, prompts and seeds (``[[drafting]]`` tables,
    # repeatable ``--drafting``); when given, they replace ``drafting``.
    drafting_axis: tuple[Drafting, ...] = ()
    # Requests side by side (``--parallel K``): an acceptance-only sweep. Each request's timings
    # still count its own drafts exactly; its speed is not measured.
    parallel: int = 1
    # How K requests run side by side: on K slots of one server ("slots": one copy of the model and
    # batched decoding, whose numerics differ from one request alone); on K one-slot servers of the
    # cell ("servers": K copies, one request per server as in a sequential sweep); or K cells at once,
    # each on a one-slot server of its own ("cells": like "servers", and the servers' starts overlap
    # too). On a GPU, K processes share it well only under MPS (engine.mps: the sweep starts a daemon).
    side_by_side: str = "slots"

    def drafting_entries(self) -> tuple[Drafting, ...]:
        return self.drafting_axis or (self.drafting,)


# Named protocols: settings a published measurement used, applied before explicit flags.
PROTOCOLS = {
    "published": {
        "description": "the published Gemma-4-31B MTP experiment: draft-mtp, depths 1-4 plus the depth-0 "
                       "baseline, 3 reps with distinct seeds, mixed-5 (5 coding/reasoning prompts), "
                       "200 tokens, temperature 0.3, thinking off",
        "drafting": {"spec_type": "draft-mtp", "depths": (0, 1, 2, 3, 4)},
        "sampling": {"reps": 3, "max_tokens": 200, "temperature": 0.3, "thinking": False},
        "prompts": "mixed-5",
    },
}


def protocol_preset(name: str | None) -> dict:
    if name is None:
        return {}
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def apply_protocol(config: "SweepConfig", name: str) -> "SweepConfig":
    proto = protocol_preset(name)
    return replace(config, protocol=name, prompts=proto["prompts"],
                   drafting=replace(config.drafting, **proto["drafting"]),
                   sampling=replace(config.sampling, **proto["sampling"]))


SECTIONS = {"drafting": Drafting, "sampling": Sampling, "server": ServerSettings}
TOP_LEVEL = {"models", "prompts", "prompt_limit", "db", "name", "protocol", "exclude_degenerate", "parallel",
             "side_by_side", *SECTIONS}
SIDE_BY_SIDE = ("slots", "servers", "cells")
ONE_SLOT_SERVERS = ("servers", "cells")  # the ways with a server per request in flight
HF_MODEL_KEYS = {"hf", "quants"}  # [[models]] from the Hugging Face cache (labels come from the quants)
MODEL_KEYS = {f.name for f in fields(ModelSpec)} - {"origin"} | HF_MODEL_KEYS
DRAFTING_KEYS = {f.name for f in fields(Drafting)}


def _line_of(text: str, key: str, section: str | None) -> int | None:
    """Line number of ``key = …`` (inside ``[section]`` when given) for error messages."""
    in_section = section is None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[] ")
            in_section = section is None or name == section
            continue
        if in_section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _unknown_key(path: Path, text: str, key: str, section: str | None, allowed) -> ConfigError:
    line = _line_of(text, key, section)
    where = f"{path}:{line}" if line else str(path)
    scope = f"[{section}]" if section else "top level"
    suggestion = min(allowed, key=lambda k: _distance(k, key))
    return ConfigError(f"{where}: unknown key '{key}' in {scope} (did you mean '{suggestion}'?)")


def _distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _coerce(section: str, name: str, value: Any, default: Any, where: str) -> Any:
    if isinstance(default, tuple) or name in ("depths", "extra_args", "server_args"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {section}.{name} must be a list, got {value!r}")
        return tuple(value)
    if name in ("gpu_layers", "draft_gpu_layers") and value is not None:
        return str(value)
    return value


def check_config(config: SweepConfig) -> SweepConfig:
    """Check values that TOML and flags both can get wrong; returns the config unchanged."""
    if not config.models:
        raise ConfigError("no models given: add --model LABEL=PATH, --hf OWNER/REPO --quants … or a [[models]] table")
    labels = [m.label for m in config.models]
    for label in labels:
        if not LABEL_RE.match(label):
            raise ConfigError(f"model label {label!r} may contain only letters, digits and . _ + -")
    dupes = {label for label in labels if labels.count(label) > 1}
    if dupes:
        raise ConfigError(f"model labels must be unique; repeated: {', '.join(sorted(dupes))}")
    entries = config.drafting_entries()
    for d in entries:
        _check_drafting(d, config.models, several=len(entries) > 1)
    names = [d.name for d in entries]
    dupes = {name for name in names if names.count(name) > 1}
    if dupes:
        raise ConfigError(f"drafting labels must be unique; repeated: {', '.join(sorted(dupes))}",
                          hint="give each [[drafting]] entry its own label")
    s = config.sampling
    if isinstance(s.temperature, bool) or not isinstance(s.temperature, (int, float)) or not 0.0 <= s.temperature <= 2.0:
        raise ConfigError(f"temperature {s.temperature!r} is outside 0..2")
    for name in ("max_tokens", "reps"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(s.seed, bool) or not isinstance(s.seed, int) or s.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {s.seed!r}")
    if config.server.ctx_size < s.max_tokens + 64:
        raise ConfigError(f"ctx_size {config.server.ctx_size} is too small for max_tokens {s.max_tokens}")
    if config.server.flash_attn not in (None, "on", "off", "auto"):
        raise ConfigError(f"flash_attn must be on, off or auto, got {config.server.flash_attn!r}")
    if not isinstance(config.exclude_degenerate, bool):
        raise ConfigError(f"exclude_degenerate must be true or false, got {config.exclude_degenerate!r}")
    if config.prompt_limit is not None and config.prompt_limit < 1:
        raise ConfigError(f"prompt_limit must be ≥ 1, got {config.prompt_limit}")
    if isinstance(config.parallel, bool) or not isinstance(config.parallel, int) or not 1 <= config.parallel <= MAX_PARALLEL:
        raise ConfigError(f"parallel must be a whole number of slots from 1 to {MAX_PARALLEL}, got {config.parallel!r}")
    if config.side_by_side not in SIDE_BY_SIDE:
        raise ConfigError(f"side_by_side must be one of {', '.join(SIDE_BY_SIDE)}, got {config.side_by_side!r}")
    return config


def _check_drafting(d: Drafting, models: tuple[ModelSpec, ...], several: bool) -> None:
    where = f"drafting {d.name!r}: " if several else ""
    if d.spec_type not in KNOWN_SPEC_TYPES:
        raise ConfigError(f"{where}unknown spec type {d.spec_type!r}; choose one of {', '.join(KNOWN_SPEC_TYPES)}")
    if d.label is not None and (not LABEL_RE.match(d.label) or d.label == BASELINE):
        raise ConfigError(f"drafting label {d.label!r} may contain only letters, digits and . _ + - "
                          f"(and is not {BASELINE!r}, the name of depth 0)")
    if not d.depths:
        raise ConfigError(f"{where}depths is empty: give at least one draft depth (0 = no speculation)")
    for depth in d.depths:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ConfigError(f"{where}draft depth {depth!r} is not a non-negative integer")
    if len(set(d.depths)) != len(d.depths):
        raise ConfigError(f"{where}draft depths repeat: {list(d.depths)}")
    if d.p_min is not None and not 0.0 <= d.p_min <= 1.0:
        raise ConfigError(f"{where}p_min {d.p_min} is outside 0..1")
    _check_ngram(d, where)
    if d.spec_type in DRAFT_MODEL_TYPES:
        missing = [m.label for m in models if d.draft_file(m) is None]
        if missing and any(depth > 0 for depth in d.depths):
            raise ConfigError(f"{where}--spec-type {d.spec_type} needs a draft model for {', '.join(missing)}",
                              hint="give --draft-model PATH, draft_model in the [[models]] table, or "
                                   "--drafting LABEL=SPEC_TYPE:DRAFT_FILE")


def _check_ngram(d: Drafting, where: str) -> None:
    kind = NGRAM_TYPES.get(d.spec_type)
    for name in ("ngram_size_n", "ngram_size_m"):
        value = getattr(d, name)
        if value is None:
            continue
        if kind is None:
            raise ConfigError(f"{where}{name} applies to n-gram types only, not {d.spec_type}")
        if kind.size_m_flag is None:
            raise ConfigError(f"{where}{d.spec_type} has no {name} in this engine (it drafts {kind.size_m} tokens)")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
            raise ConfigError(f"{where}{name} must be an integer within 1..1024, got {value!r}")
    if d.spec_type == "ngram-simple":  # the engine drops a match whose draft would be shorter than the lookup
        size_n = d.ngram_size_n or kind.size_n
        size_m = d.ngram_size_m or kind.size_m
        if size_m < size_n:
            raise ConfigError(f"{where}ngram-simple with ngram_size_m {size_m} < ngram_size_n {size_n} never drafts",
                              hint="ngram-simple drafts only when at least ngram_size_n tokens follow the match")


def _drafting_table(path: Path, text: str, entry: Any, base: Path) -> Drafting:
    """One ``[[drafting]]`` entry: the ``[drafting]`` keys plus label and draft_model."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: drafting entries must be tables ([[drafting]])")
    defaults = Drafting()
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key not in DRAFTING_KEYS:
            raise _unknown_key(path, text, key, "drafting", DRAFTING_KEYS)
        if key == "draft_model":
            values[key] = (base / str(value)).expanduser() if value else None
        elif key == "label":
            values[key] = str(value)
        else:
            values[key] = _coerce("drafting", key, value, getattr(defaults, key),
                                  f"{path}:{_line_of(text, key, 'drafting')}")
    return replace(defaults, **values)


def load_toml(path: Path, protocol: str | None = None) -> SweepConfig:
    """``protocol`` (or a top-level ``protocol = "…"``) fills what the file leaves unset."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if "at end of document" in message:  # say where the document ends
            lines = text.splitlines() or [""]
            message = message.replace("at end of document",
                                      f"at line {len(lines)}, column {len(lines[-1]) + 1}: end of file")
        raise ConfigError(f"{path}: invalid TOML: {message}") from None
    base = path.parent
    for key in data:
        if key not in TOP_LEVEL:
            raise _unknown_key(path, text, key, None, TOP_LEVEL)
    protocol = protocol or data.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"{path}:{_line_of(text, 'protocol', None)}: unknown protocol {protocol!r}; "
                          f"known: {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS.get(protocol, {})
    sections = {}
    axis: tuple[Drafting, ...] = ()
    if isinstance(data.get("drafting"), list):  # [[drafting]]: several methods, one sweep
        axis = tuple(_drafting_table(path, text, entry, base) for entry in data.pop("drafting"))
        if not axis:
            raise ConfigError(f"{path}: [[drafting]] has no entries")
    for section, cls in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        defaults = replace(cls(), **proto.get(section, {}))  # the protocol's values, then the file's
        allowed = {f.name for f in fields(cls)}
        values = {}
        for key, value in table.items():
            if section == "drafting" and key == "draft_model":  # a path, relative to the file
                value = (base / str(value)).expanduser()
            if key not in allowed:
                raise _unknown_key(path, text, key, section, allowed)
            line = _line_of(text, key, section)
            values[key] = _coerce(section, key, value, getattr(defaults, key), f"{path}:{line}")
        sections[section] = replace(defaults, **values)
    models = []
    raw_models = data.get("models", [])
    if not isinstance(raw_models, list):
        raise ConfigError(f"{path}: models must be an array of tables ([[models]])")
    for entry in raw_models:
        for key in entry:
            if key not in MODEL_KEYS:
                raise _unknown_key(path, text, key, "models", MODEL_KEYS)
        if "hf" in entry:
            models += _hf_models(path, base, entry)
            continue
        if "label" not in entry or "path" not in entry:
            raise ConfigError(f"{path}: every [[models]] entry needs label and path (or hf and quants)")
        for key in ("path", "draft_model"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigError(f"{path}:{_line_of(text, key, 'models')}: {key} must be a string (a file), "
                                  f"got {entry[key]!r}")
        models.append(ModelSpec(
            label=str(entry["label"]), path=(base / entry["path"]).expanduser(),
            draft_model=(base / entry["draft_model"]).expanduser() if entry.get("draft_model") else None,
            server_args=tuple(entry.get("server_args", ()))))
    for key in ("db", "name"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}:{_line_of(text, key, None)}: {key} must be a string, got {data[key]!r}")
    prompts = data.get("prompts", proto.get("prompts", "mixed-5"))
    if isinstance(prompts, str) and (base / prompts).suffix == ".jsonl":
        prompts = str(base / prompts)
    from .hf_cache import pair_sidecars
    return check_config(SweepConfig(
        models=pair_sidecars(tuple(models), sections["drafting"].spec_type), prompts=prompts,
        prompt_limit=data.get("prompt_limit"),
        db=(base / data["db"]) if "db" in data else Path("specsweep.db"), name=data.get("name"),
        protocol=protocol, exclude_degenerate=data.get("exclude_degenerate", False), drafting_axis=axis,
        parallel=data.get("parallel", 1), side_by_side=data.get("side_by_side", "slots"), **sections))


def _hf_models(path: Path, base: Path, entry: dict) -> list[ModelSpec]:
    """A ``[[models]]`` entry with ``hf = "OWNER/REPO"`` and ``quants = [...]``: one model per quant."""
    from .hf_cache import resolve
    if "label" in entry or "path" in entry:
        raise ConfigError(f"{path}: a [[models]] entry with hf takes no label or path (labels are the quant tags)")
    quants = entry.get("quants", [])
    if isinstance(quants, str):
        quants = [q.strip() for q in quants.split(",") if q.strip()]
    if not isinstance(quants, list) or not all(isinstance(q, str) for q in quants):
        raise ConfigError(f"{path}: quants must be a list of quant tags, e.g. [\"Q5_K_S\", \"IQ4_XS\"]")
    draft = (base / entry["draft_model"]).expanduser() if entry.get("draft_model") else None
    return resolve(str(entry["hf"]), quants, server_args=tuple(entry.get("server_args", ())), draft_model=draft)


def parse_depths(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-4"`` -> (0, 1, 2, …); anything else is one clear error."""
    depths: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if high > MAX_DEPTH:  # also keeps "0-9999999999" from building a huge list
                raise ConfigError(f"draft depth {high} in {text!r} is above {MAX_DEPTH}")
            depths += range(low, high + 1)
        elif re.fullmatch(r"\d+", part):
            depths.append(int(part))
        else:
            raise ConfigError(f"--depths {text!r}: {part!r} is not a non-negative integer")
    return tuple(depths)


def parse_model_flag(text: str) -> ModelSpec:
    """``LABEL=PATH`` (or just PATH, labelled by its file name)."""
    label, sep, path = text.partition("=")
    if not sep:
        path, label = text, Path(text).stem
    if not label or not path:
        raise ConfigError(f"--model {text!r}: expected LABEL=PATH")
    return ModelSpec(label=label, path=Path(path).expanduser())


def parse_drafting_flag(text: str) -> Drafting:
    """``LABEL=SPEC_TYPE[:DRAFT_FILE]`` (``--drafting``, repeatable); depths etc. come from their flags."""
    label, sep, rest = text.partition("=")
    spec_type, _, draft = rest.partition(":")
    if not sep or not label or not spec_type:
        raise ConfigError(f"--drafting {text!r}: expected LABEL=SPEC_TYPE or LABEL=SPEC_TYPE:DRAFT_FILE")
    if spec_type not in KNOWN_SPEC_TYPES:
        raise ConfigError(f"--drafting {text!r}: unknown spec type {spec_type!r}; "
                          f"choose one of {', '.join(KNOWN_SPEC_TYPES)}")
    return Drafting(spec_type=spec_type, label=label, draft_model=Path(draft).expanduser() if draft else None)
