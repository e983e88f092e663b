"""A model-agnostic bounded local search over short strings, driven by the caller's objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcheck.checking.witnesses.base import (
    Objective,
    ObjectiveMany,
    Structure,
    Witness,
    check_long_input,
    check_positive,
    check_tokens,
)
from simcheck.errors import SimcheckError

# Rounds without a strict improvement after which a search stops.
PATIENCE = 3

# ------------------------------------------------------------------ local search


@dataclass
class _SearchState:
    """One input's progress in a lockstep search."""

    best: np.ndarray
    value: float
    start_value: float
    step: int
    rounds: int = 0
    edits: int = 0
    evaluations: int = 1
    stale: int = 0

    @property
    def done(self) -> bool:
        """Stopped by patience."""
        return self.stale >= PATIENCE


def _propose(
    state: _SearchState,
    max_length: int,
    structure: Structure,
    keep_window: bool,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """One random edit of ``state.best`` that respects the length bounds and the window,
    or None when no edit is possible."""
    seq, step = state.best, state.step
    editable = seq.shape[0] - structure.tail if keep_window else seq.shape[0]
    low = max(structure.min_length, 1)
    moves = []
    if editable >= 1 and structure.vocab_size > 1:
        moves.append("substitute")
    if seq.shape[0] + step <= max_length:
        moves.append("insert")
    if editable >= step and seq.shape[0] - step >= low:
        moves.append("delete")
    if not moves:
        return None
    move = moves[int(rng.integers(len(moves)))]
    if move == "substitute":
        at = int(rng.integers(editable))
        new = int(rng.integers(structure.vocab_size - 1))
        edited = seq.copy()
        edited[at] = new + (new >= seq[at])
        return edited
    if move == "insert":
        at = int(rng.integers(editable + 1))
        return np.insert(seq, at, rng.integers(structure.vocab_size, size=step))
    at = int(rng.integers(editable - step + 1))
    return np.delete(seq, np.arange(at, at + step))


def _evaluate(objective_many: ObjectiveMany, pairs: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """One objective call; NaN counts as +inf so it never wins."""
    values = np.asarray(objective_many(pairs), dtype=np.float64).reshape(-1)
    if values.shape[0] != len(pairs):
        raise SimcheckError(
            f"the objective returned {values.shape[0]} values for {len(pairs)} sequences: "
            "return one value per sequence"
        )
    return np.where(np.isnan(values), np.inf, values)


def _check_start(
    start: Any,
    index: int,
    max_length: int,
    structure: Structure,
    keep_window: bool,
    x: np.ndarray | None,
) -> np.ndarray:
    """A search start validated against the bounds, the window and (given x) its residue."""
    what = f"start {index}"
    start = check_tokens(start, structure, what)
    low = max(structure.min_length, structure.tail if keep_window else 1)
    if not low <= start.shape[0] <= max_length:
        raise SimcheckError(
            f"{what} has {start.shape[0]} tokens: start from {low}..{max_length} tokens"
        )
    if x is None:
        return start
    x = check_long_input(x, structure)
    if (x.shape[0] - start.shape[0]) % structure.period:
        raise SimcheckError(
            f"{what} has {start.shape[0]} tokens, not congruent to len(x)={x.shape[0]} mod "
            f"period={structure.period}: start from an admissible length"
        )
    if keep_window and not np.array_equal(start[-structure.tail :], x[-structure.tail :]):
        raise SimcheckError(f"{what} does not end with x's window: start from a witness of x")
    return start


def _search_round(
    states: list[_SearchState],
    objective_many: ObjectiveMany,
    max_length: int,
    structure: Structure,
    keep_window: bool,
    proposals: int,
    rng: np.random.Generator,
) -> None:
    """One lockstep round: every active input's distinct proposals, one objective call."""
    pairs: list[tuple[int, np.ndarray]] = []
    owned: dict[int, list[int]] = {}
    for index, state in enumerate(states):
        if state.done:
            continue
        seen = {state.best.tobytes()}
        for _ in range(proposals):
            proposal = _propose(state, max_length, structure, keep_window, rng)
            if proposal is not None and proposal.tobytes() not in seen:
                seen.add(proposal.tobytes())
                owned.setdefault(index, []).append(len(pairs))
                pairs.append((index, proposal))
        if index not in owned:
            state.stale = PATIENCE
    if not pairs:
        return
    values = _evaluate(objective_many, pairs)
    for index, mine in owned.items():
        state = states[index]
        state.rounds += 1
        state.evaluations += len(mine)
        best = min(mine, key=lambda k: values[k])
        if values[best] < state.value:
            state.best, state.value = pairs[best][1], float(values[best])
            state.edits += 1
            state.stale = 0
        else:
            state.stale += 1


def local_search_many(
    starts: list[np.ndarray],
    objective_many: ObjectiveMany,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator,
    rounds: int = 20,
    proposals: int = 16,
    keep_window: bool = False,
    xs: Sequence[np.ndarray] | None = None,
) -> list[Witness]:
    """`local_search` for many inputs in lockstep, so the caller can batch its model calls.

    ``objective_many`` maps (input index, sequence) pairs to one value each (lower is
    better). The starts are scored in one call, then each round makes one call with every
    active input's proposals; inputs stop independently. ``xs`` holds each input's long x
    (or None): see `local_search`. Deterministic given ``rng``.
    """
    max_length = check_positive(max_length, "max_length")
    rounds = check_positive(rounds, "rounds", low=0)
    proposals = check_positive(proposals, "proposals")
    if xs is not None and len(xs) != len(starts):
        raise SimcheckError(f"{len(xs)} xs for {len(starts)} starts: pass one x per start")
    longs = [None] * len(starts) if xs is None else list(xs)
    checked = [
        _check_start(s, i, max_length, structure, keep_window, x)
        for i, (s, x) in enumerate(zip(starts, longs, strict=True))
    ]
    if not checked:
        return []
    values = _evaluate(objective_many, list(enumerate(checked)))
    states = [
        _SearchState(s, float(v), float(v), 1 if x is None else structure.period)
        for s, v, x in zip(checked, values, longs, strict=True)
    ]
    for _ in range(rounds):
        if all(state.done for state in states):
            break
        _search_round(states, objective_many, max_length, structure, keep_window, proposals, rng)
    return [_search_witness(state) for state in states]


def _search_witness(state: _SearchState) -> Witness:
    """The search result of one input."""
    info = {
        "start_objective": state.start_value,
        "objective": state.value,
        "rounds": state.rounds,
        "edits": state.edits,
        "evaluations": state.evaluations,
    }
    return Witness(state.best, "search", info)


def local_search(
    start: np.ndarray,
    objective: Objective,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator,
    rounds: int = 20,
    proposals: int = 16,
    keep_window: bool = False,
    x: np.ndarray | None = None,
) -> Witness:
    """Bounded local search from ``start`` to lower ``objective`` (see the module doc).

    Lengths stay within [max(min_length, 1), max_length]. With ``keep_window`` the last
    window+1 tokens are never edited. Given the long input ``x``, the start must have a length
    congruent to len(x) mod period (and, with ``keep_window``, end with x's window), and
    insertions and deletions move ``period`` tokens at once so that stays true.
    Deterministic given ``rng``.
    """

    def objective_many(pairs: list[tuple[int, np.ndarray]]) -> np.ndarray:
        return objective([seq for _, seq in pairs])

    xs = None if x is None else [x]
    witnesses = local_search_many(
        [start], objective_many, max_length, structure, rng, rounds, proposals, keep_window, xs
    )
    return witnesses[0]
