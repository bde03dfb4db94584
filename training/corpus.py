"""Instruction/answer chat pairs from text that exists offline on every machine with Python.

The miniatures are asked coding and reasoning questions (specsweep's `mixed-5` suite), so
they are trained on conversations of that shape rather than raw code, which made an earlier
pilot answer chat prompts with whitespace runs and loops. Sources, all deterministic:

- the running interpreter's standard library (`sysconfig`'s stdlib path): every documented
  function becomes "write a function that <docstring>" → code, and "explain this code" →
  its docstring and a walk through the names it uses; every module, in chunks, becomes
  "show part N of module M" → its source;
- `pydoc_data.topics` (the language reference shipped with CPython) → "explain <topic>";
- generated reasoning problems with worked, checked answers: work rates, unit arithmetic,
  knights and knaves solved by enumerating every case, binary-search traces, classic bugs.

The corpus depends on the Python version that builds it; the model card records that
version and the corpus sha256.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import random
import sys
import sysconfig
import textwrap
from fractions import Fraction
from pathlib import Path

PROMPT_SUITES = Path(__file__).resolve().parents[1] / "src" / "specsweep" / "prompts"
MAX_CODE_CHARS = 1800
MAX_TOPIC_CHARS = 1600
SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "turtledemo", "lib2to3", "__pycache__"}


def stdlib_functions() -> list[tuple[str, str, str, str]]:
    """(module, name, docstring, source) of every documented function in the stdlib, in path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        if SKIP_PARTS & set(path.relative_to(root).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        lines = text.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            # Slice lines ourselves: ast.get_source_segment re-splits the whole file per call.
            src = "\n".join(lines[node.lineno - 1:node.end_lineno])
            if not doc or not src or len(src) > MAX_CODE_CHARS or node.name.startswith("__"):
                continue
            out.append((module, node.name, doc.strip(), textwrap.dedent(src)))
    return out


def _signature(src: str) -> str:
    first = src.split(":\n", 1)[0].strip()
    return first.removeprefix("async ").removeprefix("def ").strip()


def _names_used(src: str) -> list[str]:
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    seen: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name:
                seen.setdefault(name, None)
    return list(seen)[:6]


def code_pairs(rng: random.Random) -> list[tuple[str, str]]:
    pairs = []
    for module, name, doc, src in stdlib_functions():
        summary = doc.split("\n\n")[0].replace("\n", " ")
        calls = _names_used(src)
        walk = ("It relies on " + ", ".join(f"`{c}`" for c in calls) + "." if calls else
                "It needs no helper calls.")
        if rng.random() < 0.5:
            ask = rng.choice(["Write a Python function `{sig}` that does the following: {s}",
                              "Implement `{sig}` in Python. {s} Explain the code briefly.",
                              "How would you write `{name}` from the `{mod}` module? {s}"])
            question = ask.format(sig=_signature(src), s=summary, name=name, mod=module)
            answer = (f"Here is an implementation of `{name}`:\n\n```python\n{src}\n```\n\n"
                      f"{summary} {walk}")
        else:
            ask = rng.choice(["Explain what this Python function does:\n\n```python\n{src}\n```",
                              "What is wrong or surprising in this code, if anything? Explain it.\n\n"
                              "```python\n{src}\n```",
                              "Describe this function step by step:\n\n```python\n{src}\n```"])
            question = ask.format(src=src)
            answer = f"The function `{name}` (from `{module}`) works as follows.\n\n{doc}\n\n{walk}"
        pairs.append((question, answer))
    return pairs


SOURCE_CHUNK_CHARS = 2400


def source_pairs(rng: random.Random) -> list[tuple[str, str]]:
    """Whole stdlib modules, a chunk per answer, so the model also learns to write long code."""
    root = Path(sysconfig.get_paths()["stdlib"])
    pairs = []
    for path in sorted(root.rglob("*.py")):
        if SKIP_PARTS & set(path.relative_to(root).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, ValueError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        lines, chunk, part = text.splitlines(), [], 1
        for line in lines + [None]:
            if line is not None:
                chunk.append(line)
            if chunk and (line is None or sum(len(x) + 1 for x in chunk) > SOURCE_CHUNK_CHARS):
                ask = rng.choice(["Show part {n} of the source code of the Python module `{m}`.",
                                  "Continue writing the `{m}` module (part {n}).",
                                  "Write the code of `{m}`, part {n}."])
                pairs.append((ask.format(n=part, m=module), "```python\n" + "\n".join(chunk) + "\n```"))
                chunk, part = [], part + 1
    return pairs


def topic_pairs(rng: random.Random) -> list[tuple[str, str]]:
    from pydoc_data.topics import topics
    pairs = []
    for key in sorted(topics):
        text = topics[key].strip()
        for start in range(0, min(len(text), 4 * MAX_TOPIC_CHARS), MAX_TOPIC_CHARS):
            part = text[start:start + MAX_TOPIC_CHARS]
            q = rng.choice(["Explain {k} in Python.", "What does the Python reference say about {k}?",
                            "How does {k} work in Python? Give the details."]).format(k=f"`{key}`")
            pairs.append((q, part))
    return pairs


# ---- generated reasoning problems: every answer is computed, shown step by step and checked ----

def _fmt_hours(h: Fraction) -> str:
    minutes = h * 60
    return f"{int(h)} h {int(minutes % 60)} min" if minutes.denominator == 1 else f"{float(h):.2f} h"


def work_rate_problem(rng: random.Random) -> tuple[str, str]:
    a, b, d = rng.choice([2, 3, 4, 5, 6]), rng.choice([3, 4, 6, 8, 12]), rng.choice([6, 8, 12, 24])
    rate = Fraction(1, a) + Fraction(1, b) - Fraction(1, d)
    if rate <= 0:
        d = d * 4
        rate = Fraction(1, a) + Fraction(1, b) - Fraction(1, d)
    t = 1 / rate
    q = (f"Pipe A fills a tank in {a} hours and pipe B in {b} hours, while a drain empties it in {d} hours. "
         f"All three are open. How long until the empty tank is full? Show every step.")
    ans = (f"Work with rates in tanks per hour.\n\n"
           f"1. A fills 1/{a} of the tank per hour, B fills 1/{b}, the drain removes 1/{d}.\n"
           f"2. Together: 1/{a} + 1/{b} - 1/{d} = {rate} of the tank per hour.\n"
           f"3. Time = 1 / ({rate}) = {t} hours = {_fmt_hours(t)}.\n\n"
           f"Check: in {t} hours A adds {t / a}, B adds {t / b}, the drain removes {t / d}; "
           f"{t / a} + {t / b} - {t / d} = {t / a + t / b - t / d}, one full tank. "
           f"The tank is full after {_fmt_hours(t)}.")
    return q, ans


def speed_problem(rng: random.Random) -> tuple[str, str]:
    v1, v2 = rng.randint(40, 90), rng.randint(40, 90)
    dist = (v1 + v2) * rng.randint(1, 4)
    t = Fraction(dist, v1 + v2)
    q = (f"Two trains start {dist} km apart and drive towards each other at {v1} km/h and {v2} km/h. "
         f"When and where do they meet? Reason step by step and verify.")
    ans = (f"The gap closes at {v1} + {v2} = {v1 + v2} km/h.\n\n"
           f"1. Time to meet: {dist} / {v1 + v2} = {t} h.\n"
           f"2. The first train covers {v1} × {t} = {v1 * t} km, the second {v2} × {t} = {v2 * t} km.\n\n"
           f"Check: {v1 * t} + {v2 * t} = {v1 * t + v2 * t} km, the full distance. "
           f"They meet after {t} h, {v1 * t} km from the first train's start.")
    return q, ans


def percent_problem(rng: random.Random) -> tuple[str, str]:
    price, up, down = rng.choice([40, 80, 120, 200, 250]), rng.choice([10, 20, 25, 50]), rng.choice([10, 20, 25, 50])
    after_up = Fraction(price) * (100 + up) / 100
    final = after_up * (100 - down) / 100
    q = (f"A price of {price} euros rises by {up}% and then falls by {down}%. "
         f"What is the final price, and is it higher or lower than at the start? Explain.")
    change = final - price
    ans = (f"Apply the changes one after the other, each to the current price.\n\n"
           f"1. After the rise: {price} × {100 + up}/100 = {float(after_up):g} euros.\n"
           f"2. After the fall: {float(after_up):g} × {100 - down}/100 = {float(final):g} euros.\n\n"
           f"The final price is {float(final):g} euros, "
           f"{'higher' if change > 0 else 'lower' if change < 0 else 'the same'} than the start "
           f"by {abs(float(change)):g} euros, because the second percentage applies to a different base.")
    return q, ans


NAMES = ["Ada", "Bram", "Cora", "Dirk", "Eva", "Finn", "Gus", "Hana"]


def knights_problem(rng: random.Random) -> tuple[str, str]:
    """Random statements until exactly one assignment is consistent; the answer enumerates every case."""
    while True:
        people = rng.sample(NAMES, 3)
        statements = []
        for speaker in people:
            kind = rng.choice(["is", "same", "diff"])
            others = [p for p in people if p != speaker]
            if kind == "is":
                who, what = rng.choice(others), rng.choice([True, False])
                text = f"{who} is a {'knight' if what else 'knave'}."
                fn = (lambda w, v: lambda a: a[w] == v)(who, what)
            else:
                x, y = others
                text = f"{x} and {y} are {'the same kind' if kind == 'same' else 'different kinds'}."
                fn = (lambda x, y, same: lambda a: (a[x] == a[y]) == same)(x, y, kind == "same")
            statements.append((speaker, text, fn))
        lines, solutions = [], []
        for values in itertools.product([True, False], repeat=3):
            a = dict(zip(people, values))
            ok = all(fn(a) == a[s] for s, _, fn in statements)
            label = ", ".join(f"{p} {'knight' if a[p] else 'knave'}" for p in people)
            lines.append(f"- {label}: {'consistent' if ok else 'contradiction'}.")
            if ok:
                solutions.append(a)
        if len(solutions) == 1:
            break
    said = " ".join(f"{s} says: \"{t}\"" for s, t, _ in statements)
    sol = solutions[0]
    q = f"Knights always tell the truth and knaves always lie. {said} What is each of them? Reason through the cases."
    ans = ("Try all eight assignments; a knight's statement must be true and a knave's false.\n\n"
           + "\n".join(lines) + "\n\nOnly one case survives: "
           + ", ".join(f"{p} is a {'knight' if sol[p] else 'knave'}" for p in people) + ".")
    return q, ans


BINARY_SEARCH_ASKS_V3 = (
    "Show how binary search finds the lower bound of {t} in {xs}, with the indices at each step.",
    "Explain how binary search finds the lower bound of {t} in {xs}, showing the low, high and middle indices "
    "at each step.",
    "Trace a lower-bound binary search for {t} in the sorted list {xs}: give low, high and mid at every step.",
)


def binary_search_problem(rng: random.Random, varied: bool = False) -> tuple[str, str]:
    """varied (v3): repeated values (where a lower bound matters) and three phrasings."""
    if varied:
        xs = sorted(rng.choices(range(1, 30), k=rng.randint(6, 12)))
    else:
        xs = sorted(rng.sample(range(1, 60), rng.randint(6, 12)))
    target = rng.choice(xs + [rng.randint(1, 60)])
    lo, hi, steps = 0, len(xs), []
    while lo < hi:
        mid = (lo + hi) // 2
        go = xs[mid] < target
        steps.append(f"- low={lo}, high={hi}, mid={mid}, a[mid]={xs[mid]} "
                     f"{'< ' + str(target) + ', so low = mid + 1' if go else '>= ' + str(target) + ', so high = mid'}")
        lo, hi = (mid + 1, hi) if go else (lo, mid)
    ask = rng.choice(BINARY_SEARCH_ASKS_V3) if varied else BINARY_SEARCH_ASKS_V3[0]
    q = ask.format(t=target, xs=xs)
    ans = ("The lower bound is the first index whose value is not less than the target. Keep the "
           "half-open range [low, high).\n\n" + "\n".join(steps)
           + f"\n\nThe loop ends with low = high = {lo}: the lower bound of {target} is index {lo}"
           + (f" (value {xs[lo]})." if lo < len(xs) else ", past the end: every value is smaller.")
           + " Common mistakes: using `high = len - 1` with a half-open loop, and `low = mid` instead of"
           " `mid + 1`, which never terminates.")
    return q, ans


BUGS = [
    ("def {f}(values, seen=[]):\n    for v in values:\n        seen.append(v)\n    return len(seen)",
     "The default list `seen=[]` is created once, when the function is defined, so every call without "
     "the argument shares it and the count keeps growing.",
     "def {f}(values, seen=None):\n    if seen is None:\n        seen = []\n    for v in values:\n"
     "        seen.append(v)\n    return len(seen)"),
    ("def {f}(items, n):\n    return [items[i:i + n] for i in range(0, len(items) - n, n)]",
     "The range stops before `len(items) - n`, so the last chunk is dropped whenever it would be "
     "full or partial; the stop must be `len(items)`.",
     "def {f}(items, n):\n    return [items[i:i + n] for i in range(0, len(items), n)]"),
    ("def {f}(xs):\n    total = 0\n    for i in range(1, len(xs)):\n        total += xs[i]\n    return total / len(xs)",
     "The loop starts at index 1, so the first element is never added: an off-by-one error.",
     "def {f}(xs):\n    return sum(xs) / len(xs) if xs else 0.0"),
    ("def {f}(a, b):\n    if a == None or b == None:\n        return False\n    return a is b",
     "`is` compares identity, not value: two equal strings or numbers can be different objects. "
     "Use `==` for values and `is None` for None.",
     "def {f}(a, b):\n    if a is None or b is None:\n        return False\n    return a == b"),
]


BUG_ASKS_V3 = ("Why does this function misbehave? Explain the bug and show a fix.",
               "Why does the second call of this function return a wrong result? Explain the bug and show a fix.",
               "What is wrong with this function? Explain the bug and show a fix.")


def bug_problem(rng: random.Random, varied: bool = False) -> tuple[str, str]:
    """varied (v3): invented function names (coding_tasks.invented_name) and three phrasings."""
    from coding_tasks import invented_name
    bad, why, good = rng.choice(BUGS)
    f = rng.choice(["count_items", "chunks", "mean_value", "same_value", "collect", "split_list", "average"])
    if varied:
        f = invented_name(rng) if rng.random() < 0.5 else f
    ask = rng.choice(BUG_ASKS_V3) if varied else BUG_ASKS_V3[0]
    q = f"{ask}\n\n```python\n{bad.format(f=f)}\n```"
    ans = f"{why}\n\nA fixed version:\n\n```python\n{good.format(f=f)}\n```\n\nTest it with an empty input and with two calls in a row."
    return q, ans


def _clock(hours: Fraction) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60 % 24}:{minutes % 60:02d}"


def staggered_work_rate_problem(rng: random.Random) -> tuple[str, str]:
    """Pipes that open at different times: the second phase starts from what the first one filled."""
    while True:
        a, b, d = rng.choice([2, 3, 4, 5, 6]), rng.choice([3, 4, 6, 8]), rng.choice([8, 12, 24])
        start, lag = rng.choice([7, 8, 9, 10]), rng.choice([1, 2])
        first = Fraction(1, a) - Fraction(1, d)
        if first > 0 and lag * first < 1:
            break
    filled = lag * first
    rate = Fraction(1, a) + Fraction(1, b) - Fraction(1, d)
    rest = (1 - filled) / rate
    total = lag + rest
    q = (f"Pipe A fills a tank in {a} hours, pipe B in {b} hours, and a drain empties it in {d} hours. "
         f"A and the drain open at {start}:00, B opens at {start + lag}:00. When is the empty tank full? "
         f"Show every step and check the answer.")
    ans = (f"Work with rates in tanks per hour and split the time at {start + lag}:00.\n\n"
           f"1. From {start}:00 to {start + lag}:00 only A and the drain run: 1/{a} - 1/{d} = {first} per hour, "
           f"so after {lag} h the tank holds {filled}.\n"
           f"2. From {start + lag}:00 all three run: 1/{a} + 1/{b} - 1/{d} = {rate} per hour.\n"
           f"3. The remaining {1 - filled} takes {1 - filled} / {rate} = {rest} h = {_fmt_hours(rest)}.\n\n"
           f"Check: A runs {total} h and adds {total / a}, B runs {rest} h and adds {rest / b}, the drain runs "
           f"{total} h and removes {total / d}; {total / a} + {rest / b} - {total / d} = "
           f"{total / a + rest / b - total / d}, one full tank. The tank is full at {_clock(start + total)}.")
    return q, ans


GENERATORS = (work_rate_problem, speed_problem, percent_problem, knights_problem,
              binary_search_problem, bug_problem)
# The v2 corpus adds pipes opening at different times to the same families.
GENERATORS_V2 = GENERATORS + (staggered_work_rate_problem,)
# v3: the same families, with repeated values and three phrasings for binary search, invented names
# and three phrasings for the bugs: a miniature keys on surface forms (an unseen name or opening word
# sent the v2 and v3-probe targets to recall), so the families vary them.
GENERATORS_V3 = (work_rate_problem, speed_problem, percent_problem, knights_problem,
                 functools.partial(binary_search_problem, varied=True), functools.partial(bug_problem, varied=True),
                 staggered_work_rate_problem)
RECIPES = ("v1", "v2", "v3", "v4", "v5", "v6")

# v5: what users add to a question. A miniature answers a family's question in that family only in the
# words it was trained on: one more clause ("…, and name two common off-by-one mistakes", "… and verify")
# sent the v3 target (step 800) and the committed v1 one from the right template to reference text or
# another family (training/README.md). Generic instructions, none of them a suite prompt's whole ending.
CLAUSES = (", and check the result.", ", and explain why.", ", step by step.", ", and keep it short.",
           ", and explain your reasoning.", ", and verify it.", ", and name common pitfalls.", ", and be precise.")
SENTENCES = (" Explain each step.", " Check the answer.", " Show your work.", " Be precise.", " Keep it short.",
             " Explain your reasoning.", " Verify the result.", " Mention a common mistake.")
LEADS = ("Question: ", "Task: ", "Please answer this. ")


def varied_question(rng: random.Random, question: str) -> str:
    """Half the time a clause in place of the final full stop or a sentence after it; now and then a lead-in."""
    r = rng.random()
    if r < 0.25 and question.endswith("."):
        question = question[:-1] + rng.choice(CLAUSES)
    elif r < 0.5:
        question += rng.choice(SENTENCES)
    if rng.random() < 0.1:
        question = rng.choice(LEADS) + question
    return question


def reasoning_pairs(rng: random.Random, n: int, generators=GENERATORS) -> list[tuple[str, str]]:
    return [generators[i % len(generators)](rng) for i in range(n)]


def evaluation_questions(suite: str = "*") -> list[str]:
    """The prompts of specsweep's built-in suites (`mixed-5`, `mixed-40`): asked, never trained on."""
    return [json.loads(line)["prompt"] for path in sorted(PROMPT_SUITES.glob(f"{suite}.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def same_question(text: str) -> str:
    """A question as compared with the suites' prompts: whitespace runs are one space."""
    return " ".join(text.split())


def without_evaluation_questions(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop every pair that asks a built-in suite's prompt. The generated families share the prompts'
    shape, and their parameter space is small: 24,000 v2 problems asked mixed-5's cistern question
    itself six times, and the target learnt its answer by heart (math at ~95% acceptance on the H100,
    benchmarks/gemma4-mini-v2-h100.md)."""
    asked = {same_question(q) for q in evaluation_questions()}
    return [(q, a) for q, a in pairs if same_question(q) not in asked]


def build_pairs(seed: int = 0, n_reasoning: int = 24000, recipe: str = "v1") -> list[tuple[str, str]]:
    """v1: stdlib functions, stdlib modules in chunks, the language reference, reasoning problems.
    v2: no whole-module chunks (recalled, not written, and no drafter can predict which one comes),
    generated coding tasks (`coding_tasks.py`) as many as reasoning problems, staggered pipes.
    v3: v2 without the stdlib functions. Their questions share the coding prompts' words ("Write a Python
    function `…` that …"), and the v2 target on the H100 answered every coding prompt whose function name
    was not one of the coding tasks' ~60 with recalled stdlib code ("Here is an implementation of
    `_internal_posix`"): a name it had not seen meant "recall" (benchmarks/gemma4-mini-v2-h100.md).
    v4: v3 without the language reference: generated problems and coding tasks only. The v3 target
    (H100, 2026-12-06) answered two of mixed-5's prompts with reference text ("Identifiers****") though
    its 172 reference pairs are 0.7% of the characters (seen ~19 times each in a 6-minute run); in v4
    every answer a target learns is one of the families, written in one regular layout, and more
    problems per family (`--reasoning-pairs`) mean fewer passes over each.
    v5: v4's problems, half of their questions with a clause, a sentence or a lead-in a user might add
    (`varied_question`).
    v6: v5 with a quarter of the coding tasks' single parameters named after their invented function's
    noun (`coding_tasks.renamed`): `merge_spans(spans)`.
    Neither asks a prompt of the built-in suites (v1 never did: its pairs and sha256 are unchanged)."""
    rng = random.Random(seed)
    if recipe == "v1":
        pairs = code_pairs(rng) + source_pairs(rng) + topic_pairs(rng) + reasoning_pairs(rng, n_reasoning)
    elif recipe == "v2":
        from coding_tasks import coding_task
        pairs = (code_pairs(rng) + topic_pairs(rng) + reasoning_pairs(rng, n_reasoning, GENERATORS_V2)
                 + [coding_task(rng) for _ in range(n_reasoning)])
    elif recipe in ("v3", "v4", "v5", "v6"):
        from coding_tasks import coding_task
        args = {"invent_args": True} if recipe == "v6" else {}  # v3-v5 draw exactly as they did
        pairs = ((topic_pairs(rng) if recipe == "v3" else [])
                 + reasoning_pairs(rng, n_reasoning, GENERATORS_V3)
                 + [coding_task(rng, invent_names=True, **args) for _ in range(n_reasoning)])
        if recipe in ("v5", "v6"):  # v4's problems, asked with what users add (an own generator: v4 stays as it was);
            vary = random.Random(seed + 5)  # a suite prompt is dropped before a clause could disguise it
            pairs = [(varied_question(vary, q), a) for q, a in without_evaluation_questions(pairs)]
    else:
        raise ValueError(f"unknown corpus recipe {recipe!r}: one of {RECIPES}")
    rng.shuffle(pairs)
    return without_evaluation_questions(pairs)


def split(pairs: list, heldout_fraction: float = 0.02) -> tuple[list, list]:
    n_held = max(1, int(len(pairs) * heldout_fraction))
    return pairs[n_held:], pairs[:n_held]


def load(seed: int, n_reasoning: int, max_pairs: int | None = None, recipe: str = "v1") -> tuple[list, list, dict]:
    """Train pairs, held-out pairs and the description a model card records."""
    pairs = build_pairs(seed=seed, n_reasoning=n_reasoning, recipe=recipe)[:max_pairs]
    train, held = split(pairs)
    return train, held, {**describe(pairs), "recipe": recipe}


def describe(pairs: list[tuple[str, str]]) -> dict:
    blob = json.dumps(pairs, ensure_ascii=False).encode()
    return {"pairs": len(pairs), "chars": sum(len(q) + len(a) for q, a in pairs),
            "sha256": hashlib.sha256(blob).hexdigest(), "python": sys.version.split()[0]}


if __name__ == "__main__":
    ps = build_pairs()
    print(json.dumps(describe(ps)))
    for q, a in ps[:3]:
        print("Q:", q[:300], "\nA:", a[:400], "\n---")
