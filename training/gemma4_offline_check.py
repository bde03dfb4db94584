"""Does the training script's offline draft-mtp estimate agree with llama-server? Checked greedily.

    python training/gemma4_offline_check.py --target T.gguf --assistant A.gguf --training-json J \
        --llama-cpp LLAMA_CPP_TREE --engine-db RUN.db

`gemma4_mtp.ChainObjective.drafted_acceptance` is what `gemma4_mini.py` reports before any engine
runs. At temperature 0 both sides are deterministic, so the same pair must give the same
per-position acceptance up to arithmetic (F16 weights, bf16/F32 kernels). This loads both GGUFs
back into transformers (a plain rename in both directions, names from gguf-py's own tables), drafts
offline on the target's greedy answers to `mixed-5`, and prints them beside the per-position counts
that `specsweep run --temperature 0` stored in RUN.db.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import torch

from gemma4_chain import target_from_gguf
from gemma4_mini import mixed5_questions
from draft_replay import walk_like_the_engine
from gemma4_mtp import ChainObjective, greedy_ceiling, load_gguf_weights, sample_answers
from tokenizer import render_turns, special_id


def assistant_from_gguf(gguf_path: Path, config: dict, llama_cpp: Path):
    from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM

    cfg = Gemma4AssistantConfig(**{k: v for k, v in config.items()
                                   if k not in ("architectures", "model_type", "transformers_version")})
    cfg._attn_implementation = "sdpa"
    model = Gemma4AssistantForCausalLM(cfg)
    load_gguf_weights(model, gguf_path, "GEMMA4_ASSISTANT", cfg.text_config.num_hidden_layers, llama_cpp)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def greedy_answers(target, tok, questions, max_new: int) -> list[tuple[int, list[int]]]:
    bos, stop = special_id(tok, "<bos>"), special_id(tok, "<end_of_turn>")
    out = []
    for q in questions:
        ids = [bos] + tok.encode(render_turns(q, "")[0], add_special_tokens=False).ids
        seq = target.generate(input_ids=torch.tensor([ids]), do_sample=False, max_new_tokens=max_new,
                              eos_token_id=stop, pad_token_id=special_id(tok, "<pad>"))[0].tolist()
        out.append((len(ids), seq))
    return out


def engine_rates(db: Path) -> dict[int, dict]:
    """Per depth: accepted / drafted, and per-position accepted / drafted, pooled over requests.

    Per position comes from /metrics where every draft was full length (each step drafted every
    position), else from the traced replay's per-step log, as specsweep's own report takes them.
    """
    rows = sqlite3.connect(db).execute(
        "SELECT depth, draft_n, draft_n_accepted, counts_from, m_steps, m_accepted_per_pos, log_drafted_per_pos,"
        " log_accepted_per_pos FROM requests WHERE status = 'ok' AND depth > 0").fetchall()
    out: dict[int, dict] = {}
    for depth, drafted, accepted, source, steps, m_acc, log_d, log_a in rows:
        cell = out.setdefault(depth, {"drafted": 0, "accepted": 0, "pos_d": [0] * depth, "pos_a": [0] * depth})
        cell["drafted"] += drafted
        cell["accepted"] += accepted
        per_d, per_a = (([steps] * depth, json.loads(m_acc)) if source == "metrics"
                        else (json.loads(log_d or "[]"), json.loads(log_a or "[]")))
        for i, (d, a) in enumerate(zip(per_d, per_a)):
            cell["pos_d"][i] += d
            cell["pos_a"][i] += a
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=Path, required=True)
    ap.add_argument("--assistant", type=Path, required=True)
    ap.add_argument("--training-json", type=Path, required=True, help="the pair's training.json (configs)")
    ap.add_argument("--tokenizer", type=Path, required=True, help="the pair's tokenizer.json")
    ap.add_argument("--llama-cpp", type=Path, required=True)
    ap.add_argument("--engine-db", type=Path, required=True)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--ceiling-temperature", type=float, default=0.3,
                    help="also print the target's ceiling at this temperature (0: skip)")
    args = ap.parse_args(argv)
    from tokenizers import Tokenizer

    record = json.loads(args.training_json.read_text())
    target, tcfg = target_from_gguf(args.target, record["target"]["config"], args.llama_cpp)
    assistant = assistant_from_gguf(args.assistant, record["assistant"]["config"], args.llama_cpp)
    tok = Tokenizer.from_file(str(args.tokenizer))
    answers = greedy_answers(target, tok, mixed5_questions(), args.max_tokens)
    matches = ChainObjective(target, assistant, tcfg.sliding_window, 4, 1.0).leading_matches(answers)
    engine = engine_rates(args.engine_db)
    print("depth | offline acceptance | engine acceptance | offline per position | engine per position")
    for depth in range(1, 5):
        d = a = 0
        pos_d, pos_a = [0] * depth, [0] * depth
        for per_answer in matches:
            dd, aa, pd, pa = walk_like_the_engine(per_answer, depth)
            d, a = d + dd, a + aa
            pos_d = [x + y for x, y in zip(pos_d, pd)]
            pos_a = [x + y for x, y in zip(pos_a, pa)]
        cell = engine.get(depth)
        offline_pos = [round(x / y, 3) for x, y in zip(pos_a, pos_d)]
        engine_pos = [round(x / y, 3) if y else None for x, y in zip(cell["pos_a"], cell["pos_d"])] if cell else None
        engine_acc = f"{cell['accepted'] / max(1, cell['drafted']):.3f} ({cell['drafted']} drafted)" if cell else "-"
        print(f"{depth} | {a / max(1, d):.3f} ({d} drafted) | {engine_acc} | {offline_pos} | {engine_pos}")
    if args.ceiling_temperature > 0:
        sampled = sample_answers(target, tok, mixed5_questions() * 8, args.max_tokens, args.ceiling_temperature,
                                 64, 1e9, 7)
        print(f"ceiling at T={args.ceiling_temperature} (8 samples per prompt): the target samples its greedy "
              f"token with probability {greedy_ceiling(target, sampled, args.ceiling_temperature):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
