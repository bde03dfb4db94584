"""Plots of a run (matplotlib, Agg backend): acceptance, speed and per-position acceptance vs depth,
decode speed vs memory, and acceptance vs top-1 agreement when fidelity was measured.

matplotlib is imported lazily (inside ``render_plots``), so ``import specsweep.report`` never
pulls it in; a missing install becomes one UsageError with the command that fixes it. Every plot
has a title, axis labels with units, a legend and a grid; error bars are ±1σ over reps, or the
binomial standard error for per-position counts.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from .model import Report

DPI = 110
WIDE = (12.0, 5.0)
SINGLE = (8.5, 5.5)
# Deterministic PNG bytes: no "Software" version string that changes with matplotlib.
PNG_METADATA = {"Software": None}
POSITIONS_SHOWN = 8  # n-gram drafts run to 48 tokens: the first positions carry the comparison


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib", hint="pip install matplotlib") from None
    matplotlib.use("Agg")  # no display, no GUI toolkit: reports are written on headless hosts
    import matplotlib.pyplot as plt
    return plt


def _series_keys(report: Report) -> list[tuple[str, str]]:
    """One line per (model, spec type); the spec type joins the label only when it varies."""
    specs = report.spec_types or ["none"]
    return [(m, s) for m in report.models for s in specs
            if any(c.key.model_label == m and (c.key.spec_type == s or c.key.depth == 0) for c in report.cells)]


def _label(report: Report, key: tuple[str, str]) -> str:
    return f"{key[0]} ({key[1]})" if len(report.spec_types) > 1 else key[0]


def _offsets(n: int, width: float = 0.18) -> list[float]:
    """Small x shifts so the error bars of different models at one depth do not hide each other."""
    if n <= 1:
        return [0.0] * n
    step = width / (n - 1)
    return [-width / 2 + i * step for i in range(n)]


def _finish(ax, title: str, xlabel: str, ylabel: str, integer_x: list[int] | None = None) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if integer_x:
        ax.set_xticks(integer_x)
    ax.grid(True, alpha=0.35)
    if not ax.get_legend_handles_labels()[0]:
        ax.plot([], [], label="no data")  # an empty run still gets a legend saying so
    ax.legend(fontsize="small", loc="best")


def _depth_axis(report: Report) -> list[int]:
    """The depths on a plot's x axis. An n-gram cell's depth is its own draft cap (48, 64 …), far
    beyond the draft depths and not one of them, so when other methods are there it is drawn as a
    line across the axis (``_series``) instead of a point at its cap."""
    ngram = report.ngram_methods
    drafted = [d for d in report.depths if any(c.key.depth == d and c.key.spec_type not in ngram
                                               for c in report.cells)]
    return drafted if any(d > 0 for d in drafted) else report.depths


def _series(ax, report: Report, model: str, spec: str, depths: list[int], getter, scale: float, dx: float,
            label: str, color=None):
    """One method's figures against depth: points with ±1σ bars, or for an n-gram entry whose cap
    is off the axis, its one cell as a dashed line with a ±1σ band. Returns (line, estimates drawn)."""
    if spec in report.ngram_methods:
        cells = [c for c in report.cells if (c.key.model_label, c.key.spec_type) == (model, spec) and c.key.depth > 0]
        cell = cells[0] if cells else None
        e = getter(cell) if cell else None
        if cell is not None and cell.key.depth not in depths:
            if e is None:
                return None, []
            length = f", {cell.draft_length.mean:.1f} drafted per step" if cell.draft_length else ""
            line = ax.axhline(scale * e.mean, linestyle="--", linewidth=1.4, color=color,
                              label=f"{label} (n-gram, no depth: ≤{cell.key.depth}{length})")
            ax.axhspan(scale * (e.mean - e.sd), scale * (e.mean + e.sd), color=line.get_color(), alpha=0.12)
            return line, [e]
    pts = [(d, report.cell(model, spec, d)) for d in depths]
    pts = [(d, getter(c)) for d, c in pts if c and getter(c) and (d == 0 or c.key.spec_type == spec)]
    if not pts:
        return None, []
    bars = ax.errorbar([d + dx for d, _ in pts], [scale * e.mean for _, e in pts], yerr=[scale * e.sd for _, e in pts],
                       marker="o", capsize=4, linewidth=1.6, color=color, label=label)
    return bars.lines[0], [e for _, e in pts]


def _n_text(estimates) -> str:
    ns = sorted({e.n for e in estimates if e is not None})
    return "n=" + "/".join(map(str, ns)) if ns else "no data"


def _acceptance_vs_depth(plt, report: Report):
    fig, ax = plt.subplots(figsize=SINGLE)
    keys = _series_keys(report)
    depths = [d for d in _depth_axis(report) if d > 0]
    used = []
    for i, (key, dx) in enumerate(zip(keys, _offsets(len(keys)))):
        used += _series(ax, report, key[0], key[1], depths, lambda c: c.acceptance, 100, dx, _label(report, key),
                        color=f"C{i % 10}")[1]
    if not used:
        ax.text(0.5, 0.5, "no speculative cells", ha="center", va="center", transform=ax.transAxes)
    _finish(ax, f"Draft acceptance vs draft depth · run {report.run.id}\n(mean ±1σ over reps, {_n_text(used)})",
            "draft depth n (--spec-draft-n-max)", "acceptance rate (%)", depths)
    return fig


def _speed_vs_depth(plt, report: Report):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=WIDE)
    keys = _series_keys(report)
    depths = _depth_axis(report)
    used_tps, used_speedup = [], []
    for i, (key, dx) in enumerate(zip(keys, _offsets(len(keys)))):
        color = f"C{i % 10}"  # the same series in both panels; an n-gram line must not reuse a point's colour
        used_tps += _series(ax1, report, key[0], key[1], depths, lambda c: c.decode_tps, 1, dx, _label(report, key),
                            color=color)[1]
        # depth 0 is 1.0 by definition
        used_speedup += _series(ax2, report, key[0], key[1], depths, lambda c: c.speedup, 1, dx, _label(report, key),
                                color=color)[1]
    ax2.axhline(1.0, color="0.35", linestyle="--", linewidth=1.2, label="no speedup (depth 0)")
    _finish(ax1, f"Decode speed (server side)\n(mean ±1σ over reps, {_n_text(used_tps)})",
            "draft depth n (0 = no speculation)", "decode speed (tokens/s)", depths)
    _finish(ax2, f"Speedup vs depth 0, paired by rep\n(mean ±1σ over reps, {_n_text(used_speedup)})",
            "draft depth n", "speedup (× depth-0 decode speed)", depths)
    fig.suptitle(f"Speed vs draft depth · run {report.run.id}")
    return fig


def _per_position(plt, report: Report):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=WIDE)
    keys = _series_keys(report)
    pooled = [p for p in report.positions if p.depth is None]
    n_max = max((p.position for p in pooled), default=0) + 1
    for key, dx in zip(keys, _offsets(len(keys), 0.12)):
        mine = sorted((p for p in pooled if (p.model, p.spec_type) == key), key=lambda p: p.position)
        pts = [p for p in mine if p.p is not None]
        line = None
        if pts:
            line = ax1.errorbar([p.position + dx for p in pts], [100 * p.p for p in pts],
                                yerr=[100 * (p.p_se or 0) for p in pts], marker="o", capsize=4, linewidth=1.6,
                                label=_label(report, key))
        pts = [p for p in mine if p.alpha is not None]
        if pts:
            ax2.errorbar([p.position + dx for p in pts], [100 * p.alpha for p in pts],
                         yerr=[100 * (p.alpha_se or 0) for p in pts], marker="s", capsize=4, linewidth=1.6,
                         color=line.lines[0].get_color() if line else None, label=_label(report, key))
    if not pooled:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no per-position counts", ha="center", va="center", transform=ax.transAxes)
    ticks = list(range(n_max)) if n_max <= 16 else None
    _finish(ax1, "Unconditional p_i = accepted at i / steps that drafted ≥ i+1\n(± standard error over prompts)",
            "draft position i (0 = first drafted token)", "acceptance at position i (%)", ticks)
    # Three lines: on one, this title ran past the figure's right edge.
    _finish(ax2, "Conditional α_i = accepted ≥ i+1 / reached i\n(reached: drafted ≥ i+1 and accepted ≥ i;"
                 "\n± standard error over prompts)",
            "draft position i (0 = first drafted token)", "acceptance given all earlier accepted (%)", ticks)
    fig.suptitle(f"Acceptance by draft position, pooled over depths and reps · run {report.run.id}")
    return fig


def _acceptance_vs_top1(plt, report: Report):
    fig, ax = plt.subplots(figsize=SINGLE)
    fid = report.fidelity
    corr = {(c.spec_type, c.depth): c for c in report.correlations if c.against == "top1_pct"}
    groups = sorted({(c.key.spec_type, c.key.depth) for c in report.cells if c.key.depth > 0 and c.acceptance})
    markers = "osD^v<>ph*"
    tops: dict[str, tuple[float, float]] = {}
    for i, (spec, depth) in enumerate(groups):
        pts = [(float(fid[c.key.model_label]["top1_pct"]), c) for c in report.cells
               if (c.key.spec_type, c.key.depth) == (spec, depth) and c.acceptance
               and isinstance((fid.get(c.key.model_label) or {}).get("top1_pct"), (int, float))]
        if not pts:
            continue
        cr = corr.get((spec, depth))
        r_text = f"Pearson r={cr.pearson_r:+.3f}" if cr and cr.pearson_r is not None else "Pearson r n/a"
        label = f"n={depth}" + (f" {spec}" if len(report.spec_types) > 1 else "") + f" ({r_text}, {len(pts)} models)"
        pts.sort(key=lambda p: p[0])
        xerr = [float((fid[c.key.model_label].get("top1_pct_unc") or 0.0)) for _, c in pts]
        # A thin dotted line joins one depth's models so the trend reads at a glance.
        ax.errorbar([x for x, _ in pts], [100 * c.acceptance.mean for _, c in pts],
                    xerr=xerr, yerr=[100 * c.acceptance.sd for _, c in pts], marker=markers[i % len(markers)],
                    linestyle=":", linewidth=1.0, capsize=4, markersize=7, label=label)
        for x, c in pts:  # where each model's label goes: above its highest error bar
            top = 100 * (c.acceptance.mean + c.acceptance.sd)
            tops[c.key.model_label] = max(tops.get(c.key.model_label, (x, top)), (x, top), key=lambda p: p[1])
    for model, (x, top) in tops.items():  # once per model, not once per depth; boxed so lines don't cross it
        ax.annotate(model, (x, top), textcoords="offset points", xytext=(0, 5), ha="center", va="bottom",
                    fontsize="small", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.9})
    ax.margins(x=0.1, y=0.12)  # room for the model labels at the edges
    _finish(ax, f"Acceptance vs top-1 agreement with the reference · run {report.run.id}\n"
                "(acceptance mean ±1σ over reps, top-1 ± its standard error; one marker per draft depth)",
            "top-1 agreement with the reference (%)", "acceptance rate (%)")
    return fig


def _drafting_methods(plt, report: Report):
    """Per model (one column each): acceptance vs depth, one line per drafting entry, and below it
    each entry's per-position acceptance p_i pooled over its depths."""
    models = report.models or ["(none)"]
    fig, axes = plt.subplots(2, len(models), figsize=(max(6.5, 4.8 * len(models)), 9.0), squeeze=False)
    labels = [e["label"] for e in report.entries]
    depths = [d for d in _depth_axis(report) if d > 0]
    used, used_pos = [], []
    for col, model in enumerate(models):
        ax, ax_pos = axes[0][col], axes[1][col]
        for i, (label, dx) in enumerate(zip(labels, _offsets(len(labels)))):
            color = f"C{i % 10}"
            used += _series(ax, report, model, label, depths, lambda c: c.acceptance, 100, dx, label, color)[1]
            pts = sorted((p for p in report.positions if p.depth is None and (p.model, p.spec_type) == (model, label)
                          and p.p is not None and p.position < POSITIONS_SHOWN), key=lambda p: p.position)
            if pts:
                used_pos += pts
                ax_pos.errorbar([p.position + dx for p in pts], [100 * p.p for p in pts],
                                yerr=[100 * (p.p_se or 0) for p in pts], marker="o", capsize=3, linewidth=1.4,
                                color=color, label=label)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.45 * (high - low))  # headroom: the legend of every entry sits above the data
        _finish(ax, model, "draft depth n (--spec-draft-n-max)", "acceptance rate (%)", depths)
        _finish(ax_pos, f"{model}: by draft position (pooled over depths)",
                "draft position i (0 = first drafted token)", "acceptance at position i (%, ± SE over prompts)",
                list(range(max((p.position for p in used_pos), default=0) + 1)))
    fig.suptitle(f"Drafting methods · run {report.run.id} (acceptance mean ±1σ over reps, {_n_text(used)})")
    return fig


def _memory_frontier(plt, report: Report):
    """Decode speed against the memory each cell used; the frontier joined by a step line."""
    fig, ax = plt.subplots(figsize=SINGLE)
    points = [p for p in report.memory if p.memory_bytes is not None and p.decode_tps is not None]
    mib = 2 ** 20
    depths = sorted({p.key.depth for p in points})
    markers = "osD^v<>ph*"
    for i, depth in enumerate(depths):
        mine = [p for p in points if p.key.depth == depth]
        ax.errorbar([p.memory_bytes / mib for p in mine], [p.decode_tps.mean for p in mine],
                    yerr=[p.decode_tps.sd for p in mine], marker=markers[i % len(markers)], linestyle="none",
                    capsize=3, markersize=7, label=f"depth {depth}" + (" (no speculation)" if depth == 0 else ""))
    front = sorted((p for p in points if p.on_frontier), key=lambda p: p.memory_bytes)
    if front:
        ax.step([p.memory_bytes / mib for p in front], [p.decode_tps.mean for p in front], where="post",
                color="0.3", linewidth=1.2, linestyle="--", label="frontier")
        for i, p in enumerate(front):  # neighbours on the frontier are often a few MiB apart: above, below
            ax.annotate(f"{p.key.model_label} d{p.key.depth}", (p.memory_bytes / mib, p.decode_tps.mean),
                        textcoords="offset points", xytext=(4, 6 if i % 2 == 0 else -14), fontsize="small")
    if report.budget is not None:
        budget = report.budget.budget_bytes / mib
        largest = max((p.memory_bytes / mib for p in points), default=budget)
        if budget > 1.5 * largest:  # to scale, the line would squash every cell against the y axis
            shown = f"{budget / 1024:.2f} GiB" if budget >= 1024 else f"{budget:.0f} MiB"
            ax.annotate(f"memory budget {shown} →", xy=(0.99, 0.02), xycoords="axes fraction", ha="right",
                        color="tab:red", fontsize=8)
        else:
            ax.axvline(budget, color="tab:red", linewidth=1.2, label="memory budget")
    if not points:
        ax.text(0.5, 0.5, "no cell has both a memory figure and a speed", ha="center", va="center",
                transform=ax.transAxes)
    sources = ", ".join(sorted({p.memory_source for p in points})) or "none"
    _finish(ax, f"Decode speed vs memory · run {report.run.id}\n(mean ±1σ over reps; memory: {sources})",
            "memory used by the server (MiB)", "decode speed (tokens/s)")
    return fig


PLOTS = {
    "acceptance_vs_depth.png": _acceptance_vs_depth,
    "speed_vs_depth.png": _speed_vs_depth,
    "per_position.png": _per_position,
    "acceptance_vs_top1.png": _acceptance_vs_top1,
    "drafting_methods.png": _drafting_methods,
    "memory_frontier.png": _memory_frontier,
}


def plot_names(has_fidelity: bool, several_drafting: bool = False) -> list[str]:
    """The PNG files of a report, in order; acceptance_vs_top1.png only with fidelity results,
    drafting_methods.png only with several drafting entries."""
    return [name for name in PLOTS if (has_fidelity or name != "acceptance_vs_top1.png")
            and (several_drafting or name != "drafting_methods.png")]


def render_plots(report: Report) -> dict[str, bytes]:
    """{file name: PNG bytes} for ``plot_names(bool(report.fidelity), report.several_drafting)``."""
    plt = _pyplot()
    out = {}
    for name in plot_names(bool(report.fidelity), report.several_drafting):
        fig = PLOTS[name](plt, report)
        try:
            fig.tight_layout()
            # tight_layout leaves a placeholder layout engine behind, and with one set savefig draws
            # the whole figure once more before the real draw; the layout is done, so drop it
            # (same bytes, a fifth less time).
            fig.set_layout_engine(None)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
        finally:
            plt.close(fig)  # figures are global in pyplot: close each, or a long report leaks them
        out[name] = buf.getvalue()
    return out
