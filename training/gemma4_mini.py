"""Train a Gemma-4-architecture miniature target and its Gemma-4 MTP assistant, convert both to GGUF.

    python training/gemma4_mini.py --out runs/gemma4-mini --llama-cpp LLAMA_CPP_TREE

A miniature, not Gemma-4-31B: same architecture (sliding/full attention pattern, KV-shared
assistant fed the target's hidden state), ~25M parameters, trained for minutes on text every
Python installation carries (training/corpus.py). Steps (`--stage target`
and `--stage assistant` run 1–3 and 4–6 as separate processes):

1. corpus → instruction/answer chat pairs, 2% held out;
2. a byte-fallback BPE tokenizer and Gemma chat template (training/tokenizer.py);
3. the target, `Gemma4ForCausalLM`, next-token loss on the chat-formatted stream;
4. the target's own answers to training questions, sampled at the measured temperature;
5. the assistant, `Gemma4AssistantForCausalLM`, against the frozen target the way llama.cpp
   drafts with it (gemma4_mtp.py): K chained draft steps at position i+1 over the target's
   shared K/V ≤ i, step 1 fed pre_projection(concat(E_target(x_(i+1)), h_i)), step k the previous
   step's draft token and post_projection output; labels are the target's greedy tokens
   (distillation); rows half the target's answers, half the corpus;
6. both saved in the Hugging Face layout and converted by the pinned convert_hf_to_gguf.py
   to F16 GGUF; model card, loss curves and sha256 written beside them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

import corpus
from common import (LoopSettings, base_parser, convert_to_gguf, device, environment, pack, plot_curves,
                    seed_everything, sha256_file, train_loop, write_json)
from gemma4_mtp import FULL, SLIDING, ChainObjective, greedy_ceiling, sample_answers
from tokenizer import MERGES, SPECIALS, render_turns, special_id, train_tokenizer



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
        intermediate_size=getattr(args, "assistant_ffn", 4 * args.assistant_hidden), num_hidden_layers=2,
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


SAMPLE_PROMPTS = (
    "Write a Python function `merge_intervals(intervals)` that merges overlapping closed intervals.",
    "Pipe A fills a tank in 4 hours and pipe B in 6 hours. How long do both together take? Show every step.",
)


def greedy_samples(target, tok, n_tokens: int = 120) -> list[dict]:
    """What the trained target answers to two chat prompts (greedy, each alone): a sanity check for the card."""
    answers = sample_answers(target, tok, list(SAMPLE_PROMPTS), n_tokens, 0.0, 1, 1e9, 0)
    return [{"prompt": question, "answer": tok.decode(seq[start:], skip_special_tokens=False)}
            for question, (start, seq) in zip(SAMPLE_PROMPTS, answers)]


def mixed5_openings(target, tok, n_tokens: int = 40) -> list[str]:
    """The first tokens of the target's greedy answer to each mixed-5 prompt (each alone)."""
    answers = sample_answers(target, tok, mixed5_questions(), n_tokens, 0.0, 1, 1e9, 0)
    return [tok.decode(seq[start:], skip_special_tokens=False) for start, seq in answers]


def save_hf(model, tokenizer_dir: Path, out: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, out / name)


def write_card(r: dict, path: Path) -> None:
    t, a = r["target"], r["assistant"]
    off, ans = a.get("mixed5_offline", {}), a.get("held_out_on_answers", {})
    data = a.get("data", {})
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
        f"| held-out loss (nats/token) | {t['held_out_loss']:.3f} | {a['held_out_loss']:.3f} (chained, weighted) |",
        f"| weights kept from step (lowest held-out loss) | {t.get('kept_step') or 'the last'} | "
        f"{a.get('kept_step') or 'the last'} |",
        f"| held-out top-1 agreement with the target's greedy token, per draft step | — | "
        f"{' / '.join(f'{v:.3f}' for v in ans.get('top1_per_step', []))} |",
        "",
        "![loss curves](loss.png)",
        "",
        "## What the pair allows on the published prompts (offline, before conversion)",
        "",
        f"The target's own answers to the five `mixed-5` prompts, 8 samples each at temperature {data.get('temperature')},",
        "200 tokens. `mixed-5` is never trained on "
        f"({r['corpus'].get('mixed5_prompts_in_training_data', '?')} training pairs ask one of its prompts);",
        "the corpus's generated problems are of the same families (work rates, knights and knaves, binary",
        "search, classic bugs" + (", pipes opening at different times, and small functions asked for with a docstring, "
                                  "their complexity and three asserts; merging intervals is not among them)."
                                  if r["corpus"].get("recipe", "v1") != "v1" else ")."),
        "",
        f"- Ceiling: the target samples its own greedy token with probability {t.get('mixed5_greedy_ceiling', float('nan')):.3f}"
        " on average, the depth-1 acceptance of a perfect drafter.",
        f"- The assistant drafting as llama-server does (greedy chain, accepted while equal to the sample), over {off.get('bases', 0):,}"
        " answer positions: per position " + " / ".join(f"{v:.3f}" for v in off.get("p_per_position", []))
        + "; acceptance at depth 1–4 " + " / ".join(f"{v:.3f}" for v in off.get("acceptance_at_depth", [])) + ".",
        *(["- Greedy (temperature 0, one answer per prompt; llama-server gives the same within ~1 pp, "
           "`training/gemma4_offline_check.py`): acceptance at depth 1–4 "
           + " / ".join(f"{v:.3f}" for v in a['mixed5_offline_greedy']['acceptance_at_depth'])
           + "."]
          if a.get("mixed5_offline_greedy") else []),
        "",
        "## Data",
        f"Instruction/answer chat pairs built by `training/corpus.py` (recipe {r['corpus'].get('recipe', 'v1')}) from the standard library and",
        f"`pydoc_data` of Python {r['corpus']['python']} plus generated reasoning problems with worked answers:",
        f"{r['corpus']['pairs']:,} pairs, {r['corpus']['chars']:,} characters, sha256 `{r['corpus']['sha256']}`;",
        f"2% held out. Train tokens {r['tokens']['train']:,}, held-out tokens {r['tokens']['held_out']:,}.",
        f"The assistant also trains on the target's own answers to {data.get('target_answers', 0):,} training questions",
        f"({data.get('answer_tokens', 0):,} tokens, sampled at temperature {data.get('temperature')}, repeated "
        f"×{data.get('answer_rows_repeat', 1)} so they make about half its rows); its held-out figures are on the",
        f"target's answers to {data.get('held_out_answers', 0):,} held-out questions.",
        "",
        "## Tokenizer",
        f"Byte-fallback BPE with {r['vocab_size']} tokens trained on the training pairs (`training/tokenizer.py`),",
        "Gemma id layout (pad 0, eos 1, bos 2, unk 3, `<start_of_turn>`, `<end_of_turn>`, 256 byte tokens),",
        "llama.cpp's gemma4 pre-tokenization (spaces as ▁, split at newlines), Gemma turn chat template.",
        ("Merges were learned only inside words (`--merges words`), so no token spans two words."
         if r.get("merges") == "words" else "Merges were learned over whole lines, so a token may span words."),
        "",
        "## Training",
        f"Seed {r['seed']}; environment {r['environment']}. AdamW (β 0.9/0.95), cosine schedule with warm-up,",
        "bf16 autocast, random batches of packed 512-token rows. Settings:",
        "",
        f"- target: `{t['loop']}`",
        f"- assistant: `{a['loop']}` (target frozen; {a.get('draft_steps', 1)} chained draft steps as llama-server "
        f"runs them, loss weight {a.get('decay', 1)}^(k−1) on step k, labels the target's greedy tokens)",
        f"- command arguments: `{r['args']}`",
        "",
        "Reproduce: `python training/gemma4_mini.py --out DIR --llama-cpp TREE --target-steps "
        f"{t['steps']} --assistant-steps {a['steps']}` (fixed step counts instead of the time budget; the",
        "number of sampled answers still follows `--sample-budget-s`).",
        "",
        "## Files (converted by the pinned llama.cpp `convert_hf_to_gguf.py`, F16)",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
    ] + [f"| `{name}` | {g['bytes']:,} | `{g['sha256']}` |" for name, g in r["gguf"].items()] + [
        "",
        f"Total time including corpus, tokenizer, sampling and conversion: {r['total_seconds']} s.",
        "",
        "## What the target answers (greedy, 120 tokens, from the trained weights before conversion)",
        "",
    ] + [f"**{s['prompt']}**\n\n```text\n{s['answer']}\n```\n" for s in r.get("greedy_samples", [])] + [
        "## Licence",
        "",
        "Licence of the data: the Python Software Foundation License (CPython's sources and docs).",
    ]
    path.write_text("\n".join(lines) + "\n")


def mixed5_questions() -> list[str]:
    """The prompts the published protocol asks (evaluation only: `corpus.build_pairs` drops them)."""
    return corpus.evaluation_questions("mixed-5")


def parse_args(argv):
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=("all", "target", "assistant"), default="all",
                    help="target and assistant can run as two processes; the assistant reads OUT/hf-target")
    ap.add_argument("--corpus", choices=corpus.RECIPES, default="v1",
                    help="v2 drops whole stdlib modules and adds generated coding tasks; v3 also drops the stdlib "
                         "functions; v4 also drops the language reference; v5 asks v4's problems with added clauses; "
                         "v6 also names some coding tasks' parameters after their invented nouns (corpus.build_pairs)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--merges", choices=MERGES, default="lines",
                    help="BPE merges over whole lines (v1-v6 pairs) or only inside words, so a token is at most "
                         "a word as in Gemma's own vocabulary and an answer is ~2x as many tokens")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--assistant-hidden", type=int, default=384)
    ap.add_argument("--assistant-ffn", type=int, default=1024)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--target-lr", type=float, default=3e-3)
    ap.add_argument("--keep-best", action="store_true",
                    help="end target and assistant on the weights of their lowest held-out loss")
    ap.add_argument("--target-budget-s", type=float, default=360)
    ap.add_argument("--target-steps", type=int, default=100_000)
    ap.add_argument("--draft-steps", type=int, default=4, help="chained draft steps the assistant is trained on")
    ap.add_argument("--decay", type=float, default=0.8, help="loss weight of draft step k is decay^(k−1)")
    ap.add_argument("--answers", type=int, default=40_000, help="target answers to sample for the assistant")
    ap.add_argument("--answer-tokens", type=int, default=200)
    ap.add_argument("--sample-batch", type=int, default=4096)
    ap.add_argument("--sample-budget-s", type=float, default=60)
    ap.add_argument("--answer-share", type=float, default=0.5,
                    help="share of the assistant's training rows taken from the target's own answers")
    ap.add_argument("--temperature", type=float, default=0.3, help="sampling temperature, as measured")
    ap.add_argument("--assistant-budget-s", type=float, default=240)
    ap.add_argument("--assistant-steps", type=int, default=100_000)
    args = ap.parse_args(argv)
    if not 0 <= args.answer_share < 1:
        ap.error("--answer-share must be in [0, 1)")
    return args


def corpus_rows(args, tok=None, tok_dir: Path | None = None):
    """(train pairs, held pairs, corpus info, tokenizer, train rows, held rows); trains the tokenizer if none is given."""
    train_pairs, held_pairs, corpus_info = corpus.load(args.seed, args.reasoning_pairs, args.max_pairs,
                                                       args.corpus)
    asked = {corpus.same_question(q) for q in mixed5_questions()}
    corpus_info["mixed5_prompts_in_training_data"] = sum(corpus.same_question(q) in asked
                                                         for q, _ in train_pairs + held_pairs)
    if corpus_info["mixed5_prompts_in_training_data"]:  # corpus.build_pairs drops them: a model must never see one
        raise SystemExit(f"{corpus_info['mixed5_prompts_in_training_data']} training pairs ask a mixed-5 prompt")
    if tok is None:
        tok = train_tokenizer([q + "\n" + a for q, a in train_pairs], args.vocab, tok_dir, merges=args.merges)
    return (train_pairs, held_pairs, corpus_info, tok, pack(encode_pairs(tok, train_pairs), args.seq_len),
            pack(encode_pairs(tok, held_pairs), args.seq_len))


def mixed5_samples(target, tok, args, copies: int = 8):
    """The target's own answers to mixed-5 at the measured temperature, `copies` samples per prompt."""
    return sample_answers(target, tok, mixed5_questions() * copies, args.answer_tokens, args.temperature,
                          args.sample_batch, 1e9, args.seed + 7)


def train_target(args, out: Path) -> tuple[dict, tuple]:
    """The target's record and its corpus rows (which `--stage all` hands to the assistant)."""
    from transformers import Gemma4ForCausalLM
    t0, dev = time.perf_counter(), device()
    rows = corpus_rows(args, tok_dir=out / "tokenizer")
    train_pairs, held_pairs, corpus_info, tok, train_rows, held_rows = rows
    print(f"corpus: {corpus_info}; tokens: train {train_rows.numel():,} held-out {held_rows.numel():,} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)
    tcfg = target_config(tok.get_vocab_size(), tok, args)
    target = Gemma4ForCausalLM(tcfg).to(dev)
    target_loss = lambda x: target(input_ids=x, labels=x, use_cache=False).loss  # noqa: E731
    tset = LoopSettings(batch_size=args.batch, budget_s=args.target_budget_s, max_steps=args.target_steps,
                        seed=args.seed, lr=args.target_lr, keep_best=args.keep_best)
    target.train()
    tres = train_loop(list(target.parameters()), target_loss, train_rows,
                      lambda: mean_loss(target_loss, held_rows, args.batch), tset, "target")
    target.eval().requires_grad_(False)
    samples = greedy_samples(target, tok)
    for sample in samples:
        print(f"sample: {sample['answer'][:300]!r}", flush=True)
    ceiling = greedy_ceiling(target, mixed5_samples(target, tok, args), args.temperature)
    print(f"mixed-5 greedy ceiling at T={args.temperature}: {ceiling:.3f}", flush=True)
    # How each published prompt is answered, before an assistant is trained for it: the v2 and v3-probe
    # targets answered the coding prompts from the wrong family (benchmarks/gemma4-mini-v2-h100.md).
    openings = mixed5_openings(target, tok)
    for opening in openings:
        print(f"mixed-5 greedy opening: {opening!r}", flush=True)
    save_hf(target, out / "tokenizer", out / "hf-target")
    t_gguf = convert_to_gguf(out / "hf-target", out / "gemma4-mini-F16.gguf", args.llama_cpp)
    part = {"corpus": corpus_info, "tokens": {"train": train_rows.numel(), "held_out": held_rows.numel()},
            "vocab_size": tok.get_vocab_size(), "specials": SPECIALS, "merges": args.merges,
            "target": {"parameters": sum(p.numel() for p in target.parameters()), "config": tcfg.to_dict(),
                       "loop": tset, "steps": tres.steps, "seconds": round(tres.seconds, 1), "tokens_seen": tres.tokens,
                       "held_out_loss": tres.final_eval, "train_curve": tres.train_curve, "eval_curve": tres.eval_curve,
                       "kept_step": tres.kept_step, "mixed5_greedy_ceiling": ceiling},
            "greedy_samples": samples, "mixed5_greedy_openings": openings,
            "gguf": {t_gguf.name: {"sha256": sha256_file(t_gguf), "bytes": t_gguf.stat().st_size}},
            "target_stage_seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "target.json", part)
    return part, rows


def train_assistant(args, out: Path, part: dict, rows: tuple | None = None) -> dict:
    """`rows`: the target stage's corpus_rows in the same process, so the corpus is built once."""
    from tokenizers import Tokenizer
    from transformers import Gemma4AssistantForCausalLM, Gemma4ForCausalLM
    t0, dev = time.perf_counter(), device()
    if part["corpus"].get("recipe", "v1") != args.corpus:
        raise SystemExit(f"the target in {out} was trained on corpus {part['corpus'].get('recipe', 'v1')}, "
                         f"not {args.corpus}: pass the same --corpus to both stages")
    tok = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    target = Gemma4ForCausalLM.from_pretrained(out / "hf-target", attn_implementation="sdpa").to(dev)
    target.eval().requires_grad_(False)
    # The same tokenizer file either way, so rows handed over equal rows rebuilt here.
    train_pairs, held_pairs, _, _, corpus_train, corpus_held = rows or corpus_rows(args, tok=tok)
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train_pairs), generator=gen)[: args.answers].tolist()
    answers = [] if args.answer_share <= 0 else sample_answers(
        target, tok, [train_pairs[i][0] for i in order], args.answer_tokens, args.temperature,
        args.sample_batch, args.sample_budget_s, args.seed)
    held = sample_answers(target, tok, [q for q, _ in held_pairs[:1024]], args.answer_tokens, args.temperature,
                          args.sample_batch, args.sample_budget_s, args.seed + 1)
    answer_rows = pack([s for _, s in answers], args.seq_len)
    held_answer_rows = pack([s for _, s in held], args.seq_len)
    if not len(held_answer_rows):  # toy sizes, or a sample budget that ended early on a slow machine
        raise SystemExit(f"{len(held)} held-out answers ({sum(len(s) for _, s in held):,} tokens) fill no "
                         f"{args.seq_len}-token row: more --max-pairs, a shorter --seq-len, or a larger "
                         f"--sample-budget-s (now {args.sample_budget_s:g} s)")
    # Mix the target's own answers (what the assistant will draft against) with the corpus (breadth).
    repeat = 0 if not answers else max(1, round(
        args.answer_share / (1 - args.answer_share) * len(corpus_train) / max(1, len(answer_rows))))
    train_rows = torch.cat([corpus_train, answer_rows.repeat(repeat, 1)]) if repeat else corpus_train
    print(f"assistant data: {len(answers)} answers ({answer_rows.numel():,} tokens ×{repeat}) + corpus "
          f"{corpus_train.numel():,} tokens ({time.perf_counter() - t0:.0f}s)", flush=True)

    tcfg = target.config
    acfg = assistant_config(tcfg, args)
    assistant = Gemma4AssistantForCausalLM(acfg).to(dev)
    objective = ChainObjective(target, assistant, args.window, args.draft_steps, args.decay)
    aset = LoopSettings(batch_size=args.batch, budget_s=args.assistant_budget_s, max_steps=args.assistant_steps,
                        seed=args.seed + 1, lr=2e-3, keep_best=args.keep_best)
    assistant.train()
    ares = train_loop([p for p in assistant.parameters() if p.requires_grad], objective.loss, train_rows,
                      lambda: mean_loss(objective.loss, held_answer_rows, args.batch), aset, "assistant")
    assistant.eval()
    on_answers = objective.evaluate(held_answer_rows, args.batch)
    on_corpus = objective.evaluate(corpus_held, args.batch)
    mixed5 = mixed5_samples(target, tok, args)
    offline = objective.drafted_acceptance(mixed5)
    # Greedy, the same figure llama-server gives at --temperature 0 (training/gemma4_offline_check.py).
    greedy = objective.drafted_acceptance(sample_answers(target, tok, mixed5_questions(), args.answer_tokens, 0.0,
                                                         args.sample_batch, 1e9, args.seed))
    print(f"held-out, the target's answers: {on_answers}\nheld-out, corpus: {on_corpus}\n"
          f"mixed-5 offline draft-mtp at T={args.temperature}: {offline}\nmixed-5 offline, greedy: {greedy}",
          flush=True)

    assistant.generation_config.num_assistant_tokens = args.draft_steps
    save_hf(assistant, out / "tokenizer", out / "hf-assistant")
    a_gguf = convert_to_gguf(out / "hf-assistant", out / "gemma4-mini-assistant-F16.gguf", args.llama_cpp)
    target_part = part["target"]
    plot_curves({"target (Gemma4ForCausalLM)": _curves(target_part),
                 f"assistant ({args.draft_steps} chained draft steps)": ares},
                out / "loss.png", "Gemma-4 miniature: training and held-out loss")
    record = dict(part)
    record.update({
        "what": "a miniature of the Gemma-4 architecture trained here; not Gemma-4-31B",
        "environment": environment(), "seed": args.seed, "args": {k: str(v) for k, v in vars(args).items()},
        "assistant": {"parameters": sum(p.numel() for p in assistant.parameters()), "config": acfg.to_dict(),
                      "loop": aset, "steps": ares.steps, "seconds": round(ares.seconds, 1), "tokens_seen": ares.tokens,
                      "held_out_loss": ares.final_eval, "held_out_top1_agreement": on_answers["top1_per_step"][0],
                      "held_out_on_answers": on_answers, "held_out_on_corpus": on_corpus,
                      "kept_step": ares.kept_step, "draft_steps": args.draft_steps, "decay": args.decay,
                      "data": {"target_answers": len(answers), "answer_tokens": answer_rows.numel(),
                               "answer_rows_repeat": repeat, "corpus_tokens": corpus_train.numel(),
                               "held_out_answers": len(held), "temperature": args.temperature},
                      "mixed5_offline": offline, "mixed5_offline_greedy": greedy,
                      "train_curve": ares.train_curve, "eval_curve": ares.eval_curve},
        "assistant_stage_seconds": round(time.perf_counter() - t0, 1)})
    record["gguf"] = dict(part["gguf"])
    record["gguf"][a_gguf.name] = {"sha256": sha256_file(a_gguf), "bytes": a_gguf.stat().st_size}
    record["total_seconds"] = round(part["target_stage_seconds"] + record["assistant_stage_seconds"], 1)
    write_json(out / "training.json", record)
    write_card(record, out / "MODEL_CARD.md")
    print(f"done: {record['gguf']}", flush=True)
    return record


def _curves(part: dict):
    from common import LoopResult
    return LoopResult(part["steps"], part["seconds"], part["tokens_seen"],
                      [tuple(p) for p in part["train_curve"]], [tuple(p) for p in part["eval_curve"]])


def main(argv=None) -> int:
    args = parse_args(argv)
    seed_everything(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = None
    if args.stage in ("all", "target"):
        part, rows = train_target(args, args.out)
    else:
        part = json.loads((args.out / "target.json").read_text())
    if args.stage in ("all", "assistant"):
        seed_everything(args.seed + 1)
        train_assistant(args, args.out, part, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
