"""Same text, same drafts? Pairs the requests of two runs that asked the same (model, depth, seed,
prompt) and generated the same text, and compares their draft counts.

    PYTHONPATH=src python benchmarks/draft_counts.py A.db[:RUN] B.db[:RUN] [--label-a NAME --label-b NAME]

With the target's text identical, its sampled tokens were identical, so every difference in
(drafted, accepted) comes from the drafter's proposals. On the CPU engine these are reproducible
to the token (a one-slot sweep and a four-slot one agree on every request); on a GPU they need not
be. Written for benchmarks/gpu-draft-counts.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from specsweep.errors import SpecsweepError
from specsweep.store import Store


def requests_by_key(spec: str) -> dict:
    """(model, depth, seed, prompt) → request, for the drafting requests of DB[:RUN] (default: latest)."""
    path, _, run = spec.partition(":")
    try:
        store = Store(Path(path), readonly=True)
        rows = store.requests(store.run(run or "latest").id, status="ok")
    except SpecsweepError as exc:
        raise SystemExit(f"Error: {exc}") from None
    return {(r.model_label, r.depth, r.seed, r.prompt_id): r for r in rows if r.depth > 0 and r.draft_n}


def compare(a: dict, b: dict) -> dict:
    shared = [k for k in a if k in b]
    same_text = [k for k in shared if a[k].content == b[k].content]
    drafted_a = sum(a[k].draft_n for k in same_text)
    accepted_a = sum(a[k].draft_n_accepted for k in same_text)
    drafted_b = sum(b[k].draft_n for k in same_text)
    accepted_b = sum(b[k].draft_n_accepted for k in same_text)

    def rate(k, side):
        return side[k].draft_n_accepted / side[k].draft_n

    return {
        "pairs": len(shared), "same_text": len(same_text),
        "same_counts": sum((a[k].draft_n, a[k].draft_n_accepted) == (b[k].draft_n, b[k].draft_n_accepted)
                           for k in same_text),
        "b_higher": sum(rate(k, b) > rate(k, a) for k in same_text),
        "b_lower": sum(rate(k, b) < rate(k, a) for k in same_text),
        "acceptance_a": accepted_a / drafted_a if drafted_a else None,
        "acceptance_b": accepted_b / drafted_b if drafted_b else None,
        "drafted": (drafted_a, drafted_b), "accepted": (accepted_a, accepted_b),
    }


def row(label_a: str, label_b: str, c: dict) -> str:
    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}%"
    return (f"| {label_a} | {label_b} | {c['pairs']} | {c['same_text']} | {c['same_counts']} | "
            f"{c['b_higher']} / {c['b_lower']} | {pct(c['acceptance_a'])} ({c['accepted'][0]}/{c['drafted'][0]}) | "
            f"{pct(c['acceptance_b'])} ({c['accepted'][1]}/{c['drafted'][1]}) |")


HEADER = ("| A | B | requests in both | same text | same counts | B higher / lower | acceptance A (same text) "
          "| acceptance B (same text) |\n|---|---|---|---|---|---|---|---|")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="DB[:RUN]")
    ap.add_argument("b", help="DB[:RUN]")
    ap.add_argument("--label-a")
    ap.add_argument("--label-b")
    args = ap.parse_args(argv)
    c = compare(requests_by_key(args.a), requests_by_key(args.b))
    if not c["pairs"]:
        raise SystemExit("Error: the two runs share no (model, depth, seed, prompt) request")
    print(HEADER)
    print(row(args.label_a or args.a, args.label_b or args.b, c))


if __name__ == "__main__":
    main()
