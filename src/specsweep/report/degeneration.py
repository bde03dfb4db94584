"""The report's "Degenerate generations" section: per cell the share of degenerate requests and
acceptance with and without them, the warnings, and the worst generations with an excerpt."""

from __future__ import annotations

from dataclasses import fields

from ..degeneration import NGRAM, Thresholds, degenerate_reasons, excerpt
from ..records import RequestRecord
from .blocks import DASH, Bullets, Heading, Para, Table, _plural, _signed
from .model import DRIVEN_BY_DEGENERATE, PROTOCOL_EXCLUDES_DEGENERATE, Report, ReportRow


def thresholds_text(stored: dict) -> str:
    known = {f.name for f in fields(Thresholds)}
    return Thresholds(**{k: v for k, v in stored.items() if k in known}).as_text()


def protocol_text(excluded: bool) -> str:
    default = "left out of" if PROTOCOL_EXCLUDES_DEGENERATE else "counted in"
    this = ("left out of the headline figures (`--exclude-degenerate`)" if excluded
            else "counted in every figure")
    return (f"Protocol default: degenerate requests are kept in the store, marked, and {default} every figure, "
            f"as in the published table; in this run they are {this}.")


def _acceptance(mean, sd, n_reps, n_requests) -> str:
    if mean is None:
        return DASH
    return f"{100 * mean:.1f} ±{100 * (sd or 0):.1f}% (n={n_reps} reps, {_plural(n_requests, 'request')})"


def _cell_row(row: ReportRow, show_spec: bool) -> list[str]:
    lead = [row.model, *([row.spec_type] if show_spec else []), str(row.depth)]
    share = f"{row.degenerate_n} / {row.degenerate_measured} ({100 * row.degenerate_share:.0f}%)"
    shift = DASH if row.degenerate_shift is None else f"{_signed(100 * row.degenerate_shift, 1)} pp"
    if row.degenerate_warning:
        shift += " ⚠"
    return lead + [share, _acceptance(row.acceptance_all_mean, row.acceptance_all_sd, row.acceptance_all_n,
                                      (row.clean_requests or 0) + row.degenerate_n),
                   _acceptance(row.acceptance_clean_mean, row.acceptance_clean_sd, row.acceptance_clean_n,
                               row.clean_requests or 0), shift]


def _worst_row(r: RequestRecord, show_spec: bool) -> list[str]:
    why = degenerate_reasons(r.degen_tokens, r.degen_repeat_share, r.degen_whitespace_share, r.degen_tail_loop,
                             r.finish_reason == "length")
    return [r.model_label, *([r.spec_type] if show_spec else []), str(r.depth), str(r.rep), r.prompt_id,
            str(r.degen_tokens), f"{r.degen_repeat_share:.2f}", f"{r.degen_whitespace_share:.2f}",
            f"{r.degen_tail_loop}" + (" (cut)" if r.finish_reason == "length" else ""),
            "; ".join(why) if r.degenerate == 1 else "no", f"`{excerpt(r.content, 40)}`" if r.content else DASH]


def degeneration_blocks(report: Report) -> list:
    deg = report.degeneration
    blocks: list = [Heading(2, "Degenerate generations")]
    if deg is None or not deg.measured:
        ok = sum(1 for r in report.records if r.status == "ok")
        return blocks + [Para(f"Not measured: the {ok} ok requests of this run were stored before specsweep "
                              "measured loops and whitespace runs, so this report cannot say whether any "
                              "acceptance rests on degenerate text. A sweep with this version measures it."),
                         Para(protocol_text(deg.excluded if deg else PROTOCOL_EXCLUDES_DEGENERATE))]
    share = f"{100 * deg.degenerate / deg.measured:.1f}%"
    text = (f"**{deg.degenerate} of {deg.measured}** measured ok requests are degenerate ({share}): "
            f"{thresholds_text(deg.thresholds)}. ")
    if deg.unmeasured:
        text += (f"{_plural(deg.unmeasured, 'ok request')} stored before the measure existed "
                 f"{'is' if deg.unmeasured == 1 else 'are'} not measured and counted as not degenerate. ")
    blocks.append(Para(text + protocol_text(deg.excluded)))
    show_spec = len(report.spec_types) > 1
    rows = [_cell_row(r, show_spec) for r in report.rows if r.degenerate_measured]
    header = ["Model", *(["spec type"] if show_spec else []), "depth", "degenerate", "acceptance, all requests",
              "acceptance without degenerate", "shift"]
    blocks.append(Table(header, rows, "Acceptance per rep as in the Acceptance table, mean ±1σ over n reps; "
                                      "shift = without − with; ⚠ = a warning below."))
    if deg.warnings:
        blocks.append(Para(f"⚠ Figures driven by degenerate requests (leaving them out moves acceptance, or the "
                           f"difference from the previous model, by ≥ {100 * DRIVEN_BY_DEGENERATE:.0f} pp):"))
        blocks.append(Bullets(deg.warnings))
    else:
        blocks.append(Para(f"No cell's acceptance, nor its difference from the previous model, moves by "
                           f"≥ {100 * DRIVEN_BY_DEGENERATE:.0f} pp when its degenerate requests are left out."))
    header = ["Model", *(["spec type"] if show_spec else []), "depth", "rep", "prompt", "tokens",
              f"{NGRAM}-gram repeats", "whitespace", "loop at end", "degenerate", "excerpt (start … end)"]
    blocks.append(Table(header, [_worst_row(r, show_spec) for r in deg.worst],
                        f"The {_plural(len(deg.worst), 'worst generation')}, ranked by the largest of the repeat "
                        "share, the whitespace share and the share of tokens in the final loop; (cut) = the "
                        "request ended at max_tokens; ⏎ = newline, · = space in a run of spaces."))
    return blocks
