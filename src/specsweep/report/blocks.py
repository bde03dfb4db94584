"""Document blocks (rendered to Markdown and HTML alike) and how figures are written in them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..analysis import Estimate


UNKNOWN = "?"  # a figure the stored data cannot give (as opposed to DASH: nothing measured)


DASH = "–"  # a figure that does not exist (depth 0 acceptance, a missing cell)


MAX_LISTED = 40  # longest list of missing requests / disagreements printed in full


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
