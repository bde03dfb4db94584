"""Exporters: every output file of a report behind one shape, with its file name in one place.

``write_report`` opens every output before anything is computed (hyperfine: a bad path fails at
once, with one ``Error:`` line), then builds the report once and lets each exporter write.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from ..errors import UsageError
from ..store import RunRow, Store
from ..degeneration import excerpt
from .document import document
from .method_rows import DraftingRow, GridRow, drafting_rows, grid_rows
from .model import (PROTOCOL_EXCLUDES_DEGENERATE, REPORT_FORMAT, Report, ReportRow, _round, _row_dict, build_report,
                    drafting_entries, report_columns)
from . import plots
from .render import blocks_to_html, blocks_to_markdown


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
    columns = report_columns(report.rows)
    several = {"drafting_methods": [asdict(r) for r in drafting_rows(report)],
               "drafter_grid": [asdict(r) for r in grid_rows(report)]} if report.several_drafting else {}
    return clean({
        "format": REPORT_FORMAT,
        "columns": {f.name: f.metadata["doc"] for f in fields(ReportRow) if f.metadata["doc"] and f.name in columns},
        "run": {"id": run.id, "run_key": run.run_key, "name": run.name, "state": run.state,
                "created_at": run.created_at, "updated_at": run.updated_at, "finished_at": run.finished_at,
                "tool_version": run.tool_version, "config": run.config, "provenance": run.provenance,
                "notes": run.notes},
        "rows": [_row_dict(r, columns) for r in report.rows],
        "per_position": [asdict(p) for p in report.positions],
        "by_category": categories,
        "neighbour_comparisons": [{"spec_type": spec, **asdict(c)} for spec, c in report.comparisons],
        "theory": [asdict(t) for t in report.theory],
        "recommendation": asdict(report.recommendation) if report.recommendation else None,
        "fidelity": report.fidelity,
        "correlations": [asdict(c) for c in report.correlations],
        "completeness": [{**asdict(c), "missing": [{"rep": rep, "prompt_id": p} for rep, p in c.missing],
                          "errors": [{"error": e, "count": n} for e, n in c.errors]} for c in report.completeness],
        "degeneration": _degeneration_payload(report),
        "memory": [{"model": p.key.model_label, "spec_type": p.key.spec_type, "depth": p.key.depth,
                    "memory_bytes": p.memory_bytes, "memory_source": p.memory_source, "buffers": p.buffers,
                    "decode_tps": asdict(p.decode_tps) if p.decode_tps else None, "on_frontier": p.on_frontier}
                   for p in report.memory],
        "budget": _budget_payload(report),
        "crosscheck_disagreements": [{"model": r.model_label, "spec_type": r.spec_type, "depth": r.depth,
                                      "rep": r.rep, "prompt_id": r.prompt_id, "crosscheck": r.crosscheck}
                                     for r in report.crosscheck],
        **several,
    })


def _budget_payload(report: Report) -> dict | None:
    choice = report.budget
    if choice is None:
        return None
    def cell(p):
        return {"model": p.key.model_label, "spec_type": p.key.spec_type, "depth": p.key.depth,
                "memory_bytes": p.memory_bytes, "decode_tps": asdict(p.decode_tps)}
    return {"budget_bytes": choice.budget_bytes, "best": cell(choice.best) if choice.best else None,
            "runners_up": [{**cell(r.point), "speed_ratio": asdict(r.ratio)} for r in choice.runners_up],
            "fitting": choice.fitting, "over": choice.over}


def _degeneration_payload(report: Report) -> dict | None:
    deg = report.degeneration
    if deg is None:
        return None
    names = ("model_label", "spec_type", "depth", "rep", "prompt_id", "finish_reason", "degen_tokens",
             "degen_repeat_share", "degen_longest_repeat", "degen_whitespace_share", "degen_tail_loop", "degenerate")
    return {"excluded_from_headline": deg.excluded, "protocol_default_excluded": PROTOCOL_EXCLUDES_DEGENERATE,
            "thresholds": deg.thresholds, "measured": deg.measured, "not_measured": deg.unmeasured,
            "degenerate": deg.degenerate, "warnings": deg.warnings,
            "worst": [{**{n: getattr(r, n) for n in names}, "excerpt": excerpt(r.content)} for r in deg.worst]}


def _write_csv(report: Report, images: dict[str, bytes], fh) -> None:
    """results.csv: one line per ReportRow, header = its field names; empty = no value."""
    _write_rows(fh, report_columns(report.rows), report.rows)


def _write_rows(fh, columns: Sequence[str], rows: Sequence) -> None:
    writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in _row_dict(row, columns).items()})


def _write_drafting_csv(report: Report, images: dict[str, bytes], fh) -> None:
    """drafting.csv: one line per DraftingRow (runs with several drafting entries)."""
    _write_rows(fh, [f.name for f in fields(DraftingRow)], drafting_rows(report))


def _write_grid_csv(report: Report, images: dict[str, bytes], fh) -> None:
    """drafter_grid.csv: one line per GridRow (runs with several drafting entries)."""
    _write_rows(fh, [f.name for f in fields(GridRow)], grid_rows(report))


def _write_json(report: Report, images: dict[str, bytes], fh) -> None:
    """results.json: run metadata (config, provenance), the ReportRows, per-position acceptance,
    categories, comparisons, theory, fidelity, completeness and cross-check disagreements."""
    # allow_nan=False: a NaN that slipped through is a bug, not a value to publish
    json.dump(_json_payload(report), fh, indent=2, ensure_ascii=False, allow_nan=False)
    fh.write("\n")


def _write_markdown(report: Report, images: dict[str, bytes], fh) -> None:
    """report.md, linking the PNGs written next to it."""
    fh.write(blocks_to_markdown(document(report), list(images)))


def _write_html(report: Report, images: dict[str, bytes], fh) -> None:
    """report.html: the Markdown report's content with the plots embedded, self-contained."""
    fh.write(blocks_to_html(document(report), images, title=f"specsweep report · run {report.run.id}"))


@dataclass(frozen=True)
class Exporter:
    """One output file: its name and how to write it from the report and the rendered plots."""

    file_name: str
    write: Callable[[Report, dict[str, bytes], IO], None]
    binary: bool = False

    def open(self, out_dir: Path):
        path = out_dir / self.file_name
        try:
            return open(path, "wb" if self.binary else "w", **({} if self.binary else {"encoding": "utf-8",
                                                                                         "newline": ""}))
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# Every output of a report, in the order they are listed; the plots follow (plots.plot_names).
MARKDOWN = Exporter("report.md", _write_markdown)
CSV = Exporter("results.csv", _write_csv)
JSON = Exporter("results.json", _write_json)
HTML = Exporter("report.html", _write_html)
EXPORTERS = (MARKDOWN, CSV, JSON, HTML)
# Only for a run with several drafting entries (a run with one keeps exactly the files above).
DRAFTING_EXPORTERS = (Exporter("drafting.csv", _write_drafting_csv), Exporter("drafter_grid.csv", _write_grid_csv))


def _plot_exporter(name: str) -> Exporter:
    return Exporter(name, lambda report, images, fh: fh.write(images[name]), binary=True)


def _out_dir(out_dir: Path | str) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"report folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create report folder {out}: {exc.strerror or exc}") from None
    return out


def export(store: Store, run: RunRow, exporters: Sequence[Exporter], out_dir: Path | str,
           with_plots: bool = False, create: bool = True, budget_bytes: int | None = None) -> dict[str, Path]:
    """Write ``exporters`` (and the plots when ``with_plots``) into ``out_dir``, created unless
    ``create`` is False; returns {file name: path}.

    Every file is opened before anything is computed (hyperfine: a bad path fails at once, with
    one UsageError line); the report and the plots are computed once for all of them.
    """
    needs_images = with_plots or HTML in exporters
    if needs_images:
        plots._pyplot()  # fail now, with its one-line message, if matplotlib is missing
    out = _out_dir(out_dir) if create else Path(out_dir)
    names = plots.plot_names(bool(store.fidelity(run.id)), len(drafting_entries(run.config)) > 1)
    everything = list(exporters) + ([_plot_exporter(name) for name in names] if with_plots else [])
    handles: dict[str, Any] = {}
    try:
        for exporter in everything:
            handles[exporter.file_name] = exporter.open(out)
        report = build_report(store, run, budget_bytes)
        images = plots.render_plots(report) if needs_images else {}
        for exporter in everything:
            exporter.write(report, images, handles[exporter.file_name])
    finally:
        for fh in handles.values():
            fh.close()
    return {exporter.file_name: out / exporter.file_name for exporter in everything}


def write_report(store: Store, run: RunRow, out_dir: Path | str, budget_bytes: int | None = None) -> dict[str, Path]:
    """report.md, results.csv, results.json, report.html and the plots in ``out_dir`` (and
    drafting.csv, drafter_grid.csv for a run with several drafting entries); with
    ``budget_bytes``, the report names the fastest cell that fits that much memory."""
    several = len(drafting_entries(run.config)) > 1
    return export(store, run, EXPORTERS + (DRAFTING_EXPORTERS if several else ()), out_dir, with_plots=True,
                  budget_bytes=budget_bytes)


def export_csv(store: Store, run: RunRow, path: Path | str) -> Path:
    path = Path(path)
    return export(store, run, [replace(CSV, file_name=path.name)], path.parent, create=False)[path.name]


def export_json(store: Store, run: RunRow, path: Path | str) -> Path:
    path = Path(path)
    return export(store, run, [replace(JSON, file_name=path.name)], path.parent, create=False)[path.name]


def write_html(store: Store, run: RunRow, out_dir: Path | str) -> Path:
    return export(store, run, [HTML], out_dir)[HTML.file_name]
