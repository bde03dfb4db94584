"""Quant ladders: a high-precision reference, an importance matrix and quantized rungs; and
layer-pruned copies of a model to draft for it.

Made with llama-quantize and llama-imatrix through ``engine.tools.make_cached``: a rung made
once with the same inputs is found again and not remade.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import cache_root, sha256_file_memo
from .config import Sampling
from .engine.options import ServerSettings
from .engine.tools import engine_version_of, make_cached, thread_args
from .errors import EngineError, UsageError
from .models import inspect_gguf
from .texts import text_path

# File types llama-quantize refuses to make without an importance matrix ("this quantization
# requires an imatrix!"). Source: llama.cpp 0c1e570 src/llama-quant.cpp. tensor_requires_imatrix()
# names the tensor types IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, and Q2_K inside a Q2_K_S
# file; llama_tensor_get_type_impl() puts such tensors into the file types IQ1_S, IQ1_M,
# IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M (IQ2_S tensors), IQ3_XXS (IQ2_S attn_q/attn_k) and IQ3_XS
# (IQ3_XXS attn_q/attn_k, ffn_gate/ffn_up). Whether one model hits the refusal depends on its
# shapes: rows not divisible by 256 fall back to IQ4_NL/Q4_0 (SmolLM2-135M's 576-wide rows make
# IQ3_XXS and IQ3_XS pass without one), so this list is the safe, model-independent answer.
IMATRIX_REQUIRED = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
                              "IQ3_XXS", "IQ3_XS", "Q2_K_S"})
HIGH_PRECISION = frozenset({"F32", "F16", "BF16"})
# A trailing quant name in a file stem ("model.Q4_1", "model-F16"), dropped when naming outputs.
_QUANT_SUFFIX = re.compile(r"[.\-_](?:B?F16|F32|I?Q\d(?:_[A-Z0-9]+)*|TQ\d_\d|MXFP4_MOE)$", re.IGNORECASE)


def needs_imatrix(qtype: str) -> bool:
    """True for the file types llama-quantize refuses without ``--imatrix`` (see IMATRIX_REQUIRED)."""
    return qtype.upper() in IMATRIX_REQUIRED


@dataclass(frozen=True)
class Rung:
    """One quantized model of a ladder and what made it."""

    qtype: str
    path: Path
    size_bytes: int
    bits_per_weight: float
    imatrix: Path | None
    requantized: bool  # made from an already quantized source with --allow-requantize
    source: Path
    source_sha256: str

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def _base_name(path: Path) -> str:
    stem = path.stem
    while (shorter := _QUANT_SUFFIX.sub("", stem)) != stem and shorter:
        stem = shorter
    return stem


def _is_quantized(path: Path) -> tuple[bool, str]:
    info = inspect_gguf(path)
    return any(t not in HIGH_PRECISION for t in info.quant_mix), info.file_type


# ---- public API ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _quant_types_of(tool: Path) -> tuple[str, ...]:
    # `llama-quantize --help` ends with "allowed quantization types": lines "  15  or  Q4_K_M  : …".
    try:
        proc = subprocess.run([str(tool), "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot run {tool} --help: {exc}") from None
    listing = (proc.stdout + proc.stderr).partition("allowed quantization types")[2]
    return tuple(re.findall(r"^\s*(?:\d+\s+or\s+)?([A-Z][A-Z0-9_]*)\s+:", listing, re.MULTILINE))


def quant_types(engine) -> list[str]:
    """The type names this engine's llama-quantize accepts, in its own order."""
    types = list(_quant_types_of(engine.tool("llama-quantize")))
    if not types:
        raise EngineError("could not read the quantization types from llama-quantize --help")
    return types


def make_reference(engine, source: Path, out_dir: Path, threads: int | None = None) -> Path:
    """An F16 copy of ``source``: the high-precision reference for fidelity and drafting.

    A quantized source is dequantized (``--allow-requantize``): the reference then carries the
    source's own quantization error. It is the best reference that model file allows, not the
    original F16 weights, and the sidecar says so.
    """
    source = Path(source)
    quantized, file_type = _is_quantized(source)
    out = Path(out_dir) / f"{_base_name(source)}-F16.gguf"
    argv = [str(engine.tool("llama-quantize")), "--allow-requantize", str(source), str(out), "F16",
            *([str(threads)] if threads else [])]
    inputs = {"kind": "reference", "type": "F16", "source_sha256": sha256_file_memo(source),
              "engine": engine_version_of(engine)}
    provenance = (f"dequantized from {source.name} ({file_type}) with llama-quantize --allow-requantize; "
                  "the weights carry the source's quantization error" if quantized
                  else f"converted from {source.name} ({file_type})")
    make_cached(out, argv, inputs, {"source": str(source), "provenance": provenance,
                                    "engine_provenance": engine.provenance})
    return out


def kept_layers(n_layers: int, keep: int, keep_last: int = 0) -> tuple[int, ...]:
    """The decoder layers a pruned copy keeps: the first ``keep − keep_last`` and the last ``keep_last``."""
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep < n_layers:
        raise UsageError(f"--keep {keep}: keep between 1 and {n_layers - 1} of the model's {n_layers} layers")
    if not 0 <= keep_last <= keep:
        raise UsageError(f"--keep-last {keep_last}: between 0 and --keep ({keep})")
    return tuple(range(keep - keep_last)) + tuple(range(n_layers - keep_last, n_layers))


def _sliding_pattern(model: Path) -> list[bool] | None:
    """Per layer, whether it is a sliding-window layer, for a model whose full-attention layers own a
    tensor of their own (Gemma-4: rope_freqs.weight, read only by full-attention layers); None for
    any other model."""
    import gguf

    reader = gguf.GGUFReader(model)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    pattern = reader.get_field(f"{arch}.attention.sliding_window_pattern")
    if pattern is None or not any(t.name == "rope_freqs.weight" for t in reader.tensors):
        return None
    return list(pattern.contents())


def check_loadable_layers(model: Path, layers: tuple[int, ...]) -> None:
    """Refuse a pruning the engine could not load: with only sliding-window layers kept, no layer reads
    the full-attention tensor, and llama-server stops at "wrong number of tensors; expected 31, got 30"."""
    sliding = _sliding_pattern(model)
    if sliding and all(sliding[i] for i in layers):
        full = [i for i, s in enumerate(sliding) if not s]
        hint = ("--keep-last 1 keeps the last layer, a full-attention one" if not sliding[-1]
                else f"keep one of its full-attention layers ({', '.join(map(str, full[:4]))}, …)")
        raise UsageError(f"layers {list(layers)} of {Path(model).name} are all sliding-window layers: the engine "
                         f"cannot load a pruned model without one of its full-attention layers", hint=hint)


def default_keep_last(model: Path, keep: int) -> int:
    """0, or 1 where the first ``keep`` layers alone would not load (see check_loadable_layers)."""
    sliding = _sliding_pattern(model)
    return 1 if sliding and all(sliding[:keep]) else 0


def prune_layers(engine, model: Path, keep: int, keep_last: int = 0, qtype: str = "Q8_0",
                 out: Path | None = None) -> Path:
    """A smaller model with the same vocabulary, tokenizer and template, to draft for ``model``:
    the decoder layers of ``kept_layers`` stay (llama-quantize ``--prune-layers`` drops the rest),
    and nothing is retrained, so it predicts what a shallower network's early guess is. Made once
    per inputs (``make_cached``); the default lives in the user cache."""
    model = Path(model)
    info = inspect_gguf(model)
    layers = kept_layers(info.block_count, keep, keep_last)
    check_loadable_layers(model, layers)
    if out is None:
        suffix = f"-last{keep_last}" if keep_last else ""
        out = cache_root() / "models" / f"{model.stem}.pruned{keep}{suffix}.{qtype}.gguf"
    dropped = [i for i in range(info.block_count) if i not in layers]
    argv = [str(engine.tool("llama-quantize")), "--allow-requantize", "--prune-layers", ",".join(map(str, dropped)),
            str(model), str(out), qtype]
    inputs = {"kind": "pruned", "source_sha256": sha256_file_memo(model), "kept_layers": list(layers),
              "type": qtype, "engine": engine_version_of(engine)}
    make_cached(out, argv, inputs, {"source": str(model), "provenance": f"layers {list(layers)} of {model.name} "
                                    f"({info.block_count} layers), not retrained"},
                finish=lambda path: slice_layer_arrays(path, layers, info.block_count))
    return out


def slice_layer_arrays(path: Path, layers: list[int], block_count: int) -> list[str]:
    """Keep only the kept layers' entries of per-layer metadata arrays, which llama-quantize
    --prune-layers leaves whole (Gemma-4's attention.head_count_kv and sliding_window_pattern:
    the engine then refuses the file, "wrong array length"). Rewrites ``path`` when one needs it;
    returns the keys sliced."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(path)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    new = {}
    for field in reader.fields.values():
        if (field.name.startswith(f"{arch}.") and field.types[0] == gguf.GGUFValueType.ARRAY
                and len(field.data) == block_count):
            values = field.contents()
            new[field.name] = MetadataDetails(gguf.GGUFValueType.ARRAY, [values[i] for i in layers],
                                              sub_type=field.types[-1])
    if not new:
        return []
    keys = sorted(new)
    tmp = path.with_name(path.name + ".sliced")
    writer = gguf.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, new, [])
    del reader  # its memory map of the old file
    os.replace(tmp, path)
    return keys


def compute_imatrix(engine, model: Path, out: Path, text: Path | None = None, chunks: int | None = None,
                    ctx: int = 256, threads: int | None = None) -> Path:
    """An importance matrix (GGUF format when ``out`` ends in .gguf) from llama-imatrix on ``text``."""
    model, out = Path(model), Path(out)
    text = Path(text) if text else text_path("calibration")
    argv = [str(engine.tool("llama-imatrix")), "-m", str(model), "-f", str(text), "-o", str(out),
            "-c", str(ctx), "--no-ppl", *(["--chunks", str(chunks)] if chunks else []), *thread_args(threads)]
    inputs = {"kind": "imatrix", "model_sha256": sha256_file_memo(model), "text_sha256": sha256_file_memo(text),
              "ctx": ctx, "chunks": chunks, "engine": engine_version_of(engine)}
    make_cached(out, argv, inputs, {"model": str(model), "text": str(text)})
    return out


def build_ladder(engine, source: Path, types: list[str], out_dir: Path, imatrix: str | Path | None = None,
                 threads: int | None = None, progress=None, imatrix_chunks: int | None = None) -> list[Rung]:
    """Quantize ``source`` to each of ``types`` in ``out_dir``; rungs already made are reused.

    ``imatrix``: None computes one from the calibration text only if some type needs it (and uses
    it only for those), ``"auto"`` computes one and uses it for every type, a path uses that file
    for every type. ``progress(done, total, message)`` is called as work advances.
    """
    source, out_dir = Path(source), Path(out_dir)
    valid = quant_types(engine)
    wanted = list(dict.fromkeys(t.upper() for t in types))
    unknown = [t for t in wanted if t not in valid]
    if unknown:
        raise UsageError(f"unknown quant type {', '.join(unknown)}; valid: {', '.join(valid)}")
    if not wanted:
        raise UsageError("no quant types given")
    if imatrix is not None and str(imatrix) != "auto" and not Path(imatrix).is_file():
        raise UsageError(f"imatrix file not found: {imatrix}")
    quantized, _ = _is_quantized(source)  # also checks that the source is a readable GGUF
    source_sha = sha256_file_memo(source)
    base = _base_name(source)
    notify = progress or (lambda done, total, message: None)

    if imatrix is None:
        use = {t for t in wanted if needs_imatrix(t)}
    else:
        use = set(wanted)
    computing = bool(use) and (imatrix is None or str(imatrix) == "auto")
    total, done = len(wanted) + computing, 0
    imatrix_path: Path | None = None if imatrix is None or str(imatrix) == "auto" else Path(imatrix)
    if computing:
        notify(done, total, "importance matrix")
        imatrix_path = compute_imatrix(engine, source, out_dir / f"{base}.imatrix.gguf",
                                       chunks=imatrix_chunks, threads=threads)
        done += 1
    imatrix_sha = sha256_file_memo(imatrix_path) if imatrix_path else None

    rungs = []
    quantize = str(engine.tool("llama-quantize"))
    for qtype in wanted:
        notify(done, total, qtype)
        out = out_dir / f"{base}-{qtype}.gguf"
        im = imatrix_path if qtype in use else None
        argv = [quantize, *(["--allow-requantize"] if quantized else []), *(["--imatrix", str(im)] if im else []),
                str(source), str(out), qtype, *([str(threads)] if threads else [])]
        inputs = {"kind": "quant", "type": qtype, "source_sha256": source_sha,
                  "imatrix_sha256": imatrix_sha if im else None, "engine": engine_version_of(engine)}
        make_cached(out, argv, inputs, {"source": str(source), "imatrix": str(im) if im else None})
        info = inspect_gguf(out)
        rungs.append(Rung(qtype=qtype, path=out, size_bytes=info.size_bytes, bits_per_weight=info.bits_per_weight,
                          imatrix=im, requantized=quantized, source=source, source_sha256=source_sha))
        done += 1
    notify(done, total, "done")
    return rungs


def _toml(value) -> str:
    # JSON strings, numbers, booleans and flat lists are valid TOML values.
    return json.dumps(value)


def write_sweep_file(rungs: list[Rung], reference: Path, out_dir: Path, spec_type: str = "draft-simple",
                     depths=(0, 1, 2, 3, 4)) -> Path:
    """``out_dir/sweep.toml``: every rung as a target drafted by the reference; paths relative to it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def rel(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()

    sampling, server = Sampling(), ServerSettings()
    lines = [
        "# Written by specsweep: each quant rung is a target, the high-precision reference its draft",
        "# model, so acceptance measures how far each quant strays from the reference.",
        f"name = {_toml('ladder-' + _base_name(Path(reference)))}",
        'db = "ladder.db"',
        'prompts = "mixed-5"',
    ]
    for rung in rungs:
        lines += ["", "[[models]]", f"label = {_toml(rung.qtype)}", f"path = {_toml(rel(rung.path))}",
                  f"draft_model = {_toml(rel(reference))}"]
    lines += ["", "[drafting]", f"spec_type = {_toml(spec_type)}", f"depths = {_toml(list(depths))}",
              "", "[sampling]"]
    lines += [f"{name} = {_toml(value)}" for name, value in asdict(sampling).items()]
    lines += ["", "[server]", f"ctx_size = {server.ctx_size}", ""]
    path = out_dir / "sweep.toml"
    path.write_text("\n".join(lines))
    return path
