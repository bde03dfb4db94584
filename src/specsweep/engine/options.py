"""How one llama-server is configured: the table of settings and their llama-server flags.

Light on purpose (no HTTP client): the config, the planner and the CLI all import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path


def _flag(flag: str | None, default=None, help: str | None = None, **extra):
    """A server setting: its llama-server flag (None = not a server flag) and its --help text."""
    return field(default=default, metadata={"flag": flag, "help": help, **extra})


@dataclass(frozen=True)
class ServerSettings:
    """The settings every server of a sweep shares: the ``[server]`` table of a sweep file.

    The one place to add a server flag: a field here with its llama-server flag and help text
    becomes a TOML key, a ``specsweep run`` option (``--ctx-size`` …), part of the run key and a
    flag on every server start. Fields marked ``transport`` do not change results: they stay out
    of the run key and off the server's command line.
    """

    ctx_size: int | None = _flag("--ctx-size", 4096, "llama-server context size (default 4096)")
    gpu_layers: str | None = _flag("--gpu-layers", help="llama-server --gpu-layers (e.g. all)")
    draft_gpu_layers: str | None = _flag("--spec-draft-ngl", draft_only=True,
                                         help="llama-server --spec-draft-ngl for the draft model")
    flash_attn: str | None = _flag("--flash-attn", choices=("on", "off", "auto"), help="llama-server --flash-attn")
    threads: int | None = _flag("--threads", help="llama-server --threads")
    extra_args: tuple[str, ...] = _flag(None, (), "extra llama-server arguments (TOML only)")
    # Transport settings: they do not change results, so they stay out of the run key.
    request_timeout: float | None = _flag(None, None, "seconds per request (default: scaled to the work)",
                                          transport=True)
    start_timeout: float | None = _flag(None, None, "seconds for a server to start (default: scaled to model "
                                                    "size)", transport=True)
    retries: int = _flag(None, 2, "retries of a failed request (default 2)", transport=True)

    def argv(self) -> list[str]:
        return _flags_of(self) + list(self.extra_args)


def transport_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(ServerSettings) if f.metadata.get("transport"))


@dataclass(frozen=True)
class NgramType:
    """An n-gram drafting type's own flags and defaults (pinned engine: common/common.h,
    common/speculative.cpp). They draft from the context, so --spec-draft-n-max does not apply:
    ``size_m`` caps one step's draft instead, and a step drafts only when a lookup matches."""

    size_n_flag: str | None  # length of the n-gram looked up in the context
    size_m_flag: str | None  # the most tokens one step drafts
    n_min_flag: str | None  # the fewest tokens a draft may have (shorter chains are dropped)
    size_n: int | None  # the engine's defaults
    size_m: int


NGRAM_TYPES = {
    "ngram-simple": NgramType("--spec-ngram-simple-size-n", "--spec-ngram-simple-size-m", None, 12, 48),
    "ngram-map-k": NgramType("--spec-ngram-map-k-size-n", "--spec-ngram-map-k-size-m", None, 12, 48),
    "ngram-map-k4v": NgramType("--spec-ngram-map-k4v-size-n", "--spec-ngram-map-k4v-size-m", None, 12, 48),
    "ngram-mod": NgramType("--spec-ngram-mod-n-match", "--spec-ngram-mod-n-max", "--spec-ngram-mod-n-min", 24, 64),
    "ngram-cache": NgramType(None, None, None, None, 8),  # fixed at 8 tokens in this engine, no flags
}


@dataclass(frozen=True)
class ServerOptions:
    """Everything that decides how one llama-server runs. ``argv()`` turns it into flags."""

    model: Path = field(metadata={"flag": "--model"})
    draft_model: Path | None = _flag("--spec-draft-model")
    spec_type: str | None = _flag("--spec-type")
    draft_n_max: int | None = _flag("--spec-draft-n-max")
    draft_n_min: int | None = _flag("--spec-draft-n-min")
    draft_p_min: float | None = _flag("--spec-draft-p-min")
    synth_rates: tuple[float, ...] | None = _flag("--spec-synth-rates")
    # n-gram types: lookup length, draft cap and minimum draft, under the type's own flags (NGRAM_TYPES)
    ngram_size_n: int | None = _flag(None)
    ngram_size_m: int | None = _flag(None)
    ngram_n_min: int | None = _flag(None)
    settings: ServerSettings = field(default_factory=ServerSettings)

    def argv(self) -> list[str]:
        return _flags_of(self) + self._ngram_argv() + self.settings.argv()

    def _ngram_argv(self) -> list[str]:
        kind = NGRAM_TYPES.get(self.spec_type or "")
        if kind is None:
            return []
        pairs = ((kind.size_n_flag, self.ngram_size_n), (kind.size_m_flag, self.ngram_size_m),
                 (kind.n_min_flag, self.ngram_n_min))
        return [arg for flag, value in pairs if flag and value is not None for arg in (flag, str(value))]


def _flags_of(options) -> list[str]:
    """``[flag, value, …]`` for each field with a flag and a value, in field order."""
    args: list[str] = []
    for fld in fields(options):
        flag = fld.metadata.get("flag")
        value = getattr(options, fld.name)
        if flag is None or value is None:
            continue
        if isinstance(value, tuple):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        args += [flag, str(value)]
    return args
