"""How the report words its intervals and significance marks: which interval, why, and when
there are too few prompts for any (``analysis.intervals``; measured in benchmarks/coverage.md)."""

from __future__ import annotations

from ..analysis import MIN_PROMPTS, PairedComparison
from .blocks import DASH, _signed

INTERVAL_NOTE = (
    "95% CIs are t intervals over prompts: estimate ± t × the delete-one-prompt jackknife standard error, "
    "t with the prompts' effective degrees of freedom (prompts − 1, fewer when a few long generations carry "
    "most of the tokens), on the logit scale for acceptance. They speak for prompts like these rather than "
    "for these prompts only, so a "
    "prompt's reps count as one unit and more reps narrow a CI only down to the spread between prompts. "
    "This interval is shown because its coverage, measured at the published 5 prompts × 3 reps, is "
    "close to the nominal 95%, while the percentile bootstrap over prompts used before covered about "
    f"85% (benchmarks/coverage.md). With fewer than {MIN_PROMPTS} prompts no CI or significance mark "
    "is printed: no interval can be trusted on so few. Speedup CIs assume the machine's speed holds "
    "still between reps: measured on a quiet GPU they covered 97% of the time, on a shared CPU whose "
    "speed drifted between reps 74%.")

MARK_NOTE = (f"95% t interval over prompts (how and why: All cells); ✱ = the interval excludes 0; "
             f"too few prompts = fewer than {MIN_PROMPTS}, where no interval can be trusted.")


def significance(c: PairedComparison) -> str:
    """The significance cell: a mark only where an interval exists."""
    if c.significant is None:
        return f"too few prompts ({c.n_prompts})" if c.n_prompts < MIN_PROMPTS else "no interval"
    return "**yes** ✱" if c.significant else "no"


def pp_interval(low: float | None, high: float | None, negate: bool = False) -> str:
    """'[-7.0, +0.7] pp' (of the negated difference when ``negate``), '–' without an interval."""
    if low is None or high is None:
        return DASH
    if negate:
        low, high = -high, -low
    return f"[{_signed(100 * low, 1)}, {_signed(100 * high, 1)}] pp"


POSITION_SE_NOTE = (f"± standard error over prompts (delete-one-prompt jackknife; none with fewer than {MIN_PROMPTS} "
                    "prompts): the steps of one generation are not independent draws")


def position_cell(p: float, se: float | None, steps: int) -> str:
    """'87.7 ±2.5% (n=179)', or '87.7% (n=179)' where there is no standard error."""
    spread = "" if se is None else f" ±{100 * se:.1f}"
    return f"{100 * p:.1f}{spread}% (n={steps})"
