"""Retrain the Gemma-4 miniature's MTP assistant for chained drafting, against the committed target.

    python training/gemma4_chain.py --out runs/gemma4-chain --llama-cpp LLAMA_CPP_TREE \
        --model-dir models/gemma4-mini --draft-steps 4 --budget-s 200

Why: `gemma4_mini.py` trains only the assistant's first draft step. In llama-server every later
step of a draft (depth ≥ 2) feeds the assistant its own output back, at the *same* position
(the KV is the target's, shared): step k's input is
pre_projection(concat(E_target(d_(k−1)) · √H, post_projection(norm(o_(k−1))))), d_(k−1) the token
drafted at step k−1 (common/speculative.cpp, `is_mem_shared`). Nothing trained post_projection,
so acceptance collapsed after position 1. This script

1. loads the committed F16 target GGUF back into `Gemma4ForCausalLM` (the converter's gemma4
   mapping is a plain rename: no norm shift, no permutation), so the target and its quant ladder
   stay exactly the files already measured;
2. samples the target's own answers to the corpus's questions (temperature 0.3, as measured), so
   that a chain of drafted tokens that the target accepts is what the training data holds;
3. trains a fresh assistant on K unrolled steps: step k reads the target's K/V at positions ≤ i
   from position i+1, takes token x_(i+k) and the previous step's post_projection output, and is
   scored against the target's greedy token after x_(i+k) (step 1 is exactly the old objective);
4. converts it with the pinned converter and updates the model card and training.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import corpus
from common import (LoopSettings, base_parser, convert_to_gguf, device, environment, pack, plot_curves,
                    seed_everything, sha256_file, train_loop, write_json)
from gemma4_mini import _curves, assistant_config, save_hf, write_card
from gemma4_mtp import ChainObjective, load_gguf_weights, sample_answers


# ---------------------------------------------------------------- the committed target, read back

def target_from_gguf(gguf_path: Path, config: dict, llama_cpp: Path):
    """A frozen Gemma4ForCausalLM holding the GGUF's weights."""
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    cfg = Gemma4TextConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")})
    cfg._attn_implementation = "sdpa"
    model = Gemma4ForCausalLM(cfg)
    load_gguf_weights(model, gguf_path, "GEMMA4", cfg.num_hidden_layers, llama_cpp)
    return model.eval().requires_grad_(False), cfg


def main(argv=None) -> int:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--model-dir", type=Path, required=True,
                    help="the committed gemma4-mini folder: F16 target GGUF, tokenizer/, training.json")
    ap.add_argument("--draft-steps", type=int, default=4)
    ap.add_argument("--decay", type=float, default=0.8, help="loss weight of step k is decay^(k−1)")
    ap.add_argument("--answers", type=int, default=16384, help="target answers to sample")
    ap.add_argument("--answer-tokens", type=int, default=200)
    ap.add_argument("--sample-batch", type=int, default=1024)
    ap.add_argument("--sample-budget-s", type=float, default=150)
    ap.add_argument("--temperature", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--budget-s", type=float, default=200)
    ap.add_argument("--steps", type=int, default=100_000)
    args = ap.parse_args(argv)

    from tokenizers import Tokenizer
    from transformers import Gemma4AssistantForCausalLM

    t0 = time.perf_counter()
    seed_everything(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = device()
    record = json.loads((args.model_dir / "training.json").read_text())
    old_args = record["args"]
    window = int(old_args["window"])

    target_gguf = args.model_dir / "gemma4-mini-F16.gguf"
    expected = record["gguf"][target_gguf.name]["sha256"]
    if sha256_file(target_gguf) != expected:
        raise SystemExit(f"{target_gguf} does not match its recorded sha256 {expected}")
    target, tcfg = target_from_gguf(target_gguf, record["target"]["config"], args.llama_cpp)
    target.to(dev)
    tok_dir = args.model_dir / "tokenizer"
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    print(f"target loaded from {target_gguf.name} ({time.perf_counter() - t0:.0f}s)", flush=True)

    train_pairs, held_pairs, corpus_info = corpus.load(args.seed, args.reasoning_pairs, args.max_pairs)
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train_pairs), generator=gen)[: args.answers].tolist()
    answers = sample_answers(target, tok, [train_pairs[i][0] for i in order], args.answer_tokens,
                             args.temperature, args.sample_batch, args.sample_budget_s, args.seed)
    held = sample_answers(target, tok, [q for q, _ in held_pairs[:512]], args.answer_tokens, args.temperature,
                          args.sample_batch, args.sample_budget_s, args.seed + 1)
    train_rows, held_rows = pack([q for _, q in answers], args.seq_len), pack([q for _, q in held], args.seq_len)
    print(f"target answers: {len(answers)} train ({train_rows.numel():,} tokens), {len(held)} held-out "
          f"({held_rows.numel():,}) ({time.perf_counter() - t0:.0f}s)", flush=True)

    class Sizes:  # assistant_config reads these two from the original run's arguments
        assistant_hidden, window = int(old_args["assistant_hidden"]), int(old_args["window"])
    acfg = assistant_config(tcfg, Sizes)
    assistant = Gemma4AssistantForCausalLM(acfg).to(dev)
    objective = ChainObjective(target, assistant, window, args.draft_steps, args.decay)
    settings = LoopSettings(batch_size=args.batch, budget_s=args.budget_s, max_steps=args.steps,
                            seed=args.seed + 1, lr=2e-3)

    @torch.no_grad()
    def held_loss() -> float:
        total, n = 0.0, 0
        for i in range(0, len(held_rows), args.batch):
            x = held_rows[i:i + args.batch].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                total += float(objective.loss(x)) * len(x)
            n += len(x)
        return total / max(1, n)

    assistant.train()
    result = train_loop([p for p in assistant.parameters() if p.requires_grad], objective.loss, train_rows,
                        held_loss, settings, "assistant-chain")
    assistant.eval()
    quality = objective.evaluate(held_rows, args.batch)
    print(f"held-out per step: {quality}", flush=True)

    hf_dir = out / "hf-assistant"
    assistant.generation_config.num_assistant_tokens = args.draft_steps
    save_hf(assistant, tok_dir, hf_dir)
    a_gguf = convert_to_gguf(hf_dir, out / "gemma4-mini-assistant-F16.gguf", args.llama_cpp)
    first = record["assistant"]
    plot_curves({"assistant, first step only (gemma4_mini.py)": _curves(first),
                 f"assistant, {args.draft_steps} chained steps (gemma4_chain.py)": result},
                out / "loss.png", "Gemma-4 miniature assistant: training and held-out loss")
    record["assistant_first_step_only"] = {k: first[k] for k in ("steps", "seconds", "held_out_loss",
                                                                 "held_out_top1_agreement")}
    record["assistant"] = {
        "parameters": sum(p.numel() for p in assistant.parameters()), "config": acfg.to_dict(),
        "loop": settings, "steps": result.steps, "seconds": round(result.seconds, 1), "tokens_seen": result.tokens,
        "held_out_loss": result.final_eval, "held_out_top1_agreement": quality["top1_per_step"][0],
        "held_out_per_step": quality, "draft_steps": args.draft_steps, "decay": args.decay,
        "data": {"target_answers": len(answers), "temperature": args.temperature,
                 "answer_tokens": args.answer_tokens, "train_tokens": train_rows.numel(),
                 "held_out_tokens": held_rows.numel()},
        "train_curve": result.train_curve, "eval_curve": result.eval_curve,
        "command": f"gemma4_chain.py {' '.join(argv or sys.argv[1:])}", "environment": environment()}
    record["gguf"][a_gguf.name] = {"sha256": sha256_file(a_gguf), "bytes": a_gguf.stat().st_size}
    record["assistant_seconds_total"] = round(time.perf_counter() - t0, 1)
    write_json(out / "training.json", record)
    write_card(record, out / "MODEL_CARD.md")
    print(f"done in {record['assistant_seconds_total']}s: {record['gguf'][a_gguf.name]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
