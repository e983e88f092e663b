"""Sequence tasks (targets at many positions): every oracle against a brute-force reference
over all short strings, the samplers' distributions, the every-position loss, `TargetRole`
and bad input.

The references here are written independently of the task code: separator tasks split a
row with plain Python, Tomita languages are regular expressions (or run-length checks),
Dyck languages are generated from their grammar, and next-character sets are found by
trying completions.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simcheck.errors import TaskSpecError
from simcheck.tasks import NO_CLASS, ROLES, SequenceTask, TargetRole, get_task

# ------------------------------------------------------------------ helpers


def all_rows(vocab: int, length: int) -> torch.Tensor:
    """Every string over ``range(vocab)`` of exactly ``length`` tokens, [vocab**length, length]."""
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)


def chi_square(observed: Counter, support: list) -> tuple[float, int]:
    """Pearson's statistic of ``observed`` counts against uniform over ``support``, and dof."""
    total = sum(observed.values())
    expected = total / len(support)
    stat = sum((observed.get(s, 0) - expected) ** 2 / expected for s in support)
    return stat, len(support) - 1


def chi_square_bound(dof: int) -> float:
    """A loose acceptance bound for a chi-square statistic (scipy is not installed): the
    mean plus six standard deviations of the chi-square distribution with ``dof``."""
    return dof + 6 * math.sqrt(2 * dof)


# ------------------------------------------------------------------ separator references


def separator_reference(row: list[int], separator: int, answer) -> list[int]:
    """Targets of ``row`` for an ``input SEP output`` task with the given ``answer``:
    NO_CLASS before the first separator, answer[k] at position sep + k (cut at the row's
    end), NO_CLASS after the answer, and everywhere when answer(input) is None."""
    out = [NO_CLASS] * len(row)
    if separator not in row:
        return out
    sep = row.index(separator)
    expected = answer(row[:sep])
    if expected is None:
        return out
    for k, value in enumerate(expected):
        if sep + k < len(row):
            out[sep + k] = value
    return out


def majority_answer(p: int):
    def answer(source: list[int]) -> list[int]:
        out = []
        for r in range(p):
            members = [source[t] for t in range(len(source)) if t % p == r]
            ones, zeros = members.count(1), members.count(0)
            out.append(NO_CLASS if ones == zeros else (1 if ones > zeros else 0))
        return out

    return answer


def to_base(value: int, base: int, width: int) -> list[int]:
    """``value`` as ``width`` digits in ``base``, most significant first (via numpy)."""
    text = np.base_repr(value, base).zfill(width)
    assert len(text) == width
    return [int(ch, base) for ch in text]


def addition_answer(base: int):
    plus = base

    def answer(source: list[int]) -> list[int] | None:
        if plus not in source:
            return None
        cut = source.index(plus)
        a, b = source[:cut], source[cut + 1 :]
        if not a or not b or plus in b:
            return None
        total = int("".join(np.base_repr(d, base) for d in a), base) + int(
            "".join(np.base_repr(d, base) for d in b), base
        )
        return to_base(total, base, max(len(a), len(b)) + 1)

    return answer


# (spec, separator id, answer function, vocabulary, longest enumerated length)
SEPARATOR_CASES = [
    ("unique_copy:V=3", 3, list, 4, 6),
    ("repeat_copy:V=2", 2, list, 3, 7),
    ("sort:V=3", 3, sorted, 4, 6),
    ("reverse:V=2", 2, lambda s: s[::-1], 3, 7),
    ("interleaved_majority:p=2", 2, majority_answer(2), 3, 7),
    ("interleaved_majority:p=3", 2, majority_answer(3), 3, 7),
    ("addition:B=2", 3, addition_answer(2), 4, 6),
    ("addition:B=3", 4, addition_answer(3), 5, 5),
]


@pytest.mark.parametrize(
    ("spec", "separator", "answer", "vocab", "max_len"),
    SEPARATOR_CASES,
    ids=[case[0] for case in SEPARATOR_CASES],
)
def test_separator_targets_match_brute_force_on_every_short_string(
    spec, separator, answer, vocab, max_len
):
    task = get_task(spec)
    assert task.vocab_size == vocab
    for length in range(1, max_len + 1):
        rows = all_rows(vocab, length)
        got = task.position_targets(rows)
        assert got.shape == rows.shape and got.dtype == torch.long
        expected = torch.tensor(
            [separator_reference(row, separator, answer) for row in rows.tolist()]
        )
        bad = (got != expected).any(-1).nonzero().flatten()
        assert len(bad) == 0, (
            f"{spec}: {rows[bad[0]].tolist()} -> {got[bad[0]].tolist()}, "
            f"expected {expected[bad[0]].tolist()}"
        )


def test_addition_base_ten_matches_python_integers():
    """Operands of unequal lengths (1-6 digits), any written output: the targets are the
    digits of int(a) + int(b), one more than the longer operand, most significant first."""
    task = get_task("addition")
    rng = np.random.default_rng(11)
    for _ in range(300):
        a = rng.integers(0, 10, size=rng.integers(1, 7)).tolist()
        b = rng.integers(0, 10, size=rng.integers(1, 7)).tolist()
        written = rng.integers(0, 12, size=rng.integers(0, 9)).tolist()
        row = [*a, 10, *b, 11, *written]
        total = int("".join(map(str, a))) + int("".join(map(str, b)))
        digits = [int(ch) for ch in str(total).zfill(max(len(a), len(b)) + 1)]
        sep = len(a) + len(b) + 1
        expected = [NO_CLASS] * len(row)
        for k, digit in enumerate(digits[: len(row) - sep]):
            expected[sep + k] = digit
        got = task.position_targets(torch.tensor([row]))[0].tolist()
        assert got == expected, (row, got, expected)


def test_addition_strings_without_a_sum_have_no_target():
    task = get_task("addition")  # + = 10, = = 11
    for row in (
        [1, 2, 11, 3, 4],  # no +
        [10, 2, 11, 0, 0],  # empty first operand
        [1, 10, 11, 0, 0],  # empty second operand
        [1, 10, 2, 10, 3, 11, 0],  # a second +
        [1, 11, 10, 2, 0, 0],  # = before +
        [1, 10, 2, 3, 4, 5],  # no =
    ):
        assert task.position_targets(torch.tensor([row])).tolist() == [[NO_CLASS] * len(row)]


# ------------------------------------------------------------------ Tomita reference


def tomita3_member(s: str) -> bool:
    """No maximal odd run of 1s immediately followed by a maximal odd run of 0s."""
    runs = [(ch, len(list(group))) for ch, group in itertools.groupby(s)]
    return not any(
        a == "1" and x % 2 == 1 and b == "0" and y % 2 == 1
        for (a, x), (b, y) in itertools.pairwise(runs)
    )


TOMITA_MEMBER = {
    1: lambda s: re.fullmatch(r"1*", s) is not None,
    2: lambda s: re.fullmatch(r"(10)*", s) is not None,
    3: tomita3_member,
    4: lambda s: "000" not in s,
    5: lambda s: s.count("0") % 2 == 0 and s.count("1") % 2 == 0,
    6: lambda s: (s.count("0") - s.count("1")) % 3 == 0,
    7: lambda s: re.fullmatch(r"0*1*0*1*", s) is not None,
}

# Completions tried to decide whether a prefix can still enter the language. Each language
# needs at most 2 more characters from a prefix that can be completed at all: 1, 4, 7 are
# closed under taking prefixes (0 more); 2 needs at most a trailing 0; 3 at most one 0 (to
# make an odd run of 0s after an odd run of 1s even); 5 and 6 track counts mod 2 and mod 3,
# fixed by at most 2 characters. K = 5 leaves a wide margin.
COMPLETION_BUDGET = 5
COMPLETIONS = [
    "".join(u) for r in range(COMPLETION_BUDGET + 1) for u in itertools.product("01", repeat=r)
]


@functools.cache
def tomita_live(n: int, s: str) -> bool:
    return any(TOMITA_MEMBER[n](s + u) for u in COMPLETIONS)


def tomita_next_set(n: int, s: str) -> int:
    """Bitmask: bit c if s + c can still be completed into the language, bit 2 (EOS) if s
    is in it."""
    mask = sum(1 << c for c in (0, 1) if tomita_live(n, s + str(c)))
    return mask | (4 if TOMITA_MEMBER[n](s) else 0)


def test_tomita_references_agree_with_known_counts():
    """Sanity of the reference itself: counts of accepted strings per length."""
    counts = {
        n: [sum(TOMITA_MEMBER[n](s) for s in binary(L)) for L in range(7)] for n in TOMITA_MEMBER
    }
    assert counts[1] == [1] * 7
    assert counts[2] == [1, 0, 1, 0, 1, 0, 1]
    assert counts[4] == [1, 2, 4, 7, 13, 24, 44]  # tribonacci
    assert counts[5] == [1, 0, 2, 0, 8, 0, 32]
    assert counts[7] == [1, 2, 4, 8, 15, 26, 42]  # runs: sum C(L-1, r-1), r <= 4 or 3
    assert tomita3_member("100") and not tomita3_member("10") and not tomita3_member("1011")
    assert tomita3_member("1001") and tomita3_member("0110") and not tomita3_member("111000")


def binary(length: int) -> list[str]:
    return ["".join(s) for s in itertools.product("01", repeat=length)]


@pytest.mark.parametrize("n", range(1, 8))
def test_tomita_next_sets_match_brute_force(n):
    """Every binary string of length 8 (so every prefix of length <= 8): the target of each
    position is the next-character set of the prefix up to it."""
    task = get_task(f"tomita:n={n}")
    rows = all_rows(2, 8)
    got = task.position_targets(rows)
    assert got.shape == rows.shape
    for row, targets in zip(rows.tolist(), got.tolist(), strict=True):
        s = "".join(map(str, row))
        expected = [tomita_next_set(n, s[: i + 1]) for i in range(len(s))]
        assert targets == expected, (n, s, targets, expected)


# ------------------------------------------------------------------ Dyck reference


@functools.cache
def dyck_balanced(k: int, pairs: int) -> frozenset[tuple[int, ...]]:
    """Balanced strings with ``pairs`` bracket pairs from the grammar S -> '' | open_t S
    close_t S (open_t = 2t, close_t = 2t + 1)."""
    if pairs == 0:
        return frozenset({()})
    out = set()
    for inner in range(pairs):
        for t in range(k):
            for x in dyck_balanced(k, inner):
                for y in dyck_balanced(k, pairs - 1 - inner):
                    out.add((2 * t, *x, 2 * t + 1, *y))
    return frozenset(out)


@functools.cache
def dyck_prefixes(k: int, max_prefix: int) -> frozenset[tuple[int, ...]]:
    """Prefixes of length <= max_prefix of balanced strings of length <= 2 * max_prefix.
    A completable prefix of length l is at most l deep, so it closes within l more
    brackets: every completable prefix of length <= max_prefix is in this set."""
    out = set()
    for pairs in range(max_prefix + 1):
        for s in dyck_balanced(k, pairs):
            for j in range(min(len(s), max_prefix) + 1):
                out.add(s[:j])
    return frozenset(out)


def dyck_next_set(k: int, w: tuple[int, ...], max_prefix: int) -> int:
    """Bitmask: bit c if w + c can still be completed, bit 2k (EOS) if w is balanced."""
    live = dyck_prefixes(k, max_prefix)
    mask = sum(1 << c for c in range(2 * k) if (*w, c) in live)
    if len(w) % 2 == 0 and w in dyck_balanced(k, len(w) // 2):
        mask |= 1 << (2 * k)
    return mask


def test_dyck_grammar_reference_counts():
    """Catalan numbers times k^pairs bracket types."""
    assert [len(dyck_balanced(1, n)) for n in range(6)] == [1, 1, 2, 5, 14, 42]
    assert [len(dyck_balanced(2, n)) for n in range(4)] == [1, 2, 8, 40]


@pytest.mark.parametrize(("k", "length"), [(1, 8), (2, 6)])
def test_dyck_next_sets_match_brute_force(k, length):
    """Every string over the 2k brackets of the given length (so every shorter prefix)."""
    task = get_task(f"dyck:k={k}")
    rows = all_rows(2 * k, length)
    got = task.position_targets(rows)
    assert got.shape == rows.shape
    for row, targets in zip(rows.tolist(), got.tolist(), strict=True):
        expected = [dyck_next_set(k, tuple(row[: i + 1]), length + 1) for i in range(length)]
        assert targets == expected, (k, row, targets, expected)


# ------------------------------------------------------------------ causality

CAUSAL_SPECS = [
    "unique_copy:V=8",
    "repeat_copy:V=3",
    "sort:V=8",
    "reverse:V=3",
    "interleaved_majority:p=3",
    "addition:B=3",
    *(f"tomita:n={n}" for n in range(1, 8)),
    "dyck:k=1",
    "dyck:k=2",
]


@pytest.mark.parametrize("spec", CAUSAL_SPECS)
def test_position_targets_are_the_oracles_of_the_prefixes(spec):
    """Target i depends on tokens 0..i only: it is the oracle of the prefix of length i + 1.
    Rows: samples, corrupted samples and uniform random strings."""
    task = get_task(spec)
    rng = np.random.default_rng(3)
    length = 13
    sampled = np.asarray(task.sample(40, length, rng))
    corrupted = sampled.copy()
    flips = rng.random(corrupted.shape) < 0.15
    corrupted[flips] = rng.integers(0, task.vocab_size, size=int(flips.sum()))
    uniform = rng.integers(0, task.vocab_size, size=(40, length))
    tokens = torch.as_tensor(np.concatenate([sampled, corrupted, uniform]))
    targets = task.position_targets(tokens)
    for i in range(length):
        assert torch.equal(targets[:, i], task.oracle(tokens[:, : i + 1])), (spec, i)
    assert torch.equal(task.oracle(tokens), targets[:, -1])


# ------------------------------------------------------------------ samplers

SEQ2SEQ_SPECS = [
    "unique_copy:V=100",
    "repeat_copy",
    "sort",
    "reverse",
    "addition",
    "addition:B=2",
    "interleaved_majority",
    "interleaved_majority:p=2",
]
LANGUAGE_SPECS = [*(f"tomita:n={n}" for n in range(1, 8)), "dyck:k=1", "dyck:k=2"]
SPAN_SPECS = ["unique_copy:V=100", "repeat_copy", "sort", "reverse", "addition", "addition:B=2"]


def separator_of(task) -> int:
    """SEP = V of copy/sort/reverse, '=' = B + 1 of addition, 2 of interleaved majority."""
    if task.name == "addition":
        return task.B + 1
    if task.name == "interleaved_majority":
        return 2
    return task.V


@pytest.mark.parametrize("spec", SEQ2SEQ_SPECS + LANGUAGE_SPECS)
def test_batches_have_the_right_shape_and_targets(spec):
    task = get_task(spec)
    assert isinstance(task, SequenceTask)
    for length in (task.min_length, task.min_length + 1, 17, 30):
        raw = np.asarray(task.sample(16, length, np.random.default_rng(length)))
        assert raw.shape == (16, length) and np.issubdtype(raw.dtype, np.integer)
        assert raw.min() >= 0 and raw.max() < task.vocab_size
        batch = task.batch(16, length, np.random.default_rng(length))
        assert batch.tokens.shape == (16, length) and batch.tokens.dtype == torch.long
        assert batch.targets.shape == (16, length) and batch.targets.dtype == torch.long
        assert torch.equal(batch.tokens, torch.as_tensor(raw))
        assert torch.equal(batch.targets, task.position_targets(batch.tokens))
        assert int(batch.targets.max()) < task.num_classes
        assert bool(((batch.targets >= 0) | (batch.targets == NO_CLASS)).all())


@pytest.mark.parametrize("spec", SEQ2SEQ_SPECS)
def test_samples_end_on_a_target(spec):
    task = get_task(spec)
    tie = majority_answer(task.p) if task.name == "interleaved_majority" else None
    for length in range(task.min_length, 26):
        tokens = torch.as_tensor(task.sample(64, length, np.random.default_rng(length)))
        last = task.position_targets(tokens)[:, -1]
        if tie is None:
            assert bool((last >= 0).all()), (spec, length)
            assert bool(task.valid(task.position_targets(tokens)).all())
        else:
            # only a tie in the last residue class leaves the last position without target
            for row, value in zip(tokens.tolist(), last.tolist(), strict=True):
                expected = tie(row[: length - task.p])[-1]
                assert value == expected
                assert (value >= 0) == (expected != NO_CLASS)


@pytest.mark.parametrize("spec", SPAN_SPECS)
def test_targets_lie_exactly_in_the_target_span(spec):
    task = get_task(spec)
    for length in range(task.min_length, 26):
        first, last = task.target_span(length)
        assert last == length - 1 and 0 <= first <= last
        tokens = torch.as_tensor(task.sample(32, length, np.random.default_rng(100 + length)))
        has_target = task.position_targets(tokens) >= 0
        expected = torch.zeros(length, dtype=torch.bool)
        expected[first : last + 1] = True
        assert bool((has_target == expected).all()), (spec, length, first, last)
        # the separator sits at the first target position, and nowhere before
        sep = separator_of(task)
        assert bool((tokens[:, first] == sep).all())
        assert not bool((tokens[:, :first] == sep).any())


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_interleaved_majority_targets_lie_in_the_span_or_tie(p):
    task = get_task(f"interleaved_majority:p={p}")
    answer = majority_answer(p)
    for length in range(p + 1, 20):
        first, last = task.target_span(length)
        assert (first, last) == (length - p, length - 1)
        tokens = torch.as_tensor(task.sample(32, length, np.random.default_rng(length)))
        targets = task.position_targets(tokens)
        assert bool((targets[:, :first] == NO_CLASS).all())
        assert bool((tokens[:, first] == 2).all()) and not bool((tokens[:, :first] == 2).any())
        for row, target in zip(tokens.tolist(), targets.tolist(), strict=True):
            assert target[first:] == answer(row[:first])


def test_copy_layout_matches_the_docstring():
    """n = ceil(L/2) input tokens, SEP, then the output prefix; span (n, L - 1)."""
    task = get_task("repeat_copy")
    for length in range(2, 20):
        n = (length + 1) // 2
        assert task.target_span(length) == (n, length - 1)
        tokens = task.sample(8, length, np.random.default_rng(length))
        assert (tokens[:, n] == task.V).all()
        assert (tokens[:, n + 1 :] == tokens[:, : length - n - 1]).all()


def test_addition_layout_matches_the_docstring():
    """m = L // 3 digit operands: a + b = c, c the m + 1 digits of the sum (MSB first)."""
    for base in (2, 10):
        task = get_task(f"addition:B={base}")
        for length in range(4, 20):
            m = length // 3
            assert task.target_span(length) == (2 * m + 1, length - 1)
            tokens = task.sample(16, length, np.random.default_rng(length)).tolist()
            for row in tokens:
                assert row[m] == base and row[2 * m + 1] == base + 1
                a, b, written = row[:m], row[m + 1 : 2 * m + 1], row[2 * m + 2 :]
                assert max(a + b) < base
                total = int("".join(np.base_repr(d, base) for d in a), base) + int(
                    "".join(np.base_repr(d, base) for d in b), base
                )
                assert written == to_base(total, base, m + 1)[: len(written)]


@pytest.mark.parametrize("spec", ["unique_copy:V=100", "unique_copy:V=12", "sort", "sort:V=9"])
def test_unique_tasks_draw_distinct_input_tokens(spec):
    task = get_task(spec)
    max_length = min(2 * task.V, 40)
    for length in range(2, max_length + 1, 3):
        n = (length + 1) // 2
        tokens = task.sample(64, length, np.random.default_rng(length))
        for row in tokens.tolist():
            source = row[:n]
            assert len(set(source)) == n and max(source) < task.V


def test_sort_writes_sorted_output():
    task = get_task("sort")
    for length in (2, 3, 10, 25, 40):
        n = (length + 1) // 2
        for row in task.sample(64, length, np.random.default_rng(length)).tolist():
            output = row[n + 1 :]
            assert output == sorted(row[:n])[: len(output)]
            assert all(x < y for x, y in itertools.pairwise(output))


@pytest.mark.parametrize("spec", SEQ2SEQ_SPECS)
def test_written_output_is_the_previous_positions_target(spec):
    """Teacher forcing: the token at i + 1 is the target of position i (a tie of interleaved
    majority, which has no target, is written as 0)."""
    task = get_task(spec)
    for length in (task.min_length + 2, 15, 24):
        first, last = task.target_span(length)
        tokens = torch.as_tensor(task.sample(64, length, np.random.default_rng(length)))
        targets = task.position_targets(tokens)
        assert torch.equal(tokens[:, first + 1 : last + 1], targets[:, first:last].clamp_min(0))


def language_member(spec: str, row: list[int]) -> bool:
    task = get_task(spec)
    if task.name == "tomita":
        return TOMITA_MEMBER[task.n]("".join(map(str, row)))
    return len(row) % 2 == 0 and tuple(row) in dyck_balanced(task.k, len(row) // 2)


def dyck_depth_one_prefix(k: int, row: list[int]) -> bool:
    """A completable prefix that is one bracket deep: closing the innermost open bracket
    gives a balanced string."""
    depth = sum(1 if t % 2 == 0 else -1 for t in row)
    return depth == 1 and any(
        (*row, 2 * t + 1) in dyck_balanced(k, (len(row) + 1) // 2) for t in range(k)
    )


@pytest.mark.parametrize("spec", LANGUAGE_SPECS)
def test_language_samples_are_in_the_language_when_the_length_admits_it(spec):
    task = get_task(spec)
    for length in range(1, 12):
        tokens = task.sample(64, length, np.random.default_rng(length))
        rows = tokens.tolist()
        targets = task.position_targets(torch.as_tensor(tokens))
        assert bool((targets > 0).all()), (spec, length)  # never a dead prefix
        if task.name == "tomita":
            admits = any(TOMITA_MEMBER[task.n](s) for s in binary(length))
            for row in rows:
                s = "".join(map(str, row))
                if admits:
                    assert TOMITA_MEMBER[task.n](s), (spec, s)
                else:
                    assert tomita_live(task.n, s), (spec, s)
        elif length % 2 == 0:
            assert all(language_member(spec, row) for row in rows), spec
        else:
            assert all(dyck_depth_one_prefix(task.k, row) for row in rows), spec


@pytest.mark.parametrize("spec", LANGUAGE_SPECS)
def test_long_language_samples_are_never_dead(spec):
    task = get_task(spec)
    for length in (40, 41):
        tokens = torch.as_tensor(task.sample(32, length, np.random.default_rng(length)))
        assert bool((task.position_targets(tokens) > 0).all())
        if task.name == "dyck":
            eos = 1 << (2 * task.k)
            last = task.position_targets(tokens)[:, -1]
            assert bool(((last & eos) != 0).all()) == (length % 2 == 0)
        for row in tokens.tolist()[:8]:
            if task.name == "tomita" and task.n not in (2, 5, 6):  # every length admits these
                assert TOMITA_MEMBER[task.n]("".join(map(str, row)))


def uniform_support(spec: str, length: int) -> list[tuple[int, ...]]:
    """The strings a uniform sampler should draw at ``length``, by brute force."""
    task = get_task(spec)
    rows = [tuple(r) for r in itertools.product(range(task.vocab_size), repeat=length)]
    accepted = [r for r in rows if language_member(spec, list(r))]
    if accepted:
        return accepted
    if task.name == "tomita":
        return [r for r in rows if tomita_live(task.n, "".join(map(str, r)))]
    return [r for r in rows if dyck_depth_one_prefix(task.k, list(r))]


@pytest.mark.parametrize(
    ("spec", "length", "size"),
    [
        ("tomita:n=4", 6, 44),
        ("tomita:n=3", 6, None),
        ("tomita:n=7", 5, 26),
        ("tomita:n=5", 5, 32),  # odd: no accepted string, every string completes
        ("dyck:k=1", 6, 5),
        ("dyck:k=1", 5, 5),
        ("dyck:k=2", 4, 8),
        ("dyck:k=2", 3, 8),
    ],
)
def test_language_samplers_are_uniform(spec, length, size):
    support = uniform_support(spec, length)
    if size is not None:
        assert len(support) == size
    task = get_task(spec)
    tokens = task.sample(20000, length, np.random.default_rng(2024))
    observed = Counter(map(tuple, tokens.tolist()))
    assert set(observed) <= set(support), set(observed) - set(support)
    stat, dof = chi_square(observed, support)
    assert stat < chi_square_bound(dof), (spec, length, stat, dof)


def test_chi_square_check_rejects_a_skewed_sampler():
    """The acceptance bound is tight enough to notice a sampler that is not uniform (a
    per-character coin flip, rejecting dead prefixes, over Tomita 4)."""
    rng = np.random.default_rng(5)
    support = uniform_support("tomita:n=4", 6)
    draws = []
    while len(draws) < 20000:
        s = ""
        for _ in range(6):
            options = [c for c in "01" if tomita_live(4, s + c)]
            s += options[rng.integers(len(options))]
        draws.append(tuple(int(c) for c in s))
    stat, dof = chi_square(Counter(draws), support)
    assert stat > chi_square_bound(dof)


@pytest.mark.parametrize(
    ("spec", "positions"),
    [
        ("repeat_copy", lambda L: range((L + 1) // 2)),
        ("reverse", lambda L: range((L + 1) // 2)),
        ("repeat_copy:V=2", lambda L: range((L + 1) // 2)),
        ("addition", lambda L: [*range(L // 3), *range(L // 3 + 1, 2 * (L // 3) + 1)]),
        ("addition:B=3", lambda L: [*range(L // 3), *range(L // 3 + 1, 2 * (L // 3) + 1)]),
    ],
)
def test_iid_input_tokens_are_uniform(spec, positions):
    task = get_task(spec)
    classes = task.num_classes
    length = 20
    tokens = task.sample(4000, length, np.random.default_rng(8))
    inputs = tokens[:, list(positions(length))]
    assert inputs.max() < classes
    stat, dof = chi_square(Counter(inputs.flatten().tolist()), list(range(classes)))
    assert stat < chi_square_bound(dof), (spec, stat)
    # and per position, no position is far from uniform
    for column in inputs.T:
        freq = np.bincount(column, minlength=classes) / len(column)
        assert np.abs(freq - 1 / classes).max() < 6 * math.sqrt(0.25 / len(column))


def test_interleaved_majority_frequencies_vary_across_rows_and_residues():
    """Each row and residue class draws its own frequency of 1s (Beta(1, 1)): the fraction of
    1s per residue varies across rows far more than Binomial(20, 1/2) / 20 would, and the
    residues of one row are independent."""
    p, per_class = 3, 20
    task = get_task(f"interleaved_majority:p={p}")
    length = p * per_class + p
    tokens = task.sample(2000, length, np.random.default_rng(9))
    source = tokens[:, : length - p]
    assert set(np.unique(source).tolist()) <= {0, 1}
    fractions = np.stack([source[:, r::p].mean(1) for r in range(p)], axis=1)  # [rows, p]
    binomial_var = 0.25 / per_class
    # Beta(1, 1) plus binomial noise: 1/12 + (1/6) / 20 ~ 0.092
    assert (fractions.var(0) > 4 * binomial_var).all()
    assert np.abs(fractions.mean(0) - 0.5).max() < 0.05
    corr = np.corrcoef(fractions.T)
    assert np.abs(corr[~np.eye(p, dtype=bool)]).max() < 0.1


@pytest.mark.parametrize("spec", SEQ2SEQ_SPECS + LANGUAGE_SPECS)
def test_same_seed_same_sample(spec):
    task = get_task(spec)
    a = task.sample(32, 12, np.random.default_rng(17))
    b = task.sample(32, 12, np.random.default_rng(17))
    c = task.sample(32, 12, np.random.default_rng(18))
    np.testing.assert_array_equal(a, b)
    if spec not in ("tomita:n=1", "tomita:n=2"):  # one string of length 12 in these
        assert not np.array_equal(a, c)


# ------------------------------------------------------------------ every-position loss


def random_targets(task, batch: int, length: int) -> torch.Tensor:
    targets = task.batch(batch, length, np.random.default_rng(1)).targets.clone()
    targets[0] = NO_CLASS  # a row with no target
    targets[1, 2] = NO_CLASS  # and a hole
    return targets


@pytest.mark.parametrize("spec", ["repeat_copy", "addition", "interleaved_majority", "dyck:k=2"])
def test_every_position_loss_is_the_sum_of_per_position_cross_entropies(spec):
    task = get_task(spec)
    batch, length = 6, 11
    targets = random_targets(task, batch, length)
    logits = torch.randn(
        batch, length, task.num_classes, generator=torch.Generator().manual_seed(0)
    )
    logits.requires_grad_(True)
    loss = task.loss(logits, targets)
    assert loss.shape == (batch,)
    expected = torch.zeros(batch)
    for b in range(batch):
        for i in range(length):
            if targets[b, i] >= 0:
                expected[b] += F.cross_entropy(logits[b, i][None], targets[b, i][None])
    torch.testing.assert_close(loss, expected.detach())
    assert float(loss[0].detach()) == 0.0
    assert bool((loss[1:] > 0).all())
    loss.sum().backward()
    valid = targets >= 0
    assert bool((logits.grad[~valid] == 0).all())
    assert bool((logits.grad[valid].abs().sum(-1) > 0).all())
    # the gradient of each valid position is softmax - onehot
    probs = torch.softmax(logits.detach(), -1)
    onehot = F.one_hot(targets.clamp_min(0), task.num_classes).float()
    torch.testing.assert_close(logits.grad[valid], (probs - onehot)[valid])


def test_mean_loss_averages_row_sums_over_rows_with_a_target():
    task = get_task("repeat_copy")
    targets = random_targets(task, 5, 9)
    logits = torch.randn(5, 9, task.num_classes, generator=torch.Generator().manual_seed(1))
    rows = task.loss(logits, targets)
    valid_rows = (targets >= 0).any(-1)
    assert valid_rows.tolist() == [False, True, True, True, True]
    torch.testing.assert_close(task.mean_loss(logits, targets), rows[valid_rows].mean())


def test_last_position_output_gives_the_last_position_loss():
    task = get_task("reverse")
    targets = random_targets(task, 6, 8)
    logits = torch.randn(6, 8, task.num_classes, generator=torch.Generator().manual_seed(2))
    last = targets[:, -1]
    loss = task.loss(logits[:, -1], last)
    assert loss.shape == (6,)
    expected = torch.stack(
        [
            F.cross_entropy(logits[b, -1][None], last[b][None])
            if last[b] >= 0
            else torch.tensor(0.0)
            for b in range(6)
        ]
    )
    torch.testing.assert_close(loss, expected)
    assert float(loss[0]) == 0.0
    # the same as the every-position loss with only the last position's targets
    only_last = torch.full_like(targets, NO_CLASS)
    only_last[:, -1] = last
    torch.testing.assert_close(task.loss(logits, only_last), loss)


def test_valid_rows():
    task = get_task("sort")
    two_d = torch.tensor([[NO_CLASS, NO_CLASS, 3], [NO_CLASS] * 3, [0, NO_CLASS, NO_CLASS]])
    assert task.valid(two_d).tolist() == [True, False, True]
    assert task.valid(torch.tensor([2, NO_CLASS, 0])).tolist() == [True, False, True]


# ------------------------------------------------------------------ TargetRole

ROLE_SPECS = ["unique_copy:V=100", "repeat_copy", "sort", "reverse"]


@pytest.mark.parametrize("spec", ROLE_SPECS)
@pytest.mark.parametrize("role", ROLES)
def test_target_role_prefixes_end_on_their_role_target(spec, role):
    task = get_task(spec)
    wrapper = TargetRole(task, role)
    assert wrapper.vocab_size == task.vocab_size and wrapper.num_classes == task.num_classes
    assert wrapper.spec() == f"{task.spec()}@{role}"
    for prefix in range(task.min_length, 25):
        full = wrapper.full_length(prefix)
        assert full >= prefix
        assert wrapper.role_position(full) == prefix - 1
        first, last = task.target_span(full)
        assert (
            wrapper.role_position(full)
            == {
                "first": first,
                "middle": (first + last) // 2,
                "last": last,
            }[role]
        )
        if role == "last":
            assert full == prefix
        tokens = wrapper.sample(16, prefix, np.random.default_rng(prefix))
        assert tokens.shape == (16, prefix)
        # the prefix of a full sample drawn with the same generator
        np.testing.assert_array_equal(
            tokens, task.sample(16, full, np.random.default_rng(prefix))[:, :prefix]
        )
        tensor = torch.as_tensor(tokens)
        assert bool((wrapper.oracle(tensor) >= 0).all()), (spec, role, prefix)
        assert torch.equal(wrapper.oracle(tensor), task.position_targets(tensor)[:, -1])
        if role == "first":
            assert bool((tensor[:, -1] == task.V).all())
            assert not bool((tensor[:, :-1] == task.V).any())


@pytest.mark.parametrize("role", ROLES)
def test_target_role_on_addition_ends_on_a_target(role):
    """Every prefix ends on a target: the role's where a full length puts it there, else a
    neighbouring one (addition's first target is always at an odd position)."""
    task = get_task("addition")
    wrapper = TargetRole(task, role)
    for prefix in range(task.min_length, 20):
        tokens = torch.as_tensor(wrapper.sample(8, prefix, np.random.default_rng(prefix)))
        assert tokens.shape == (8, prefix)
        assert bool((wrapper.oracle(tokens) >= 0).all()), (role, prefix)


@pytest.mark.parametrize("role", ROLES)
def test_target_role_on_addition_where_the_role_position_exists(role):
    """Prefix lengths P that are role positions plus one (what the position check asks
    for) end on a target of that role; "first" ends on '='."""
    task = get_task("addition")
    wrapper = TargetRole(task, role)
    prefixes = sorted({wrapper.role_position(full) + 1 for full in range(4, 30)})
    for prefix in [p for p in prefixes if p < 25]:
        full = wrapper.full_length(prefix)
        assert wrapper.role_position(full) == prefix - 1
        tokens = torch.as_tensor(wrapper.sample(8, prefix, np.random.default_rng(prefix)))
        assert bool((wrapper.oracle(tokens) >= 0).all()), (role, prefix)
        if role == "first":
            assert bool((tokens[:, -1] == task.B + 1).all())
        if role == "last":
            assert full == prefix


def test_target_role_on_interleaved_majority_ends_on_its_residue_or_a_tie():
    task = get_task("interleaved_majority")  # p = 3
    answer = majority_answer(3)
    for offset, role in enumerate(ROLES):  # first, middle, last: residues 0, 1, 2
        wrapper = TargetRole(task, role)
        for prefix in range(6, 20):
            full = wrapper.full_length(prefix)
            assert wrapper.role_position(full) == prefix - 1
            tokens = wrapper.sample(32, prefix, np.random.default_rng(prefix))
            got = wrapper.oracle(torch.as_tensor(tokens)).tolist()
            expected = [answer(row[: full - 3])[offset] for row in tokens.tolist()]
            assert got == expected


def test_unknown_target_role_is_refused():
    with pytest.raises(TaskSpecError, match="role"):
        TargetRole(get_task("repeat_copy"), "second")


# ------------------------------------------------------------------ bad input


def test_unique_copy_needs_enough_distinct_tokens():
    task = get_task("unique_copy:V=3")
    task.sample(4, 6, np.random.default_rng(0))  # n = 3 is fine
    for length in (7, 8, 20):
        with pytest.raises(TaskSpecError, match="V=3"):
            task.sample(4, length, np.random.default_rng(0))
        with pytest.raises(TaskSpecError, match="V=3"):
            task.batch(4, length, np.random.default_rng(0))
    with pytest.raises(TaskSpecError, match="V=3"):
        get_task("sort:V=3").sample(2, 8, np.random.default_rng(0))


@pytest.mark.parametrize(
    "spec",
    [
        "tomita:n=8",
        "tomita:n=0",
        "dyck:k=3",
        "dyck:k=0",
        "addition:B=1",
        "unique_copy:V=1",
        "interleaved_majority:p=0",
        "interleaved_majority:alpha=0",
    ],
)
def test_bad_parameters_are_refused(spec):
    with pytest.raises(TaskSpecError):
        get_task(spec)
