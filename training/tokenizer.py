"""A byte-fallback BPE tokenizer with a Gemma-style chat template, in the layout the converter reads.

llama.cpp tokenizes a `gemma4` vocabulary SPM-style: spaces become "▁", text is split only at
newlines, and BPE merges run over each whole line (src/llama-vocab.cpp, PRE_TYPE_GEMMA4). The
tokenizer here is trained and applied the same way, so the token streams seen in training and
served by llama-server agree. The pinned converter reads it with `gguf.LlamaHfVocab`, which wants
a BPE model with `byte_fallback: true` and a `Sequence` decoder; ids 0–3 follow Gemma
(pad, eos, bos, unk), then the turn markers, then the 256 byte tokens, then the merges.

On a corpus this templated, merges over whole lines learn phrases ("knight,▁Cora▁knight:"): a
591-character knights answer is 43 tokens with the v6 tokenizer and 103 with word-level merges.
``merges="words"`` learns merges only inside a word (a run of "▁" and the characters up to the next
"▁"): no merge then joins a character to a following "▁", so BPE over the whole line, as llama.cpp
applies it, gives exactly the same tokens as BPE word by word, and the tokenizer that is served is
still the newline-split one.
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


MERGES = ("lines", "words")
LINES = pre_tokenizers.Split(Regex(r"[^\n]+|[\n]+"), behavior="isolated")
# Indentation or spaces and the word after them, or a trailing run of spaces.
WORDS = pre_tokenizers.Sequence([LINES, pre_tokenizers.Split(Regex(r"▁*[^▁\n]+|▁+"), behavior="isolated")])


def _pipeline(model: models.BPE, pre_tokenizer=LINES) -> Tokenizer:
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path, merges: str = "lines") -> Tokenizer:
    """Train merges on `texts` (over whole lines, or only inside words: see the module's note), then lay
    out ids Gemma-style and save tokenizer.json + tokenizer_config.json, which split at newlines only."""
    if merges not in MERGES:
        raise ValueError(f"merges must be one of {MERGES}, got {merges!r}")
    n_merged = vocab_size - len(SPECIALS) - len(BYTE_TOKENS)
    draft = _pipeline(models.BPE(unk_token="<unk>", byte_fallback=True), LINES if merges == "lines" else WORDS)
    draft.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=n_merged, limit_alphabet=160, show_progress=False, special_tokens=[]))
    learned = json.loads(draft.to_str())["model"]
    vocab = {t: i for i, t in enumerate(SPECIALS + BYTE_TOKENS)}
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    # What makes whole-line BPE equal word-by-word BPE: no merge joins a character to a following "▁".
    if merges == "words" and (crossing := [m for m in pairs if m[1].startswith("▁") and not m[0].endswith("▁")]):
        raise AssertionError(f"merges across a word boundary: {crossing[:3]}")
    tok = _pipeline(models.BPE(vocab=vocab, merges=pairs, unk_token="<unk>", byte_fallback=True,
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
