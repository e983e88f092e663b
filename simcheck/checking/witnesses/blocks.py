"""The blocks witnesses (Lemma 5.3): contiguous blocks of x kept by a keep/skip Markov chain."""

from __future__ import annotations

import numpy as np

from simcheck.checking.witnesses.base import (
    Structure,
    Witness,
    admissible_lengths,
    check_long_input,
    check_positive,
    type_error,
)

# ------------------------------------------------------------------ blocks witnesses


def _composition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random composition of ``total`` into ``parts`` non-negative integers."""
    bars = np.sort(rng.choice(total + parts - 1, size=parts - 1, replace=False))
    return np.diff(np.concatenate([[-1], bars, [total + parts - 1]])) - 1


def _block_sources(
    n: int, length: int, structure: Structure, rng: np.random.Generator
) -> np.ndarray:
    """Indices of x kept by one draw of the conditioned keep/skip chain (see module doc).

    The result has ``length`` increasing indices and ends with x's window; every run of
    skipped indices after the first kept one is a multiple of the period long, so each kept
    index keeps its residue relative to the end.
    """
    tail, period = structure.tail, structure.period
    body, keep = n - tail, length - tail
    window = np.arange(body, n)
    if keep in (0, body):  # only the window, or all of x
        return np.concatenate([np.arange(keep), window])
    mean_block = min(max(tail, round(length ** (1 / 3))), keep)
    blocks = max(1, round(keep / mean_block))
    sizes = _composition(keep - blocks, blocks, rng) + 1
    units, offset = divmod(body - keep, period)
    skips = _composition(units, blocks + 1, rng) * period
    starts = offset + skips[0] + np.cumsum(np.concatenate([[0], sizes[:-1] + skips[1:-1]]))
    kept = [np.arange(s, s + size) for s, size in zip(starts, sizes, strict=True)]
    return np.concatenate([*kept, window])


def _runs(indices: np.ndarray) -> int:
    """Number of maximal runs of consecutive integers in an increasing index array."""
    return int(np.count_nonzero(np.diff(indices) != 1)) + 1


def blocks_witnesses(
    x: np.ndarray,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator | None = None,
    candidates: int = 16,
) -> list[Witness]:
    """Up to ``candidates`` distinct block-subsampling witnesses (Lemma 5.3).

    Target lengths cycle through the admissible lengths no longer than x, from the longest
    down. Every witness is admissible, ends with x's window, and its token from x[j] at
    position i keeps the residue relative to the end: (len - 1 - i) = (n - 1 - j) mod period.
    Identical token arrays are drawn once, so fewer come back when the lengths leave little
    room (e.g. only x itself or only its window); none when every admissible length exceeds
    n. ``rng`` defaults to ``np.random.default_rng(0)``; the result is deterministic given it.
    """
    x = check_long_input(x, structure)
    candidates = check_positive(candidates, "candidates")
    rng = np.random.default_rng(0) if rng is None else rng
    n = x.shape[0]
    lengths = [m for m in reversed(admissible_lengths(n, max_length, structure)) if m <= n]
    witnesses: list[Witness] = []
    seen: set[bytes] = set()
    for attempt in range(4 * candidates):
        if not lengths or len(witnesses) == candidates:
            break
        length = lengths[attempt % len(lengths)]
        sources = _block_sources(n, length, structure, rng)
        tokens = x[sources]
        if tokens.tobytes() in seen:
            continue
        seen.add(tokens.tobytes())
        info = {
            "candidate": len(witnesses),
            "blocks": _runs(sources),
            "keep_fraction": (length - structure.tail) / max(n - structure.tail, 1),
            "type_error": type_error(x, tokens, structure),
        }
        witnesses.append(Witness(tokens, "blocks", info))
    return witnesses
