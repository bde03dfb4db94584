"""How llama-server steps through a speculative generation, replayed offline (plain Python, no torch).

`gemma4_mtp.ChainObjective.leading_matches` gives, for every answer position, how many of the
assistant's chained drafts from there equal the text that follows. The engine does not draft at every
position: each step drafts at the current position, keeps the leading matches, and the target adds
one token of its own, so the next step starts after them. This replays that walk.
"""

from __future__ import annotations


def walk_like_the_engine(matches: list[int], depth: int) -> tuple[int, int, list[int], list[int]]:
    """Replay llama-server's steps over one answer's leading-match counts at draft depth `depth`:
    each step drafts `depth` tokens at the current base, accepts the leading matches, and the target
    adds one token of its own. Returns drafted, accepted, and per position drafted / accepted."""
    drafted = accepted = 0
    pos_d, pos_a = [0] * depth, [0] * depth
    i = 0
    while i < len(matches):
        a = min(matches[i], depth)
        drafted += depth
        accepted += a
        for k in range(depth):
            pos_d[k] += 1
            pos_a[k] += k < a
        i += a + 1
    return drafted, accepted, pos_d, pos_a
