"""Reports read only the store: tables of acceptance, speed and speedup."""

from __future__ import annotations

from .analysis import summarize
from .store import RunRow, Store


def acceptance_table(cells) -> list[list[str]]:
    """Rows = models, columns = draft depths ≥ 1, cells "88.5 ±1.0% (n=3)"."""
    depths = sorted({c.key.depth for c in cells if c.key.depth > 0})
    models = list(dict.fromkeys(c.key.model_label for c in cells))
    by_key = {(c.key.model_label, c.key.depth): c for c in cells}
    rows = [["model", *[f"n={d}" for d in depths]]]
    for model in models:
        row = [model]
        for depth in depths:
            cell = by_key.get((model, depth))
            row.append(cell.acceptance.fmt_pct(with_n=True) if cell and cell.acceptance else "–")
        rows.append(row)
    return rows


def print_main_table(store: Store, run: RunRow) -> None:
    from rich.table import Table
    from .progress import console
    cells = summarize(store.requests(run.id))
    rows = acceptance_table(cells)
    table = Table(title=f"acceptance (mean ±1σ over reps) · run {run.id}")
    for header in rows[0]:
        table.add_column(header)
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
