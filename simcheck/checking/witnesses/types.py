"""The types witnesses (Thm 4.1): each (token, position mod Delta) type keeps its proportion."""

from __future__ import annotations

import numpy as np

from simcheck.checking.witnesses.base import (
    TIE_TOLERANCE,
    Structure,
    Witness,
    admissible_lengths,
    check_long_input,
    check_positive,
    type_counts,
    type_error_to,
)
from simcheck.errors import SimcheckError

# ------------------------------------------------------------------ types witnesses


def largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``counts`` that sum to ``total`` (largest-remainder method).

    Each gets the floor of its exact share ``counts * total / counts.sum()``; the leftover
    units go one each to the largest remainders, ties to the smaller index. Each result is
    within 1 of its exact share. Integer arithmetic, so ties are exact.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or counts.size == 0 or counts.min() < 0 or counts.sum() == 0:
        raise SimcheckError(
            "largest_remainder needs a 1-D array of non-negative counts with a positive sum"
        )
    scaled = counts * check_positive(total, "total", low=0)
    whole, remainder = np.divmod(scaled, counts.sum())
    leftover = total - int(whole.sum())
    order = np.lexsort((np.arange(counts.size), -remainder))
    whole[order[:leftover]] += 1
    return whole


def _low_discrepancy_order(counts: np.ndarray) -> np.ndarray:
    """Token ids with the given counts, ordered so every prefix keeps the proportions.

    At slot k (1-based) of S the token with the largest lag ``k * count / S - placed`` goes
    next, ties to the smaller id. The lags sum to 1 before each pick, so the largest is
    positive and a token that has all its copies (lag <= 0) is never picked again.
    """
    tokens = np.flatnonzero(counts)
    wanted = counts[tokens]
    slots = int(wanted.sum())
    placed = np.zeros_like(wanted)
    order = np.empty(slots, dtype=np.int64)
    for k in range(1, slots + 1):
        pick = int(np.argmax(k * wanted - slots * placed))
        placed[pick] += 1
        order[k - 1] = tokens[pick]
    return order


def _class_counts(counts: np.ndarray, residue: int, slots: int) -> np.ndarray:
    """Token counts for ``slots`` prefix slots of ``residue``, following x's type counts.

    x's proportions within the residue class; x's overall proportions outside the window when
    x has no position of that class there; all token 0 when x has no position there at all.
    """
    source = counts[residue] if counts[residue].sum() > 0 else counts.sum(axis=0)
    if source.sum() == 0:
        source = np.eye(counts.shape[1], dtype=np.int64)[0]
    return largest_remainder(source, slots)


def _types_tokens(
    x: np.ndarray, counts: np.ndarray, length: int, structure: Structure
) -> np.ndarray:
    """The types construction at one admissible length: a filled prefix, then x's window.

    ``counts`` are x's `type_counts`."""
    prefix = np.empty(length - structure.tail, dtype=np.int64)
    for residue in range(min(structure.period, prefix.shape[0])):
        slots = prefix[residue :: structure.period].shape[0]
        class_counts = _class_counts(counts, residue, slots)
        prefix[residue :: structure.period] = _low_discrepancy_order(class_counts)
    return np.concatenate([prefix, x[-structure.tail :]])


def _types_at(
    x: np.ndarray, lengths: list[int], structure: Structure, requested: bool
) -> list[Witness]:
    """Types witnesses of the given lengths with their type errors; ``requested`` says
    whether to record each length as requested (otherwise None)."""
    counts = type_counts(x, structure)
    target = counts / max(int(counts.sum()), 1)
    witnesses = []
    for length in lengths:
        tokens = _types_tokens(x, counts, length, structure)
        info = {
            "type_error": type_error_to(target, tokens, structure),
            "requested_length": length if requested else None,
        }
        witnesses.append(Witness(tokens, "types", info))
    return witnesses


def types_witnesses(
    x: np.ndarray,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator | None = None,
) -> list[Witness]:
    """One types witness per admissible length, ascending by length (deterministic: ``rng``
    is accepted for the common signature and not used).

    The caller takes the best of them under its own error: choosing the length is part of the
    construction.
    """
    x = check_long_input(x, structure)
    lengths = admissible_lengths(x.shape[0], max_length, structure)
    return _types_at(x, lengths, structure, requested=True)


def types_witness(
    x: np.ndarray, max_length: int, structure: Structure, length: int | None = None
) -> Witness:
    """The types witness at ``length``, or by default at the admissible length that
    minimises `type_error` (ties to the longer length)."""
    x = check_long_input(x, structure)
    lengths = admissible_lengths(x.shape[0], max_length, structure)
    if length is not None:
        if length not in lengths:
            raise SimcheckError(
                f"length={length!r} is not admissible for n={x.shape[0]}: "
                f"pick one of {_summary(lengths)}"
            )
        return _types_at(x, [length], structure, requested=True)[0]
    witnesses = _types_at(x, lengths, structure, requested=False)
    best = min(w.info["type_error"] for w in witnesses)
    return [w for w in witnesses if w.info["type_error"] <= best + TIE_TOLERANCE][-1]


def _summary(values: list[int]) -> str:
    """A short rendering of a long list of ints (first and last few)."""
    if len(values) <= 8:
        return str(values)
    head = ", ".join(map(str, values[:3]))
    tail = ", ".join(map(str, values[-3:]))
    return f"[{head}, ..., {tail}]"
