"""Reports read only the store: tables of acceptance, speed and speedup, and everything around them.

Imports run one way: ``model`` (``build_report``: the report model, from the store and
``specsweep.analysis``) → ``blocks`` / ``document`` (the report as document blocks) → ``render``
(Markdown, HTML) → ``exports`` (every output file behind one exporter shape) and ``compare``;
``plots`` depends on the report model only; ``uncertainty`` words the intervals and marks.

Outputs are deterministic for a given store: the t intervals are exact functions of it, the
drafter grid's bootstrap uses a fixed seed, times come
from the store (never "now"), and every collection is in a fixed order.
"""

from .compare import compare_cells, render_compare
from .exports import export_csv, export_json, write_html, write_report
from .model import Report, ReportRow, build_report, report_columns
from .render import print_main_table, render_markdown

__all__ = ["Report", "ReportRow", "build_report", "compare_cells", "export_csv", "export_json",
           "print_main_table", "render_compare", "render_markdown", "report_columns", "write_html",
           "write_report"]
