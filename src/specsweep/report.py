"""Reports read only the store: tables of acceptance, speed and speedup, and everything around them.

One flat record, ``ReportRow`` (one per model × spec type × depth cell), drives the Markdown
"all cells" table, the CSV and the JSON (llama-bench's ``struct test``): their columns come from
``dataclasses.fields(ReportRow)``, never from a hand-kept list. The other sections (per-position
acceptance, categories, theory, fidelity, completeness, provenance) are built once by
``build_report`` into a ``Report`` and rendered into a list of document blocks; Markdown and HTML
render the same blocks, so both always say the same thing.

Outputs are deterministic for a given store: bootstrap intervals use a fixed seed, times come
from the store (never "now"), and every collection is in a fixed order.

Public entry points (the CLI wires them): ``render_markdown``, ``export_csv``, ``export_json``,
``write_html``, ``write_report``, ``render_compare``; ``print_main_table`` for the sweep's summary.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .analysis import (CellSummary, Estimate, PairedComparison, PositionStat, Recommendation,
                       estimate_draft_cost, expected_tokens_per_step, fit_geometric_alpha,
                       neighbour_comparisons, per_position, predicted_best_depth, predicted_speedup,
                       recommend, summarize, summarize_by_category)
from .errors import UsageError
from .records import RequestRecord
from .store import RunRow, Store

N_BOOT = 2000
BOOT_SEED = 0  # fixed: the same store always gives the same intervals (golden files rely on it)
REPORT_FORMAT = 1  # version of the JSON layout
DASH = "–"  # a figure that does not exist (depth 0 acceptance, a missing cell)
MAX_LISTED = 40  # longest list of missing requests / disagreements printed in full


# ---------------------------------------------------------------------------------------------
# The flat record
# ---------------------------------------------------------------------------------------------

def _col(kind: str = "str", doc: str = ""):
    """A ReportRow field with how to show it in the Markdown table (``kind``) and what it means."""
    return field(metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True)
class ReportRow:
    """One (model, spec type, depth) cell of a run. Fractions are 0–1 (not %), speeds tok/s.

    ``*_mean``/``*_sd`` are mean ± sample sd over reps (n = ``n_reps``), ``*_ci_low/high`` the
    95% prompt-level bootstrap interval of the mean. ``vs_prev_*`` compares acceptance with the
    previous model (in run order) at the same spec type and depth: this − previous, paired on
    (prompt, rep), significant when the bootstrap interval excludes 0.
    """

    model: str = _col(doc="model label")
    spec_type: str = _col(doc="drafting type; 'none' at depth 0")
    depth: int = _col("int", "--spec-draft-n-max; 0 = no speculation")
    effective_depth: int | None = _col("int", "longest draft seen")
    n_reps: int = _col("int", "reps (distinct seeds) with an ok request")
    n_requests: int = _col("int", "ok requests")
    n_failed: int = _col("int", "failed request rows (retries included)")
    missing: int = _col("int", "planned (rep, prompt) pairs without an ok request")
    acceptance_mean: float | None = _col("pct", "acceptance rate")
    acceptance_sd: float | None = _col("pct")
    acceptance_ci_low: float | None = _col("pct")
    acceptance_ci_high: float | None = _col("pct")
    tau_mean: float | None = _col("f2", "mean acceptance length τ = 1 + accepted/steps")
    tau_sd: float | None = _col("f2")
    decode_tps_mean: float | None = _col("f1", "server decode speed, tok/s")
    decode_tps_sd: float | None = _col("f1")
    wall_tps_mean: float | None = _col("f1", "client wall speed, tok/s")
    wall_tps_sd: float | None = _col("f1")
    speedup_mean: float | None = _col("x2", "decode speed / depth 0, paired by rep")
    speedup_sd: float | None = _col("x2")
    speedup_ci_low: float | None = _col("x2")
    speedup_ci_high: float | None = _col("x2")
    file_size_bytes: int | None = _col("bytes", "model file size")
    bits_per_weight: float | None = _col("f2", "bits per weight of the model file")
    kld_mean: float | None = _col("f4", "mean KL divergence to the reference")
    top1_pct: float | None = _col("f2", "top-1 agreement with the reference, %")
    vs_prev_model: str | None = _col(doc="previous model in run order")
    vs_prev_diff: float | None = _col("pp", "acceptance this − previous")
    vs_prev_ci_low: float | None = _col("pp")
    vs_prev_ci_high: float | None = _col("pp")
    vs_prev_significant: bool | None = _col("bool")


def report_columns() -> list[str]:
    """The CSV header and the JSON row keys: the ReportRow fields, in order."""
    return [f.name for f in fields(ReportRow)]


def _round(value):
    """6 significant digits for CSV/JSON: stable across platforms, far below any spread."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _row_dict(row: ReportRow) -> dict:
    return {name: _round(value) for name, value in asdict(row).items()}


# ---------------------------------------------------------------------------------------------
# What a report holds
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PositionRow:
    """Acceptance at draft position ``position`` (0 = first drafted token) for one cell, or pooled
    over every depth of a model when ``depth`` is None. ``p`` = unconditional p_i, ``alpha`` =
    conditional α_i = p_i / p_(i−1); SEs are binomial: sqrt(p(1−p)/drafted_steps) and
    sqrt(α(1−α)/at_risk), at_risk = p_(i−1) · drafted_steps (steps that reached position i)."""

    model: str
    spec_type: str
    depth: int | None
    position: int
    drafted_steps: int
    accepted: int
    p: float | None
    p_se: float | None
    alpha: float | None
    alpha_se: float | None


@dataclass(frozen=True)
class TheoryRow:
    """The i.i.d.-acceptance model (Leviathan et al. 2023) fitted to one model's measurements."""

    model: str
    spec_type: str
    alpha: float | None  # fit_geometric_alpha over per-position counts pooled across depths
    draft_cost: float | None  # estimate_draft_cost over the model's cells
    max_depth: int  # deepest measured depth (the prediction searches 0..max_depth)
    predicted_best_depth: int | None
    measured_best_depth: int | None  # argmax of mean speedup (depth 0 = 1.0)
    predicted_tau: dict[int, float]  # depth -> expected tokens per step under α
    predicted_speedup: dict[int, float]  # depth -> prediction under α and c


@dataclass(frozen=True)
class Correlation:
    """Across models at one depth: acceptance vs a fidelity measure (``against``)."""

    spec_type: str
    depth: int
    against: str  # "top1_pct" or "kld_mean"
    n_models: int
    pearson_r: float | None
    pearson_p: float | None
    spearman_rho: float | None
    spearman_p: float | None
    why_none: str | None  # when undefined: too few models, constant values


@dataclass(frozen=True)
class CellCompleteness:
    model: str
    spec_type: str
    depth: int
    planned: int | None  # None for a cell the stored config did not plan
    ok: int
    failed_rows: int  # rows with status != ok (each failed attempt is a row)
    retries: int  # rows with attempt > 1
    missing: list[tuple[int, str]]  # planned (rep, prompt_id) without an ok request
    errors: list[tuple[str, int]]  # (first line of error, count)


@dataclass(frozen=True)
class Report:
    run: RunRow
    records: list[RequestRecord]
    cells: list[CellSummary]
    rows: list[ReportRow]
    models: list[str]  # run order
    by_category: dict[str, list[CellSummary]]
    comparisons: list[tuple[str, PairedComparison]]  # (spec type, neighbouring-model comparison)
    positions: list[PositionRow]
    theory: list[TheoryRow]
    recommendation: Recommendation | None
    fidelity: dict[str, dict]
    correlations: list[Correlation]
    completeness: list[CellCompleteness]
    crosscheck: list[RequestRecord]  # ok requests whose tallies disagreed
    prompt_ids: list[str]
    planned_reps: int

    @property
    def spec_types(self) -> list[str]:
        """Spec types of the speculative cells (depth 0 is always 'none')."""
        return list(dict.fromkeys(c.key.spec_type for c in self.cells if c.key.depth > 0))

    @property
    def depths(self) -> list[int]:
        return sorted({c.key.depth for c in self.cells})

    def cell(self, model: str, spec_type: str, depth: int) -> CellSummary | None:
        for c in self.cells:
            if c.key.model_label == model and c.key.depth == depth and (depth == 0 or c.key.spec_type == spec_type):
                return c
        return None


def _planned_prompts(config: dict, records: Sequence[RequestRecord]) -> list[str]:
    """Prompt ids the run planned: the built-in suite named in the config when it covers every id
    seen (its content is part of the run key, so it is the same suite), else the ids seen."""
    seen = list(dict.fromkeys(r.prompt_id for r in sorted(records, key=lambda r: (r.started_at or 0.0, r.prompt_id))))
    source = config.get("prompts")
    try:
        from .prompts import BUILTIN_SUITES, load_prompts
        if source in BUILTIN_SUITES:
            suite = [p.id for p in load_prompts(source, config.get("prompt_limit"))]
            if set(seen) <= set(suite):
                return suite
    except Exception:  # noqa: BLE001 — a missing optional suite only means "use what was seen"
        pass
    return seen


def _completeness(run: RunRow, records: Sequence[RequestRecord], prompts: list[str],
                  reps: int) -> list[CellCompleteness]:
    cfg = run.config
    labels = [m["label"] for m in cfg.get("models", [])]
    depths = list((cfg.get("drafting") or {}).get("depths") or [])
    spec = (cfg.get("drafting") or {}).get("spec_type") or "none"
    planned = [(m, spec if d > 0 else "none", d) for m in labels for d in depths]
    by_cell: dict[tuple, list[RequestRecord]] = defaultdict(list)
    for r in records:
        by_cell[(r.model_label, r.spec_type, r.depth)].append(r)
    keys = planned + sorted(k for k in by_cell if k not in set(planned))
    out = []
    for key in keys:
        rows = by_cell.get(key, [])
        ok = {(r.rep, r.prompt_id) for r in rows if r.status == "ok"}
        in_plan = key in planned
        missing = [(rep, p) for rep in range(reps) for p in prompts if (rep, p) not in ok] if in_plan else []
        errors = Counter((r.error or r.status).splitlines()[0][:160] for r in rows if r.status != "ok")
        out.append(CellCompleteness(model=key[0], spec_type=key[1], depth=key[2],
                                    planned=reps * len(prompts) if in_plan else None,
                                    ok=sum(1 for r in rows if r.status == "ok"),
                                    failed_rows=sum(1 for r in rows if r.status != "ok"),
                                    retries=sum(1 for r in rows if (r.attempt or 1) > 1),
                                    missing=missing, errors=sorted(errors.items(), key=lambda e: (-e[1], e[0]))))
    return out


def _position_rows(model: str, spec_type: str, depth: int | None, stats: Sequence[PositionStat]) -> list[PositionRow]:
    out = []
    prev_p = 1.0
    for s in stats:
        at_risk = prev_p * s.drafted_steps if prev_p is not None else None
        alpha = s.alpha_cond
        alpha_se = (math.sqrt(max(alpha * (1 - alpha), 0.0) / at_risk)
                    if alpha is not None and at_risk and 0 <= alpha <= 1 else None)
        out.append(PositionRow(model, spec_type, depth, s.position, s.drafted_steps, s.accepted,
                               s.p_uncond, s.se, alpha, alpha_se))
        prev_p = s.p_uncond
    return out


def _correlations(cells: Sequence[CellSummary], fidelity: dict[str, dict]) -> list[Correlation]:
    from scipy import stats
    out = []
    keys = sorted({(c.key.spec_type, c.key.depth) for c in cells if c.key.depth > 0 and c.acceptance})
    for spec_type, depth in keys:
        for against in ("top1_pct", "kld_mean"):
            pairs = [(c.acceptance.mean, float(fidelity[c.key.model_label][against])) for c in cells
                     if (c.key.spec_type, c.key.depth) == (spec_type, depth) and c.acceptance
                     and isinstance(fidelity.get(c.key.model_label, {}).get(against), (int, float))]
            values = dict(n_models=len(pairs), pearson_r=None, pearson_p=None, spearman_rho=None, spearman_p=None)
            why = None
            xs, ys = [p[1] for p in pairs], [p[0] for p in pairs]
            if len(pairs) < 3:
                why = f"needs ≥ 3 models, has {len(pairs)}"  # two points always correlate ±1
            elif len(set(xs)) < 2 or len(set(ys)) < 2:
                why = "a constant variable has no correlation"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pr = stats.pearsonr(xs, ys)
                    rho, rho_p = _spearman(xs, ys)
                got = [float(pr.statistic), float(pr.pvalue), rho, rho_p]
                if all(math.isfinite(g) for g in got):
                    values.update(pearson_r=got[0], pearson_p=got[1], spearman_rho=got[2], spearman_p=got[3])
                else:
                    why = "undefined for these values"
            out.append(Correlation(spec_type=spec_type, depth=depth, against=against, why_none=why, **values))
    return out


EXACT_SPEARMAN_MAX = 8  # 8! = 40320 permutations: exact and still instant


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Spearman ρ and its two-sided p. For a handful of models the t approximation is badly off
    (ρ = ±1 with 3 models gets p = 0), so up to EXACT_SPEARMAN_MAX models p is exact: the share
    of all rank permutations with |ρ| at least as large."""
    import itertools

    import numpy as np
    from scipy import stats
    result = stats.spearmanr(xs, ys)
    rho, p = float(result.statistic), float(result.pvalue)
    if len(xs) <= EXACT_SPEARMAN_MAX:
        rx, ry = stats.rankdata(xs), stats.rankdata(ys)
        rx = rx - rx.mean()
        perms = np.array(list(itertools.permutations(ry - ry.mean())))
        r = perms @ rx / (np.linalg.norm(perms, axis=1) * np.linalg.norm(rx))
        p = float(np.mean(np.abs(r) >= abs(rho) - 1e-12))
    return rho, p


def _theory(cells: Sequence[CellSummary], positions: Sequence[PositionRow], models: Sequence[str],
            spec_types: Sequence[str]) -> list[TheoryRow]:
    out = []
    for model in models:
        for spec in spec_types:
            spec_cells = [c for c in cells if c.key.model_label == model and c.key.spec_type == spec and c.key.depth > 0]
            if not spec_cells:
                continue
            pooled = [PositionStat(p.position, p.drafted_steps, p.accepted, p.p, p.alpha, p.p_se)
                      for p in positions if p.model == model and p.spec_type == spec and p.depth is None]
            alpha = fit_geometric_alpha(pooled)
            cost = estimate_draft_cost(spec_cells)
            max_depth = max(c.key.depth for c in spec_cells)
            measured = {c.key.depth: c.speedup.mean for c in spec_cells if c.speedup is not None}
            if measured:
                measured[0] = 1.0  # speedups exist only against a depth-0 baseline
            best_measured = min(measured, key=lambda d: (-measured[d], d)) if measured else None
            depths = sorted(c.key.depth for c in spec_cells)
            out.append(TheoryRow(
                model=model, spec_type=spec, alpha=alpha, draft_cost=cost, max_depth=max_depth,
                predicted_best_depth=predicted_best_depth(alpha, cost, max_depth) if alpha is not None and cost is not None else None,
                measured_best_depth=best_measured,
                predicted_tau={d: expected_tokens_per_step(alpha, d) for d in depths} if alpha is not None else {},
                predicted_speedup={d: predicted_speedup(alpha, d, cost) for d in depths}
                if alpha is not None and cost is not None else {}))
    return out


def _est(e: Estimate | None, attr: str):
    return getattr(e, attr) if e is not None else None


def _report_rows(report_cells: Sequence[CellSummary], completeness: Sequence[CellCompleteness],
                 comparisons: Sequence[tuple[str, PairedComparison]], provenance: dict,
                 fidelity: dict) -> list[ReportRow]:
    missing = {(c.model, c.spec_type, c.depth): len(c.missing) for c in completeness}
    # neighbour_comparisons gives earlier − later; a row shows itself − the previous model.
    prev = {(spec, p.label_b, p.depth): p for spec, p in comparisons}
    models = provenance.get("models") or {}
    rows = []
    for c in report_cells:
        k = c.key
        info = models.get(k.model_label) or {}
        fid = fidelity.get(k.model_label) or {}
        cmp = prev.get((k.spec_type, k.model_label, k.depth)) if k.depth > 0 else None
        rows.append(ReportRow(
            model=k.model_label, spec_type=k.spec_type, depth=k.depth, effective_depth=c.effective_depth,
            n_reps=c.n_reps, n_requests=c.n_requests, n_failed=c.n_failed,
            missing=missing.get((k.model_label, k.spec_type, k.depth), 0),
            acceptance_mean=_est(c.acceptance, "mean"), acceptance_sd=_est(c.acceptance, "sd"),
            acceptance_ci_low=_est(c.acceptance, "ci_low"), acceptance_ci_high=_est(c.acceptance, "ci_high"),
            tau_mean=_est(c.tau, "mean"), tau_sd=_est(c.tau, "sd"),
            decode_tps_mean=_est(c.decode_tps, "mean"), decode_tps_sd=_est(c.decode_tps, "sd"),
            wall_tps_mean=_est(c.wall_tps, "mean"), wall_tps_sd=_est(c.wall_tps, "sd"),
            speedup_mean=_est(c.speedup, "mean"), speedup_sd=_est(c.speedup, "sd"),
            speedup_ci_low=_est(c.speedup, "ci_low"), speedup_ci_high=_est(c.speedup, "ci_high"),
            file_size_bytes=info.get("size_bytes"), bits_per_weight=info.get("bits_per_weight"),
            kld_mean=fid.get("kld_mean"), top1_pct=fid.get("top1_pct"),
            vs_prev_model=cmp.label_a if cmp else None,
            vs_prev_diff=-cmp.diff if cmp else None,
            vs_prev_ci_low=-cmp.ci_high if cmp else None,
            vs_prev_ci_high=-cmp.ci_low if cmp else None,
            vs_prev_significant=cmp.significant if cmp else None))
    return rows


def build_report(store: Store, run: RunRow) -> Report:
    """Every statistic a report shows, computed once from the store (never from an engine)."""
    records = store.requests(run.id)
    cells = summarize(records, n_boot=N_BOOT, seed=BOOT_SEED)
    models = list(dict.fromkeys(c.key.model_label for c in cells))
    prompts = _planned_prompts(run.config, records)
    config_reps = int(((run.config.get("sampling") or {}).get("reps")) or 0)
    # More reps can be added to an existing run (reps are not in the run key): plan what was seen too.
    reps = max([config_reps] + [r.rep + 1 for r in records])
    completeness = _completeness(run, records, prompts, reps)
    spec_types = list(dict.fromkeys(c.key.spec_type for c in cells if c.key.depth > 0))
    # One call per spec type, so each comparison knows its drafting type (PairedComparison does not).
    comparisons = [(spec, cmp) for spec in spec_types
                   for cmp in neighbour_comparisons([r for r in records if r.spec_type == spec],
                                                    n_boot=N_BOOT, seed=BOOT_SEED)]
    fidelity = store.fidelity(run.id)

    positions: list[PositionRow] = []
    for c in cells:
        if c.key.depth > 0:
            positions += _position_rows(c.key.model_label, c.key.spec_type, c.key.depth, c.per_position)
    for model in models:
        for spec in spec_types:
            recs = [r for r in records if r.model_label == model and r.spec_type == spec and r.depth > 0]
            if recs:
                positions += _position_rows(model, spec, None, per_position(recs))

    sizes = {label: int(info["size_bytes"]) for label, info in (run.provenance.get("models") or {}).items()
             if isinstance(info, dict) and isinstance(info.get("size_bytes"), int)}
    return Report(
        run=run, records=records, cells=cells,
        rows=_report_rows(cells, completeness, comparisons, run.provenance, fidelity),
        models=models,
        by_category=summarize_by_category(records, n_boot=N_BOOT, seed=BOOT_SEED),
        comparisons=comparisons, positions=positions,
        theory=_theory(cells, positions, models, spec_types),
        recommendation=recommend(cells, sizes),
        fidelity=fidelity,
        correlations=_correlations(cells, fidelity) if fidelity else [],
        completeness=completeness,
        crosscheck=[r for r in records if r.status == "ok" and r.crosscheck != "ok"],
        prompt_ids=prompts, planned_reps=reps)


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------

def _size(n: int | None) -> str:
    if n is None:
        return DASH
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _signed(value: float, digits: int) -> str:
    """'+1.2' / '−0.4', and plain '0.0' when it rounds to zero (never '-0.0')."""
    text = f"{value:+.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text


def _fmt_kind(kind: str, value) -> str:
    if value is None:
        return DASH
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "pp":
        return f"{_signed(100 * value, 1)} pp"
    if kind in ("f1", "f2", "f4"):
        return f"{value:.{kind[1]}f}"
    if kind == "x2":
        return f"{value:.2f}×"
    if kind == "bytes":
        return _size(value)
    if kind == "bool":
        return "yes" if value else "no"
    return str(value)


def _pm(e: Estimate | None, kind: str) -> str:
    """mean ±sd of an Estimate in the unit of ``kind``; '–' when there is none."""
    if e is None:
        return DASH
    if kind == "pct":
        return e.fmt_pct()
    if kind == "x2":
        return f"{e.fmt(2)}×"
    return e.fmt(int(kind[1]))


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _utc(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else DASH


# ---------------------------------------------------------------------------------------------
# Document blocks: rendered to Markdown and HTML alike
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str  # inline markup: **bold** and `code`


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    note: str | None = None  # printed under the table (n, units, marks)


@dataclass(frozen=True)
class Image:
    name: str  # file name of a plot, e.g. acceptance_vs_depth.png
    alt: str


def _row_keys(report: Report) -> tuple[list[tuple[str, str]], bool]:
    """(model, spec_type) rows for the pivot tables; spec_type is shown only when it varies."""
    specs = report.spec_types or ["none"]
    keys = [(m, s) for m in report.models for s in specs
            if any(c.key.model_label == m and (c.key.spec_type == s or c.key.depth == 0) for c in report.cells)]
    return keys, len(specs) > 1


def _n_cells(estimates: Sequence[Estimate | None]) -> tuple[Callable[[Estimate], str], str]:
    """n is stated once in the note when all cells share it; otherwise cells with another n say so."""
    ns = Counter(e.n for e in estimates if e is not None)
    if not ns:
        return (lambda e: ""), "no data"
    common = max(sorted(ns), key=lambda n: ns[n])
    if len(ns) == 1:
        return (lambda e: ""), f"n={common} {'rep' if common == 1 else 'reps'}"
    return (lambda e: "" if e.n == common else f" (n={e.n})"), f"n={common} reps unless marked (n=…)"


def _pivot(report: Report, getter: Callable[[CellSummary], Estimate | None], kind: str, depths: Sequence[int],
           first: str = "Model") -> tuple[list[str], list[list[str]], str]:
    keys, show_spec = _row_keys(report)
    found = {(k, d): report.cell(k[0], k[1], d) for k in keys for d in depths}
    estimates = [getter(c) if c else None for c in found.values()]
    n_suffix, n_note = _n_cells(estimates)
    header = [first, *(["spec type"] if show_spec else []), *[f"n={d}" for d in depths]]
    rows = []
    for key in keys:
        row = [key[0], *([key[1]] if show_spec else [])]
        for d in depths:
            cell = found[(key, d)]
            e = getter(cell) if cell else None
            row.append(_pm(e, kind) + n_suffix(e) if e else DASH)
        rows.append(row)
    return header, rows, n_note


def _display_columns(rows: Sequence[ReportRow]) -> tuple[list[str], list[list[str]], list[str]]:
    """The all-cells table from ReportRow's fields: x_mean/x_sd become 'mean ±sd', x_ci_low/high
    one '[low, high]' column; columns whose value never varies are dropped and listed instead."""
    names = report_columns()
    kinds = {f.name: f.metadata["kind"] for f in fields(ReportRow)}
    columns: list[tuple[str, Callable[[ReportRow], str]]] = []
    for name in names:
        if name.endswith(("_sd", "_ci_high")):
            continue
        if name.endswith("_mean") and name[:-5] + "_sd" in names:
            base = name[:-5]
            columns.append((base, lambda r, b=base, k=kinds[name]: DASH if getattr(r, b + "_mean") is None else
                            _pm(Estimate(getattr(r, b + "_mean"), getattr(r, b + "_sd") or 0.0, max(r.n_reps, 1)), k)))
        elif name.endswith("_ci_low"):
            base = name[:-7]
            columns.append((f"{base} 95% CI", lambda r, b=base, k=kinds[name]: DASH if getattr(r, b + "_ci_low") is None
                            else f"[{_fmt_kind(k, getattr(r, b + '_ci_low'))}, {_fmt_kind(k, getattr(r, b + '_ci_high'))}]"))
        else:
            columns.append((name, lambda r, n=name: _fmt_kind(kinds[n], getattr(r, n))))
    table = [[fn(r) for _, fn in columns] for r in rows]
    keep, constant = [], []
    for i, (title, _) in enumerate(columns):
        values = {t[i] for t in table}
        if title == "spec_type":  # depth 0 is always 'none': it varies only if the drafting types do
            values = {t[i] for t, r in zip(table, rows) if r.depth > 0} or values
        if len(values) <= 1 and title not in ("model", "depth"):
            if values and values != {DASH}:
                constant.append(f"{title} {values.pop()}")
            continue
        keep.append(i)
    return [columns[i][0] for i in keep], [[t[i] for i in keep] for t in table], constant


def document(report: Report) -> list:
    """The report as blocks, in reading order. Markdown and HTML both render exactly these."""
    run = report.run
    blocks: list = [Heading(1, f"specsweep report · run {run.id}" + (f" ({run.name})" if run.name else ""))]
    ok = sum(1 for r in report.records if r.status == "ok")
    failed = len(report.records) - ok
    planned = sum(c.planned or 0 for c in report.completeness)
    state = f"Run state **{run.state}**: {ok} ok requests of {planned} planned, {failed} failed request rows."
    if run.state != "complete" or any(c.missing for c in report.completeness):
        state += " The figures below rest on the requests that finished (see Completeness)."
    blocks.append(Para(state))
    if not report.cells:
        blocks.append(Para("No requests are stored for this run yet."))
        blocks += _completeness_blocks(report) + _footer_blocks(report)
        return blocks

    spec_depths = [d for d in report.depths if d > 0]
    blocks.append(Heading(2, "Acceptance"))
    if spec_depths:
        header, rows, n_note = _pivot(report, lambda c: c.acceptance, "pct", spec_depths)
        blocks.append(Table(header, rows, f"Acceptance rate = accepted / drafted tokens per rep, mean ±1σ over "
                                          f"{n_note}; n = --spec-draft-n-max."))
        blocks.append(Image("acceptance_vs_depth.png", "acceptance vs draft depth"))
    else:
        blocks.append(Para("No speculative cells (depth ≥ 1) in this run."))

    blocks.append(Heading(2, "Speed"))
    header, rows, n_note = _pivot(report, lambda c: c.decode_tps, "f1", report.depths)
    blocks.append(Table(header, rows, f"Decode speed (server side, Σ predicted tokens / Σ predicted ms), tok/s, "
                                      f"mean ±1σ over {n_note}; n=0 is no speculation."))
    header, rows, n_note = _pivot(report, lambda c: c.wall_tps, "f1", report.depths)
    blocks.append(Table(header, rows, f"Client wall speed (predicted tokens / wall time of the HTTP request), "
                                      f"tok/s, mean ±1σ over {n_note}."))
    if spec_depths:
        header, rows, n_note = _pivot(report, lambda c: c.speedup, "x2", spec_depths)
        blocks.append(Table(header, rows, f"Speedup = decode speed / decode speed at depth 0, same model, paired "
                                          f"by rep; mean ±1σ over {n_note}."))
        header, rows, n_note = _pivot(report, lambda c: c.tau, "f2", spec_depths)
        blocks.append(Table(header, rows, f"Mean acceptance length τ = 1 + accepted / verification steps "
                                          f"(tokens per target step); mean ±1σ over {n_note}."))
    blocks.append(Image("speed_vs_depth.png", "decode speed and speedup vs draft depth"))
    blocks += _recommendation_blocks(report)
    if spec_depths:
        blocks += _position_blocks(report)
        blocks += _category_blocks(report, spec_depths)
        blocks += _theory_blocks(report)
        blocks += _significance_blocks(report)
    if report.fidelity:
        blocks += _fidelity_blocks(report, spec_depths)
    blocks += _all_cells_blocks(report)
    blocks += _completeness_blocks(report)
    blocks += _crosscheck_blocks(report)
    blocks += _footer_blocks(report)
    return blocks


def _recommendation_blocks(report: Report) -> list:
    rec = report.recommendation
    if rec is None:
        return [Para("**Recommendation:** none (no cell has a decode speed).")]
    cell = report.cell(rec.model_label, rec.spec_type, rec.depth)
    where = (f"**{rec.model_label}** without speculation (depth 0)" if rec.depth == 0
             else f"**{rec.model_label}** at depth {rec.depth} ({rec.spec_type})")
    text = f"**Recommendation:** fastest is {where}: {_pm(cell.decode_tps, 'f1')} tok/s (n={cell.decode_tps.n})"
    if rec.speedup is not None and rec.depth > 0:
        text += f", speedup {_pm(rec.speedup, 'x2')} over depth 0 (n={rec.speedup.n})"
    text += "."
    sizes = {label: info.get("size_bytes") for label, info in (report.run.provenance.get("models") or {}).items()}
    if rec.smallest_model_within_1sd is None:
        text += " No model file size is recorded, so no smaller file can be suggested."
    elif rec.smallest_model_within_1sd == rec.model_label:
        text += f" No smaller model file comes within 1σ of it ({_size(sizes.get(rec.model_label))})."
    else:
        small = rec.smallest_model_within_1sd
        text += (f" Smallest model file within 1σ of it: **{small}** ({_size(sizes.get(small))}, vs "
                 f"{_size(sizes.get(rec.model_label))}).")
    return [Para(text)]


def _position_blocks(report: Report) -> list:
    blocks: list = [Heading(2, "Acceptance by draft position")]
    rows = [p for p in report.positions if p.depth is not None]
    if not rows:
        return blocks + [Para("No per-position counts were recorded.")]
    show_spec = len(report.spec_types) > 1
    n_pos = min(max(p.position for p in rows) + 1, 16)  # n-gram drafts can be 48 long: keep it readable
    by_cell: dict[tuple, dict[int, PositionRow]] = defaultdict(dict)
    for p in rows:
        by_cell[(p.model, p.spec_type, p.depth)][p.position] = p
    for title, value, se in (("Unconditional p_i = accepted at position i / steps that drafted ≥ i+1 tokens",
                              "p", "p_se"),
                             ("Conditional α_i = p_i / p_(i−1): acceptance at i given all earlier were accepted",
                              "alpha", "alpha_se")):
        header = ["Model", *(["spec type"] if show_spec else []), "depth", *[f"i={i}" for i in range(n_pos)]]
        table = []
        for (model, spec, depth), cells in by_cell.items():
            row = [model, *([spec] if show_spec else []), str(depth)]
            for i in range(n_pos):
                p = cells.get(i)
                v, s = (getattr(p, value), getattr(p, se)) if p else (None, None)
                row.append(DASH if v is None else f"{100 * v:.1f} ±{100 * (s or 0):.1f}% (n={p.drafted_steps})")
            table.append(row)
        blocks.append(Table(header, table, f"{title}; ± binomial standard error, pooled over reps; n = steps that "
                                           "drafted position i; i=0 is the first drafted token."))
    blocks.append(Image("per_position.png", "per-position acceptance"))
    return blocks


def _category_blocks(report: Report, depths: Sequence[int]) -> list:
    cats = report.by_category
    if len(cats) < 2:  # one category: the acceptance table already is that category
        return []
    keys, show_spec = _row_keys(report)
    header = ["Model", *(["spec type"] if show_spec else []), "category", *[f"n={d}" for d in depths]]
    found = {}
    for cat, cells in cats.items():
        for c in cells:
            found[(c.key.model_label, c.key.spec_type, c.key.depth, cat)] = c.acceptance
    n_suffix, n_note = _n_cells(list(found.values()))
    rows = []
    for model, spec in keys:
        for cat in cats:
            row = [model, *([spec] if show_spec else []), cat]
            for d in depths:
                e = found.get((model, spec, d, cat))
                row.append(_pm(e, "pct") + n_suffix(e) if e else DASH)
            rows.append(row)
    per_cat = Counter()
    seen = set()
    for r in report.records:
        if (r.prompt_id, r.category) not in seen:
            seen.add((r.prompt_id, r.category))
            per_cat[r.category] += 1
    prompts_note = ", ".join(f"{c}: {_plural(per_cat[c], 'prompt')}" for c in cats)
    return [Heading(2, "Acceptance by prompt category"),
            Table(header, rows, f"Mean ±1σ over {n_note}, each rep's acceptance over that category's prompts "
                                f"only ({prompts_note}).")]


def _theory_blocks(report: Report) -> list:
    if not report.theory:
        return []
    show_spec = len(report.spec_types) > 1
    header = ["Model", *(["spec type"] if show_spec else []), "fitted α", "draft cost c", "predicted best n",
              "measured best n"]
    rows = []
    for t in report.theory:
        rows.append([t.model, *([t.spec_type] if show_spec else []),
                     DASH if t.alpha is None else f"{100 * t.alpha:.1f}%",
                     DASH if t.draft_cost is None else f"{t.draft_cost:.3f}",
                     DASH if t.predicted_best_depth is None else str(t.predicted_best_depth),
                     DASH if t.measured_best_depth is None else str(t.measured_best_depth)])
    blocks: list = [Heading(2, "Theory vs measurement"),
                    Table(header, rows, "i.i.d. acceptance model (Leviathan et al. 2023): E[tokens/step] = "
                                        "(1 − α^(n+1)) / (1 − α), speedup ≈ E / (n·c + 1). α is fitted to the "
                                        "per-position counts pooled over depths; c (one draft step's cost relative "
                                        "to a target step) is fitted to measured τ and speedup; best n is searched "
                                        "over the measured range 0..max depth.")]
    depths = sorted({d for t in report.theory for d in t.predicted_tau})
    header = ["Model", *(["spec type"] if show_spec else []), "quantity", *[f"n={d}" for d in depths]]
    rows = []
    for t in report.theory:
        if not t.predicted_tau:
            continue
        measured = {d: report.cell(t.model, t.spec_type, d) for d in depths}
        lead = [t.model, *([t.spec_type] if show_spec else [])]
        rows.append(lead + ["τ predicted"] + [f"{t.predicted_tau[d]:.2f}" if d in t.predicted_tau else DASH
                                               for d in depths])
        rows.append(lead + ["τ measured"] + [_pm(measured[d].tau, "f2") if measured[d] and measured[d].tau else DASH
                                              for d in depths])
        if t.predicted_speedup:
            rows.append(lead + ["speedup predicted"] + [f"{t.predicted_speedup[d]:.2f}×" if d in t.predicted_speedup
                                                         else DASH for d in depths])
        rows.append(lead + ["speedup measured"] + [_pm(measured[d].speedup, "x2")
                                                    if measured[d] and measured[d].speedup else DASH for d in depths])
    if rows:
        blocks.append(Table(header, rows, "Measured values are mean ±1σ over reps. Predicted τ uses only α; "
                                          "predicted speedup also uses c, which was fitted to these speedups."))
    return blocks


def _significance_blocks(report: Report) -> list:
    if len(report.models) < 2:
        return []
    blocks: list = [Heading(2, "Neighbouring models")]
    if not report.comparisons:
        return blocks + [Para("No pair of neighbouring models shares (prompt, rep) pairs to compare.")]
    show_spec = len(report.spec_types) > 1
    header = [*(["spec type"] if show_spec else []), "depth", "comparison", "difference", "95% CI", "pairs",
              "significant"]
    rows = []
    for spec, c in report.comparisons:
        rows.append([*([spec] if show_spec else []), str(c.depth), f"{c.label_b} − {c.label_a}",
                     f"{_signed(-100 * c.diff, 1)} pp", f"[{_signed(-100 * c.ci_high, 1)}, {_signed(-100 * c.ci_low, 1)}] pp",
                     str(c.n_pairs), "**yes** ✱" if c.significant else "no"])
    return blocks + [Table(header, rows, "Acceptance of each model minus the previous one in run order, paired "
                                         "on (prompt, rep); 95% prompt-level bootstrap interval; ✱ = the "
                                         "interval excludes 0.")]


def _fidelity_blocks(report: Report, depths: Sequence[int]) -> list:
    fid = report.fidelity
    keys, show_spec = _row_keys(report)
    provenance = report.run.provenance.get("models") or {}
    header = ["Model", *(["spec type"] if show_spec else []), "file type", "bits/weight", "mean KLD", "top-1 agreement",
              *[f"acceptance n={d}" for d in depths]]
    rows = []
    for model, spec in keys:
        f = fid.get(model) or {}
        info = provenance.get(model) or {}
        kld = DASH if f.get("kld_mean") is None else (f"{f['kld_mean']:.4f}" + (
            f" ±{f['kld_mean_unc']:.4f}" if f.get("kld_mean_unc") is not None else ""))
        top1 = DASH if f.get("top1_pct") is None else (f"{f['top1_pct']:.2f}" + (
            f" ±{f['top1_pct_unc']:.2f}" if f.get("top1_pct_unc") is not None else "") + "%")
        row = [model, *([spec] if show_spec else []), str(info.get("file_type") or DASH),
               DASH if info.get("bits_per_weight") is None else f"{info['bits_per_weight']:.2f}", kld, top1]
        for d in depths:
            c = report.cell(model, spec, d)
            row.append(_pm(c.acceptance, "pct") if c and c.acceptance else DASH)
        rows.append(row)
    references = sorted({str(f.get("reference")) for f in fid.values() if f.get("reference")})
    blocks: list = [Heading(2, "Fidelity and acceptance"),
                    Table(header, rows, "KLD and top-1 agreement against the reference "
                                        f"({', '.join(references) or 'not recorded'}) from llama-perplexity "
                                        "--kl-divergence, ± its standard error; acceptance mean ±1σ over reps.")]
    if report.correlations:
        header = [*(["spec type"] if len(report.spec_types) > 1 else []), "depth", "acceptance vs", "models",
                  "Pearson r (p)", "Spearman ρ (p)"]
        rows = []
        for c in report.correlations:
            against = "top-1 agreement" if c.against == "top1_pct" else "mean KLD"
            if c.pearson_r is None:
                pr = sr = f"n/a: {c.why_none}"
            else:
                pr, sr = f"{c.pearson_r:+.3f} ({_p(c.pearson_p)})", f"{c.spearman_rho:+.3f} ({_p(c.spearman_p)})"
            rows.append([*([c.spec_type] if len(report.spec_types) > 1 else []), str(c.depth), against,
                         str(c.n_models), pr, sr])
        blocks.append(Table(header, rows, "Correlation across models of mean acceptance at each depth with each "
                                          "model's fidelity, two-sided p (scipy.stats.pearsonr; Spearman p exact "
                                          f"by permutation up to {EXACT_SPEARMAN_MAX} models)."))
    blocks.append(Image("acceptance_vs_top1.png", "acceptance vs top-1 agreement"))
    return blocks


def _all_cells_blocks(report: Report) -> list:
    header, rows, constant = _display_columns(report.rows)
    note = "Every cell as exported to results.csv/json (mean ±1σ over n_reps reps; CIs are 95% prompt bootstrap)."
    if constant:
        note += " Same in every row, so not shown: " + "; ".join(constant) + "."
    return [Heading(2, "All cells"), Table(header, rows, note)]


def _missing_text(missing: Sequence[tuple[int, str]]) -> str:
    if not missing:
        return "none"
    by_rep: dict[int, list[str]] = defaultdict(list)
    for rep, prompt in missing:
        by_rep[rep].append(prompt)
    parts, listed = [], 0
    for rep, prompts in by_rep.items():
        if listed >= MAX_LISTED:
            break
        shown = prompts[:MAX_LISTED - listed]
        listed += len(shown)
        parts.append(f"rep {rep}: " + ", ".join(shown))
    more = len(missing) - listed
    return "; ".join(parts) + (f"; … and {more} more" if more > 0 else "")


def _completeness_blocks(report: Report) -> list:
    blocks: list = [Heading(2, "Completeness")]
    comp = report.completeness
    planned = sum(c.planned or 0 for c in comp)
    reps, n_prompts = report.planned_reps, len(report.prompt_ids)
    if all(not c.missing and not c.failed_rows for c in comp):
        return blocks + [Para(f"All {planned} planned requests ({_plural(reps, 'rep')} × "
                              f"{_plural(n_prompts, 'prompt')} per cell, {_plural(len(comp), 'cell')}) succeeded, "
                              "none retried.")]
    show_spec = len({c.spec_type for c in comp if c.depth > 0}) > 1
    header = ["Model", *(["spec type"] if show_spec else []), "depth", "ok / planned", "failed rows", "retries",
              "missing (rep: prompts)"]
    rows = []
    for c in comp:
        rows.append([c.model, *([c.spec_type] if show_spec else []), str(c.depth),
                     f"{c.ok} / {c.planned if c.planned is not None else 'not planned'}",
                     str(c.failed_rows), str(c.retries), _missing_text(c.missing)])
    blocks.append(Table(header, rows, f"Planned per cell = {_plural(reps, 'rep')} × {_plural(n_prompts, 'prompt')}. A failed row is one "
                                      "failed attempt; a retry is an attempt after the first. Missing = no ok "
                                      "request for that (rep, prompt)."))
    errors = [f"{c.model} depth {c.depth}: {count}× `{text}`" for c in comp for text, count in c.errors]
    if errors:
        blocks.append(Para("Errors of failed rows:"))
        blocks.append(Bullets(errors[:MAX_LISTED] + ([f"… and {len(errors) - MAX_LISTED} more"]
                                                     if len(errors) > MAX_LISTED else [])))
    return blocks


def _crosscheck_blocks(report: Report) -> list:
    bad = report.crosscheck
    blocks: list = [Heading(2, "Cross-check of the three tallies")]
    ok = sum(1 for r in report.records if r.status == "ok")
    if not bad:
        return blocks + [Para(f"Response timings, /metrics deltas and the server log agreed on all {ok} ok "
                              "requests.")]
    blocks.append(Para(f"{len(bad)} of {ok} ok requests have tallies that disagree (`crosscheck` ≠ ok):"))
    show_spec = len(report.spec_types) > 1
    header = ["Model", *(["spec type"] if show_spec else []), "depth", "rep", "prompt", "crosscheck"]
    rows = [[r.model_label, *([r.spec_type] if show_spec else []), str(r.depth), str(r.rep), r.prompt_id,
             r.crosscheck or "not checked"] for r in bad[:MAX_LISTED]]
    note = f"… and {len(bad) - MAX_LISTED} more in the store." if len(bad) > MAX_LISTED else None
    return blocks + [Table(header, rows, note)]


def _footer_blocks(report: Report) -> list:
    run, cfg, prov = report.run, report.run.config, report.run.provenance
    engine = prov.get("engine") or {}
    source = engine.get("source") or {}
    hw = prov.get("hardware") or {}
    sampling = cfg.get("sampling") or {}
    drafting = cfg.get("drafting") or {}
    tool = prov.get("tool") or {}
    src = (f"{source.get('name', '?')} {source.get('version', '')} sdist sha256 `{source.get('sdist_sha256')}`"
           if source else "not recorded (not built from the pinned sdist)")
    seed = sampling.get("seed")
    reps = report.planned_reps
    seeds = f"{seed}…{seed + reps - 1}" if isinstance(seed, int) and reps > 1 else str(seed)
    cats = Counter()
    for pid, cat in dict((r.prompt_id, r.category) for r in report.records).items():
        cats[cat] += 1
    drafting_extra = ", ".join(f"{k} {drafting[k]}" for k in ("p_min", "n_min") if drafting.get(k) is not None)
    items = [
        f"Run {run.id}, key `{run.run_key}`" + (f", name {run.name}" if run.name else "") +
        f"; state {run.state}; created {_utc(run.created_at)}, last write {_utc(run.updated_at)}"
        + (f", finished {_utc(run.finished_at)}" if run.finished_at else "")
        + f"; specsweep {run.tool_version or tool.get('version') or '?'}.",
        f"Engine: llama-server {engine.get('version') or '?'}, backend {engine.get('backend') or '?'}; "
        f"source {src}.",
        f"Hardware: CPU {hw.get('cpu') or '?'}" + (f" ({hw['cpu_count']} cores)" if hw.get("cpu_count") else "")
        + f"; GPUs: {'; '.join(hw.get('gpus') or []) or 'none'}" + (f"; {hw['platform']}" if hw.get("platform") else "")
        + ".",
        f"Protocol: prompts {cfg.get('prompts')} ({len(report.prompt_ids)} prompts"
        + (": " + ", ".join(f"{c} {n}" for c, n in sorted(cats.items())) if cats else "") + ")"
        + f"; max_tokens {sampling.get('max_tokens')}; temperature {sampling.get('temperature')}"
        + (f"; thinking {'on' if sampling.get('thinking') else 'off'}" if "thinking" in sampling else "")
        + f"; {_plural(reps, 'rep')}, seed{'s' if reps > 1 else ''} {seeds} (one per rep)"
        + f"; spec type {drafting.get('spec_type')}, depths {', '.join(map(str, drafting.get('depths') or []))}"
        + (f", {drafting_extra}" if drafting_extra else "") + ".",
    ]
    models = prov.get("models") or {}
    items += _hf_items(models)
    header = ["Model", "file", "type", "size", "bits/weight", "sha256"]
    rows = []
    draft_of = {m.get("label"): m.get("draft_model") for m in cfg.get("models", [])}
    for label in list(dict.fromkeys([*report.models, *models])):
        info = models.get(label) or {}
        rows.append([label, Path(str(info.get("path") or "?")).name, str(info.get("file_type") or DASH),
                     _size(info.get("size_bytes")),
                     DASH if info.get("bits_per_weight") is None else f"{info['bits_per_weight']:.2f}",
                     f"`{str(info.get('sha256') or '?')[:16]}…`"])
    note = None
    drafts = {m: Path(str(d)).name for m, d in draft_of.items() if d}
    if len(set(drafts.values())) == 1 and len(drafts) == len(draft_of):
        note = f"Draft model for every model: {next(iter(drafts.values()))}."
    elif drafts:
        note = "Draft models: " + ", ".join(f"{m}: {d}" for m, d in drafts.items()) + "."
    return [Heading(2, "Provenance"), Bullets(items), Table(header, rows, note)]


def _hf_items(models: dict) -> list[str]:
    """One bullet per Hugging Face repository the models came from: revision, and which file
    each quant loaded and which file drafted for it."""
    repos: dict[tuple, list[str]] = {}
    for label, info in models.items():
        hf = info.get("hf") if isinstance(info, dict) else None
        if not hf:
            continue
        files = hf.get("files") or [{}]
        loaded = str(files[0].get("path", "?")) + (f" (+{len(files) - 1} parts)" if len(files) > 1 else "")
        draft = info.get("draft_model") or {}
        drafted = (f", drafted by {Path(str(draft.get('path'))).name} ({draft.get('chosen')})" if draft.get("path")
                   else "")
        repos.setdefault((hf.get("repo"), hf.get("revision"), hf.get("cache")), []).append(
            f"{label} = {loaded}{drafted}")
    return [f"Hugging Face cache: {repo} at revision `{str(rev)[:12]}` ({cache}); " + "; ".join(rows) + "."
            for (repo, rev, cache), rows in repos.items()]


# ---------------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def blocks_to_markdown(blocks: Sequence, images: Iterable[str] = ()) -> str:
    """Markdown for the blocks; an Image becomes a relative link only if it is in ``images``
    (the PNG written next to report.md)."""
    have = set(images)
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(map(_md_cell, b.header)) + " |",
                     "|" + "|".join("---" for _ in b.header) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in b.rows]
            if b.note:
                lines += ["", f"_{b.note}_"]
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            if b.name in have:
                out.append(f"![{b.alt}]({b.name})")
            continue
    return "\n\n".join(out) + "\n"


_INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def _inline_html(text: str) -> str:
    """**bold** and `code` to HTML; everything else escaped."""
    parts, pos = [], 0
    for m in _INLINE.finditer(text):
        parts.append(html.escape(text[pos:m.start()]))
        parts.append(f"<strong>{html.escape(m.group(1))}</strong>" if m.group(1) is not None
                     else f"<code>{html.escape(m.group(2))}</code>")
        pos = m.end()
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#1b1f24}
h1{font-size:1.6em;border-bottom:2px solid #d0d7de;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f3f5f7}td.num{text-align:right}
tbody tr:nth-child(even){background:#fafbfc}.note{color:#57606a;font-size:.9em;margin:.2em 0 1em;max-width:1100px}
img{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}code{font-size:.92em;background:#f3f5f7;padding:0 .2em}
.scroll{overflow-x:auto}
"""


_NUMERIC = re.compile(r"^([+\-−]?\d|\[|–$)")


def _td(text: str) -> str:
    """Numbers (and '–', '[low, high]') right-aligned so digits line up; words left."""
    return f'<td class="num">{_inline_html(text)}</td>' if _NUMERIC.match(text) else f"<td>{_inline_html(text)}</td>"


def blocks_to_html(blocks: Sequence, images: dict[str, bytes], title: str) -> str:
    """A self-contained page: CSS inline, plots as base64 data URIs, no external resources."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in b.rows)
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
            if b.note:
                body.append(f'<p class="note">{_inline_html(b.note)}</p>')
        elif isinstance(b, Image) and b.name in images:
            data = base64.b64encode(images[b.name]).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}" '
                        f'data-name="{html.escape(b.name)}"></figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def render_markdown(store: Store, run: RunRow, plots: Iterable[str] = ()) -> str:
    """The whole report as Markdown. ``plots``: names of PNGs written next to it, to link."""
    return blocks_to_markdown(document(build_report(store, run)), plots)


def _json_payload(report: Report) -> dict:
    run = report.run

    def clean(obj):
        """Round floats like the CSV; tuples to lists; keys to strings (JSON has no int keys)."""
        if isinstance(obj, float):
            return _round(obj)
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    categories = []
    for cat, cells in report.by_category.items():
        for c in cells:
            categories.append({"category": cat, "model": c.key.model_label, "spec_type": c.key.spec_type,
                               "depth": c.key.depth, "n_reps": c.n_reps, "n_requests": c.n_requests,
                               **{name: (asdict(getattr(c, name)) if getattr(c, name) else None)
                                  for name in ("acceptance", "tau", "decode_tps", "speedup")}})
    return clean({
        "format": REPORT_FORMAT,
        "columns": {f.name: f.metadata["doc"] for f in fields(ReportRow) if f.metadata["doc"]},
        "run": {"id": run.id, "run_key": run.run_key, "name": run.name, "state": run.state,
                "created_at": run.created_at, "updated_at": run.updated_at, "finished_at": run.finished_at,
                "tool_version": run.tool_version, "config": run.config, "provenance": run.provenance,
                "notes": run.notes},
        "rows": [asdict(r) for r in report.rows],
        "per_position": [asdict(p) for p in report.positions],
        "by_category": categories,
        "neighbour_comparisons": [{"spec_type": spec, **asdict(c)} for spec, c in report.comparisons],
        "theory": [asdict(t) for t in report.theory],
        "recommendation": asdict(report.recommendation) if report.recommendation else None,
        "fidelity": report.fidelity,
        "correlations": [asdict(c) for c in report.correlations],
        "completeness": [{**asdict(c), "missing": [{"rep": rep, "prompt_id": p} for rep, p in c.missing],
                          "errors": [{"error": e, "count": n} for e, n in c.errors]} for c in report.completeness],
        "crosscheck_disagreements": [{"model": r.model_label, "spec_type": r.spec_type, "depth": r.depth,
                                      "rep": r.rep, "prompt_id": r.prompt_id, "crosscheck": r.crosscheck}
                                     for r in report.crosscheck],
    })


def _write_csv(report: Report, fh) -> None:
    writer = csv.DictWriter(fh, fieldnames=report_columns(), lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: "" if v is None else v for k, v in _row_dict(row).items()})


def _write_json(report: Report, fh) -> None:
    # allow_nan=False: a NaN that slipped through is a bug, not a value to publish
    json.dump(_json_payload(report), fh, indent=2, ensure_ascii=False, allow_nan=False)
    fh.write("\n")


def _open(path: Path, mode: str = "w"):
    try:
        return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def export_csv(store: Store, run: RunRow, path: Path | str) -> Path:
    """results.csv: one line per ReportRow, header = its field names; empty = no value."""
    path = Path(path)
    with _open(path) as fh:
        _write_csv(build_report(store, run), fh)
    return path


def export_json(store: Store, run: RunRow, path: Path | str) -> Path:
    """results.json: run metadata (config, provenance), the ReportRows, per-position acceptance,
    categories, comparisons, theory, fidelity, completeness and cross-check disagreements."""
    path = Path(path)
    with _open(path) as fh:
        _write_json(build_report(store, run), fh)
    return path


def _html_for(report: Report, images: dict[str, bytes]) -> str:
    return blocks_to_html(document(report), images, title=f"specsweep report · run {report.run.id}")


def _out_dir(out_dir: Path | str) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"report folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create report folder {out}: {exc.strerror or exc}") from None
    return out


def write_html(store: Store, run: RunRow, out_dir: Path | str) -> Path:
    """report.html in ``out_dir``: the Markdown report's content, plots embedded, self-contained."""
    from .plots import render_plots
    path = _out_dir(out_dir) / "report.html"
    with _open(path) as fh:
        report = build_report(store, run)
        fh.write(_html_for(report, render_plots(report)))
    return path


def write_report(store: Store, run: RunRow, out_dir: Path | str) -> dict[str, Path]:
    """report.md, results.csv, results.json, the plots and report.html in ``out_dir``.

    Every output file is opened before anything is computed (hyperfine: a bad path fails at
    once, with one UsageError line). Returns {file name: path}.
    """
    from . import plots
    plots._pyplot()  # fail now, with its one-line message, if matplotlib is missing
    out = _out_dir(out_dir)
    names = ["report.md", "results.csv", "results.json", "report.html"]
    plot_names = _plot_names_for(store, run)
    handles: dict[str, Any] = {}
    try:
        for name in names + plot_names:
            handles[name] = _open(out / name, "wb" if name.endswith(".png") else "w")
        report = build_report(store, run)
        images = plots.render_plots(report)
        for name in plot_names:
            handles[name].write(images[name])
        handles["report.md"].write(blocks_to_markdown(document(report), plot_names))
        _write_csv(report, handles["results.csv"])
        _write_json(report, handles["results.json"])
        handles["report.html"].write(_html_for(report, images))
    finally:
        for fh in handles.values():
            fh.close()
    return {name: out / name for name in names + plot_names}


def _plot_names_for(store: Store, run: RunRow) -> list[str]:
    names = ["acceptance_vs_depth.png", "speed_vs_depth.png", "per_position.png"]
    if store.fidelity(run.id):
        names.append("acceptance_vs_top1.png")
    return names


# ---------------------------------------------------------------------------------------------
# Comparing two runs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareRow:
    """B − A for one metric of one (model, spec type, depth); spread = sqrt(sd_a²/n_a + sd_b²/n_b)."""

    metric: str  # "acceptance", "speedup" or "decode_tps"
    model: str
    spec_type: str
    depth: int
    a: Estimate | None
    b: Estimate | None
    diff: float | None
    spread: float | None
    marked: bool  # |diff| > 2 × spread


COMPARE_METRICS = (("acceptance", "pct", "Acceptance, percentage points"),
                   ("speedup", "x2", "Speedup vs depth 0"),
                   ("decode_tps", "f1", "Decode speed, tok/s"))


def compare_cells(store_a: Store, run_a: RunRow, store_b: Store, run_b: RunRow) -> list[CompareRow]:
    """Match cells by model label, spec type and depth; a cell in one run only has diff None."""
    cells_a = summarize(store_a.requests(run_a.id), n_boot=0)  # intervals are not used here
    cells_b = summarize(store_b.requests(run_b.id), n_boot=0)
    a = {c.key: c for c in cells_a}
    b = {c.key: c for c in cells_b}
    keys = list(dict.fromkeys([*a, *b]))
    out = []
    for metric, _, _ in COMPARE_METRICS:
        for k in keys:
            ea = getattr(a[k], metric) if k in a else None
            eb = getattr(b[k], metric) if k in b else None
            diff = spread = None
            if ea is not None and eb is not None:
                diff = eb.mean - ea.mean
                spread = math.sqrt(ea.sd ** 2 / ea.n + eb.sd ** 2 / eb.n)
            out.append(CompareRow(metric, k.model_label, k.spec_type, k.depth, ea, eb, diff, spread,
                                  marked=diff is not None and spread is not None and abs(diff) > 2 * spread))
    return out


def render_compare(store_a: Store, run_a: RunRow, store_b: Store, run_b: RunRow) -> str:
    """Markdown tables of B − A per (model, depth) for acceptance, speedup and decode speed."""
    rows = compare_cells(store_a, run_a, store_b, run_b)
    blocks: list = [Heading(1, "specsweep compare · B − A"),
                    Bullets([f"A: run {run_a.id} `{run_a.run_key[:12]}` in `{store_a.path}` ({run_a.state})",
                             f"B: run {run_b.id} `{run_b.run_key[:12]}` in `{store_b.path}` ({run_b.state})"])]
    specs = {r.spec_type for r in rows if r.depth > 0}
    show_spec = len(specs) > 1
    for metric, kind, title in COMPARE_METRICS:
        mine = [r for r in rows if r.metric == metric and (r.a or r.b)]
        if not mine:
            continue
        depths = sorted({r.depth for r in mine})
        keys = list(dict.fromkeys((r.model, r.spec_type if r.depth > 0 else None) for r in mine))
        keys = list(dict.fromkeys((m, s) for m, s in keys if s is not None or not any(
            km == m and ks is not None for km, ks in keys)))
        scale, digits, unit = {"pct": (100, 1, " pp"), "x2": (1, 2, "×"), "f1": (1, 1, "")}[kind]
        header = ["Model", *(["spec type"] if show_spec else []), *[f"n={d}" for d in depths]]
        table = []
        for model, spec in keys:
            line = [model, *([spec or "none"] if show_spec else [])]
            for d in depths:
                r = next((x for x in mine if x.model == model and x.depth == d
                          and (d == 0 or x.spec_type == spec)), None)
                if r is None or (r.a is None and r.b is None):
                    line.append(DASH)
                elif r.diff is None:
                    line.append("only in A" if r.b is None else "only in B")
                else:
                    text = f"{_signed(scale * r.diff, digits)} ±{scale * r.spread:.{digits}f}{unit}"
                    line.append(text + (" ✱" if r.marked else "") + f" (n={r.a.n}/{r.b.n})")
            table.append(line)
        blocks += [Heading(2, title),
                   Table(header, table, "B − A ± sqrt(sd_A²/n_A + sd_B²/n_B); ✱ = |difference| > 2× that spread; "
                                        "(n=A/B reps).")]
    return blocks_to_markdown(blocks)


# ---------------------------------------------------------------------------------------------
# The sweep's own summary
# ---------------------------------------------------------------------------------------------

def acceptance_table(cells) -> tuple[list[list[str]], str]:
    """Rows = models, columns = draft depths ≥ 1, cells "88.5 ±1.0%"; n goes in the note when it is
    the same for every cell, else into each cell."""
    depths = sorted({c.key.depth for c in cells if c.key.depth > 0})
    models = list(dict.fromkeys(c.key.model_label for c in cells))
    by_key = {(c.key.model_label, c.key.depth): c for c in cells}
    ns = {c.acceptance.n for c in cells if c.key.depth > 0 and c.acceptance}
    rows = [["model", *[f"n={d}" for d in depths]]]
    for model in models:
        row = [model]
        for depth in depths:
            cell = by_key.get((model, depth))
            row.append(cell.acceptance.fmt_pct(with_n=len(ns) > 1) if cell and cell.acceptance else "–")
        rows.append(row)
    note = f"mean ±1σ over {ns.pop()} reps" if len(ns) == 1 else "mean ±1σ over reps (n per cell)"
    return rows, note


def print_main_table(store: Store, run: RunRow) -> None:
    from rich.table import Table as RichTable
    from .progress import console
    rows, note = acceptance_table(summarize(store.requests(run.id)))
    table = RichTable(title=f"acceptance ({note}) · run {run.id}; n = draft depth")
    for header in rows[0]:
        table.add_column(header, justify="right" if header != "model" else "left")
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
