"""Renderers: document blocks to Markdown and to self-contained HTML; the sweep's summary table."""

from __future__ import annotations

import base64
import html
import re
from typing import Iterable, Sequence

from ..analysis import by_drafting, summarize
from ..store import RunRow, Store
from .blocks import Bullets, Heading, Image, Para, Table
from .document import document
from .model import build_report


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


def render_markdown(store: Store, run: RunRow, plots: Iterable[str] = (), budget_bytes: int | None = None) -> str:
    """The whole report as Markdown. ``plots``: names of PNGs written next to it, to link."""
    return blocks_to_markdown(document(build_report(store, run, budget_bytes)), plots)


def _depth_table(cells, text) -> list[list[str]]:
    """Rows = models (and drafting entries when there are several), columns = draft depths ≥ 1,
    each cell ``text(cell)``; "–" where a cell or its figure is missing."""
    depths = sorted({c.key.depth for c in cells if c.key.depth > 0})
    keys = list(dict.fromkeys((c.key.model_label, c.key.spec_type) for c in cells if c.key.depth > 0))
    several = len({spec for _, spec in keys}) > 1  # one row per model and drafting entry
    by_key = {(c.key.model_label, c.key.spec_type, c.key.depth): c for c in cells}
    rows = [["model", *(["drafting"] if several else []), *[f"n={d}" for d in depths]]]
    for model, spec in keys:
        found = [by_key.get((model, spec, depth)) for depth in depths]
        rows.append([model, *([spec] if several else []), *[(c and text(c)) or "–" for c in found]])
    return rows


def acceptance_table(cells) -> tuple[list[list[str]], str]:
    """Cells "88.5 ±1.0%"; n goes in the note when it is the same for every cell, else into each cell."""
    ns = {c.acceptance.n for c in cells if c.key.depth > 0 and c.acceptance}
    rows = _depth_table(cells, lambda c: c.acceptance and c.acceptance.fmt_pct(with_n=len(ns) > 1))
    note = f"mean ±1σ over {ns.pop()} reps" if len(ns) == 1 else "mean ±1σ over reps (n per cell)"
    return rows, note


def speedup_table(cells) -> list[list[str]]:
    """Cells "1.16 ±0.05×": decode speed against depth 0 of the same model, paired by rep."""
    return _depth_table(cells, lambda c: c.speedup and f"{c.speedup.fmt()}×")


def print_main_table(store: Store, run: RunRow, records: list | None = None) -> None:
    """The acceptance (and speedup) table of a run; ``records``: its request rows, if already read."""
    from rich.table import Table as RichTable
    from ..progress import console
    records = store.requests(run.id) if records is None else records
    if run.config.get("exclude_degenerate"):  # the same headline figures as the report
        records = [r for r in records if r.degenerate != 1]
    cells = summarize(by_drafting(records))
    rows, note = acceptance_table(cells)
    titles = [f"acceptance ({note}) · run {run.id}; n = draft depth",
              "speedup over no speculation (decode speed, paired by rep, mean ±1σ)"]
    several = len({c.key.spec_type for c in cells if c.key.depth > 0}) > 1
    tables = (rows,) if several else (rows, speedup_table(cells))  # several methods: see the report
    for title, table_rows in zip(titles, tables):
        if all(cell == "–" for row in table_rows[1:] for cell in row[1:]):
            continue  # no depth-0 baseline: no speedup to show
        table = RichTable(title=title)
        for header in table_rows[0]:
            table.add_column(header, justify="right" if header != "model" else "left")
        for row in table_rows[1:]:
            table.add_row(*row)
        console.print(table)
