"""Statistics over RequestRecords: acceptance, τ, speed, speedup, per-position acceptance,
intervals over prompts, paired model comparisons and the i.i.d.-acceptance model.

Pure functions: no I/O, no printing. The definitions are the ones in design.md ("Definitions"):

- acceptance of a rep = Σ draft_n_accepted / Σ draft_n over the rep's requests (ratio of sums);
  reported acceptance = mean over reps ± sample sd (ddof=1), n = number of reps.
- τ = 1 + accepted / verification steps (per rep, then mean ± sd).
- decode speed = Σ predicted_n / Σ predicted_ms (server side); wall speed uses client wall_ms. Only
  requests that had their server to themselves count, untraced ones where a cell has any
  (``speed_sample``).
- speedup = decode speed at depth n / decode speed at depth 0, same model, paired by rep.
- per position: p_i = accepted at i / steps that drafted ≥ i+1 tokens; α_i = steps that
  accepted ≥ i+1 / steps that drafted ≥ i+1 and accepted ≥ i (needs per-step data).
- E[tokens per step] = (1 − α^(n+1)) / (1 − α); speedup ≈ that / (n·c + 1).

Conventions used throughout:

- Only ``status == "ok"`` records enter statistics; every other status is counted as failed.
- A rep is the ``RequestRecord.rep`` field (one seed per rep). Requests of two cells are paired
  on ``(prompt_id, rep)``; a rep's seed may vary per prompt, so the seed is not part of the key.
- Results never depend on input order: records are first put into a canonical total order, so
  even floating-point sums are bitwise identical for any permutation. "Order of first
  appearance" of a model means first in time (smallest ``started_at``, then label), not first in
  the list, for the same reason.
- Nothing returns NaN or inf. A statistic with no data is ``None``; every ``Estimate`` carries
  the n it rests on (n ≥ 1, sd = 0.0 when n == 1).

- Intervals: a 95% CI of a rep mean is t over prompts (``intervals``: estimate ± t(P−1) ×
  delete-one-prompt jackknife SE), none below ``MIN_PROMPTS`` prompts; per-position ± are
  standard errors over prompts. Why this interval: benchmarks/coverage.md (harness: ``coverage``).

Modules, imported in one direction: ``intervals`` (interval methods over sum tables) →
``estimates`` (rep statistics) → ``positions`` (per-position acceptance) → ``cells`` (cell
summaries, paired comparisons) → ``theory`` (the i.i.d. model, recommendation), ``correlation``
(acceptance against fidelity), ``methods`` (several drafting entries compared: ranking, target ×
drafter grid), ``frontier`` (speed against memory, the fastest cell under a memory budget) and
``coverage`` (the harness that measures the intervals; not used by the tool).
"""

from .cells import (CellKey, CellSummary, PairedComparison, model_order, neighbour_comparisons, paired_difference,
                    summarize, summarize_by_category)
from .correlation import EXACT_SPEARMAN_MAX, Correlation, correlations, spearman
from .frontier import (BudgetChoice, MemoryPoint, RunnerUp, budget_choice, cell_memory, mark_frontier, memory_by_cell,
                       parse_size)
from .methods import (DrafterGrid, MethodBest, SpeedupGap, Spread, by_drafting, drafter_grid, leader_comparisons,
                      rank_methods, speedup_gaps)
from .intervals import MIN_PROMPTS, REPORTED
from .estimates import (OK_STATUS, Estimate, bootstrap_ci, mean_rep_acceptance, pooled_acceptance,
                        rep_acceptance, speed_sample)
from .positions import PositionRow, PositionStat, per_position, position_rows
from .theory import (Recommendation, TheoryRow, estimate_draft_cost, expected_tokens_per_step,
                     fit_geometric_alpha, predicted_best_depth, predicted_speedup, recommend, theory_rows)

__all__ = [
    "OK_STATUS", "MIN_PROMPTS", "REPORTED", "Estimate", "CellKey", "PositionStat", "PositionRow", "CellSummary", "PairedComparison",
    "Recommendation", "TheoryRow", "Correlation", "EXACT_SPEARMAN_MAX",
    "model_order", "rep_acceptance", "pooled_acceptance", "mean_rep_acceptance", "summarize",
    "summarize_by_category", "per_position", "position_rows", "bootstrap_ci", "paired_difference",
    "neighbour_comparisons", "fit_geometric_alpha", "expected_tokens_per_step", "predicted_speedup",
    "estimate_draft_cost", "predicted_best_depth", "recommend", "theory_rows", "correlations", "spearman",
    "DrafterGrid", "MethodBest", "SpeedupGap", "Spread", "by_drafting", "drafter_grid", "leader_comparisons",
    "rank_methods", "speedup_gaps",
    "BudgetChoice", "MemoryPoint", "RunnerUp", "budget_choice", "cell_memory", "mark_frontier", "memory_by_cell",
    "parse_size",
    "speed_sample",
]
