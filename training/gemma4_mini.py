"""Train a Gemma-4-architecture miniature target and its Gemma-4 MTP assistant, convert both to GGUF.

    python training/gemma4_mini.py --out runs/gemma4-mini --llama-cpp LLAMA_CPP_TREE

A miniature, not Gemma-4-31B: same architecture (sliding/full attention pattern, KV-shared
assistant fed the target's hidden state), ~25M parameters, trained for minutes on text every
Python installation carries (training/corpus.py). Steps:

1. corpus → instruction/answer chat pairs, 2% held out;
2. a byte-fallback BPE tokenizer and Gemma chat template (training/tokenizer.py);
3. the target, `Gemma4ForCausalLM`, next-token loss on the chat-formatted stream;
4. the assistant, `Gemma4AssistantForCausalLM`, against the frozen target the way llama.cpp
   drafts with it: its query for position i sits at position i+1 with input
   pre_projection(concat(E_target(x_(i+1)), h_i)), h_i the target's last hidden state after
   the final norm; its layers read the target's shared K/V at positions ≤ i (sliding layers
   the target's last sliding layer, the full layer its last full layer); the label is the
   target's own greedy token after x_(i+1) (distillation, two tokens ahead of h_i);
5. both saved in the Hugging Face layout and converted by the pinned convert_hf_to_gguf.py
   to F16 GGUF; model card, loss curves and sha256 written beside them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import corpus
from common import (LoopSettings, base_parser, convert_to_gguf, device, environment, pack, plot_curves,
                    seed_everything, sha256_file, train_loop, write_json)
from tokenizer import SPECIALS, render_turns, special_id, train_tokenizer

SLIDING, FULL = "sliding_attention", "full_attention"


def target_config(vocab_size: int, tok, args):
    from transformers import Gemma4TextConfig
    return Gemma4TextConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
        global_head_dim=64, num_global_key_value_heads=1, attention_k_eq_v=True,
        layer_types=[SLIDING, SLIDING, SLIDING, FULL] * (args.layers // 4),
        sliding_window=args.window, max_position_embeddings=4096,
        hidden_size_per_layer_input=0, vocab_size_per_layer_input=0, final_logit_softcapping=None,
        tie_word_embeddings=True, pad_token_id=special_id(tok, "<pad>"), bos_token_id=special_id(tok, "<bos>"),
        eos_token_id=[special_id(tok, "<eos>"), special_id(tok, "<end_of_turn>")],
        attn_implementation="sdpa")


def assistant_config(target_cfg, args):
    from transformers import Gemma4AssistantConfig, Gemma4TextConfig
    text = Gemma4TextConfig(
        vocab_size=target_cfg.vocab_size, hidden_size=args.assistant_hidden,
        intermediate_size=4 * args.assistant_hidden, num_hidden_layers=2,
        # Head shapes must equal the target's: the assistant attends to the target's own K/V.
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, global_head_dim=64,
        num_global_key_value_heads=1, attention_k_eq_v=True, layer_types=[SLIDING, FULL],
        sliding_window=args.window, max_position_embeddings=4096, hidden_size_per_layer_input=0,
        vocab_size_per_layer_input=0, final_logit_softcapping=None, tie_word_embeddings=True,
        pad_token_id=target_cfg.pad_token_id, bos_token_id=target_cfg.bos_token_id,
        eos_token_id=target_cfg.eos_token_id)
    return Gemma4AssistantConfig(text_config=text, backbone_hidden_size=target_cfg.hidden_size,
                                 tie_word_embeddings=True, attn_implementation="sdpa")


def encode_pairs(tok, pairs) -> list[list[int]]:
    bos = special_id(tok, "<bos>")
    prompts, answers = zip(*(render_turns(q, a) for q, a in pairs))
    enc_p = tok.encode_batch(list(prompts), add_special_tokens=False)
    enc_a = tok.encode_batch(list(answers), add_special_tokens=False)
    return [[bos] + p.ids + a.ids for p, a in zip(enc_p, enc_a)]


@torch.no_grad()
def mean_loss(loss_fn, rows: torch.Tensor, batch_size: int) -> float:
    dev = device()
    total, n = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            total += float(loss_fn(batch)) * len(batch)
        n += len(batch)
    return total / max(1, n)


def assistant_masks(t: int, window: int, dev) -> dict[str, torch.Tensor]:
    """Query q (for position q+1) may read target keys k ≤ q; sliding layers also q − k < window."""
    q = torch.arange(t - 1, device=dev)[:, None]
    k = torch.arange(t, device=dev)[None, :]
    full = k <= q
    return {FULL: full[None, None], SLIDING: (full & (q - k < window))[None, None]}


class AssistantObjective:
    """Loss and agreement of the assistant's first draft step against the frozen target."""

    def __init__(self, target, assistant, window: int):
        self.target, self.assistant, self.window = target, assistant, window

    @torch.no_grad()
    def _target_pass(self, x):
        out = self.target.model(input_ids=x, return_shared_kv_states=True, use_cache=False)
        h = out.last_hidden_state
        greedy = self.target.lm_head(h).argmax(-1)
        return h, dict(out.shared_kv_states), greedy

    def logits_and_labels(self, x):
        h, kv, greedy = self._target_pass(x)
        t = x.shape[1]
        emb = self.target.model.embed_tokens(x[:, 1:])  # scaled by sqrt(hidden), as the target embeds
        inp = self.assistant.pre_projection(torch.cat([emb, h[:, :-1]], dim=-1))
        pos = torch.arange(1, t, device=x.device)[None].expand(x.shape[0], -1)
        out = self.assistant.model(inputs_embeds=inp, position_ids=pos,
                                   attention_mask=assistant_masks(t, self.window, x.device),
                                   shared_kv_states=kv, use_cache=False)
        logits = self.assistant.lm_head(out.last_hidden_state)
        return logits, greedy[:, 1:]

    def loss(self, x):
        logits, labels = self.logits_and_labels(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))

    @torch.no_grad()
    def agreement(self, rows, batch_size: int) -> float:
        dev, hits, n = device(), 0, 0
        for i in range(0, len(rows), batch_size):
            x = rows[i:i + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits, labels = self.logits_and_labels(x)
            hits += int((logits.argmax(-1) == labels).sum())
            n += labels.numel()
        return hits / max(1, n)


SAMPLE_PROMPTS = (
    "Write a Python function `merge_intervals(intervals)` that merges overlapping closed intervals.",
    "Pipe A fills a tank in 4 hours and pipe B in 6 hours. How long do both together take? Show every step.",
)


@torch.no_grad()
def greedy_samples(target, tok, n_tokens: int = 120) -> list[dict]:
    """What the trained target answers to two chat prompts (greedy, no cache): a sanity check for the card."""
    dev, bos, stop = device(), special_id(tok, "<bos>"), special_id(tok, "<end_of_turn>")
    samples = []
    for question in SAMPLE_PROMPTS:
        prompt, _ = render_turns(question, "")
        ids = [bos] + tok.encode(prompt, add_special_tokens=False).ids
        start = len(ids)
        for _ in range(n_tokens):
            logits = target(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0, -1]
            ids.append(int(logits.argmax()))
            if ids[-1] == stop:
                break
        samples.append({"prompt": question, "answer": tok.decode(ids[start:], skip_special_tokens=False)})
    return samples


def save_hf(model, tokenizer_dir: Path, out: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, out / name)


def write_card(r: dict, path: Path) -> None:
    t, a = r["target"], r["assistant"]
    lines = [
        "# gemma4-mini: a Gemma-4-architecture miniature and its MTP assistant",
        "",
        "**A miniature trained here, not Gemma-4-31B.** It has the real model's architecture (sliding and",
        "full attention layers, tied embeddings, a KV-sharing `Gemma4AssistantForCausalLM` drafter fed the",
        "target's last hidden state) at about a thousandth of its size, trained for minutes. Acceptance",
        "rates measured on it show how the mechanism behaves under quantization, not what the real model does.",
        "",
        "| | target (`Gemma4ForCausalLM`) | assistant (`Gemma4AssistantForCausalLM`) |",
        "|---|---|---|",
        f"| parameters | {t['parameters']:,} | {a['parameters']:,} |",
        f"| layers × hidden | {t['config']['num_hidden_layers']} × {t['config']['hidden_size']} | "
        f"{a['config']['text_config']['num_hidden_layers']} × {a['config']['text_config']['hidden_size']} |",
        f"| optimizer steps | {t['steps']} | {a['steps']} |",
        f"| tokens seen | {t['tokens_seen']:,} | {a['tokens_seen']:,} |",
        f"| training time | {t['seconds']} s | {a['seconds']} s |",
        f"| held-out loss (nats/token) | {t['held_out_loss']:.3f} | {a['held_out_loss']:.3f} |",
        f"| held-out top-1 agreement with the target's greedy token | — | {a['held_out_top1_agreement']:.3f} |",
        "",
        "![loss curves](loss.png)",
        "",
        "## Data",
        "Instruction/answer chat pairs built by `training/corpus.py` from the standard library and",
        f"`pydoc_data` of Python {r['corpus']['python']} plus generated reasoning problems with worked answers:",
        f"{r['corpus']['pairs']:,} pairs, {r['corpus']['chars']:,} characters, sha256 `{r['corpus']['sha256']}`;",
        f"2% held out. Train tokens {r['tokens']['train']:,}, held-out tokens {r['tokens']['held_out']:,}.",
        "",
        "## Tokenizer",
        f"Byte-fallback BPE with {r['vocab_size']} tokens trained on the training pairs (`training/tokenizer.py`),",
        "Gemma id layout (pad 0, eos 1, bos 2, unk 3, `<start_of_turn>`, `<end_of_turn>`, 256 byte tokens),",
        "llama.cpp's gemma4 pre-tokenization (spaces as ▁, split at newlines), Gemma turn chat template.",
        "",
        "## Training",
        f"Seed {r['seed']}; environment {r['environment']}. AdamW (β 0.9/0.95), cosine schedule with warm-up,",
        "bf16 autocast, random batches of packed 512-token rows. Settings:",
        "",
        f"- target: `{t['loop']}`",
        f"- assistant: `{a['loop']}` (target frozen; loss on the target's greedy token two ahead of h_i)",
        f"- command arguments: `{r['args']}`",
        "",
        "Reproduce: `python training/gemma4_mini.py --out DIR --llama-cpp TREE --target-steps "
        f"{t['steps']} --assistant-steps {a['steps']}` (fixed step counts instead of the time budget).",
        "",
        "## Files (converted by the pinned llama.cpp `convert_hf_to_gguf.py`, F16)",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
    ] + [f"| `{name}` | {g['bytes']:,} | `{g['sha256']}` |" for name, g in r["gguf"].items()] + [
        "",
        f"Total time including corpus, tokenizer and conversion: {r['total_seconds']} s.",
        "",
        "## What the target answers (greedy, 120 tokens, from the trained weights before conversion)",
        "",
    ] + [f"**{s['prompt']}**\n\n```text\n{s['answer']}\n```\n" for s in r.get("greedy_samples", [])] + [
        "## Licence",
        "",
        "Licence of the data: the Python Software Foundation License (CPython's sources and docs).",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--assistant-hidden", type=int, default=128)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--target-budget-s", type=float, default=300)
    ap.add_argument("--target-steps", type=int, default=100_000)
    ap.add_argument("--assistant-budget-s", type=float, default=150)
    ap.add_argument("--assistant-steps", type=int, default=100_000)
    args = ap.parse_args(argv)

    from transformers import Gemma4AssistantForCausalLM, Gemma4ForCausalLM

    t0 = time.perf_counter()
    seed_everything(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = device()

    train_pairs, held_pairs, corpus_info = corpus.load(args.seed, args.reasoning_pairs, args.max_pairs)
    print(f"corpus: {corpus_info} ({time.perf_counter() - t0:.0f}s)", flush=True)

    tok_dir = out / "tokenizer"
    tok = train_tokenizer([q + "\n" + a for q, a in train_pairs], args.vocab, tok_dir)
    train_rows = pack(encode_pairs(tok, train_pairs), args.seq_len)
    held_rows = pack(encode_pairs(tok, held_pairs), args.seq_len)
    print(f"tokens: train {train_rows.numel():,} held-out {held_rows.numel():,} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    # ---- target ----
    tcfg = target_config(tok.get_vocab_size(), tok, args)
    target = Gemma4ForCausalLM(tcfg).to(dev)
    n_target = sum(p.numel() for p in target.parameters())
    target_loss = lambda x: target(input_ids=x, labels=x, use_cache=False).loss  # noqa: E731
    tset = LoopSettings(batch_size=args.batch, budget_s=args.target_budget_s, max_steps=args.target_steps,
                        seed=args.seed)
    target.train()
    tres = train_loop(list(target.parameters()), target_loss, train_rows,
                      lambda: mean_loss(target_loss, held_rows, args.batch), tset, "target")
    target.eval()
    target.requires_grad_(False)
    samples = greedy_samples(target, tok)
    for sample in samples:
        print(f"sample: {sample['answer'][:300]!r}", flush=True)

    # ---- assistant ----
    acfg = assistant_config(tcfg, args)
    assistant = Gemma4AssistantForCausalLM(acfg).to(dev)
    n_assistant = sum(p.numel() for p in assistant.parameters())
    objective = AssistantObjective(target, assistant, args.window)
    aset = LoopSettings(batch_size=args.batch, budget_s=args.assistant_budget_s, max_steps=args.assistant_steps,
                        seed=args.seed + 1, lr=2e-3)
    assistant.train()
    ares = train_loop([p for p in assistant.parameters() if p.requires_grad], objective.loss, train_rows,
                      lambda: mean_loss(objective.loss, held_rows, args.batch), aset, "assistant")
    assistant.eval()
    agreement = objective.agreement(held_rows, args.batch)
    print(f"assistant top-1 agreement with the target's greedy token (held-out): {agreement:.3f}", flush=True)

    # ---- save, convert, card ----
    target_hf, assistant_hf = out / "hf-target", out / "hf-assistant"
    save_hf(target, tok_dir, target_hf)
    assistant.generation_config.num_assistant_tokens = 4
    save_hf(assistant, tok_dir, assistant_hf)
    t_gguf = convert_to_gguf(target_hf, out / "gemma4-mini-F16.gguf", args.llama_cpp)
    a_gguf = convert_to_gguf(assistant_hf, out / "gemma4-mini-assistant-F16.gguf", args.llama_cpp)
    plot_curves({"target (Gemma4ForCausalLM)": tres, "assistant (Gemma4AssistantForCausalLM)": ares},
                out / "loss.png", "Gemma-4 miniature: training and held-out loss")
    record = {
        "what": "a miniature of the Gemma-4 architecture trained here; not Gemma-4-31B",
        "environment": environment(), "seed": args.seed, "args": {k: str(v) for k, v in vars(args).items()},
        "corpus": corpus_info, "tokens": {"train": train_rows.numel(), "held_out": held_rows.numel()},
        "vocab_size": tok.get_vocab_size(), "specials": SPECIALS,
        "target": {"parameters": n_target, "config": tcfg.to_dict(), "loop": tset, "steps": tres.steps,
                   "seconds": round(tres.seconds, 1), "tokens_seen": tres.tokens,
                   "held_out_loss": tres.final_eval, "train_curve": tres.train_curve, "eval_curve": tres.eval_curve},
        "assistant": {"parameters": n_assistant, "config": acfg.to_dict(), "loop": aset, "steps": ares.steps,
                      "seconds": round(ares.seconds, 1), "tokens_seen": ares.tokens,
                      "held_out_loss": ares.final_eval, "held_out_top1_agreement": agreement,
                      "train_curve": ares.train_curve, "eval_curve": ares.eval_curve},
        "greedy_samples": samples,
        "gguf": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in (t_gguf, a_gguf)},
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "training.json", record)
    write_card(record, out / "MODEL_CARD.md")
    print(f"done in {record['total_seconds']}s: {record['gguf']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
