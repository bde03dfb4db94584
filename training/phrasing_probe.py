"""Does a corpus recipe make a family's question robust to what users add? A CPU probe for the 2-core.

    python training/phrasing_probe.py --target T.gguf --target-json target.json --tokenizer tokenizer.json \
        --llama-cpp TREE --recipe v5 --steps 60

Loads a trained Gemma-4 miniature target from its GGUF, fine-tunes it for a few minutes on rows of the
recipe (batch 8, 160 tokens, AdamW 3e-4), and greedy-answers `benchmarks/phrasing-heldout.jsonl` before
and after: four generated families (binary search, knights, staggered pipes, coding tasks), each asked
plainly and with four endings that no recipe generates. An answer counts as in its family when it opens
with that family's template. Run it for two recipes from the same target to compare them; the
fine-tune is a proxy for training on the recipe, not the training itself.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer

import corpus
from gemma4_chain import target_from_gguf
from gemma4_mini import encode_pairs
from gemma4_mtp import sample_answers

PROMPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "phrasing-heldout.jsonl"
# A family's opening. The coding one includes the name and the layout's next words: "Here is `" alone
# also matched answers that went on with another family's text (logs before 2026-12-06 counted so).
OPENINGS = {"bs": r"The lower bound is", "kn": r"Try all eight", "pipes": r"Work with rates",
            "code": r"Here is `\w+` with its docstring"}


def in_family(model, tok, prompts: list[dict], tag: str) -> int:
    model.eval()
    answers = sample_answers(model, tok, [p["prompt"] for p in prompts], 16, 0.0, 8, 1e9, 0)
    hits = 0
    for p, (start, seq) in zip(prompts, answers):
        text = tok.decode(seq[start:], skip_special_tokens=False)
        ok = re.match(OPENINGS[p["category"]], text) is not None
        hits += ok
        print(f"{tag} {p['id']:8} {'IN ' if ok else 'OUT'} {text[:60]!r}", flush=True)
    return hits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=Path, required=True)
    ap.add_argument("--target-json", type=Path, required=True,
                    help="the target stage's target.json or a pair's training.json (reads target.config)")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--llama-cpp", type=Path, required=True)
    ap.add_argument("--recipe", choices=corpus.RECIPES, required=True)
    ap.add_argument("--prompts", type=Path, default=PROMPTS,
                    help=f"held-out prompts, one JSON object per line with category and prompt (default {PROMPTS.name})")
    ap.add_argument("--steps", type=int, default=60, help="fine-tune steps (0: only answer the prompts)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = json.loads(args.target_json.read_text())["target"]["config"]
    model, _ = target_from_gguf(args.target, config, args.llama_cpp)
    tok = Tokenizer.from_file(str(args.tokenizer))
    prompts = [json.loads(line) for line in args.prompts.read_text().splitlines() if line.strip()]
    before = in_family(model, tok, prompts, "before")
    if args.steps == 0:  # only where the target stands
        print(f"in family: {before} of {len(prompts)}")
        return 0
    batch, seq_len = 8, 160
    pairs = corpus.build_pairs(seed=3, n_reasoning=args.steps * batch, recipe=args.recipe)
    random.Random(0).shuffle(pairs)
    rows = encode_pairs(tok, pairs[:args.steps * batch])
    pad = tok.token_to_id("<pad>")
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0)
    t0 = time.time()
    for step in range(args.steps):
        chunk = [r[:seq_len] for r in rows[step * batch:(step + 1) * batch]]
        ids = torch.full((len(chunk), max(map(len, chunk))), pad, dtype=torch.long)
        for i, r in enumerate(chunk):
            ids[i, :len(r)] = torch.tensor(r)
        labels = ids.masked_fill(ids == pad, -100)
        loss = model(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
    after = in_family(model, tok, prompts, f"after-{args.recipe}")
    print(f"in family: {before} of {len(prompts)} before, {after} after {args.steps} steps of {args.recipe}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
