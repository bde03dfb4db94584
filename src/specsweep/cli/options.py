"""Options shared by several commands: engine binaries, the sweep flags, the results database."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, get_type_hints

from ..config import ONE_SLOT_SERVERS, SIDE_BY_SIDE
from ..engine.options import ServerSettings
from ..errors import ConfigError, StoreError

if TYPE_CHECKING:  # heavy modules are imported by the commands that need them
    from ..config import SweepConfig
    from ..store import Store

TOOLS = ("llama-server", "llama-quantize", "llama-imatrix", "llama-perplexity")
DEFAULT_DB = Path("specsweep.db")


def engine_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    for tool in TOOLS:
        group.add_argument(f"--{tool}", type=Path, metavar="PATH", help=f"use this {tool} binary")


def engine_from_args(args):
    from ..engine.locate import resolve_engine
    return resolve_engine({tool: getattr(args, tool.replace("-", "_"), None) for tool in TOOLS})


def _server_flags(parser: argparse.ArgumentParser) -> None:
    """One option per ``ServerSettings`` field (its help text and type come from the table)."""
    hints = get_type_hints(ServerSettings)
    for fld in fields(ServerSettings):
        if fld.name == "extra_args":  # a list: TOML only
            continue
        kinds = [t for t in getattr(hints[fld.name], "__args__", (hints[fld.name],)) if t is not type(None)]
        extra = {"choices": fld.metadata["choices"]} if "choices" in fld.metadata else {}
        parser.add_argument("--" + fld.name.replace("_", "-"), type=kinds[0], help=fld.metadata.get("help"),
                            **extra)


def sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="sweep described in a TOML file")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH",
                        help="a model to sweep (repeatable)")
    parser.add_argument("--models", nargs="+", default=[], metavar="PATTERN",
                        help="GGUF files, globs or folders to sweep, labelled by quant type; split files "
                             "count as one model, mmproj files and drafters found among them are set aside")
    parser.add_argument("--hf", action="append", default=[], metavar="OWNER/REPO[:QUANT]",
                        help="models from the local Hugging Face cache, found as llama-server -hf finds them "
                             "(repeatable; one model per --quants tag)")
    parser.add_argument("--quants", metavar="TAG,…", help="quant tags to take from each --hf repository, "
                                                          "e.g. Q5_K_S,IQ4_XS,IQ3_M,IQ2_M (labels = the tags)")
    parser.add_argument("--protocol", help="a named protocol's settings before the flags: 'published' = "
                                           "draft-mtp, depths 0-4, 3 reps, mixed-5, 200 tokens, T 0.3, thinking off")
    parser.add_argument("--draft-model", type=Path, metavar="PATH",
                        help="draft model / EAGLE-3 head / MTP sidecar for every --model (overrides the "
                             "mtp- sidecar an --hf model gets under draft-mtp)")
    parser.add_argument("--spec-type", help="llama-server --spec-type (default draft-mtp, or draft-simple "
                                            "with --draft-model)")
    parser.add_argument("--drafting", action="append", default=[], metavar="LABEL=SPEC_TYPE[:DRAFT_FILE]",
                        help="a drafting method to compare (repeatable; --depths and --p-min apply to each), "
                             "e.g. mtp=draft-mtp ngram=ngram-simple small=draft-simple:small.gguf")
    parser.add_argument("--depths", help="draft depths, e.g. 0,1,2,3,4 or 0-4 (0 = no speculation)")
    parser.add_argument("--p-min", type=float, help="--spec-draft-p-min for the drafter")
    parser.add_argument("--ngram-size-n", type=int, metavar="N",
                        help="n-gram types: length of the n-gram looked up (ngram-simple/-map-k/-map-k4v size-n, "
                             "ngram-mod n-match; default: the engine's 12 / 24)")
    parser.add_argument("--ngram-size-m", type=int, metavar="M",
                        help="n-gram types: the most tokens one step drafts, in place of the depth they ignore "
                             "(size-m / ngram-mod n-max; default: the engine's 48 / 64)")
    parser.add_argument("--reps", type=int, help="repetitions, each with its own seed (default 3)")
    parser.add_argument("--seed", type=int, help="seed of rep 0; rep r uses seed + r (default 1000)")
    parser.add_argument("--prompts", help="prompt suite (mixed-5, mixed-40, humaneval) or a JSONL file")
    parser.add_argument("--prompt-limit", type=int, help="use only the first N prompts")
    parser.add_argument("--max-tokens", type=int, help="tokens to generate per request (default 200)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0.3)")
    _server_flags(parser)
    parser.add_argument("--db", type=Path, help=f"results database (default {DEFAULT_DB})")
    parser.add_argument("--name", help="a name for the run")
    parser.add_argument("--exclude-degenerate", action="store_true", default=None,
                        help="leave degenerate requests (loops, whitespace runs; kept in the store, marked) out "
                             "of the headline figures and of --target-ci (default: they count)")
    parser.add_argument("--parallel", type=int, metavar="K",
                        help="acceptance only: K requests side by side (how: --side-by-side); per-request "
                             "timings still count acceptance exactly, speed is not measured")
    parser.add_argument("--side-by-side", choices=SIDE_BY_SIDE,
                        help="--parallel on K slots of one server per cell (default: one model copy, batched "
                             "decoding), on K one-slot servers per cell, or K cells at once each on a one-slot "
                             "server of its own (cells: one request per server, as in a sequential sweep, and the "
                             "server starts overlap: the fastest, at K models in memory; on a CUDA engine the servers "
                             "share the GPU through a private MPS daemon)")
    parser.add_argument("--no-mps", action="store_true",
                        help="with --side-by-side servers or cells on a CUDA engine: start no MPS daemon (the "
                             "servers then time-slice the GPU: several times slower, and draft-mtp acceptance "
                             "reads low on the pinned engine)")
    parser.add_argument("--target-ci", type=float, metavar="PP",
                        help="add reps until every acceptance interval (95%%, t over prompts) has a half-width "
                             "≤ PP percentage points (needs at least 3 prompts)")
    parser.add_argument("--max-reps", type=int, default=10, help="rep budget per cell for --target-ci")
    parser.add_argument("--max-tokens-total", type=int, help="generated-token budget for --target-ci")


def config_from_args(args) -> "SweepConfig":
    from ..config import (SweepConfig, apply_protocol, check_config, load_toml, parse_depths, parse_drafting_flag,
                          parse_model_flag)
    from ..discover import models_from_patterns
    from ..errors import UsageError
    from ..hf_cache import pair_sidecars, resolve_flag, with_draft
    if args.quants and not args.hf:
        raise UsageError("--quants needs --hf OWNER/REPO")
    models = [parse_model_flag(m) for m in args.model]
    models += [spec for repo in args.hf for spec in resolve_flag(repo, args.quants)]
    if args.models:
        found, notes = models_from_patterns(args.models, args.draft_model)
        for note in notes:
            print(f"note: {note}")
        models += found
    if args.config:  # the file's own values beat the protocol's; flags beat both
        config = load_toml(args.config, protocol=args.protocol)
        if models:
            config = replace(config, models=tuple(models))
    else:
        config = SweepConfig(models=tuple(models))
        if args.protocol:
            config = apply_protocol(config, args.protocol)
    drafting = config.drafting
    if args.spec_type:
        drafting = replace(drafting, spec_type=args.spec_type)
    elif not args.config and not args.protocol and args.draft_model:
        drafting = replace(drafting, spec_type="draft-simple")
    if args.depths:
        drafting = replace(drafting, depths=parse_depths(args.depths))
    if args.p_min is not None:
        drafting = replace(drafting, p_min=args.p_min)
    axis = config.drafting_axis
    if args.drafting:
        if args.spec_type:
            raise ConfigError("give either --drafting (several methods) or --spec-type (one), not both")
        axis = tuple(replace(parse_drafting_flag(text), depths=drafting.depths, p_min=drafting.p_min,
                             n_min=drafting.n_min) for text in args.drafting)
    elif axis and (args.spec_type or args.depths or args.p_min is not None):
        # flags given with [[drafting]] entries apply to every entry; --spec-type replaces them with one
        axis = () if args.spec_type else tuple(
            replace(e, **({"depths": drafting.depths} if args.depths else {}),
                    **({"p_min": args.p_min} if args.p_min is not None else {})) for e in axis)
    drafting, axis = _ngram_sizes(args, drafting, axis)
    sampling = config.sampling
    for name in ("reps", "seed", "max_tokens", "temperature"):
        if getattr(args, name) is not None:
            sampling = replace(sampling, **{name: getattr(args, name)})
    server = replace(config.server, **{f.name: getattr(args, f.name) for f in fields(ServerSettings)
                                       if getattr(args, f.name, None) is not None})
    models = pair_sidecars(config.models, drafting.spec_type)
    if args.draft_model:  # after the sidecar rule: a draft model given by hand wins
        models = tuple(with_draft(m, args.draft_model) for m in models)
    changes = {"drafting": drafting, "drafting_axis": axis, "sampling": sampling, "server": server,
               "models": models}
    if args.prompts:
        changes["prompts"] = args.prompts
    if args.prompt_limit is not None:
        changes["prompt_limit"] = args.prompt_limit
    if args.db:
        changes["db"] = args.db
    if args.name:
        changes["name"] = args.name
    if args.exclude_degenerate:
        changes["exclude_degenerate"] = True
    if args.parallel is not None:
        changes["parallel"] = args.parallel
    if args.side_by_side is not None:
        changes["side_by_side"] = args.side_by_side
    return check_config(replace(config, **changes))


def _ngram_sizes(args, drafting, axis):
    """--ngram-size-n/-m apply to every n-gram entry (and to nothing else)."""
    from ..engine.options import NGRAM_TYPES
    sizes = {name: getattr(args, name) for name in ("ngram_size_n", "ngram_size_m") if getattr(args, name) is not None}
    if not sizes:
        return drafting, axis
    entries = axis or (drafting,)
    if not any(e.spec_type in NGRAM_TYPES for e in entries):
        flag = "--" + next(iter(sizes)).replace("_", "-")
        raise ConfigError(f"{flag} applies to n-gram types only; this sweep has {', '.join(e.spec_type for e in entries)}")

    def sized(e):
        return replace(e, **sizes) if e.spec_type in NGRAM_TYPES else e
    return sized(drafting), tuple(sized(e) for e in axis)


def db_flag(parser: argparse.ArgumentParser, name: str = "--db", what: str = "results database") -> None:
    parser.add_argument(name, type=Path, help=f"{what} (default {DEFAULT_DB})")


def open_results(db: Path | None, readonly: bool = True) -> "Store":
    """The store named by ``--db``; without one, ``specsweep.db`` here, or a pointer to the demo's."""
    from ..store import Store
    if db is not None:
        return Store(db, readonly=readonly)
    if not DEFAULT_DB.exists():
        from ..demo import DemoSettings
        demo_db = DemoSettings().db
        if demo_db.exists():
            raise StoreError(f"no results database at {DEFAULT_DB}",
                             hint=f"the demo's results are in {demo_db}: add --db {demo_db}")
    return Store(DEFAULT_DB, readonly=readonly)


def executor_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out (Ray)")
    group.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: one server at a time on this machine (default); ray: the server groups "
                            "spread over a Ray cluster (pip install 'specsweep[ray]')")
    group.add_argument("--address", help="Ray cluster to use: auto (the one 'ray start' made here), HOST:PORT or "
                                         "ray://HOST:PORT; default RAY_ADDRESS, else a new local instance")
    group.add_argument("--gpus-per-server", type=float, metavar="N",
                       help="GPUs Ray gives each llama-server (default 0; needed with --gpu-layers)")
    group.add_argument("--max-concurrent-servers", type=int, metavar="M",
                       help="at most M servers at once (default: as many as the cluster holds)")


def executor_from_args(args, engine, config: "SweepConfig"):
    """The executor the flags ask for; Ray's flags without --executor ray, or Ray missing, are one error."""
    from ..executors.local import LocalExecutor
    ray_flags = {"--address": args.address, "--gpus-per-server": args.gpus_per_server,
                 "--max-concurrent-servers": args.max_concurrent_servers}
    cells = config.parallel > 1 and config.side_by_side == "cells"
    servers_at_once = config.parallel > 1 and config.side_by_side in ONE_SLOT_SERVERS
    no_mps = getattr(args, "no_mps", False)
    if no_mps and not servers_at_once:
        raise ConfigError("--no-mps only applies with --parallel K --side-by-side servers or cells")
    if args.executor == "local":
        given = [flag for flag, value in ray_flags.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --executor ray")
        if cells:
            from ..executors.lanes import LanesExecutor
            return LanesExecutor(engine, config.parallel, mps=not no_mps)
        return LocalExecutor(engine, share_gpu=servers_at_once, mps=not no_mps)
    if cells:
        raise ConfigError("--side-by-side cells runs its K servers on this machine; with --executor ray each "
                          "node already runs servers side by side (--gpus-per-server, --max-concurrent-servers)")
    gpus = args.gpus_per_server or 0.0
    if gpus < 0:
        raise ConfigError("--gpus-per-server must be 0 or more")
    if args.max_concurrent_servers is not None and args.max_concurrent_servers < 1:
        raise ConfigError("--max-concurrent-servers must be at least 1")
    if config.server.gpu_layers and not gpus:
        raise ConfigError("--gpu-layers with --executor ray needs --gpus-per-server N, so that Ray gives each "
                          "server GPUs of its own")
    from ..executors.ray_cluster import RayExecutor
    return RayExecutor(engine, address=args.address, gpus_per_server=gpus,
                       cpus_per_server=float(config.server.threads or 1), max_concurrent=args.max_concurrent_servers)
