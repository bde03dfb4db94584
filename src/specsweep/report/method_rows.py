"""Rows of the drafting-methods and target × drafter sections (drafting.csv, drafter_grid.csv,
results.json), computed from the report model; present only for runs with several drafting entries."""

from __future__ import annotations

from dataclasses import dataclass

from .model import Report, _est


@dataclass(frozen=True)
class DraftingRow:
    """One drafting entry at one depth on one model, in a run with several entries: the "Drafting
    methods" section's figures, for drafting.csv and results.json. Fractions 0–1; mean ± sample
    sd over reps (n = ``n_reps``) with 95% t intervals over prompts. ``rank`` orders a model's
    entries by speedup at their best depth; ``vs_leader_*`` = acceptance of the model's rank-1
    entry − this one at this depth, paired on (prompt, rep)."""

    model: str
    drafting: str
    spec_type: str
    draft_model: str | None  # file name of the entry's drafter (None: in-model head or n-gram)
    depth: int
    effective_depth: int | None  # longest draft seen (n-gram types ignore --spec-draft-n-max)
    draft_length_mean: float | None  # drafted tokens per step that drafted
    draft_length_sd: float | None
    drafting_share_mean: float | None  # share of target decode steps that carried a draft
    is_ngram: bool  # depth is the type's own draft cap, not --spec-draft-n-max
    rank: int
    is_best_depth: bool
    n_reps: int
    acceptance_mean: float | None
    acceptance_sd: float | None
    acceptance_ci_low: float | None
    acceptance_ci_high: float | None
    tau_mean: float | None
    tau_sd: float | None
    speedup_mean: float | None
    speedup_sd: float | None
    speedup_ci_low: float | None
    speedup_ci_high: float | None
    vs_leader_diff: float | None
    vs_leader_ci_low: float | None
    vs_leader_ci_high: float | None
    vs_leader_significant: bool | None
    speedup_behind_leader: float | None  # at best depths: leader's speedup − this one's, paired by (prompt, rep)
    speedup_behind_ci_low: float | None
    speedup_behind_ci_high: float | None
    speedup_behind_significant: bool | None


def drafting_rows(report: Report) -> list[DraftingRow]:
    """Every speculative cell of every entry, models in run order, entries by rank, then depth."""
    if not report.several_drafting:
        return []
    files = {e["label"]: e.get("draft_model") for e in report.entries}
    model_files = {m.get("label"): m.get("draft_model") for m in report.run.config.get("models", [])}
    spec = {e["label"]: e.get("spec_type") for e in report.entries}
    vs = {(m, label, c.depth): c for m, label, c in report.method_comparisons}
    gaps = {(g.model_label, g.drafting): g for g in report.method_gaps}
    rows = []
    for best in report.methods:
        label = best.drafting
        draft = None if str(spec.get(label) or "").startswith("ngram-") else (
            files.get(label) or model_files.get(best.model_label))
        for c in report.cells:
            if (c.key.model_label, c.key.spec_type) != (best.model_label, label) or c.key.depth == 0:
                continue
            cmp = vs.get((best.model_label, label, c.key.depth))
            gap = gaps.get((best.model_label, label)) if c.key == best.best.key else None
            rows.append(DraftingRow(
                model=best.model_label, drafting=label, spec_type=str(spec.get(label)),
                draft_model=str(draft).rsplit("/", 1)[-1] if draft else None, depth=c.key.depth,
                effective_depth=c.effective_depth, draft_length_mean=_est(c.draft_length, "mean"),
                draft_length_sd=_est(c.draft_length, "sd"), drafting_share_mean=_est(c.drafting_share, "mean"),
                is_ngram=label in report.ngram_methods, rank=best.rank, is_best_depth=c.key == best.best.key,
                n_reps=c.n_reps, acceptance_mean=_est(c.acceptance, "mean"), acceptance_sd=_est(c.acceptance, "sd"),
                acceptance_ci_low=_est(c.acceptance, "ci_low"), acceptance_ci_high=_est(c.acceptance, "ci_high"),
                tau_mean=_est(c.tau, "mean"), tau_sd=_est(c.tau, "sd"),
                speedup_mean=_est(c.speedup, "mean"), speedup_sd=_est(c.speedup, "sd"),
                speedup_ci_low=_est(c.speedup, "ci_low"), speedup_ci_high=_est(c.speedup, "ci_high"),
                vs_leader_diff=cmp.diff if cmp else None, vs_leader_ci_low=cmp.ci_low if cmp else None,
                vs_leader_ci_high=cmp.ci_high if cmp else None,
                vs_leader_significant=cmp.significant if cmp else None,
                speedup_behind_leader=gap.diff if gap else None, speedup_behind_ci_low=gap.ci_low if gap else None,
                speedup_behind_ci_high=gap.ci_high if gap else None,
                speedup_behind_significant=gap.significant if gap else None))
    return rows


@dataclass(frozen=True)
class GridRow:
    """One figure of a target × drafter grid (drafter_grid.csv, results.json): a cell's
    acceptance, a target's or a drafter's mean over the other axis, the two spreads (max − min of
    those means) and their difference (target spread − drafter spread). Fractions 0–1."""

    depth: int
    figure: str  # cell, target mean, drafter mean, target spread, drafter spread, difference
    target: str | None
    drafter: str | None
    mean: float | None
    sd: float | None
    n_reps: int | None
    ci_low: float | None
    ci_high: float | None
    significant: bool | None  # spreads and difference: the interval excludes 0
    n_prompts: int


def grid_rows(report: Report) -> list[GridRow]:
    rows = []
    for g in report.grids:
        def est(figure, target, drafter, e):
            rows.append(GridRow(g.depth, figure, target, drafter, _est(e, "mean"), _est(e, "sd"), _est(e, "n"),
                                _est(e, "ci_low"), _est(e, "ci_high"), None, g.n_prompts))
        for (t, d), e in g.cells.items():
            est("cell", t, d, e)
        for t, e in g.target_means.items():
            est("target mean", t, None, e)
        for d, e in g.drafter_means.items():
            est("drafter mean", None, d, e)
        for figure, sp in (("target spread", g.target_spread), ("drafter spread", g.drafter_spread),
                           ("difference", g.difference)):
            if sp is not None:
                rows.append(GridRow(g.depth, figure, None, None, sp.value, None, None, sp.ci_low, sp.ci_high,
                                    sp.significant, g.n_prompts))
    return rows
