"""The plain-Python parts of `training/`: generated problems that are right, and the engine-step replay.

`training/` is not part of the tool (it needs torch on a GPU host), but these pieces run without it.
A miniature trained on wrong answers would be measured on them, so every coding task's code runs, its
asserts hold and it does what its question asks, and every staggered-pipes answer fills the tank at the
time it states. The replay of llama-server's draft steps is what the offline acceptance estimate
rests on (checked against the engine in benchmarks/gemma4-mini-retrain-h100.md).
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import random
import re
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

TRAINING = Path(__file__).resolve().parents[2] / "training"


@pytest.fixture(scope="module")
def training_modules():
    sys.path.insert(0, str(TRAINING))
    try:
        import coding_tasks
        import corpus
        yield coding_tasks, corpus
    finally:
        sys.path.remove(str(TRAINING))


@pytest.fixture(scope="module")
def walk():
    sys.path.insert(0, str(TRAINING))
    try:
        from draft_replay import walk_like_the_engine
        yield walk_like_the_engine
    finally:
        sys.path.remove(str(TRAINING))


def test_each_step_keeps_the_leading_matches_and_the_target_adds_one(walk):
    # Steps start at positions 0 and 3 (2 drafts kept + the target's token), then 5: past the end.
    assert walk([2, 0, 3, 1, 0], 2) == (4, 3, [2, 2], [2, 1])
    # Depth caps what a step keeps: at depth 1 the same answer steps at 0, 2, 4.
    assert walk([2, 0, 3, 1, 0], 1) == (3, 2, [3], [2])
    assert walk([], 3) == (0, 0, [0, 0, 0], [0, 0, 0])


@given(st.lists(st.integers(0, 4), max_size=60), st.integers(1, 4))
def test_the_replay_is_a_consistent_tally(walk, matches, depth):
    drafted, accepted, pos_d, pos_a = walk(matches, depth)
    assert sum(pos_d) == drafted and sum(pos_a) == accepted <= drafted
    assert all(a <= d for a, d in zip(pos_a, pos_d))
    assert pos_a == sorted(pos_a, reverse=True)  # a later draft is kept only after every earlier one
    if all(m >= depth for m in matches):  # a perfect drafter: every step keeps all, steps are depth + 1 apart
        assert accepted == drafted == depth * -(-len(matches) // (depth + 1))
    if not any(matches):  # nothing matches: a step at every position, nothing kept
        assert (drafted, accepted) == (depth * len(matches), 0)


@pytest.mark.parametrize("invent_names, invent_args", [(False, False), (True, False), (True, True)])
def test_every_coding_task_answer_runs_and_its_asserts_hold(training_modules, invent_names, invent_args):
    coding_tasks, _ = training_modules
    rng = random.Random(0)
    seen = set()
    named_after_noun = 0
    for _ in range(400):
        question, answer = coding_tasks.coding_task(rng, invent_names=invent_names, invent_args=invent_args)
        name, param = re.search(r"`(\w+)\(([\w, ]+)\)`", question).groups()
        named_after_noun += param == name.split("_", 1)[-1]
        code = re.search(r"```python\n(.*?)```", answer, re.S).group(1)
        name = re.search(r"^def (\w+)\(", code, re.M).group(1)
        seen.add(name)
        assert f"`{name}(" in question and "three" in question
        asserts = [line for line in code.splitlines() if line.startswith("assert ")]
        assert len(asserts) == 3 and len(set(asserts)) == 3
        exec(compile(code, name, "exec"), {})  # an assert that does not hold raises here
        # A wrong expected value must fail: the check above is not vacuous.
        broken = code.replace(asserts[0], asserts[0].rsplit("==", 1)[0] + "== 'not the value'")
        with pytest.raises(AssertionError):
            exec(compile(broken, name, "exec"), {})
    assert len(seen) >= 40  # the tasks and their alternative names all come up
    assert "merge_intervals" not in seen  # mixed-5's own task is not trained on
    own_names = {name for task in coding_tasks.TASKS for name in task.names}
    assert (len(seen - own_names) >= 100) == invent_names  # v3 asks for made-up names too
    assert (named_after_noun >= 40) == invent_args  # v6: `merge_spans(spans)`, its code using `spans`


def test_varied_binary_search_traces_find_the_lower_bound(training_modules):
    import bisect
    _, corpus = training_modules
    rng = random.Random(3)
    asks = collections.Counter()
    for _ in range(300):
        question, answer = corpus.binary_search_problem(rng, varied=True)
        target, xs = re.search(r"lower.bound (?:of |binary search for )(\d+) in (?:the sorted list )?(\[[\d, ]+\])",
                               question).groups()
        xs, target = [int(x) for x in xs.strip("[]").split(",")], int(target)
        asks[question.split()[0]] += 1
        assert f"the lower bound of {target} is index {bisect.bisect_left(xs, target)}" in answer, question
    assert len(asks) == 3  # all three phrasings come up


def _rotated(xs, k):
    d = collections.deque(xs)
    d.rotate(-k)
    return list(d)


def _first_pair(xs, target):
    return next(((i, j) for j in range(len(xs)) for i in range(j) if xs[i] + xs[j] == target), None)


_GAP = object()
# Independent reference for every task, by its first name: the answers' code must do what the task says.
REFERENCE = {
    "dedupe": lambda xs: list(dict.fromkeys(xs)),
    "running_max": lambda xs: list(itertools.accumulate(xs, max)),
    "chunks": lambda xs, n: [xs[k * n:(k + 1) * n] for k in range(-(-len(xs) // n))],
    "flatten": lambda xss: list(itertools.chain.from_iterable(xss)),
    "is_palindrome": lambda t: t.lower() == "".join(reversed(t.lower())),
    "rotate_left": _rotated,
    "second_largest": lambda xs: sorted(set(xs), reverse=True)[1] if len(set(xs)) > 1 else None,
    "run_length": lambda t: [(ch, len(list(g))) for ch, g in itertools.groupby(t)],
    "max_subarray_sum": lambda xs: max(sum(xs[i:j]) for i in range(len(xs)) for j in range(i + 1, len(xs) + 1)),
    "reverse_words": lambda s: " ".join(s.split()[::-1]),
    "prefix_sums": lambda xs: list(itertools.accumulate(xs)),
    "find_duplicates": lambda xs: sorted(k for k, c in collections.Counter(xs).items() if c > 1),
    "merge_sorted": lambda a, b: sorted(a + b),
    "transpose": lambda m: [[row[i] for row in m] for i in range(len(m[0]))],
    "is_anagram": lambda a, b: collections.Counter(a.lower()) == collections.Counter(b.lower()),
    "count_vowels": lambda t: sum(t.lower().count(v) for v in "aeiou"),
    "moving_average": lambda xs, k: [math.fsum(xs[i:i + k]) / k for i in range(len(xs) - k + 1)],
    "word_counts": lambda ws: dict(collections.Counter(ws)),
    "clamp_all": lambda xs, lo, hi: [sorted((lo, v, hi))[1] for v in xs],
    "interleave": lambda a, b: [x for pair in itertools.zip_longest(a, b, fillvalue=_GAP) for x in pair if x is not _GAP],
    "digit_sum": lambda n: sum(map(int, str(n))),
    "two_sum_indices": _first_pair,
    "capitalize_words": lambda s: " ".join(w.capitalize() for w in s.split()),
    "gcd_all": lambda xs: functools.reduce(math.gcd, xs),
}


def test_every_task_does_what_its_question_asks(training_modules):
    coding_tasks, _ = training_modules
    assert {task.names[0] for task in coding_tasks.TASKS} == set(REFERENCE)
    rng = random.Random(2)
    for task in coding_tasks.TASKS:
        for name in task.names:
            function = coding_tasks.compiled(task, name)
            for _ in range(50):
                args = task.inputs(rng)
                assert function(*args) == REFERENCE[task.names[0]](*args), (name, args)


def test_staggered_pipes_answers_check_out(training_modules):
    _, corpus = training_modules
    rng = random.Random(1)
    for _ in range(200):
        question, answer = corpus.staggered_work_rate_problem(rng)
        a, b, d = (int(x) for x in re.search(r"in (\d+) hours, pipe B in (\d+) hours, and a drain empties it in "
                                             r"(\d+) hours", question).groups())
        start, b_start = (int(x) for x in re.search(r"open at (\d+):00, B opens at (\d+):00", question).groups())
        end_h, end_m = (int(x) for x in re.search(r"full at (\d+):(\d\d)\.$", answer).groups())
        end = Fraction(end_h * 60 + end_m, 60)
        # What A, B and the drain did by the stated time, recomputed from the question alone.
        level = (end - start) / a + (end - b_start) / b - (end - start) / d
        assert abs(level - 1) < Fraction(1, 60), (question, answer)  # full, to the minute the answer rounds to


def test_an_unknown_corpus_recipe_is_one_clear_error(training_modules):
    _, corpus = training_modules
    with pytest.raises(ValueError, match="unknown corpus recipe"):
        corpus.build_pairs(recipe="v9")


def test_no_training_pair_asks_a_built_in_suite_prompt(training_modules):
    _, corpus = training_modules
    asked = corpus.evaluation_questions()
    assert len(asked) == len(corpus.evaluation_questions("mixed-5")) + len(corpus.evaluation_questions("mixed-40"))
    cistern = next(q for q in corpus.evaluation_questions("mixed-5") if q.startswith("Pipe A"))
    rng = random.Random(0)
    generated = [corpus.staggered_work_rate_problem(rng) for _ in range(3000)]
    hits = sum(q == cistern for q, _ in generated)
    assert hits > 0  # the family's parameter space is small enough to reach mixed-5's question itself
    respaced = (cistern.replace(". ", ".  ") + "\n", "an answer learnt by heart")
    kept = corpus.without_evaluation_questions(generated + [respaced])
    assert len(kept) == len(generated) - hits
    normalized = {" ".join(q.split()) for q in asked}
    assert not any(" ".join(q.split()) in normalized for q, _ in kept)


def test_v4_is_v3_without_the_language_reference(training_modules):
    _, corpus = training_modules
    reference_pairs = corpus.topic_pairs(random.Random(0))
    reference = {answer for _, answer in reference_pairs}
    v3 = corpus.build_pairs(seed=1, n_reasoning=200, recipe="v3")
    v4 = corpus.build_pairs(seed=1, n_reasoning=200, recipe="v4")
    assert sum(answer in reference for _, answer in v3) == len(reference_pairs)
    assert not any(answer in reference for _, answer in v4)
    assert len(v4) == len(v3) - len(reference_pairs) == 400  # the generated problems and coding tasks, all kept


def test_v5_asks_v4s_problems_with_added_clauses(training_modules):
    _, corpus = training_modules
    v4 = corpus.build_pairs(seed=1, n_reasoning=300, recipe="v4")
    v5 = corpus.build_pairs(seed=1, n_reasoning=300, recipe="v5")
    assert sorted(a for _, a in v4) == sorted(a for _, a in v5)  # the same problems and answers
    asked_in_v4 = {q for q, _ in v4}
    changed = [q for q, _ in v5 if q not in asked_in_v4]
    assert 0.4 < len(changed) / len(v5) < 0.7
    endings = corpus.CLAUSES + corpus.SENTENCES
    assert all(q.endswith(endings) or q.startswith(corpus.LEADS) for q in changed)


def test_a_clause_cannot_smuggle_a_suite_prompt_into_v5(training_modules, monkeypatch):
    coding_tasks, corpus = training_modules
    cistern = next(q for q in corpus.evaluation_questions("mixed-5") if q.startswith("Pipe A"))
    monkeypatch.setattr(corpus, "reasoning_pairs", lambda rng, n, generators: [(cistern, "learnt by heart")] * n)
    monkeypatch.setattr(coding_tasks, "coding_task", lambda rng, **_: ("Write `f`.", "def f(): pass"))
    v5 = corpus.build_pairs(seed=0, n_reasoning=40, recipe="v5")
    assert len(v5) == 40 and not any(cistern[:-1] in q for q, _ in v5)  # only the coding tasks are left


def test_a_renamed_parameter_is_renamed_in_the_code_and_the_quoted_prose_only(training_modules):
    coding_tasks, _ = training_modules
    digits = next(t for t in coding_tasks.TASKS if "digit_sum" in t.names)  # arg `n`, prose "`n % 10`"
    spans = coding_tasks.renamed(digits, "spans")
    assert spans.arg == "spans" and "spans % 10" in spans.body and "`spans % 10`" in spans.how
    assert not re.search(r"\bn\b", spans.body) and "non-negative" in spans.does  # words that merely contain n stay
    two_args = next(t for t in coding_tasks.TASKS if "," in t.arg)
    assert coding_tasks.renamed(two_args, "spans") is None
    dedupe = next(t for t in coding_tasks.TASKS if "dedupe" in t.names)  # its body has a local `out`
    assert coding_tasks.renamed(dedupe, "out") is None


def test_v6_is_v5_with_parameters_named_after_invented_nouns(training_modules):
    _, corpus = training_modules
    v5 = corpus.build_pairs(seed=2, n_reasoning=400, recipe="v5")
    v6 = corpus.build_pairs(seed=2, n_reasoning=400, recipe="v6")
    assert len(v5) == len(v6)
    assert corpus.build_pairs(seed=2, n_reasoning=400, recipe="v5") == v5  # v5 draws as it did
    renamed = [q for q, _ in v6 if (m := re.search(r"`(\w+)_(\w+)\((\w+)\)`", q)) and m[2] == m[3]]
    assert len(renamed) >= 20
