"""The report model: everything a report shows, computed once from the store by ``build_report``.

One flat record, ``ReportRow`` (one per model × spec type × depth cell), drives the Markdown
"all cells" table, the CSV and the JSON (llama-bench's ``struct test``): their columns come from
``dataclasses.fields(ReportRow)``, never from a hand-kept list. The report reads only the store.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

from ..analysis import (BudgetChoice, CellSummary, Correlation, DrafterGrid, Estimate, MemoryPoint, MethodBest,
                        PairedComparison, PositionRow, Recommendation, SpeedupGap, TheoryRow, budget_choice,
                        by_drafting, cell_memory, correlations, drafter_grid, leader_comparisons, memory_by_cell,
                        neighbour_comparisons, per_position, position_rows, rank_methods, recommend, speedup_gaps,
                        summarize, summarize_by_category, theory_rows)
from ..config import ngram_cap, server_depths
from ..degeneration import THRESHOLDS, severity
from ..records import RequestRecord
from ..store import RunRow, Store


N_BOOT = 2000  # bootstrap draws of the drafter grid's spread intervals (every other interval is t over prompts)


BOOT_SEED = 0  # fixed: the same store always gives the same intervals (golden files rely on it)


REPORT_FORMAT = 1  # version of the JSON layout


# A cell's acceptance (or its difference from the previous model) counts as driven by degenerate
# requests when leaving them out moves it by at least this much: the published table's quants
# differ by 1-2 pp, so a 1 pp shift can reorder them.
DRIVEN_BY_DEGENERATE = 0.01


WORST_LISTED = 10  # requests listed as the worst generations


PROTOCOL_EXCLUDES_DEGENERATE = False  # the protocol's default: every ok request counts, as in the published table


def _col(kind: str = "str", doc: str = "", optional: bool = False):
    """A ReportRow field with how to show it in the Markdown table (``kind``; "text" is exported but
    left out of the all-cells table, its own section shows it) and what it means. An ``optional``
    column is exported only when some row has a value (see ``report_columns``)."""
    return field(metadata={"kind": kind, "doc": doc, "optional": optional})


@dataclass(frozen=True)
class ReportRow:
    """One (model, spec type, depth) cell of a run. Fractions are 0–1 (not %), speeds tok/s.

    ``*_mean``/``*_sd`` are mean ± sample sd over reps (n = ``n_reps``), ``*_ci_low/high`` the
    95% interval of the mean, t over prompts (``analysis.intervals``; none below its
    MIN_PROMPTS prompts). ``vs_prev_*`` compares acceptance with the previous model (in run
    order) at the same spec type and depth: this − previous, paired on (prompt, rep),
    significant when that interval excludes 0 (None: too few prompts to tell).
    """

    model: str = _col(doc="model label")
    spec_type: str = _col(doc="drafting type; 'none' at depth 0")
    drafting: str | None = _col(doc="drafting entry label; only in runs with several [[drafting]] entries",
                                optional=True)
    depth: int = _col("int", "--spec-draft-n-max; 0 = no speculation")
    effective_depth: int | None = _col("int", "longest draft seen")
    draft_length_mean: float | None = _col("f2", "drafted tokens per step that drafted (the depth in effect)")
    draft_length_sd: float | None = _col("f2")
    drafting_share_mean: float | None = _col("pct", "share of target decode steps that carried a draft")
    drafting_share_sd: float | None = _col("pct")
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
    degenerate_excluded: bool = _col("bool", "headline figures of this row leave degenerate requests out")
    degenerate_measured: int = _col("int", "ok requests with a degeneration measure (older runs have none)")
    degenerate_n: int | None = _col("int", "ok requests marked degenerate (loops, whitespace runs)")
    degenerate_share: float | None = _col("pct", "degenerate / measured requests")
    acceptance_all_mean: float | None = _col("pct", "acceptance over every ok request")
    acceptance_all_sd: float | None = _col("pct")
    acceptance_all_n: int | None = _col("int", "reps behind acceptance_all")
    acceptance_clean_mean: float | None = _col("pct", "acceptance without degenerate requests")
    acceptance_clean_sd: float | None = _col("pct")
    acceptance_clean_n: int | None = _col("int", "reps behind acceptance_clean")
    clean_requests: int | None = _col("int", "ok requests not marked degenerate")
    degenerate_shift: float | None = _col("pp", "acceptance without − with degenerate requests")
    vs_prev_clean_diff: float | None = _col("pp", "acceptance this − previous, without degenerate requests")
    degenerate_warning: str | None = _col("text", "why this cell's figures rest on degenerate requests")


def report_columns(rows: Sequence[ReportRow] | None = None) -> list[str]:
    """The CSV header and the JSON row keys: the ReportRow fields, in order; with ``rows``, an
    optional field is left out when no row has a value for it."""
    return [f.name for f in fields(ReportRow) if rows is None or not f.metadata["optional"]
            or any(getattr(r, f.name) is not None for r in rows)]


def _round(value):
    """6 significant digits for CSV/JSON: stable across platforms, far below any spread."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _row_dict(row, columns: Sequence[str] | None = None) -> dict:
    values = asdict(row)
    return {name: _round(values[name]) for name in (values if columns is None else columns)}


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
class Degeneration:
    """Degenerate requests in a run: what the report says about them, computed once."""

    excluded: bool  # headline figures leave them out (the run's --exclude-degenerate)
    thresholds: dict | None  # as stored with the run (the current ones if it has none); None: nothing measured
    measured: int  # ok requests with a measure
    unmeasured: int  # ok requests without one (stored before the measure existed)
    degenerate: int
    warnings: list[str]
    worst: list[RequestRecord]  # measured ok requests, worst first (degenerate ones first)


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
    degeneration: Degeneration | None = None
    # Several drafting entries (cells above are keyed by entry label in their spec_type): the
    # ranking per model, each entry against its model's leader, and the target × drafter grids.
    entries: list[dict] = field(default_factory=list)  # as planned: label, spec_type, draft_model, depths
    methods: list[MethodBest] = field(default_factory=list)
    method_comparisons: list[tuple[str, str, PairedComparison]] = field(default_factory=list)
    method_gaps: list[SpeedupGap] = field(default_factory=list)  # speedup behind the leader, best depths
    grids: list[DrafterGrid] = field(default_factory=list)
    memory: list[MemoryPoint] = field(default_factory=list)  # one per cell: memory used, decode speed, frontier
    budget: BudgetChoice | None = None  # the fastest cell under ``report --budget``

    @property
    def ngram_methods(self) -> set[str]:
        """Labels and spec types of n-gram entries: they ignore the depth, and their cell's depth
        is their own draft cap (``config.server_depths``)."""
        return {name for e in drafting_entries(self.run.config) if ngram_cap(e.get("spec_type")) is not None
                for name in (e["label"], e["spec_type"])}

    @property
    def several_drafting(self) -> bool:
        return len(self.entries) > 1

    @property
    def method_header(self) -> str:
        """What the second key column of a table is: a spec type, or a drafting entry's label."""
        return "drafting" if self.several_drafting else "spec type"

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
    """Prompt ids the run planned, as the sweep stored them with the run's config; a run stored
    before they were recorded falls back to the ids seen (in the order they first ran)."""
    planned = config.get("prompt_ids")
    if isinstance(planned, list):
        return [str(p) for p in planned]
    return list(dict.fromkeys(r.prompt_id for r in sorted(records, key=lambda r: (r.started_at or 0.0, r.prompt_id))))


def drafting_entries(config: dict) -> list[dict]:
    """The stored config's drafting entries (``drafting_axis``, else the one ``drafting`` table),
    each with its ``label`` filled in (the spec type unless named)."""
    entries = config.get("drafting_axis") or [config.get("drafting") or {}]
    return [{**e, "label": e.get("label") or e.get("spec_type") or "none"} for e in entries]


def _completeness(run: RunRow, records: Sequence[RequestRecord], prompts: list[str],
                  reps: int) -> list[CellCompleteness]:
    cfg = run.config
    labels = [m["label"] for m in cfg.get("models", [])]
    entries = drafting_entries(cfg)
    depths = {e["label"]: server_depths(e.get("spec_type"), e.get("depths") or [], e.get("ngram_size_m"))
              for e in entries}
    if len(entries) == 1:
        servers = [(entries[0]["label"] if d > 0 else "none", d) for d in depths[entries[0]["label"]]]
    else:  # as the plan runs it: the baseline once per model, then each entry's depths
        servers = [("none", 0)] if any(0 in (e.get("depths") or []) for e in entries) else []
        servers += [(e["label"], d) for e in entries for d in depths[e["label"]] if d > 0]
    planned = [(m, label, d) for m in labels for label, d in servers]
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


def _est(e: Estimate | None, attr: str):
    return getattr(e, attr) if e is not None else None


def _cell_key(c: CellSummary) -> tuple[str, str, int]:
    return (c.key.model_label, c.key.spec_type, c.key.depth)


def _comparisons(records: Sequence[RequestRecord], spec_types: Sequence[str]) -> list[tuple[str, PairedComparison]]:
    # One call per spec type, so each comparison knows its drafting type (PairedComparison does not).
    return [(spec, cmp) for spec in spec_types
            for cmp in neighbour_comparisons([r for r in records if r.spec_type == spec])]


@dataclass(frozen=True)
class _Views:
    """The same run counted with every ok request and without the degenerate ones."""

    excluded: bool
    all_cells: list[CellSummary]
    clean_cells: list[CellSummary]  # the same objects as all_cells when no request is degenerate
    all_comparisons: list[tuple[str, PairedComparison]]
    clean_comparisons: list[tuple[str, PairedComparison]]
    counts: dict[tuple, tuple[int, int]]  # cell -> (measured ok requests, degenerate ones); empty: none measured

    @property
    def cells(self) -> list[CellSummary]:
        """The headline cells."""
        return self.clean_cells if self.excluded else self.all_cells

    @property
    def comparisons(self) -> list[tuple[str, PairedComparison]]:
        return self.clean_comparisons if self.excluded else self.all_comparisons


def _spec_types(cells: Sequence[CellSummary]) -> list[str]:
    return list(dict.fromkeys(c.key.spec_type for c in cells if c.key.depth > 0))


def _prev(comparisons: Sequence[tuple[str, PairedComparison]]) -> dict[tuple, PairedComparison]:
    # neighbour_comparisons gives earlier − later; a row shows itself − the previous model.
    return {(p.label_b, spec, p.depth): p for spec, p in comparisons}


def _degenerate_fields(key: tuple, views: _Views) -> dict:
    measured, degenerate = views.counts.get(key, (0, 0))
    if not measured:  # stored before the measure existed: "not measured", never a guess
        names = [f.name for f in fields(ReportRow)]
        return {**dict.fromkeys(names[names.index("degenerate_excluded"):]), "degenerate_excluded": views.excluded,
                "degenerate_measured": 0}
    every = {_cell_key(c): c for c in views.all_cells}.get(key)
    clean = {_cell_key(c): c for c in views.clean_cells}.get(key)
    acc_all = every.acceptance if every else None
    acc_clean = clean.acceptance if clean else None
    shift = acc_clean.mean - acc_all.mean if acc_all and acc_clean else None
    prev_all = _prev(views.all_comparisons).get(key)
    prev_clean = _prev(views.clean_comparisons).get(key)
    warnings = []
    if degenerate and key[2] > 0 and acc_all is not None:
        if acc_clean is None:
            warnings.append(f"all {measured} measured requests are degenerate")
        elif abs(shift) >= DRIVEN_BY_DEGENERATE - 1e-12:
            warnings.append(f"acceptance {100 * acc_all.mean:.1f}% with its {degenerate} degenerate of "
                            f"{measured} requests, {100 * acc_clean.mean:.1f}% without ({100 * shift:+.1f} pp)")
    if prev_all is not None and prev_clean is not None:  # degenerate requests on either side count
        a, c = -prev_all.diff, -prev_clean.diff
        if abs(c - a) >= DRIVEN_BY_DEGENERATE - 1e-12:
            warnings.append(f"vs {prev_all.label_a}: {100 * a:+.1f} pp with degenerate requests, "
                            f"{100 * c:+.1f} pp without")
    return dict(
        degenerate_excluded=views.excluded, degenerate_measured=measured,
        degenerate_n=degenerate, degenerate_share=degenerate / measured,
        acceptance_all_mean=_est(acc_all, "mean"), acceptance_all_sd=_est(acc_all, "sd"),
        acceptance_all_n=_est(acc_all, "n"),
        acceptance_clean_mean=_est(acc_clean, "mean"), acceptance_clean_sd=_est(acc_clean, "sd"),
        acceptance_clean_n=_est(acc_clean, "n"),
        clean_requests=clean.n_requests if clean else None, degenerate_shift=shift,
        vs_prev_clean_diff=-prev_clean.diff if prev_clean else None,
        degenerate_warning="; ".join(warnings) or None)


def _report_rows(report_cells: Sequence[CellSummary], completeness: Sequence[CellCompleteness],
                 views: _Views, provenance: dict, fidelity: dict,
                 spec_of: dict[str, str] | None = None) -> list[ReportRow]:
    """One row per cell. With ``spec_of`` (several drafting entries: cells keyed by entry label),
    the row names the entry in ``drafting`` and its spec type in ``spec_type``."""
    missing = {(c.model, c.spec_type, c.depth): len(c.missing) for c in completeness}
    prev = _prev(views.comparisons)
    models = provenance.get("models") or {}
    rows = []
    for c in report_cells:
        k = c.key
        info = models.get(k.model_label) or {}
        fid = fidelity.get(k.model_label) or {}
        cmp = prev.get(_cell_key(c)) if k.depth > 0 else None
        rows.append(ReportRow(
            model=k.model_label, spec_type=spec_of.get(k.spec_type, k.spec_type) if spec_of else k.spec_type,
            drafting=k.spec_type if spec_of else None, depth=k.depth, effective_depth=c.effective_depth,
            draft_length_mean=_est(c.draft_length, "mean"), draft_length_sd=_est(c.draft_length, "sd"),
            drafting_share_mean=_est(c.drafting_share, "mean"), drafting_share_sd=_est(c.drafting_share, "sd"),
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
            vs_prev_ci_low=-cmp.ci_high if cmp and cmp.ci_high is not None else None,
            vs_prev_ci_high=-cmp.ci_low if cmp and cmp.ci_low is not None else None,
            vs_prev_significant=cmp.significant if cmp else None,
            **_degenerate_fields(_cell_key(c), views)))
    return rows


def _views(records: Sequence[RequestRecord], excluded: bool) -> _Views:
    ok = [r for r in records if r.status == "ok"]
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in ok:
        if r.degenerate is not None:
            counts[(r.model_label, r.spec_type, r.depth)][0] += 1
            counts[(r.model_label, r.spec_type, r.depth)][1] += r.degenerate == 1
    all_cells = summarize(records)
    spec_types = _spec_types(all_cells)
    all_comparisons = _comparisons(records, spec_types)
    clean = [r for r in records if r.degenerate != 1]
    if len(clean) == len(records):  # none degenerate (or none measured): the same figures, computed once
        clean_cells, clean_comparisons = all_cells, all_comparisons
    else:
        clean_cells = summarize(clean)
        clean_comparisons = _comparisons(clean, spec_types)
    return _Views(excluded, all_cells, clean_cells, all_comparisons, clean_comparisons,
                  {k: (v[0], v[1]) for k, v in counts.items()})


def _degeneration(run: RunRow, records: Sequence[RequestRecord], rows: Sequence[ReportRow],
                  excluded: bool) -> Degeneration:
    ok = [r for r in records if r.status == "ok"]
    measured = [r for r in ok if r.degenerate is not None]
    rank = {m: i for i, m in enumerate(dict.fromkeys(row.model for row in rows))}
    worst = sorted(measured, key=lambda r: (-(r.degenerate or 0), -severity(
        r.degen_tokens, r.degen_repeat_share, r.degen_whitespace_share, r.degen_tail_loop),
        rank.get(r.model_label, len(rank)), r.depth, r.rep, r.prompt_id))
    warnings = [f"{row.model} depth {row.depth}" + (f" ({row.spec_type})" if row.depth else "")
                + f": {row.degenerate_warning}" for row in rows if row.degenerate_warning]
    return Degeneration(excluded=excluded,
                        thresholds=(run.config.get("degeneration_thresholds") or asdict(THRESHOLDS)) if measured
                        else None,
                        measured=len(measured), unmeasured=len(ok) - len(measured),
                        degenerate=sum(1 for r in measured if r.degenerate == 1), warnings=warnings,
                        worst=worst[:WORST_LISTED])


def build_report(store: Store, run: RunRow, budget_bytes: int | None = None) -> Report:
    """Every statistic a report shows, computed once from the store (never from an engine); with
    ``budget_bytes``, also the fastest cell whose memory fits it."""
    records = by_drafting(store.requests(run.id))  # a drafting entry is a method, even when two share a spec type
    # Degenerate requests stay in the store, marked; headline figures leave them out only when the
    # run asked for it (--exclude-degenerate). Completeness and the request counts use every row.
    excluded = bool(run.config.get("exclude_degenerate", PROTOCOL_EXCLUDES_DEGENERATE))
    views = _views(records, excluded)
    headline = [r for r in records if r.degenerate != 1] if excluded else records
    cells = views.cells
    spec_types = _spec_types(cells)
    models = list(dict.fromkeys(c.key.model_label for c in cells))
    prompts = _planned_prompts(run.config, records)
    config_reps = int(((run.config.get("sampling") or {}).get("reps")) or 0)
    # More reps can be added to an existing run (reps are not in the run key): plan what was seen too.
    reps = max([config_reps] + [r.rep + 1 for r in records])
    completeness = _completeness(run, records, prompts, reps)
    comparisons = views.comparisons
    fidelity = store.fidelity(run.id)

    positions: list[PositionRow] = []
    for c in cells:
        if c.key.depth > 0:
            positions += position_rows(c.key.model_label, c.key.spec_type, c.key.depth, c.per_position)
    for model in models:
        for spec in spec_types:
            recs = [r for r in headline if r.model_label == model and r.spec_type == spec and r.depth > 0]
            if recs:
                positions += position_rows(model, spec, None, per_position(recs))

    sizes = {label: int(info["size_bytes"]) for label, info in (run.provenance.get("models") or {}).items()
             if isinstance(info, dict) and isinstance(info.get("size_bytes"), int)}
    entries = drafting_entries(run.config)
    labels = [e["label"] for e in entries]
    extra: dict = {}
    if len(labels) > 1:
        methods = rank_methods(cells)
        extra = dict(entries=entries, methods=methods,
                     method_comparisons=leader_comparisons(headline, methods),
                     method_gaps=speedup_gaps(headline, methods),
                     grids=[g for d in report_depths(cells) if d > 0
                            for g in [drafter_grid(headline, d, models, _labels_at(cells, labels, d), n_boot=N_BOOT,
                                                   seed=BOOT_SEED)] if g])
    spec_of = {e["label"]: e.get("spec_type") for e in entries} if len(labels) > 1 else None
    rows = _report_rows(cells, completeness, views, run.provenance, fidelity, spec_of)
    memory = cell_memory(cells, memory_by_cell(store.servers(run.id), sizes))
    extra["memory"] = memory
    if budget_bytes is not None:
        extra["budget"] = budget_choice(memory, headline, budget_bytes)
    return Report(
        run=run, records=records, cells=cells, rows=rows, models=models,
        by_category=summarize_by_category(headline),
        comparisons=comparisons, positions=positions,
        theory=theory_rows(cells, positions, models, spec_types),
        recommendation=recommend(cells, sizes),
        fidelity=fidelity,
        correlations=correlations(cells, fidelity) if fidelity else [],
        completeness=completeness,
        crosscheck=[r for r in records if r.status == "ok" and r.crosscheck != "ok"],
        prompt_ids=prompts, planned_reps=reps, degeneration=_degeneration(run, records, rows, excluded), **extra)


def _labels_at(cells: Sequence[CellSummary], labels: Sequence[str], depth: int) -> list[str]:
    """The drafting entries measured at ``depth`` (an n-gram entry has only its own draft cap)."""
    there = {c.key.spec_type for c in cells if c.key.depth == depth}
    return [label for label in labels if label in there]


def report_depths(cells: Sequence[CellSummary]) -> list[int]:
    return sorted({c.key.depth for c in cells})
