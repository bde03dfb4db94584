"""Ground truth for the measurement itself: synthetic acceptance at known rates.

``--spec-synth-rates P0,P1,…`` makes llama-server accept draft position i with
unconditional probability P_i, independent of what was drafted. If specsweep's
per-position estimator (accepted at i / steps that drafted ≥ i+1) recovers the
configured P_i within 3 binomial σ and 2 percentage points, the whole chain —
server counters, log parsing, short-draft accounting — is right for that engine.

The drafter's quality does not matter here, only its cost, so drafts come from
the default model pruned to two layers (made once with ``llama-quantize
--prune-layers``). Every request has its own seed: the synthetic generator is
re-seeded from the request seed, so shared seeds would replay the same draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .client import chat_body, measure_request
from .engine.locate import Engine
from .engine.options import ServerOptions, ServerSettings
from .engine.server import LlamaServer
from .errors import RequestError, UsageError
from .prompts import load_prompts
from .quantize import default_keep_last, prune_layers

DEFAULT_RATE_VECTORS = ((0.9, 0.7, 0.5, 0.3), (0.85, 0.7, 0.55, 0.4, 0.25))
TOLERANCE_PP = 2.0
Z_LIMIT = 3.0


def parse_rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--rates {text!r}: expected comma-separated probabilities") from None
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise UsageError(f"--rates {text!r}: every rate must be within 0..1")
    if any(b > a for a, b in zip(rates, rates[1:])):
        raise UsageError(f"--rates {text!r}: rates are unconditional, so they must not increase")
    return rates


def pruned_drafter(engine: Engine, model: Path, keep_layers: int = 2) -> Path:
    """A cheap drafter with the model's vocabulary: all but the first ``keep_layers`` blocks pruned
    (the last of them the model's last layer where the engine needs a full-attention one: Gemma-4)."""
    return prune_layers(engine, model, keep_layers, default_keep_last(model, keep_layers))


@dataclass(frozen=True)
class PositionCheck:
    position: int
    configured: float
    estimate: float | None
    drafted_steps: int
    accepted: int
    se: float | None
    naive_estimate: float | None  # accepted / all verification steps: biased low where drafts were short
    passed: bool

    @property
    def diff_pp(self) -> float | None:
        return None if self.estimate is None else 100.0 * (self.estimate - self.configured)


@dataclass(frozen=True)
class RateCheck:
    rates: tuple[float, ...]
    requests: int
    steps: int
    short_drafts: int  # steps that drafted fewer than n_max tokens
    seconds: float
    positions: tuple[PositionCheck, ...]

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.positions)

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _check_positions(rates, drafted: list[int], accepted: list[int], steps: int) -> tuple[PositionCheck, ...]:
    checks = []
    for i, configured in enumerate(rates):
        n = drafted[i] if i < len(drafted) else 0
        a = accepted[i] if i < len(accepted) else 0
        estimate = a / n if n else None
        # The σ of the estimate is the binomial σ at the configured rate (the hypothesis under test).
        se = math.sqrt(configured * (1 - configured) / n) if n else None
        within_sigma = estimate is not None and (abs(estimate - configured) <= Z_LIMIT * se if se else
                                                 estimate == configured)
        within_pp = estimate is not None and abs(estimate - configured) * 100 <= TOLERANCE_PP
        checks.append(PositionCheck(i, configured, estimate, n, a, se, a / steps if steps else None,
                                    bool(within_sigma and within_pp)))
    return tuple(checks)


def steps_needed(rates) -> int:
    """Steps per position for the 3σ band to fit inside the tolerance at every position."""
    worst = max(r * (1 - r) for r in rates)
    return math.ceil(worst * (Z_LIMIT * 100 / TOLERANCE_PP) ** 2)


def validate_rates(engine: Engine, model: Path, drafter: Path, rates: tuple[float, ...], log_dir: Path,
                   max_tokens: int = 256, max_requests: int = 400, seed: int = 7000, threads: int | None = None,
                   progress=None, prompts: str = "mixed-40") -> RateCheck:
    """Run synthetic-acceptance requests until every position has enough drafted steps.

    ``prompts``: a suite name or JSONL file (``load_prompts``), asked in turn. What is asked does
    not change synthetic acceptance; it only sets how long each prompt takes to process."""
    options = ServerOptions(model=model, draft_model=drafter, spec_type="draft-simple", draft_n_max=len(rates),
                            draft_p_min=0.0, synth_rates=rates,
                            settings=ServerSettings(ctx_size=max_tokens + 512, threads=threads))
    suite = load_prompts(prompts)
    need = steps_needed(rates)
    drafted: list[int] = []
    accepted: list[int] = []
    steps = short = requests = 0
    started = time.monotonic()
    log_path = log_dir / f"validate-{'-'.join(f'{r:g}' for r in rates)}.log"
    log_path.unlink(missing_ok=True)  # the log is read per request; a fresh file keeps it small
    with LlamaServer(engine.server, options, log_path) as server:
        while requests < max_requests and min(drafted[:len(rates)] or [0]) < need:
            prompt = suite[requests % len(suite)]
            body = chat_body(prompt.messages, max_tokens, 0.3, seed + requests, False)
            outcome = measure_request(server, body, timeout=600)
            if not outcome.log.complete:
                raise RequestError("the server log did not show the end of a validation request")
            requests += 1
            steps += len(outcome.log.steps)
            short += sum(1 for _, d in outcome.log.steps if d < len(rates))
            for tally, new in ((drafted, outcome.log.drafted_per_pos()), (accepted, outcome.log.accepted_per_pos())):
                tally.extend([0] * (len(new) - len(tally)))
                for i, value in enumerate(new):
                    tally[i] += value
            if progress:
                progress(min(min(drafted[:len(rates)] or [0]), need), need,
                         f"rates {','.join(f'{r:g}' for r in rates)}: {requests} requests")
    return RateCheck(rates, requests, steps, short, round(time.monotonic() - started, 1),
                     _check_positions(rates, drafted, accepted, steps))
