"""The report as a list of document blocks: one function per section, from the report model."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import fields
from pathlib import Path
from typing import Callable, Sequence

from ..analysis import EXACT_SPEARMAN_MAX, CellSummary, Estimate, PositionRow
from .blocks import (DASH, MAX_LISTED, UNKNOWN, Bullets, Heading, Image, Para, Table, _fmt_kind, _p, _plural,
                     _pm, _signed, _size, _utc)
from .degeneration import degeneration_blocks
from .speed import measurement_blocks, memory_blocks, recommendation_blocks, speed_note
from .methods import drafting_blocks
from .model import Report, ReportRow, drafting_entries, report_columns
from .uncertainty import INTERVAL_NOTE, MARK_NOTE, POSITION_SE_NOTE, position_cell, pp_interval, significance


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
    header = [first, *([report.method_header] if show_spec else []), *[f"n={d}" for d in depths]]
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
    names = report_columns(rows)
    kinds = {f.name: f.metadata["kind"] for f in fields(ReportRow)}
    columns: list[tuple[str, Callable[[ReportRow], str]]] = []
    for name in names:
        if name.endswith(("_sd", "_ci_high")) or kinds[name] == "text":
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
        excluded = report.degeneration is not None and report.degeneration.excluded
        ngram = ("; an n-gram type ignores it and has one cell, under its own draft cap"
                 if report.ngram_methods & set(report.spec_types) else "")
        blocks.append(Table(header, rows, f"Acceptance rate = accepted / drafted tokens per rep, mean ±1σ over "
                                          f"{n_note}; n = --spec-draft-n-max{ngram}."
                            + (" Degenerate requests are left out of this and every headline figure "
                               "(--exclude-degenerate; see Degenerate generations)." if excluded else "")))
        blocks.append(Image("acceptance_vs_depth.png", "acceptance vs draft depth"))
    else:
        blocks.append(Para("No speculative cells (depth ≥ 1) in this run."))
    blocks += degeneration_blocks(report)

    blocks.append(Heading(2, "Speed"))
    if all(c.speed_from is None for c in report.cells):
        blocks.append(Para(speed_note(report) or "Speed not measured."))
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
    blocks += measurement_blocks(report)
    blocks += recommendation_blocks(report)
    blocks += memory_blocks(report)
    if spec_depths:
        blocks += _position_blocks(report)
        blocks += _category_blocks(report, spec_depths)
        blocks += _theory_blocks(report)
        blocks += _significance_blocks(report)
        blocks += drafting_blocks(report)
    if report.fidelity:
        blocks += _fidelity_blocks(report, spec_depths)
    blocks += _all_cells_blocks(report)
    blocks += _completeness_blocks(report)
    blocks += _crosscheck_blocks(report)
    blocks += _footer_blocks(report)
    return blocks


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
    unknown = False
    for title, value, se, steps, n_means in (
            ("Unconditional p_i = accepted at position i / steps that drafted ≥ i+1 tokens", "p", "p_se",
             "drafted_steps", "steps that drafted position i"),
            ("Conditional α_i = steps that accepted ≥ i+1 / steps that drafted ≥ i+1 and accepted ≥ i: "
             "acceptance at i given all earlier were accepted", "alpha", "alpha_se", "alpha_steps",
             "steps that reached position i")):
        header = ["Model", *([report.method_header] if show_spec else []), "depth", *[f"i={i}" for i in range(n_pos)]]
        table = []
        for (model, spec, depth), cells in by_cell.items():
            row = [model, *([spec] if show_spec else []), str(depth)]
            for i in range(n_pos):
                p = cells.get(i)
                v, s, n = (getattr(p, value), getattr(p, se), getattr(p, steps)) if p else (None, None, 0)
                if p is not None and n is None:
                    unknown = True
                    row.append(UNKNOWN)
                else:
                    row.append(DASH if v is None else position_cell(v, s, n))
            table.append(row)
        note = (f" {UNKNOWN} = cannot be computed: the run's requests were stored without per-step draft data "
                "and some drafts ended at exactly i tokens, so the steps that reached position i are not known."
                if value == "alpha" and unknown else "")
        blocks.append(Table(header, table, f"{title}, pooled over reps; {POSITION_SE_NOTE}; n = {n_means}; "
                                           f"i=0 is the first drafted token.{note}"))
    blocks.append(Image("per_position.png", "per-position acceptance"))
    return blocks


def _category_blocks(report: Report, depths: Sequence[int]) -> list:
    cats = report.by_category
    if len(cats) < 2:  # one category: the acceptance table already is that category
        return []
    keys, show_spec = _row_keys(report)
    header = ["Model", *([report.method_header] if show_spec else []), "category", *[f"n={d}" for d in depths]]
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
    header = ["Model", *([report.method_header] if show_spec else []), "fitted α", "draft cost c", "predicted best n",
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
    header = ["Model", *([report.method_header] if show_spec else []), "quantity", *[f"n={d}" for d in depths]]
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
    header = [*([report.method_header] if show_spec else []), "depth", "comparison", "difference", "95% CI", "pairs",
              "significant"]
    rows = []
    for spec, c in report.comparisons:
        rows.append([*([spec] if show_spec else []), str(c.depth), f"{c.label_b} − {c.label_a}",
                     f"{_signed(-100 * c.diff, 1)} pp", pp_interval(c.ci_low, c.ci_high, negate=True),
                     str(c.n_pairs), significance(c)])
    return blocks + [Table(header, rows, "Acceptance of each model minus the previous one in run order, paired "
                                         f"on (prompt, rep); {MARK_NOTE}")]


def _fidelity_blocks(report: Report, depths: Sequence[int]) -> list:
    fid = report.fidelity
    keys, show_spec = _row_keys(report)
    provenance = report.run.provenance.get("models") or {}
    header = ["Model", *([report.method_header] if show_spec else []), "file type", "bits/weight", "mean KLD", "top-1 agreement",
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
        header = [*([report.method_header] if len(report.spec_types) > 1 else []), "depth", "acceptance vs", "models",
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
    note = f"Every cell as exported to results.csv/json (mean ±1σ over n_reps reps). {INTERVAL_NOTE}"
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
    header = ["Model", *([report.method_header] if show_spec else []), "depth", "ok / planned", "failed rows", "retries",
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
        return blocks + [Para(f"The tallies each request has (response timings; /metrics deltas unless it shared "
                              f"its server; the trace log of the request or of its replay) agreed on all {ok} ok "
                              "requests.")]
    blocks.append(Para(f"{len(bad)} of {ok} ok requests have tallies that disagree (`crosscheck` ≠ ok):"))
    show_spec = len(report.spec_types) > 1
    header = ["Model", *([report.method_header] if show_spec else []), "depth", "rep", "prompt", "crosscheck"]
    rows = [[r.model_label, *([r.spec_type] if show_spec else []), str(r.depth), str(r.rep), r.prompt_id,
             r.crosscheck or "not checked"] for r in bad[:MAX_LISTED]]
    note = f"… and {len(bad) - MAX_LISTED} more in the store." if len(bad) > MAX_LISTED else None
    return blocks + [Table(header, rows, note)]


def _entry_text(entry: dict) -> str:
    """One drafting entry for the provenance line: label (spec type, draft file), depths."""
    draft = f", {Path(str(entry['draft_model'])).name}" if entry.get("draft_model") else ""
    extra = "".join(f", {k} {entry[k]}" for k in ("p_min", "n_min") if entry.get(k) is not None)
    return (f"{entry['label']} ({entry.get('spec_type')}{draft}) depths "
            f"{', '.join(map(str, entry.get('depths') or []))}{extra}")


def _source_line(source: dict) -> str:
    """The engine's source as recorded: the pinned sdist by its hash, any other tree (a patched copy,
    a checkout) by its origin and content id, so a modified engine never reads as the pinned one."""
    name = f"{source.get('name', '?')} {source.get('version', '')}"
    if source.get("sdist_sha256"):
        return f"{name} sdist sha256 `{source['sdist_sha256']}`"
    content = source.get("content_id") or source.get("source_id")
    return f"{name}, {source.get('origin', 'origin not recorded')}" + (f", content id `{content[:16]}…`" if content else "")


def _environment_text(environment: dict | None) -> str:
    """The engine variables the servers inherited (GGML_*, LLAMA_*, CUDA_*); nothing for runs from
    before they were recorded or with none set."""
    if not environment:
        return ""
    return "; environment " + ", ".join(f"`{k}={v}`" for k, v in sorted(environment.items()))


def _footer_blocks(report: Report) -> list:
    run, cfg, prov = report.run, report.run.config, report.run.provenance
    engine = prov.get("engine") or {}
    source = engine.get("source") or {}
    hw = prov.get("hardware") or {}
    sampling = cfg.get("sampling") or {}
    drafting = cfg.get("drafting") or {}
    tool = prov.get("tool") or {}
    src = _source_line(source) if source else "not recorded (not built from the pinned sdist)"
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
        f"source {src}" + _environment_text(engine.get("environment")) + ".",
        f"Hardware: CPU {hw.get('cpu') or '?'}" + (f" ({hw['cpu_count']} cores)" if hw.get("cpu_count") else "")
        + f"; GPUs: {'; '.join(hw.get('gpus') or []) or 'none'}"
        + (f" (CUDA {hw['cuda_version']})" if hw.get("cuda_version") else "")
        + (f"; {hw['platform']}" if hw.get("platform") else "")
        + ".",
        f"Protocol: prompts {cfg.get('prompts')} ({len(report.prompt_ids)} prompts"
        + (": " + ", ".join(f"{c} {n}" for c, n in sorted(cats.items())) if cats else "") + ")"
        + f"; max_tokens {sampling.get('max_tokens')}; temperature {sampling.get('temperature')}"
        + (f"; thinking {'on' if sampling.get('thinking') else 'off'}" if "thinking" in sampling else "")
        + f"; {_plural(reps, 'rep')}, seed{'s' if reps > 1 else ''} {seeds} (one per rep)"
        + (f"; spec type {drafting.get('spec_type')}, depths {', '.join(map(str, drafting.get('depths') or []))}"
           + (f", {drafting_extra}" if drafting_extra else "") if not report.several_drafting else
           "; drafting: " + "; ".join(_entry_text(e) for e in drafting_entries(cfg))) + ".",
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
