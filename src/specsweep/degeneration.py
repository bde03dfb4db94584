"""Degenerate generations: loops and whitespace runs, measured per request from its tokens.

A drafter predicts a loop almost perfectly, so acceptance rises exactly when the target's output
gets worse. Each request's generated tokens get four measures (pure functions, no I/O):

- ``repeat_share``: share of the request's token 4-grams that already occurred earlier in the
  same request (0 = every 4-gram new; a long loop approaches 1).
- ``longest_repeat``: the longest token span that occurs twice in the request (occurrences may
  overlap, so a loop of period p over L tokens gives L − p).
- ``whitespace_share``: share of tokens whose text is whitespace only (blank runs, padding). A
  run of whitespace the model generated token by token merges into fewer tokens when tokenized
  again, and the chat parser may trim it from the end, so generated tokens that the tokenized
  text does not account for count as whitespace too.
- ``tail_loop``: length of the periodic run that ends the generation (period ≤ ``TAIL_PERIOD_MAX``
  tokens, at least two full periods); with ``finish_reason == "length"`` the generation hit
  ``max_tokens`` inside that loop.

A request is *degenerate* when any of the named ``THRESHOLDS`` is reached. They were chosen from
measured distributions on real runs (``benchmarks/degeneration.md``), not guessed.

The tokens are the generated text tokenized again by the target's own tokenizer (llama-server
``/tokenize``, after the timed request); they match the generated ids except where a model chose
a non-canonical split, which does not change any of the measures by more than a token or two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NGRAM = 4  # n of the repeated n-gram share
TAIL_PERIOD_MAX = 64  # longest loop period (tokens) looked for at the end of a generation
MIN_TOKENS = 2 * NGRAM  # a generation shorter than this is too short to judge: never degenerate


@dataclass(frozen=True)
class Thresholds:
    """A request is degenerate when any one of these is reached (see benchmarks/degeneration.md).

    ``repeat_share``: clean prose and code on the measured runs stayed below it (code repeats
    more than prose: indentation and identifiers); a loop over half the output passes it.
    ``whitespace_share``: code indentation stays below it; blank runs pass it.
    ``tail_loop``: a generation cut by max_tokens inside a loop at least this many tokens long.
    """

    repeat_share: float = 0.5
    whitespace_share: float = 0.5
    tail_loop: int = 32

    def as_text(self) -> str:
        return (f"{NGRAM}-gram repeat share ≥ {self.repeat_share:.2f}, whitespace-only token share ≥ "
                f"{self.whitespace_share:.2f}, or max_tokens reached inside a loop of ≥ {self.tail_loop} tokens "
                f"(period ≤ {TAIL_PERIOD_MAX})")


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Degeneration:
    """The measures of one generation (see the module docstring)."""

    tokens: int  # generated tokens: the tokenized text's, or the server's count when that is larger
    repeat_share: float
    longest_repeat: int
    whitespace_share: float
    tail_loop: int
    hit_max_tokens: bool

    def reasons(self, t: Thresholds = THRESHOLDS) -> list[str]:
        return degenerate_reasons(self.tokens, self.repeat_share, self.whitespace_share, self.tail_loop, self.hit_max_tokens, t)

    @property
    def degenerate(self) -> bool:
        return bool(self.reasons())


def degenerate_reasons(tokens: int | None, repeat_share: float | None, whitespace_share: float | None,
            tail_loop: int | None, hit_max_tokens: bool, t: Thresholds = THRESHOLDS) -> list[str]:
    """Which thresholds a generation reaches, in words; [] for a clean (or too short) one."""
    if not tokens or tokens < MIN_TOKENS:
        return []
    out = []
    if repeat_share is not None and repeat_share >= t.repeat_share:
        out.append(f"{NGRAM}-gram repeats {repeat_share:.2f}")
    if whitespace_share is not None and whitespace_share >= t.whitespace_share:
        out.append(f"whitespace {whitespace_share:.2f}")
    if hit_max_tokens and tail_loop is not None and tail_loop >= t.tail_loop:
        out.append(f"max_tokens inside a {tail_loop}-token loop")
    return out


def severity(tokens: int | None, repeat_share: float | None, whitespace_share: float | None,
             tail_loop: int | None) -> float:
    """One number to rank generations from worst: the largest of the repeat share, the whitespace
    share and the share of tokens in the final loop (each 0–1)."""
    if not tokens:
        return 0.0
    return max(repeat_share or 0.0, whitespace_share or 0.0, (tail_loop or 0) / tokens)


def repeat_share(ids: Sequence[int], n: int = NGRAM) -> float:
    """Share of the n-grams that already occurred at an earlier position; 0.0 with no n-gram."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple] = set()
    repeated = 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(grams)


def _longest_true_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def longest_repeat(ids: Sequence[int]) -> int:
    """Length of the longest span occurring at two positions (they may overlap): the longest run
    of t[i] == t[i + s] over all shifts s. O(n²) comparisons, vectorized per shift."""
    arr = np.asarray(ids, dtype=np.int64)
    best = 0
    for shift in range(1, len(arr)):
        if len(arr) - shift <= best:
            break
        best = max(best, _longest_true_run(arr[shift:] == arr[:-shift]))
    return best


def tail_loop(ids: Sequence[int], max_period: int = TAIL_PERIOD_MAX) -> int:
    """Tokens in the periodic run that ends the sequence: the longest suffix with t[i] == t[i − p]
    for a period p ≤ max_period, counted only when it holds at least two full periods."""
    arr = np.asarray(ids, dtype=np.int64)
    best = 0
    for period in range(1, min(max_period, len(arr) // 2) + 1):
        same = arr[period:] == arr[:-period]
        mismatches = np.flatnonzero(~same)
        run = len(same) - (mismatches[-1] + 1) if len(mismatches) else len(same)
        if run >= period:
            best = max(best, int(run) + period)
    return best


def is_whitespace_piece(piece) -> bool:
    return isinstance(piece, str) and piece != "" and piece.strip() == ""


def measure(ids: Sequence[int], pieces: Sequence, hit_max_tokens: bool, generated: int | None = None) -> Degeneration:
    """All measures of one generation from its token ids and their texts (same length).

    ``generated``: how many tokens the server generated (EOS excluded), when known; any it
    generated beyond ``len(ids)`` count as whitespace (see the module docstring)."""
    if len(ids) != len(pieces):
        raise ValueError(f"{len(ids)} token ids but {len(pieces)} pieces")
    n = len(ids)
    total = max(n, generated or 0)
    blank = sum(map(is_whitespace_piece, pieces)) + (total - n)
    return Degeneration(
        tokens=total,
        repeat_share=round(repeat_share(ids), 4),
        longest_repeat=longest_repeat(ids),
        whitespace_share=round(blank / total, 4) if total else 0.0,
        tail_loop=tail_loop(ids),
        hit_max_tokens=hit_max_tokens)


def excerpt(text: str | None, width: int = 60) -> str:
    """The start and the end of a generation on one line (a loop that hit max_tokens shows at the
    end); newlines shown as ⏎ and tabs as →, runs of spaces kept visible as ·."""
    if text is None:
        return ""
    def visible(s: str) -> str:
        return s.replace("\n", "⏎").replace("\t", "→").replace("  ", "··")
    if len(text) <= 2 * width + 3:
        return visible(text)
    return visible(text[:width]) + " … " + visible(text[-width:])
