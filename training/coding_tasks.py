"""Generated coding instructions with written (not recalled) answers: the corpus's `v2` coding family.

A miniature trained on the standard library answers a coding prompt by recalling half-memorised
stdlib code: confident, yet no small drafter can tell which snippet comes next (the logic prompt,
whose family the corpus generates, accepted 80–91% at depth 1 on the H100, the coding prompts ~35%;
benchmarks/gemma4-mini-retrain-h100.md). These pairs ask for small functions in the shape of
specsweep's coding prompts ("… Add a docstring, the time complexity and three assert-based tests")
and answer them in one regular layout: a sentence, the function with its docstring, the complexity
with its reason, three asserts whose expected values are computed by running the function, and a
short explanation. `mixed-5`'s own task (merging intervals) is deliberately not among them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Callable


@dataclass(frozen=True)
class Task:
    names: tuple[str, ...]          # function names to choose from
    arg: str                        # the parameter list
    does: str                       # "returns …", completing "Write a function `f(x)` that …"
    body: str                       # the implementation's body, indented by four spaces
    complexity: str                 # "O(n)"
    why: str                        # why that complexity
    how: str                        # one sentence on how the code works
    inputs: Callable[[random.Random], tuple]  # random arguments for one test


def _ints(rng: random.Random, lo: int = 3, hi: int = 7) -> list[int]:
    return [rng.randint(-9, 20) for _ in range(rng.randint(lo, hi))]


def _words(rng: random.Random) -> list[str]:
    return rng.sample(["apple", "bob", "level", "tree", "moon", "noon", "data", "sky", "kayak", "stone"],
                      rng.randint(3, 5))


TASKS = (
    Task(("dedupe", "unique_in_order", "remove_duplicates"), "items",
         "returns the items without duplicates, keeping the first occurrence of each in order",
         "    seen = set()\n    out = []\n    for item in items:\n        if item not in seen:\n"
         "            seen.add(item)\n            out.append(item)\n    return out",
         "O(n)", "each item is looked up and added to a set once", "A set remembers what was already kept.",
         lambda r: ([r.randint(0, 5) for _ in range(r.randint(4, 8))],)),
    Task(("running_max", "prefix_max"), "values",
         "returns the largest value seen so far at every position",
         "    out = []\n    best = None\n    for v in values:\n        best = v if best is None else max(best, v)\n"
         "        out.append(best)\n    return out",
         "O(n)", "one pass with a constant amount of work per value", "It carries the best value along the list.",
         lambda r: (_ints(r),)),
    Task(("chunks", "split_into_chunks", "batched_list"), "items, size",
         "splits a list into consecutive chunks of `size` items, the last one possibly shorter",
         "    return [items[i:i + size] for i in range(0, len(items), size)]",
         "O(n)", "every item is copied into exactly one chunk", "The range steps by `size` up to the full length.",
         lambda r: (_ints(r, 4, 9), r.randint(2, 3))),
    Task(("flatten", "flatten_once"), "nested",
         "flattens a list of lists by one level",
         "    return [item for inner in nested for item in inner]",
         "O(n)", "each inner item is visited once", "The comprehension walks the outer list, then each inner list.",
         lambda r: ([_ints(r, 1, 3) for _ in range(r.randint(2, 4))],)),
    Task(("is_palindrome", "reads_same_backwards"), "text",
         "checks whether a string reads the same forwards and backwards, ignoring case",
         "    cleaned = text.lower()\n    return cleaned == cleaned[::-1]",
         "O(n)", "the string is lowered and reversed once", "It compares the lowered text with its reverse.",
         lambda r: (r.choice(_words(r)).capitalize(),)),
    Task(("rotate_left", "rotate"), "items, k",
         "rotates a list `k` places to the left",
         "    if not items:\n        return []\n    k %= len(items)\n    return items[k:] + items[:k]",
         "O(n)", "the two slices copy every item once", "Taking `k` modulo the length handles large shifts.",
         lambda r: (_ints(r), r.randint(0, 9))),
    Task(("second_largest",), "values",
         "returns the second largest distinct value, or None if there is none",
         "    distinct = sorted(set(values))\n    return distinct[-2] if len(distinct) > 1 else None",
         "O(n log n)", "sorting the distinct values dominates", "It sorts the distinct values and takes the one before last.",
         lambda r: (_ints(r),)),
    Task(("run_length", "encode_runs"), "text",
         "encodes a string as a list of (character, count) pairs for each run of equal characters",
         "    out = []\n    for ch in text:\n        if out and out[-1][0] == ch:\n            out[-1] = (ch, out[-1][1] + 1)\n"
         "        else:\n            out.append((ch, 1))\n    return out",
         "O(n)", "each character extends or starts one run", "The last pair grows while the character repeats.",
         lambda r: ("".join(r.choice("aab") * r.randint(1, 3) for _ in range(r.randint(2, 4))),)),
    Task(("max_subarray_sum", "best_slice_sum"), "values",
         "returns the largest sum of a non-empty contiguous slice",
         "    best = current = values[0]\n    for v in values[1:]:\n        current = max(v, current + v)\n"
         "        best = max(best, current)\n    return best",
         "O(n)", "Kadane's scan does constant work per value", "It keeps the best sum ending at the current value.",
         lambda r: (_ints(r),)),
    Task(("reverse_words",), "sentence",
         "reverses the order of the words in a sentence",
         "    return \" \".join(reversed(sentence.split()))",
         "O(n)", "splitting and joining touch each character once", "It splits on whitespace and joins the words back reversed.",
         lambda r: (" ".join(_words(r)),)),
    Task(("prefix_sums", "cumulative_sum"), "values",
         "returns the running totals of a list",
         "    out = []\n    total = 0\n    for v in values:\n        total += v\n        out.append(total)\n    return out",
         "O(n)", "one addition per value", "The total is carried from one value to the next.",
         lambda r: (_ints(r),)),
    Task(("find_duplicates", "repeated_items"), "items",
         "returns the sorted values that occur more than once",
         "    counts = {}\n    for item in items:\n        counts[item] = counts.get(item, 0) + 1\n"
         "    return sorted(item for item, n in counts.items() if n > 1)",
         "O(n log n)", "counting is linear and sorting the repeats dominates", "A dictionary counts every value first.",
         lambda r: ([r.randint(0, 6) for _ in range(r.randint(5, 9))],)),
    Task(("merge_sorted", "merge_two_sorted"), "a, b",
         "merges two sorted lists into one sorted list",
         "    i = j = 0\n    out = []\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n"
         "            out.append(a[i])\n            i += 1\n        else:\n            out.append(b[j])\n"
         "            j += 1\n    return out + a[i:] + b[j:]",
         "O(n + m)", "each step moves one item from an input to the output", "Two indices walk the lists; the rest is appended.",
         lambda r: (sorted(_ints(r, 2, 5)), sorted(_ints(r, 2, 5)))),
    Task(("transpose", "transpose_matrix"), "rows",
         "transposes a rectangular matrix given as a list of rows",
         "    return [list(col) for col in zip(*rows)]",
         "O(r · c)", "every cell is copied once", "`zip(*rows)` pairs up the i-th items of every row.",
         lambda r: ([[r.randint(0, 9) for _ in range(3)] for _ in range(r.randint(2, 3))],)),
    Task(("is_anagram", "same_letters"), "a, b",
         "checks whether two words use exactly the same letters",
         "    return sorted(a.lower()) == sorted(b.lower())",
         "O(n log n)", "both words are sorted", "Sorted letters are equal exactly for anagrams.",
         lambda r: tuple(r.sample(["listen", "silent", "enlist", "stone", "notes", "tones", "apple"], 2))),
    Task(("count_vowels", "vowel_count"), "text",
         "counts the vowels in a string",
         "    return sum(1 for ch in text.lower() if ch in \"aeiou\")",
         "O(n)", "each character is checked once", "It lowers the text and counts characters in `aeiou`.",
         lambda r: (" ".join(_words(r)),)),
    Task(("moving_average", "window_means"), "values, k",
         "returns the mean of every window of `k` consecutive values",
         "    return [sum(values[i:i + k]) / k for i in range(len(values) - k + 1)]",
         "O(n · k)", "each of the n − k + 1 windows is summed", "It slides a window of `k` values along the list.",
         lambda r: ([r.randint(0, 10) for _ in range(r.randint(4, 7))], 2)),
    Task(("word_counts", "histogram"), "words",
         "returns a dictionary from each word to how often it occurs",
         "    counts = {}\n    for w in words:\n        counts[w] = counts.get(w, 0) + 1\n    return counts",
         "O(n)", "one dictionary update per word", "`dict.get` with a default starts each count at zero.",
         lambda r: ([r.choice(["a", "b", "c"]) for _ in range(r.randint(3, 6))],)),
    Task(("clamp_all", "clip_values"), "values, lo, hi",
         "clamps every value into the range [lo, hi]",
         "    return [min(max(v, lo), hi) for v in values]",
         "O(n)", "constant work per value", "`max` raises values below `lo`, then `min` lowers values above `hi`.",
         lambda r: (_ints(r), 0, 10)),
    Task(("interleave",), "a, b",
         "interleaves two lists, appending what is left of the longer one",
         "    out = []\n    for x, y in zip(a, b):\n        out += [x, y]\n    n = min(len(a), len(b))\n"
         "    return out + a[n:] + b[n:]",
         "O(n + m)", "every item is appended once", "`zip` pairs items until the shorter list ends.",
         lambda r: (_ints(r, 2, 4), _ints(r, 2, 5))),
    Task(("digit_sum", "sum_of_digits"), "n",
         "returns the sum of the decimal digits of a non-negative integer",
         "    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n    return total",
         "O(d)", "one loop turn per digit", "`n % 10` is the last digit and `n //= 10` drops it.",
         lambda r: (r.randint(0, 99999),)),
    Task(("two_sum_indices", "pair_with_sum"), "values, target",
         "returns the indices of the first pair of values that add up to `target`, or None",
         "    seen = {}\n    for i, v in enumerate(values):\n        if target - v in seen:\n"
         "            return (seen[target - v], i)\n        seen.setdefault(v, i)\n    return None",
         "O(n)", "each value is looked up and stored in a dictionary once",
         "The dictionary maps each value to its first index.",
         lambda r: (lambda xs: (xs, xs[0] + xs[-1]))(_ints(r, 3, 6))),
    Task(("capitalize_words", "title_words"), "sentence",
         "capitalizes the first letter of every word",
         "    return \" \".join(w[:1].upper() + w[1:] for w in sentence.split())",
         "O(n)", "each character is copied once", "Each word's first letter is upper-cased and the rest kept.",
         lambda r: (" ".join(_words(r)),)),
    Task(("gcd_all", "greatest_common_divisor"), "values",
         "returns the greatest common divisor of a list of positive integers",
         "    def gcd(a, b):\n        while b:\n            a, b = b, a % b\n        return a\n\n    result = values[0]\n"
         "    for v in values[1:]:\n        result = gcd(result, v)\n    return result",
         "O(n log m)", "Euclid's algorithm takes O(log m) steps per value", "Euclid's algorithm folds over the list.",
         lambda r: ([r.choice([2, 3, 4, 6]) * r.randint(1, 9) for _ in range(3)],)),
)

ASKS = (
    "Write a Python function `{sig}` that {does}. Add a docstring, the time complexity and three assert-based tests.",
    "Implement `{sig}` in Python: it {does}. Include a docstring, state the time complexity and add three asserts.",
    "Write `{sig}`, which {does}. Give the docstring, the complexity and three tests written with assert.",
)


def source_of(task: Task, name: str) -> str:
    """The answer's function: signature, docstring with the complexity, body."""
    return (f"def {name}({task.arg}):\n    \"\"\"{task.does[0].upper()}{task.does[1:]}.\n\n"
            f"    Time complexity: {task.complexity}, because {task.why}.\n    \"\"\"\n{task.body}\n")


def compiled(task: Task, name: str) -> Callable:
    scope: dict = {}
    exec(source_of(task, name), scope)  # noqa: S102 - our own fixed task code
    return scope[name]


# Invented function names (v3): with only the tasks' own ~60 names, the v2 target learnt that an unseen
# name means "recall stdlib code" and answered `merge_intervals` so (benchmarks/gemma4-mini-v2-h100.md).
VERBS = ("merge", "collect", "count", "split", "group", "find", "keep", "drop", "pair", "scan", "sum", "sort",
         "pick", "build", "make", "join", "trim", "fold", "rank", "shift", "check", "clean", "order", "spread")
NOUNS = ("items", "values", "spans", "ranges", "runs", "words", "pairs", "blocks", "rows", "steps", "parts",
         "groups", "scores", "marks", "points", "slots", "chunks", "tokens", "names", "entries", "numbers")


def invented_name(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"


def renamed(task: Task, param: str) -> Task | None:
    """The task with its one parameter called `param`, in the code and wherever the prose quotes code;
    None where that name is already taken inside the body."""
    word = re.compile(rf"(?<![.\w]){re.escape(task.arg)}\b")  # the name, not a method `.items()`
    if "," in task.arg or re.search(rf"\b{re.escape(param)}\b", task.body):
        return None
    in_code = lambda text: re.sub(r"`[^`]*`", lambda m: word.sub(param, m.group(0)), text)  # noqa: E731
    return replace(task, arg=param, body=word.sub(param, task.body), does=in_code(task.does),
                   why=in_code(task.why), how=in_code(task.how))


# Invented parameter names (v6): the v5 target answered coding tasks under unseen names in the coding
# layout, except where the parameter was unseen as well (`merge_intervals(intervals)` got the knights
# template; benchmarks/gemma4-mini-v5.md). So half the invented names also name the parameter after
# their noun, `merge_spans(spans)`, as people name them. The task itself stays one of TASKS.
def coding_task(rng: random.Random, invent_names: bool = False, invent_args: bool = False) -> tuple[str, str]:
    """One task; with invent_names, half of them under a made-up verb_noun name (504 of them); with
    invent_args as well, half of those single-parameter tasks take the noun as their parameter's name."""
    task = rng.choice(TASKS)
    invented = invent_names and rng.random() < 0.5
    name = invented_name(rng) if invented else rng.choice(task.names)
    if invented and invent_args and rng.random() < 0.5:
        task = renamed(task, name.split("_", 1)[1]) or task
    source = source_of(task, name)
    scope = {name: compiled(task, name)}  # the asserts' expected values come from running it
    tests = []
    while len(tests) < 3:
        args = task.inputs(rng)
        call = f"{name}({', '.join(repr(a) for a in args)})"
        line = f"assert {call} == {scope[name](*args)!r}"
        if line not in tests:
            tests.append(line)
    question = rng.choice(ASKS).format(sig=f"{name}({task.arg})", does=task.does)
    answer = (f"Here is `{name}` with its docstring, its time complexity and three tests.\n\n"
              f"```python\n{source}\n\n" + "\n".join(tests) + "\n```\n\n"
              f"{task.how} The time complexity is {task.complexity}: {task.why}.")
    return question, answer
