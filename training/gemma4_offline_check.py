"""Does the training script's offline draft-mtp estimate agree with llama-server? Checked greedily.

    python training/gemma4_offline_check.py --target T.gguf --assistant A.gguf --training-json J \
        --llama-cpp LLAMA_CPP_TREE --engine-db RUN.db

`gemma4_mtp.ChainObjective.drafted_acceptance` is what `gemma4_mini.py` reports before any engine
runs. At temperature 0 both sides are deterministic, so the same pair must give the same
per-position acceptance up to arithmetic (F16 weights, bf16/F32 kernels). This loads both GGUFs
back into transformers (a plain rename in both directions, names from gguf-py's own tables), drafts
offline on the target's greedy answers to `mixed-5`, and prints them beside the acceptance that
`specsweep run --temperature 0` stored in RUN.db, per position as specsweep's report computes it
(so `src/` must be importable: run it with PYTHONPATH=src, or where specsweep is installed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from draft_replay import walk_like_the_engine
from gemma4_chain import target_from_gguf
from gemma4_mini import mixed5_questions
from gemma4_mtp import ChainObjective, greedy_ceiling, load_gguf_weights, sample_answers


def assistant_from_gguf(gguf_path: Path, config: dict, llama_cpp: Path):
    from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM

    cfg = Gemma4AssistantConfig(**{k: v for k, v in config.items()
                                   if k not in ("architectures", "model_type", "transformers_version")})
    cfg._attn_implementation = "sdpa"
    model = Gemma4AssistantForCausalLM(cfg)
    load_gguf_weights(model, gguf_path, "GEMMA4_ASSISTANT", cfg.text_config.num_hidden_layers, llama_cpp)
    return model.eval().requires_grad_(False)


def engine_rates(db: Path) -> dict[int, tuple[float, int, list[float | None]]]:
    """Per depth of the database's last run: accepted / drafted and its drafted count, pooled over the
    ok requests, and per-position p_i as specsweep's own report computes them."""
    from specsweep.analysis.positions import per_position
    from specsweep.store import Store

    store = Store(db, readonly=True)
    records = store.requests(store.runs()[-1].id, status="ok")
    out = {}
    for depth in sorted({r.depth for r in records if r.depth > 0}):
        cell = [r for r in records if r.depth == depth]
        drafted = sum(r.draft_n or 0 for r in cell)
        out[depth] = (sum(r.draft_n_accepted or 0 for r in cell) / max(1, drafted), drafted,
                      [stat.p_uncond for stat in per_position(cell)])
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
    # One greedy answer per prompt, each alone (batch 1: no padding), as the engine generates it.
    answers = sample_answers(target, tok, mixed5_questions(), args.max_tokens, 0.0, 1, 1e9, 0)
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
        offline_pos = [round(x / y, 3) for x, y in zip(pos_a, pos_d)]
        if depth in engine:
            acc, drafted, per_pos = engine[depth]
            engine_acc, engine_pos = f"{acc:.3f} ({drafted} drafted)", [None if p is None else round(p, 3)
                                                                         for p in per_pos]
        else:
            engine_acc, engine_pos = "-", None
        print(f"{depth} | {a / max(1, d):.3f} ({d} drafted) | {engine_acc} | {offline_pos} | {engine_pos}")
    if args.ceiling_temperature > 0:
        sampled = sample_answers(target, tok, mixed5_questions() * 8, args.max_tokens, args.ceiling_temperature,
                                 64, 1e9, 7)
        print(f"ceiling at T={args.ceiling_temperature} (8 samples per prompt): the target samples its greedy "
              f"token with probability {greedy_ceiling(target, sampled, args.ceiling_temperature):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
