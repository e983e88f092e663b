"""Witness constructions: types, blocks, user functions and the local search, on hand-made
inputs whose right answers can be worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcheck.checking.witnesses import (
    Structure,
    Witness,
    WitnessContext,
    admissible_lengths,
    blocks_witnesses,
    largest_remainder,
    local_search,
    local_search_many,
    type_counts,
    type_error,
    types_witness,
    types_witnesses,
    user_witnesses,
    witness_method,
    witness_methods,
)
from simcheck.errors import SimcheckError


def modp_pattern(n: int = 30) -> np.ndarray:
    """Token 1 at residue 0 mod 3, token 1 at t = 2 mod 9, else 0: exact thirds per class."""
    t = np.arange(n)
    return ((t % 3 == 0) | (t % 9 == 2)).astype(np.int64)


def positions(n: int) -> np.ndarray:
    """Each token names its source position (vocab 1000 > n)."""
    return np.arange(n, dtype=np.int64) % 1000


# ------------------------------------------------------------------ structure, Witness


@pytest.mark.parametrize(
    "bad",
    [{"period": 0}, {"window": -1}, {"min_length": 0}, {"vocab_size": 0}, {"period": 1.5}],
)
def test_structure_rejects_bad_values(bad):
    with pytest.raises(SimcheckError, match=next(iter(bad))):
        Structure(**bad)


def test_witness_to_dict_is_json_ready_and_rounded():
    w = Witness(np.array([1, 0, 2]), "types", {"type_error": 1 / 3, "n": np.int64(4)})
    d = w.to_dict()
    assert d == {
        "tokens": [1, 0, 2],
        "method": "types",
        "length": 3,
        "info": {"type_error": 0.333333, "n": 4},
    }
    json.dumps(d)
    assert w.length == 3 and w.tokens.dtype == np.int64
    assert witness_methods()[:4] == ("types", "blocks", "task", "search")


# ------------------------------------------------------------------ counts, errors, lengths


def test_type_counts_and_type_error():
    s = Structure(period=2, window=1, vocab_size=3)
    z = np.array([0, 1, 2, 2, 0, 1])  # positions 0..3 outside the window
    expected = np.array([[1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(type_counts(z, s), expected)
    assert type_counts(z, s, exclude_window=False).sum() == 6
    assert type_error(z, z, s) == 0.0
    # x outside the window: (0,0), (1,0) -> proportions 1/2 each; z has 1/4 of (0,0).
    x = np.array([0, 0, 1, 1])
    assert type_error(x, z, s) == pytest.approx(0.5)
    # No positions outside the window on either side, or only on one side.
    assert type_error(np.array([2, 2]), np.array([1, 0]), s) == 0.0
    assert type_error(x, np.array([1, 0]), s) == pytest.approx(0.5)


def test_admissible_lengths():
    assert admissible_lengths(30, 12, Structure(period=3)) == [3, 6, 9, 12]
    assert admissible_lengths(31, 12, Structure(period=3)) == [1, 4, 7, 10]
    assert admissible_lengths(31, 12, Structure(period=3, window=2, min_length=5)) == [7, 10]
    assert admissible_lengths(5, 3, Structure()) == [1, 2, 3]


@pytest.mark.parametrize(
    ("n", "max_length", "structure", "fix"),
    [
        (30, 4, Structure(window=4), "lower the window or raise max_length"),
        (30, 4, Structure(min_length=6), "lower min_length or raise max_length"),
        (30, 4, Structure(period=5, min_length=2), "raise max_length or lower min_length"),
        (0, 4, Structure(), "n=0"),
        (30, 0, Structure(), "max_length=0"),
    ],
)
def test_admissible_lengths_errors(n, max_length, structure, fix):
    with pytest.raises(SimcheckError, match=fix):
        admissible_lengths(n, max_length, structure)


# ------------------------------------------------------------------ largest remainder


@pytest.mark.parametrize(
    ("counts", "total"),
    [([1, 1, 1], 2), ([5, 3, 2], 7), ([10, 0, 9, 1], 11), ([3], 4), ([2, 2], 0), ([7, 6], 100)],
)
def test_largest_remainder_sums_exactly_and_stays_within_one(counts, total):
    counts = np.array(counts)
    result = largest_remainder(counts, total)
    exact = counts * total / counts.sum()
    assert result.sum() == total
    assert np.all(np.abs(result - exact) < 1)
    assert np.all(result[counts == 0] == 0)


def test_largest_remainder_breaks_ties_by_index():
    np.testing.assert_array_equal(largest_remainder(np.array([1, 1, 1]), 2), [1, 1, 0])
    np.testing.assert_array_equal(largest_remainder(np.array([5, 3, 2]), 7), [4, 2, 1])


def test_largest_remainder_rejects_empty_weights():
    with pytest.raises(SimcheckError, match="positive sum"):
        largest_remainder(np.array([0, 0]), 3)


# ------------------------------------------------------------------ types witnesses


def test_types_witnesses_keep_the_residue_and_the_window():
    s = Structure(period=3, window=0, vocab_size=2)
    x = modp_pattern(30)
    witnesses = types_witnesses(x, 12, s)
    assert [w.length for w in witnesses] == [3, 6, 9, 12]
    for w in witnesses:
        assert w.method == "types" and w.info["requested_length"] == w.length
        assert (w.length - len(x)) % 3 == 0
        assert w.tokens[-1] == x[-1]


def test_types_counts_follow_the_class_proportions():
    s = Structure(period=3, window=0, vocab_size=2)
    x = modp_pattern(31)  # n = 31: 10 positions of each residue outside the window
    z = types_witness(x, 13, s, length=13).tokens  # 12 prefix slots, 4 per residue
    cx, cz = type_counts(x, s), type_counts(z, s)
    for r in range(3):
        share = cx[r] / cx[r].sum() * 4
        assert cz[r].sum() == 4
        np.testing.assert_array_less(np.abs(cz[r] - share), 1)


def test_types_exact_proportions_give_zero_error_and_best_length():
    s = Structure(period=3, window=2, vocab_size=2)
    x = modp_pattern(30)  # 27 positions outside the window, 9 per residue, thirds exact
    best = types_witness(x, 12, s)
    assert best.length == 12 and best.info == {"type_error": 0.0, "requested_length": None}
    np.testing.assert_array_equal(best.tokens[-3:], x[-3:])
    errors = {w.length: w.info["type_error"] for w in types_witnesses(x, 12, s)}
    assert errors[12] == 0.0 and min(errors.values()) == errors[best.length]
    assert errors[9] == pytest.approx(1 / 18) and errors[3] == pytest.approx(1 / 3)
    for length, error in errors.items():
        z = types_witness(x, 12, s, length=length).tokens
        assert type_error(x, z, s) == error


def test_types_best_length_ties_go_to_the_longer():
    s = Structure(period=1, window=0, vocab_size=2)
    x = np.array([0, 1] * 10 + [0])  # half ones outside the window
    assert types_witness(x, 9, s).length == 9  # lengths 3, 5, 7, 9 (even prefixes) exact
    assert types_witness(x, 8, s).length == 7


def test_types_within_class_order_keeps_prefix_proportions():
    s = Structure(period=1, window=0, vocab_size=3)
    x = np.array([0] * 30 + [1] * 20 + [2] * 10 + [0])  # shares 1/2, 1/3, 1/6
    z = types_witness(x, 13, s, length=13).tokens
    prefix = z[:-1]
    np.testing.assert_array_equal(np.bincount(prefix, minlength=3), [6, 4, 2])
    for k in range(1, len(prefix) + 1):
        counts = np.bincount(prefix[:k], minlength=3)
        assert np.all(np.abs(counts - k * np.array([1 / 2, 1 / 3, 1 / 6])) < 1)


def test_types_fallbacks_for_missing_classes():
    s = Structure(period=2, window=0, vocab_size=3)
    x = np.array([2, 1])  # residue 1 has no position outside the window
    z = types_witness(x, 6, s, length=6).tokens
    np.testing.assert_array_equal(z, [2, 2, 2, 2, 2, 1])
    only_window = Structure(period=1, window=1, vocab_size=3)
    z = types_witness(np.array([2, 1]), 5, only_window, length=5).tokens
    np.testing.assert_array_equal(z, [0, 0, 0, 2, 1])


def test_types_errors():
    s = Structure(period=3, window=2, vocab_size=2)
    x = modp_pattern(30)
    with pytest.raises(SimcheckError, match="not admissible"):
        types_witness(x, 12, s, length=11)
    with pytest.raises(SimcheckError, match="lower the window or raise max_length"):
        types_witness(x, 2, s)
    with pytest.raises(SimcheckError, match="needs at least 3"):
        types_witnesses(x[:2], 12, s)
    with pytest.raises(SimcheckError, match=r"outside 0\.\.1"):
        types_witnesses(x + 1, 12, s)
    with pytest.raises(SimcheckError, match="integer token ids"):
        types_witnesses(x.astype(float), 12, s)


# ------------------------------------------------------------------ blocks witnesses


@pytest.mark.parametrize(("period", "window"), [(1, 0), (3, 2), (4, 1), (5, 6)])
def test_blocks_preserve_residues_window_and_lengths(period, window):
    n, max_length = 400, 40
    s = Structure(period=period, window=window, vocab_size=1000)
    x = positions(n)
    witnesses = blocks_witnesses(x, max_length, s, candidates=12, rng=np.random.default_rng(1))
    admissible = set(admissible_lengths(n, max_length, s))
    assert len(witnesses) == 12
    for i, w in enumerate(witnesses):
        z = w.tokens
        assert w.method == "blocks" and w.info["candidate"] == i
        assert w.length in admissible and w.length <= max_length
        np.testing.assert_array_equal(z[-(window + 1) :], x[-(window + 1) :])
        assert np.all(np.diff(z) > 0)  # kept in order, each source at most once
        ends_z = w.length - 1 - np.arange(w.length)
        assert np.all((ends_z - (n - 1 - z)) % period == 0)
        assert w.info["blocks"] == int(np.count_nonzero(np.diff(z) != 1)) + 1
        assert w.info["type_error"] == type_error(x, z, s)


def test_blocks_lengths_cycle_from_the_longest():
    s = Structure(period=3, vocab_size=1000)
    witnesses = blocks_witnesses(positions(300), 40, s, candidates=5)
    assert [w.length for w in witnesses] == [39, 36, 33, 30, 27]


def test_blocks_are_deterministic_given_the_seed_and_distinct():
    s = Structure(period=2, window=1, vocab_size=2)
    x = np.random.default_rng(0).integers(2, size=200)
    draw = [blocks_witnesses(x, 20, s, rng=np.random.default_rng(7)) for _ in range(2)]
    assert [w.to_dict() for w in draw[0]] == [w.to_dict() for w in draw[1]]
    other = blocks_witnesses(x, 20, s, rng=np.random.default_rng(8))
    assert [w.to_dict() for w in draw[0]] != [w.to_dict() for w in other]
    keys = {w.tokens.tobytes() for w in draw[0]}
    assert len(keys) == len(draw[0]) == 16


def test_blocks_few_distinct_candidates_when_lengths_leave_no_room():
    s = Structure(period=1, window=1, vocab_size=1000)
    x = positions(3)
    witnesses = blocks_witnesses(x, 3, s, candidates=8)  # lengths 3 (x itself) and 2 (window)
    assert sorted(w.tokens.tolist() for w in witnesses) == [[0, 1, 2], [1, 2]]
    assert blocks_witnesses(x, 6, Structure(min_length=5, vocab_size=1000)) == []


# ------------------------------------------------------------------ user witnesses


def test_user_witnesses_accept_one_or_many():
    s = Structure(vocab_size=3)
    x = np.array([0, 1, 2, 1])

    def halves(x, max_length, structure, rng):
        return [x[:2], x[2:]]

    witnesses = user_witnesses(halves, x, 3, s)
    assert [w.method for w in witnesses] == ["halves", "halves"]
    assert [w.tokens.tolist() for w in witnesses] == [[0, 1], [2, 1]]
    single = user_witnesses(lambda x, m, s, rng: x[-2:], x, 3, s)
    assert single[0].method == "user" and single[0].tokens.tolist() == [2, 1]


def test_user_witnesses_get_the_rng_and_old_signatures_are_refused():
    s = Structure(vocab_size=3)
    x = np.array([0, 1, 2, 1])

    def shuffled(x, max_length, structure, rng):
        return [rng.permutation(x[:3])]

    draws = [user_witnesses(shuffled, x, 3, s, np.random.default_rng(5)) for _ in range(2)]
    assert draws[0][0].tokens.tolist() == draws[1][0].tokens.tolist()
    assert sorted(draws[0][0].tokens.tolist()) == [0, 1, 2]
    with pytest.raises(SimcheckError, match="add the rng parameter"):
        user_witnesses(lambda x, m, s: x[-2:], x, 3, s)


def test_every_generic_construction_keeps_the_window_and_the_residue():
    s = Structure(period=2, window=1, vocab_size=3)
    x = np.random.default_rng(0).integers(0, 3, size=40)
    for name in ("types", "blocks"):
        method = witness_method(name)
        options = {option: 4 for option in method.options}
        context = WitnessContext(x, 12, s, np.random.default_rng(1), options=options)
        witnesses = method.witnesses(context)
        assert witnesses and all(w.method == name for w in witnesses)
        for w in witnesses:
            assert w.length <= 12 and (len(x) - w.length) % 2 == 0
            np.testing.assert_array_equal(w.tokens[-2:], x[-2:])
    assert witness_method("search").refines and not witness_method("types").refines
    with pytest.raises(SimcheckError, match="unknown witness method 'typo'"):
        witness_method("typo")


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ([np.array([0, 1, 1, 0])], "has 4 tokens"),
        ([np.array([], dtype=np.int64)], "non-empty 1-D"),
        ([np.array([[0, 1]])], "non-empty 1-D"),
        ([np.array([0.0, 1.0])], "integer token ids"),
        ([np.array([0, 3])], "outside 0..2"),
        ([np.array([1])], "has 1 tokens"),
    ],
)
def test_user_witnesses_reject_bad_witnesses(result, problem):
    def bad_fn(x, max_length, structure, rng):
        return result

    s = Structure(vocab_size=3, min_length=2)
    with pytest.raises(SimcheckError, match=problem) as caught:
        user_witnesses(bad_fn, np.array([0, 1, 2, 1, 0]), 3, s)
    assert "witness 0 of bad_fn" in str(caught.value)


# ------------------------------------------------------------------ local search


def ones_and_length(target_ones: int, target_length: int):
    """Objective: distance of the number of 1s and of the length to their targets."""

    def objective(seqs: list[np.ndarray]) -> np.ndarray:
        return np.array(
            [abs(int((s == 1).sum()) - target_ones) + abs(len(s) - target_length) for s in seqs],
            dtype=float,
        )

    return objective


def test_local_search_decreases_the_objective_and_is_deterministic():
    s = Structure(vocab_size=3)
    start = np.zeros(3, dtype=np.int64)
    runs = [
        local_search(start, ones_and_length(5, 10), 12, s, np.random.default_rng(3))
        for _ in range(2)
    ]
    w = runs[0]
    assert w.method == "search"
    assert w.info["start_objective"] == 7.0 + 5.0
    assert w.info["objective"] == 0.0 < w.info["start_objective"]
    assert (w.tokens == 1).sum() == 5 and w.length == 10
    assert 1 <= w.info["edits"] <= w.info["rounds"] <= 20
    assert w.info["evaluations"] > w.info["rounds"]
    assert w.to_dict() == runs[1].to_dict()


def test_local_search_respects_max_length_and_min_length():
    s = Structure(vocab_size=2, min_length=4)
    seen: list[int] = []

    def objective(seqs):
        seen.extend(len(q) for q in seqs)
        return np.array([-len(q) for q in seqs], dtype=float)  # longer is better

    w = local_search(np.zeros(5, dtype=np.int64), objective, 7, s, np.random.default_rng(0))
    assert w.length == 7 and max(seen) <= 7 and min(seen) >= 4


def test_local_search_keep_window_never_edits_the_window():
    s = Structure(vocab_size=2, window=2)
    start = np.array([0, 0, 1, 0, 1], dtype=np.int64)
    tails: set[tuple[int, ...]] = set()

    def objective(seqs):
        tails.update(tuple(q[-3:]) for q in seqs)
        return np.array([abs((q == 1).sum() - 1) + len(q) for q in seqs], dtype=float)

    w = local_search(start, objective, 8, s, np.random.default_rng(0), keep_window=True)
    assert tails == {(1, 0, 1)}
    assert w.tokens.tolist() == [1, 0, 1]  # only the window is left


def test_local_search_with_x_keeps_the_length_residue():
    s = Structure(period=3, window=1, vocab_size=2)
    x = np.array([1, 0] * 10 + [1])  # n = 21
    lengths: set[int] = set()

    def objective(seqs):
        lengths.update(len(q) for q in seqs)
        return np.array([-(q == 1).sum() for q in seqs], dtype=float)

    start = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1])  # 9 = 21 mod 3, ends with x's window
    w = local_search(start, objective, 12, s, np.random.default_rng(0), keep_window=True, x=x)
    assert lengths <= {3, 6, 9, 12} and w.length % 3 == 0
    assert w.tokens[-2:].tolist() == [0, 1]
    with pytest.raises(SimcheckError, match="congruent"):
        local_search(start[1:], objective, 12, s, np.random.default_rng(0), x=x)
    with pytest.raises(SimcheckError, match="window"):
        local_search(start[::-1], objective, 12, s, np.random.default_rng(0), keep_window=True, x=x)


def test_local_search_many_makes_one_call_per_round():
    s = Structure(vocab_size=2)
    targets = [(2, 4), (6, 8), (0, 1)]
    calls: list[int] = []

    def objective_many(pairs):
        calls.append(len(pairs))
        return np.array(
            [abs(int(q.sum()) - targets[i][0]) + abs(len(q) - targets[i][1]) for i, q in pairs],
            dtype=float,
        )

    starts = [np.zeros(3, dtype=np.int64) for _ in targets]
    witnesses = local_search_many(starts, objective_many, 10, s, np.random.default_rng(0))
    assert len(calls) == 1 + max(w.info["rounds"] for w in witnesses)
    assert calls[0] == 3
    assert sum(calls) == sum(w.info["evaluations"] for w in witnesses)
    assert [w.info["objective"] for w in witnesses] == [0.0, 0.0, 0.0]


def test_local_search_errors():
    s = Structure(vocab_size=2)
    objective = ones_and_length(1, 2)
    with pytest.raises(SimcheckError, match=r"start from 1\.\.4 tokens"):
        local_search(np.zeros(5, dtype=np.int64), objective, 4, s, np.random.default_rng(0))
    with pytest.raises(SimcheckError, match="one value per sequence"):
        local_search(
            np.zeros(2, dtype=np.int64), lambda q: [0.0, 1.0], 4, s, np.random.default_rng(0)
        )
