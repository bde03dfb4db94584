"""A byte-fallback BPE tokenizer with a Gemma-style chat template, in the layout the converter reads.

llama.cpp tokenizes a `gemma4` vocabulary SPM-style: spaces become "▁", text is split only at
newlines, and BPE merges run over each whole line (src/llama-vocab.cpp, PRE_TYPE_GEMMA4). The
tokenizer here is trained and applied the same way, so the token streams seen in training and
served by llama-server agree. The pinned converter reads it with `gguf.LlamaHfVocab`, which wants
a BPE model with `byte_fallback: true` and a `Sequence` decoder; ids 0–3 follow Gemma
(pad, eos, bos, unk), then the turn markers, then the 256 byte tokens, then the merges.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

# Gemma's turn format; thinking is not part of this miniature, so `enable_thinking` is accepted and ignored.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def render_turns(question: str, answer: str) -> tuple[str, str]:
    """The prompt part and the answer part of one conversation, exactly as the template renders them."""
    prompt = f"<start_of_turn>user\n{question.strip()}<end_of_turn>\n<start_of_turn>model\n"
    return prompt, f"{answer.strip()}<end_of_turn>\n"


def _pipeline(model: models.BPE) -> Tokenizer:
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[^\n]+|[\n]+"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path) -> Tokenizer:
    """Train merges on `texts`, then lay out ids Gemma-style and save tokenizer.json + tokenizer_config.json."""
    n_merged = vocab_size - len(SPECIALS) - len(BYTE_TOKENS)
    draft = _pipeline(models.BPE(unk_token="<unk>", byte_fallback=True))
    draft.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=n_merged, limit_alphabet=160, show_progress=False, special_tokens=[]))
    learned = json.loads(draft.to_str())["model"]
    vocab = {t: i for i, t in enumerate(SPECIALS + BYTE_TOKENS)}
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = _pipeline(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                               fuse_unk=True))
    tok.add_special_tokens(SPECIALS)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
        "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
        "add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "model_max_length": 4096, "chat_template": CHAT_TEMPLATE,
    }, indent=1))
    return tok


def special_id(tok: Tokenizer, token: str) -> int:
    tid = tok.token_to_id(token)
    if tid is None:
        raise KeyError(token)
    return tid
