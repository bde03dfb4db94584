"""Pieces every miniature's training shares: seeding, packing, a time-boxed loop, conversion, the card.

Training runs on a GPU host (plain PyTorch eager, bf16 autocast). The loop is bounded by a
step count or a wall-clock budget, whichever comes first; the learning rate follows a cosine
over the planned length, so a time-boxed run still anneals. The card records the steps taken,
so `--steps N` reproduces a run without the clock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every training script takes; each script adds its own after these."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp tree with convert_hf_to_gguf.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reasoning-pairs", type=int, default=24_000)
    ap.add_argument("--max-pairs", type=int, default=None, help="use only this many pairs (smoke tests)")
    return ap


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pack(sequences: list[list[int]], seq_len: int) -> torch.Tensor:
    """Concatenate token lists and cut them into rows of seq_len (the tail is dropped)."""
    flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64)
    n = len(flat) // seq_len
    return torch.from_numpy(flat[: n * seq_len].reshape(n, seq_len))


@dataclass
class LoopSettings:
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    warmup_steps: int = 100
    batch_size: int = 64
    max_steps: int = 100_000
    budget_s: float = 300.0
    eval_every: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    keep_best: bool = False  # end on the weights of the lowest held-out loss (a small corpus overfits)


@dataclass
class LoopResult:
    steps: int
    seconds: float
    tokens: int
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    kept_step: int | None = None  # with keep_best: the step whose weights the run ended on

    @property
    def final_eval(self) -> float:
        """Held-out loss of the weights the run ended on."""
        if self.kept_step is not None:
            return dict(self.eval_curve)[self.kept_step]
        return self.eval_curve[-1][1] if self.eval_curve else float("nan")


def train_loop(params, loss_fn, train_rows: torch.Tensor, eval_fn, settings: LoopSettings,
               label: str) -> LoopResult:
    """Minimise loss_fn(batch) over random batches of train_rows until max_steps or budget_s.

    The planned length for the cosine is max_steps, or the step count the first 50 steps'
    speed predicts for the budget, whichever is smaller. With settings.keep_best the run ends on
    the weights of its lowest held-out loss (result.kept_step says which, when not the last).
    """
    dev = device()
    params = list(params)
    gen = torch.Generator().manual_seed(settings.seed)
    best: tuple[float, int, list[torch.Tensor]] | None = None
    train_rows = train_rows.to(dev)  # a few tens of MB: keep batches off the host-to-device path
    opt = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay,
                            fused=dev.type == "cuda")
    planned = settings.max_steps
    result = LoopResult(0, 0.0, 0)
    start = time.perf_counter()
    step = 0
    while step < planned:
        if step == 50:
            per_step = (time.perf_counter() - start) / 50
            planned = min(settings.max_steps, max(60, int(settings.budget_s / per_step)))
        warm = min(1.0, (step + 1) / settings.warmup_steps)
        progress = min(1.0, step / max(1, planned))
        cos = settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = settings.lr * warm * cos
        idx = torch.randint(0, len(train_rows), (settings.batch_size,), generator=gen).to(dev)
        batch = train_rows[idx]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        step += 1
        result.tokens += batch.numel()
        if step % 20 == 0:
            result.train_curve.append((step, loss.item()))
        if step % settings.eval_every == 0 or step == planned:
            ev = eval_fn()
            result.eval_curve.append((step, ev))
            if settings.keep_best and (best is None or ev < best[0]):
                best = (ev, step, [p.detach().clone() for p in params])
            print(f"[{label}] step {step}/{planned} loss {loss.item():.3f} held-out {ev:.3f} "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
        if time.perf_counter() - start > settings.budget_s * 1.05:
            break
    result.steps = step
    result.seconds = time.perf_counter() - start
    if not result.eval_curve or result.eval_curve[-1][0] != step:
        result.eval_curve.append((step, eval_fn()))
        if settings.keep_best and (best is None or result.eval_curve[-1][1] < best[0]):
            best = None  # the last weights are the best: nothing to restore
    if best is not None and best[1] != step:
        with torch.no_grad():
            for p, saved in zip(params, best[2]):
                p.copy_(saved)
        result.kept_step = best[1]
        print(f"[{label}] restored the weights of step {best[1]} (held-out {best[0]:.3f})", flush=True)
    return result


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_to_gguf(hf_dir: Path, outfile: Path, llama_cpp: Path, outtype: str = "f16") -> Path:
    """Run the pinned llama.cpp converter with its own gguf-py (newer than the PyPI package)."""
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(hf_dir),
           "--outtype", outtype, "--outfile", str(outfile)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"convert_hf_to_gguf.py failed for {hf_dir}")
    return outfile


def plot_curves(curves: dict[str, LoopResult], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], curves.items()):
        if res.train_curve:
            ax.plot(*zip(*res.train_curve), label="train (batch)", alpha=0.6)
        if res.eval_curve:
            ax.plot(*zip(*res.eval_curve), "o-", label="held-out")
        ax.set_title(name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def environment() -> dict:
    import transformers
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))
