"""How a Gemma-4 MTP assistant drafts, as a training objective, and what the target itself allows.

Shared by `gemma4_mini.py` (trains target and assistant) and `gemma4_chain.py` (retrains an
assistant against a committed target). Everything here mirrors llama-server's `draft-mtp` with a
KV-sharing assistant (common/speculative.cpp, `is_mem_shared`):

- draft step 1 for base position i sits at position i+1, reads the target's K/V at positions ≤ i
  (sliding layers the target's last sliding layer, the full layer its last full layer), and takes
  pre_projection(concat(E_target(x_(i+1)) · √H, h_i)), h_i the target's last hidden state;
- step k > 1 stays at the same position and takes the token drafted at step k−1 with
  post_projection(the previous step's output) in place of h_i;
- a draft is accepted while the target's own sampled token equals it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import device
from tokenizer import render_turns, special_id

SLIDING, FULL = "sliding_attention", "full_attention"


def chain_masks(n_queries: int, t: int, window: int, dev) -> dict[str, torch.Tensor]:
    """Query q (at position q+1) reads target keys k ≤ q; sliding layers also q − k < window."""
    q = torch.arange(n_queries, device=dev)[:, None]
    k = torch.arange(t, device=dev)[None, :]
    full = k <= q
    return {FULL: full[None, None], SLIDING: (full & (q - k < window))[None, None]}


class ChainObjective:
    """Cross-entropy of K chained draft steps against the frozen target's greedy tokens.

    With K = 1 this is the first-step objective: label = the target's greedy token after x_(i+1).
    """

    def __init__(self, target, assistant, window: int, steps: int, decay: float):
        self.target, self.assistant, self.window = target, assistant, window
        self.steps, self.weights = steps, [decay ** k for k in range(steps)]

    @torch.no_grad()
    def _target_pass(self, x):
        out = self.target.model(input_ids=x, return_shared_kv_states=True, use_cache=False)
        h = out.last_hidden_state
        return h, dict(out.shared_kv_states), self.target.lm_head(h).argmax(-1)

    def step_logits(self, x):
        """Per step k = 1..K for the bases i = 0 .. T−1−K: (logits, the target's greedy labels)."""
        h, kv, greedy = self._target_pass(x)
        t, n = x.shape[1], x.shape[1] - self.steps
        pos = torch.arange(1, n + 1, device=x.device)[None].expand(x.shape[0], -1)
        masks = chain_masks(n, t, self.window, x.device)
        hidden = h[:, :n]
        results = []
        for k in range(1, self.steps + 1):
            emb = self.target.model.embed_tokens(x[:, k:k + n])  # scaled by √H, as the engine does
            inp = self.assistant.pre_projection(torch.cat([emb, hidden.to(emb.dtype)], dim=-1))
            out = self.assistant.model(inputs_embeds=inp, position_ids=pos, attention_mask=masks,
                                       shared_kv_states=kv, use_cache=False)
            results.append((self.assistant.lm_head(out.last_hidden_state), greedy[:, k:k + n]))
            hidden = self.assistant.post_projection(out.last_hidden_state)
        return results

    def loss(self, x):
        total = 0.0
        for w, (logits, labels) in zip(self.weights, self.step_logits(x)):
            total = total + w * F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return total / sum(self.weights)

    @torch.no_grad()
    def evaluate(self, rows, batch_size: int) -> dict:
        """Per step: top-1 agreement, and the share of bases whose first k steps all agree (≈ p_k greedy)."""
        dev = device()
        hits, chain, n = [0] * self.steps, [0] * self.steps, 0
        for i in range(0, len(rows), batch_size):
            x = rows[i:i + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                results = self.step_logits(x)
            alive = None
            for k, (logits, labels) in enumerate(results):
                ok = logits.argmax(-1) == labels
                alive = ok if alive is None else alive & ok
                hits[k] += int(ok.sum())
                chain[k] += int(alive.sum())
            n += results[0][1].numel()
        return {"top1_per_step": [round(h / n, 4) for h in hits],
                "all_first_k_agree": [round(c / n, 4) for c in chain]}

    @torch.no_grad()
    def leading_matches(self, sequences: list[tuple[int, list[int]]]) -> list[list[int]]:
        """Offline draft-mtp on (prompt length, prompt + answer): at every answer position the assistant
        drafts K tokens greedily, each fed the previous draft, as llama-server chains them; per
        position, how many leading drafts equal what follows in the sequence (0..K)."""
        dev, out = device(), []
        for start, seq in sequences:
            x = torch.tensor([seq], device=dev)
            n = x.shape[1] - self.steps - 1
            if n <= start:
                out.append([])
                continue
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                h, kv, _ = self._target_pass(x)
                pos = torch.arange(1, n + 1, device=dev)[None]
                masks = chain_masks(n, x.shape[1], self.window, dev)
                hidden, token, alive, count = h[:, :n], x[:, 1:n + 1], None, None
                for k in range(1, self.steps + 1):
                    emb = self.target.model.embed_tokens(token)
                    inp = self.assistant.pre_projection(torch.cat([emb, hidden.to(emb.dtype)], dim=-1))
                    o = self.assistant.model(inputs_embeds=inp, position_ids=pos, attention_mask=masks,
                                             shared_kv_states=kv, use_cache=False)
                    token = self.assistant.lm_head(o.last_hidden_state).argmax(-1)
                    ok = (token == x[:, k + 1:k + 1 + n])[0, start - 1:]  # bases whose draft is answer text
                    alive = ok if alive is None else alive & ok
                    count = alive.long() if count is None else count + alive.long()
                    hidden = self.assistant.post_projection(o.last_hidden_state)
            out.append(count.tolist())
        return out

    def drafted_acceptance(self, sequences: list[tuple[int, list[int]]]) -> dict:
        """Per position p_k over every answer position, and acceptance at depth n = (p_1 + … + p_n) / n,
        the engine's accepted / drafted when every step drafts n tokens; a draft is accepted while it
        equals what the target sampled."""
        counts = [c for per_seq in self.leading_matches(sequences) for c in per_seq]
        p = [sum(c > k for c in counts) / max(1, len(counts)) for k in range(self.steps)]
        return {"bases": len(counts), "p_per_position": [round(v, 4) for v in p],
                "acceptance_at_depth": [round(sum(p[:d]) / d, 4) for d in range(1, self.steps + 1)]}


@torch.no_grad()
def sample_answers(target, tok, questions: list[str], max_new: int, temperature: float, batch: int,
                   budget_s: float, seed: int) -> list[tuple[int, list[int]]]:
    """(prompt length, chat-formatted prompt + the target's sampled answer), left-padded batches, KV cache.
    Temperature 0 gives the greedy answers."""
    dev = device()
    bos, pad, stop = (special_id(tok, t) for t in ("<bos>", "<pad>", "<end_of_turn>"))
    prompts = [[bos] + e.ids for e in tok.encode_batch([render_turns(q, "")[0] for q in questions],
                                                       add_special_tokens=False)]
    prompts = [p for p in prompts if len(p) <= 256]
    torch.manual_seed(seed)  # generate() samples from the global generator
    out, start = [], time.perf_counter()
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(chunk):
            ids[r, width - len(p):] = torch.tensor(p)
            mask[r, width - len(p):] = 1
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            sampling = (dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0
                        else dict(do_sample=False))  # temperature 0: the greedy answer
            seqs = target.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=max_new,
                                   eos_token_id=stop, pad_token_id=pad, **sampling)
        for r, p in enumerate(chunk):
            answer = seqs[r, width:].tolist()
            if stop in answer:
                answer = answer[: answer.index(stop) + 1]
            out.append((len(p), p + [t for t in answer if t != pad]))
        print(f"[sample] {len(out)}/{len(prompts)} answers {time.perf_counter() - start:.0f}s", flush=True)
        if time.perf_counter() - start > budget_s:
            break
    return out


@torch.no_grad()
def greedy_ceiling(target, sequences: list[tuple[int, list[int]]], temperature: float) -> float:
    """Mean probability, at the sampling temperature, that the target samples its own greedy token.

    Over the answer positions of the target's own samples: the acceptance at depth 1 that a drafter
    which always guessed the target's greedy token would get. No assistant can beat it on average.
    """
    dev, total, n = device(), 0.0, 0
    for start, seq in sequences:
        x = torch.tensor([seq], device=dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = target(input_ids=x, use_cache=False).logits[0, start - 1:-1].float()
        probs = torch.softmax(logits / temperature, dim=-1)
        total += float(probs.max(-1).values.sum())
        n += probs.shape[0]
    return total / max(1, n)


def load_gguf_weights(model, gguf_path: Path, arch: str, n_layers: int, llama_cpp: Path) -> None:
    """Fill a transformers model (tied LM head) with a GGUF's weights, names mapped by gguf-py's own table.

    The converter's gemma4 and gemma4-assistant mappings are plain renames (no norm shift, no
    permutation), so mapping back is too. Every model key must find a tensor and every tensor a key.
    """
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    import gguf  # noqa: PLC0415 - the pinned tree's gguf-py, newer than the PyPI package

    reader = gguf.GGUFReader(str(gguf_path))
    tensors = {t.name: t for t in reader.tensors}
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch], n_layers)
    state, used = {}, set()
    for key, param in model.state_dict().items():
        if key == "lm_head.weight":  # tied to the embedding
            continue
        # the converter names `layer_scalar` `layer_scalar.weight`; get_name keeps the suffix it strips
        hf_key = key + ".weight" if key.endswith("layer_scalar") else key
        gname = names.get_name(hf_key, try_suffixes=(".weight", ".bias"))
        if gname is None or gname not in tensors:
            raise SystemExit(f"{gguf_path.name}: no GGUF tensor for {key} (mapped to {gname})")
        t = tensors[gname]
        value = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float()
        state[key] = value.reshape(param.shape)
        used.add(gname)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    left = sorted(set(tensors) - used - {"rope_freqs.weight"})
    if missing or unexpected or left:
        raise SystemExit(f"{gguf_path.name} does not fit: missing {missing}, unexpected {unexpected}, unused {left}")
    model.tie_weights()
