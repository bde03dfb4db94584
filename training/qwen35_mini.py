"""Train a Qwen3.5-architecture miniature with its own in-model MTP head, convert it to one GGUF.

    python training/qwen35_mini.py --out runs/qwen35-mini --llama-cpp LLAMA_CPP_TREE

A miniature, not Qwen3.5: the real dense model's architecture (`Qwen3_5ForCausalLM`: gated
DeltaNet linear-attention layers with a full gated-attention layer every fourth, zero-centred
RMSNorms, partial interleaved M-RoPE, tied embeddings) at ~19M parameters, with SmolLM2's
49,152-token tokenizer and ChatML, trained for minutes on the offline corpus (training/corpus.py).
transformers has no MTP module for this architecture, so the head is ours, laid out the way the
pinned llama.cpp converter reads Qwen3.5/Qwen3-Next checkpoints:

    mtp.fc [H, 2H]                        -> blk.L.nextn.eh_proj
    mtp.pre_fc_norm_embedding, _hidden    -> blk.L.nextn.enorm / hnorm   (zero-centred; +1 on conversion)
    mtp.layers.0.* (full-attention layer) -> blk.L.*
    mtp.norm                              -> blk.L.nextn.shared_head.norm
    config.json "mtp_num_hidden_layers": 1

and computed the way llama.cpp drafts with it (common/speculative.cpp, draft-mtp): the entry at
position p+1 is fc(cat(enorm(E(x_(p+1))), hnorm(h_p))), h_p the trunk's last hidden state after
its final norm; the MTP layer attends causally over earlier entries (llama.cpp fills the head's
own KV cache at every prompt position); mtp.norm, then the shared LM head, predicts x_(p+2).

Training, in two phases (the card records both):
1. joint: next-token loss on the trunk + w · MTP loss on the data's x_(t+2) (w = --mtp-weight,
   0.3 as in DeepSeek-V3), gradients of both into the shared trunk, embeddings and LM head;
2. head only: trunk, embeddings and LM head frozen, the MTP head distilled onto the trunk's own
   greedy token two ahead of h_t (what the engine accepts under greedy/low-temperature sampling).
Only the first draft step is trained; chained steps reuse the head on its own output.

Outputs in --out: qwen35-mini-mtp-F16.gguf (pinned convert_hf_to_gguf.py, F16), MODEL_CARD.md,
training.json (settings, curves, sha256), loss.png, hf/ (the Hugging Face checkpoint).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import corpus
from common import (LoopSettings, base_parser, convert_to_gguf, device, environment, pack, plot_curves,
                    seed_everything, sha256_file, train_loop, write_json)

HERE = Path(__file__).resolve().parent
TOKENIZER_DIR = HERE / "assets" / "smollm2-tokenizer"
GGUF_NAME = "qwen35-mini-mtp-F16.gguf"
SIZE_LIMIT = 40_000_000  # bytes, the committed F16 GGUF
LINEAR, FULL = "linear_attention", "full_attention"


# ---------------------------------------------------------------- data

def render(question: str, answer: str) -> str:
    return (f"<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n")


def load_tokenizer(tok_dir: Path):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(tok_dir / "tokenizer.json"))


def encode_pairs(tok, pairs) -> list[list[int]]:
    enc = tok.encode_batch([render(q, a) for q, a in pairs], add_special_tokens=False)
    return [e.ids for e in enc]


# ---------------------------------------------------------------- model

def model_config(args, tok):
    from transformers import Qwen3_5TextConfig
    if args.layers % 4:
        raise SystemExit("--layers must be a multiple of 4 (three linear-attention layers, then a full one)")
    rot = int(args.head_dim * args.partial_rotary)
    sec = [rot // 2 - 2 * (rot // 6), rot // 6, rot // 6]  # sums to rot/2, as llama.cpp and transformers need
    im_end = tok.token_to_id("<|im_end|>")
    return Qwen3_5TextConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim, linear_conv_kernel_dim=4, linear_key_head_dim=args.head_dim,
        linear_value_head_dim=args.head_dim, linear_num_key_heads=args.linear_k_heads,
        linear_num_value_heads=args.linear_v_heads,
        layer_types=[FULL if (i + 1) % 4 == 0 else LINEAR for i in range(args.layers)],
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": args.partial_rotary,
                         "mrope_section": sec, "mrope_interleaved": True},
        max_position_embeddings=8192, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=tok.token_to_id("<|im_start|>"), eos_token_id=im_end, pad_token_id=im_end,
        attn_implementation="sdpa")


class MTPHead(nn.Module):
    """One Qwen3.5 MTP block: fc(cat(enorm(E(x_(t+1))), hnorm(h_t))) → full-attention layer → norm."""

    def __init__(self, cfg):
        super().__init__()
        from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5DecoderLayer, Qwen3_5RMSNorm
        layer_cfg = copy.deepcopy(cfg)
        layer_cfg.layer_types = [FULL]
        layer_cfg.num_hidden_layers = 1
        # SDPA with no mask runs causally; the eager fallback would attend to later entries.
        layer_cfg._attn_implementation = "sdpa"
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.fc = nn.Linear(2 * h, h, bias=False)
        self.pre_fc_norm_embedding = Qwen3_5RMSNorm(h, eps=eps)
        self.pre_fc_norm_hidden = Qwen3_5RMSNorm(h, eps=eps)
        self.layers = nn.ModuleList([Qwen3_5DecoderLayer(layer_cfg, 0)])
        self.norm = Qwen3_5RMSNorm(h, eps=eps)

    def forward(self, emb, hidden, position_embeddings):
        x = self.fc(torch.cat([self.pre_fc_norm_embedding(emb), self.pre_fc_norm_hidden(hidden)], dim=-1))
        for layer in self.layers:
            # attention_mask=None: SDPA runs causally over the entries, as the engine's MTP KV cache does.
            x = layer(x, position_embeddings=position_embeddings, attention_mask=None)
        return self.norm(x)


class Objective:
    """Trunk next-token loss and the MTP head's loss on the token two ahead of h_t."""

    def __init__(self, lm, mtp, mtp_weight: float):
        self.lm, self.mtp, self.w = lm, mtp, mtp_weight

    def _rope(self, h, t0: int, n: int):
        pos = torch.arange(t0, t0 + n, device=h.device).view(1, 1, -1).expand(3, h.shape[0], -1)
        return self.lm.model.rotary_emb(h, pos)

    def mtp_logits(self, x, h):
        """Entries t = 0..T-3: (x_(t+1), h_t) at position t+1, predicting x_(t+2)."""
        emb = self.lm.model.embed_tokens(x[:, 1:-1])
        hid = h[:, :-2]
        out = self.mtp(emb, hid, self._rope(hid, 1, hid.shape[1]))
        return self.lm.lm_head(out)

    @staticmethod
    def _ce(logits, labels):
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))

    def parts(self, x):
        h = self.lm.model(input_ids=x, use_cache=False).last_hidden_state
        main = self._ce(self.lm.lm_head(h[:, :-1]), x[:, 1:])
        mtp = self._ce(self.mtp_logits(x, h), x[:, 2:])
        return main, mtp

    def joint_loss(self, x):
        main, mtp = self.parts(x)
        return main + self.w * mtp

    @torch.no_grad()
    def _frozen_trunk(self, x):
        h = self.lm.model(input_ids=x, use_cache=False).last_hidden_state
        greedy = self.lm.lm_head(h).argmax(-1)  # greedy[:, t] = the trunk's choice for x_(t+1)
        return h, greedy

    def distill_loss(self, x):
        h, greedy = self._frozen_trunk(x)
        return self._ce(self.mtp_logits(x, h), greedy[:, 1:-1])

    @torch.no_grad()
    def evaluate(self, rows, batch_size: int) -> dict:
        """Held-out trunk loss, MTP loss on data, MTP loss and top-1 agreement against the trunk's greedy token."""
        dev = device()
        sums = {"main": 0.0, "mtp_data": 0.0, "mtp_distill": 0.0}
        hits = n_tok = n_rows = 0
        for i in range(0, len(rows), batch_size):
            x = rows[i:i + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                h = self.lm.model(input_ids=x, use_cache=False).last_hidden_state
                logits = self.lm.lm_head(h)
                greedy = logits.argmax(-1)
                ml = self.mtp_logits(x, h)
                sums["main"] += float(self._ce(logits[:, :-1], x[:, 1:])) * len(x)
                sums["mtp_data"] += float(self._ce(ml, x[:, 2:])) * len(x)
                sums["mtp_distill"] += float(self._ce(ml, greedy[:, 1:-1])) * len(x)
            hits += int((ml.argmax(-1) == greedy[:, 1:-1]).sum())
            n_tok += ml.shape[0] * ml.shape[1]
            n_rows += len(x)
        out = {k: v / max(1, n_rows) for k, v in sums.items()}
        out["mtp_top1_agreement"] = hits / max(1, n_tok)
        return out


# ---------------------------------------------------------------- save / convert

def estimate_gguf_bytes(n_params: int, tok_dir: Path) -> int:
    """F16 weights (norms are F32 but tiny) plus the vocabulary and merges the GGUF carries."""
    return 2 * n_params + int(1.2 * (tok_dir / "tokenizer.json").stat().st_size)


def save_hf(lm, mtp, tok_dir: Path, out: Path) -> None:
    from safetensors.torch import load_file, save_file
    lm.save_pretrained(out, safe_serialization=True)
    files = sorted(out.glob("*.safetensors"))
    if len(files) != 1:
        raise SystemExit(f"expected one safetensors file in {out}, found {files}")
    state = load_file(str(files[0]))
    state.update({f"mtp.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in mtp.state_dict().items()})
    save_file(state, str(files[0]), metadata={"format": "pt"})
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["mtp_num_hidden_layers"] = 1
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / name, out / name)


def delta_rule_backend() -> str:
    try:
        import fla  # noqa: F401
        return "flash-linear-attention"
    except Exception:
        return "transformers torch fallback (chunked gated delta rule)"


def write_card(r: dict, path: Path) -> None:
    m, j, d = r["model"], r["joint"], r["head"]
    c = m["config"]
    g = r["gguf"][GGUF_NAME]
    lines = [
        "# qwen35-mini-mtp: a Qwen3.5-architecture miniature with an in-model MTP head",
        "",
        "**A miniature trained here, not Qwen3.5.** It has the dense Qwen3.5 architecture (`Qwen3_5ForCausalLM`:",
        "gated DeltaNet linear-attention layers with a gated full-attention layer every fourth, zero-centred",
        "RMSNorm, partial interleaved M-RoPE, tied embeddings) and one MTP block inside the GGUF (arch `qwen35`,",
        "`nextn_predict_layers = 1`), at a tiny fraction of the real model's size, trained for minutes.",
        "Acceptance measured on it shows how the engine's `draft-mtp` behaves under quantization and depth,",
        "not what Qwen3.5 itself does. The MTP head is the project's own module (transformers has none for",
        "this architecture), laid out as the pinned converter reads `mtp.*` tensors.",
        "",
        "| | value |",
        "|---|---|",
        f"| parameters (trunk incl. tied embedding / MTP head) | {m['parameters']:,} / {m['mtp_parameters']:,} |",
        f"| layers × hidden, FFN | {c['num_hidden_layers']} × {c['hidden_size']}, {c['intermediate_size']} "
        f"(+1 MTP layer) |",
        f"| attention | {c['num_attention_heads']} heads × {c['head_dim']} ({c['num_key_value_heads']} KV), "
        f"linear attention {c['linear_num_key_heads']} K / {c['linear_num_value_heads']} V heads × "
        f"{c['linear_key_head_dim']} |",
        f"| RoPE | θ {c['rope_parameters']['rope_theta']:g}, partial {c['rope_parameters']['partial_rotary_factor']}, "
        f"mrope_section {c['rope_parameters']['mrope_section']} |",
        f"| phase 1 (joint) steps / tokens / time | {j['steps']} / {j['tokens_seen']:,} / {j['seconds']} s |",
        f"| phase 2 (head only) steps / tokens / time | {d['steps']} / {d['tokens_seen']:,} / {d['seconds']} s |",
        f"| held-out trunk loss (nats/token) | {r['held_out']['main']:.3f} |",
        f"| held-out MTP loss vs data x_(t+2) / vs trunk's greedy token | {r['held_out']['mtp_data']:.3f} / "
        f"{r['held_out']['mtp_distill']:.3f} |",
        f"| held-out MTP top-1 agreement with the trunk's greedy token | {r['held_out']['mtp_top1_agreement']:.3f} |",
        f"| after phase 1 only: MTP top-1 agreement | {r['held_out_after_joint']['mtp_top1_agreement']:.3f} |",
        "",
        "![loss curves](loss.png)",
        "",
        "## Data",
        "Instruction/answer chat pairs built by `training/corpus.py` from the standard library and `pydoc_data`",
        f"of Python {r['corpus']['python']} plus generated reasoning problems with worked answers:",
        f"{r['corpus']['pairs']:,} pairs, {r['corpus']['chars']:,} characters, sha256 `{r['corpus']['sha256']}`; 2% held out.",
        "Rendered as ChatML, `<|im_start|>user\\n…<|im_end|>\\n<|im_start|>assistant\\n…<|im_end|>\\n`, packed",
        f"into {r['args']['seq_len']}-token rows; loss on every token. Train tokens {r['tokens']['train']:,},",
        f"held-out tokens {r['tokens']['held_out']:,}.",
        "",
        "## Tokenizer",
        "SmolLM2-135M-Instruct's byte-level BPE (49,152 tokens), rebuilt from its GGUF's token list and merges",
        "(`training/smollm2_assets.py`, committed under `training/assets/smollm2-tokenizer/`); the pinned",
        "converter identifies its pre-tokenizer as `smollm`. Chat template: plain ChatML with no default system",
        "prompt (SmolLM2's own template adds one; this model was not trained with it). eos = `<|im_end|>`.",
        "",
        "## Training",
        f"Seed {r['seed']}; environment {r['environment']}; delta rule: {r['delta_rule']}.",
        "AdamW (β 0.9/0.95), cosine schedule with warm-up, bf16 autocast, random batches of packed rows.",
        "",
        f"- phase 1, joint: loss = trunk next-token CE + {r['args']['mtp_weight']} × MTP CE on the data's x_(t+2);",
        f"  `{j['loop']}`",
        "- phase 2, head only: trunk, embeddings and LM head frozen; MTP CE against the trunk's own greedy",
        f"  token after x_(t+1) (distillation); `{d['loop']}`",
        "- the MTP entry for h_t sits at position t+1 and attends causally to earlier entries, as llama.cpp's",
        "  draft-mtp fills the head's KV cache; only the first draft step is trained.",
        f"- command arguments: `{r['args']}`",
        "",
        "Reproduce without the clock: `python training/qwen35_mini.py --out DIR --llama-cpp TREE "
        f"--joint-steps {j['steps']} --head-steps {d['steps']}`.",
        "",
        "## File (converted by the pinned llama.cpp `convert_hf_to_gguf.py`, F16)",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        f"| `{GGUF_NAME}` | {g['bytes']:,} | `{g['sha256']}` |",
        "",
        "Serve: `llama-server -m qwen35-mini-mtp-F16.gguf --spec-type draft-mtp --spec-draft-n-max N`",
        "(no draft file: the head is inside the GGUF).",
        "",
        f"Total time including corpus, tokenization and conversion: {r['total_seconds']} s.",
        "Licences: data from the Python Software Foundation License (CPython's sources and docs); tokenizer",
        "from SmolLM2 (Apache-2.0, HuggingFaceTB).",
    ]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER_DIR)
    ap.add_argument("--layers", type=int, default=12, help="trunk layers, a multiple of 4")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--linear-k-heads", type=int, default=2)
    ap.add_argument("--linear-v-heads", type=int, default=4)
    ap.add_argument("--partial-rotary", type=float, default=0.25)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--mtp-weight", type=float, default=0.3)
    ap.add_argument("--joint-budget-s", type=float, default=230)
    ap.add_argument("--joint-steps", type=int, default=100_000)
    ap.add_argument("--head-budget-s", type=float, default=70)
    ap.add_argument("--head-steps", type=int, default=100_000)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--max-eval-rows", type=int, default=256)
    ap.add_argument("--allow-large", action="store_true", help="do not stop when the GGUF would exceed 40 MB")
    args = ap.parse_args(argv)

    from transformers import Qwen3_5ForCausalLM

    t0 = time.perf_counter()
    seed_everything(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = device()

    tok = load_tokenizer(args.tokenizer)
    cfg = model_config(args, tok)
    lm = Qwen3_5ForCausalLM(cfg)
    mtp = MTPHead(cfg)
    for module in mtp.modules():
        lm._init_weights(module)
    n_lm = sum(p.numel() for p in lm.parameters())
    n_mtp = sum(p.numel() for p in mtp.parameters())
    estimate = estimate_gguf_bytes(n_lm + n_mtp, args.tokenizer)
    print(f"parameters: trunk {n_lm:,} + MTP {n_mtp:,}; F16 GGUF ≈ {estimate / 1e6:.1f} MB", flush=True)
    if estimate > SIZE_LIMIT and not args.allow_large:
        raise SystemExit(f"the F16 GGUF would be ≈{estimate / 1e6:.1f} MB > 40 MB: shrink --layers/--ffn/--hidden")
    lm.to(dev)
    mtp.to(dev)

    train_pairs, held_pairs, corpus_info = corpus.load(args.seed, args.reasoning_pairs, args.max_pairs)
    print(f"corpus: {corpus_info} ({time.perf_counter() - t0:.0f}s)", flush=True)
    train_rows = pack(encode_pairs(tok, train_pairs), args.seq_len)
    held_rows = pack(encode_pairs(tok, held_pairs), args.seq_len)[: args.max_eval_rows]
    print(f"tokens: train {train_rows.numel():,} held-out {held_rows.numel():,} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    objective = Objective(lm, mtp, args.mtp_weight)
    eval_log: list[tuple[str, int, dict]] = []

    def evaluator(phase: str, key: str):
        def run():
            lm.eval()
            mtp.eval()
            res = objective.evaluate(held_rows, args.batch)
            eval_log.append((phase, len(eval_log), res))
            print(f"  [{phase}] held-out {json.dumps({k: round(v, 3) for k, v in res.items()})}", flush=True)
            lm.train(phase == "joint")
            mtp.train()
            return res[key]
        return run

    # ---- phase 1: trunk + MTP head jointly ----
    jset = LoopSettings(lr=args.lr, batch_size=args.batch, budget_s=args.joint_budget_s, max_steps=args.joint_steps,
                        eval_every=args.eval_every, seed=args.seed)
    lm.train()
    mtp.train()
    params = list(lm.parameters()) + list(mtp.parameters())
    jres = train_loop(params, objective.joint_loss, train_rows, evaluator("joint", "main"), jset, "joint")
    after_joint = objective.evaluate(held_rows, args.batch)

    # ---- phase 2: MTP head alone, distilled onto the frozen trunk's greedy tokens ----
    lm.eval()
    lm.requires_grad_(False)
    hset = LoopSettings(lr=args.lr * 2 / 3, batch_size=args.batch, budget_s=args.head_budget_s,
                        max_steps=args.head_steps, eval_every=args.eval_every, warmup_steps=20, seed=args.seed + 1)
    mtp.train()
    hres = train_loop(list(mtp.parameters()), objective.distill_loss, train_rows,
                      evaluator("head", "mtp_distill"), hset, "mtp-head")
    mtp.eval()
    final = objective.evaluate(held_rows, args.batch)
    print(f"held-out after training: {final}", flush=True)

    # ---- save, convert, card ----
    hf_dir = out / "qwen35-mini-mtp"  # the converter names the model after this folder
    save_hf(lm.cpu(), mtp.cpu(), args.tokenizer, hf_dir)
    gguf_path = convert_to_gguf(hf_dir, out / GGUF_NAME, args.llama_cpp)
    size = gguf_path.stat().st_size
    if size > SIZE_LIMIT:
        print(f"WARNING: {gguf_path.name} is {size:,} bytes, over the 40 MB limit for committing", flush=True)
    plot_curves({"phase 1: trunk LM loss + w·MTP (held-out: trunk LM)": jres,
                 "phase 2: MTP head vs trunk's greedy token": hres},
                out / "loss.png", "Qwen3.5 miniature with in-model MTP head")
    record = {
        "what": "a miniature of the Qwen3.5 dense architecture with an in-model MTP head, trained here; not Qwen3.5",
        "environment": environment(), "delta_rule": delta_rule_backend(), "seed": args.seed,
        "args": {k: str(v) for k, v in vars(args).items()},
        "corpus": corpus_info, "tokens": {"train": train_rows.numel(), "held_out": held_rows.numel()},
        "tokenizer": {"dir": str(args.tokenizer), "sha256": sha256_file(args.tokenizer / "tokenizer.json"),
                      "vocab_size": tok.get_vocab_size()},
        "model": {"parameters": n_lm, "mtp_parameters": n_mtp, "config": cfg.to_dict()},
        "joint": {"loop": jset, "steps": jres.steps, "seconds": round(jres.seconds, 1), "tokens_seen": jres.tokens,
                  "held_out_main_loss": jres.final_eval, "train_curve": jres.train_curve,
                  "eval_curve": jres.eval_curve},
        "head": {"loop": hset, "steps": hres.steps, "seconds": round(hres.seconds, 1), "tokens_seen": hres.tokens,
                 "held_out_distill_loss": hres.final_eval, "train_curve": hres.train_curve,
                 "eval_curve": hres.eval_curve},
        "held_out_after_joint": after_joint, "held_out": final, "eval_log": eval_log,
        "gguf": {gguf_path.name: {"sha256": sha256_file(gguf_path), "bytes": size}},
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "training.json", record)
    write_card(record, out / "MODEL_CARD.md")
    print(f"done in {record['total_seconds']}s: {record['gguf']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
