"""What every witness construction shares: `Structure` (Delta, tau and the vocabulary), `Witness`,
the checks of their inputs, type counts and the admissible lengths."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcheck.errors import SimcheckError

TIE_TOLERANCE = 1e-12

# ------------------------------------------------------------------ data types


def _is_int(value: Any) -> bool:
    """A Python or NumPy integer, but not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class Structure:
    """What the model class makes relevant to a witness.

    ``period`` is Delta (positions matter mod Delta outside the window), ``window`` is tau (the
    last tau+1 tokens are kept verbatim), ``min_length`` the shortest admissible witness and
    ``vocab_size`` the number of tokens.
    """

    period: int = 1
    window: int = 0
    min_length: int = 1
    vocab_size: int = 2

    def __post_init__(self) -> None:
        for name, low in (("period", 1), ("window", 0), ("min_length", 1), ("vocab_size", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise SimcheckError(
                    f"Structure.{name}={value!r} is invalid: use an integer >= {low}"
                )

    @property
    def tail(self) -> int:
        """Number of tokens kept verbatim at the end: window + 1 (the window and the query)."""
        return self.window + 1


@dataclass(frozen=True, eq=False)
class Witness:
    """A candidate short sequence, how it was made (``method``) and details of it (``info``).

    Equality is identity (tokens are an array); compare ``tokens`` explicitly.
    """

    tokens: np.ndarray
    method: str
    info: dict[str, Any]

    def __post_init__(self) -> None:
        tokens = np.array(self.tokens, dtype=np.int64).reshape(-1)
        tokens.setflags(write=False)
        object.__setattr__(self, "tokens", tokens)

    @property
    def length(self) -> int:
        """Number of tokens."""
        return int(self.tokens.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: tokens as ints, floats in ``info`` rounded to 6 significant digits."""
        return {
            "tokens": [int(t) for t in self.tokens],
            "method": self.method,
            "length": self.length,
            "info": _json_value(self.info),
        }


def _json_value(value: Any) -> Any:
    """``value`` with NumPy scalars made Python ones and finite floats rounded to 6 digits."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_value(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if _is_int(value):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(f"{value:.6g}") if math.isfinite(value) else float(value)
    return value


# A user witness function: (x, max_length, structure, rng) -> one sequence or several.
WitnessFn = Callable[
    [np.ndarray, int, Structure, np.random.Generator], Sequence[np.ndarray] | np.ndarray
]
# A construction: (x, max_length, structure, rng, **options) -> witnesses.
Construction = Callable[..., list["Witness"]]
# k candidate sequences -> k values, lower is better.
Objective = Callable[[list[np.ndarray]], np.ndarray]
# (input index, sequence) pairs -> one value per pair, lower is better.
ObjectiveMany = Callable[[list[tuple[int, np.ndarray]]], np.ndarray]


# ------------------------------------------------------------------ validation


def check_tokens(tokens: Any, structure: Structure, what: str) -> np.ndarray:
    """``tokens`` as a 1-D int64 array of valid token ids, or a SimcheckError naming ``what``."""
    array = np.asarray(tokens)
    if array.ndim != 1 or array.shape[0] == 0:
        raise SimcheckError(
            f"{what} has shape {array.shape}: pass a non-empty 1-D array of token ids"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise SimcheckError(f"{what} has dtype {array.dtype}: pass integer token ids")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= structure.vocab_size:
        raise SimcheckError(
            f"{what} has tokens in [{low}, {high}] outside 0..{structure.vocab_size - 1}: "
            "fix the tokens or raise Structure.vocab_size"
        )
    return array.astype(np.int64)


def check_long_input(x: Any, structure: Structure) -> np.ndarray:
    """``x`` validated, and long enough to hold the window."""
    x = check_tokens(x, structure, "x")
    if x.shape[0] < structure.tail:
        raise SimcheckError(
            f"x has {x.shape[0]} tokens but window={structure.window} needs at least "
            f"{structure.tail}: lower the window or pass a longer x"
        )
    return x


def check_positive(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int >= ``low``, or a SimcheckError naming ``name``."""
    if not _is_int(value) or value < low:
        raise SimcheckError(f"{name}={value!r} is invalid: use an integer >= {low}")
    return int(value)


# ------------------------------------------------------------------ types and lengths


def type_counts(
    tokens: np.ndarray, structure: Structure, exclude_window: bool = True
) -> np.ndarray:
    """Counts [period, vocab_size] of the types (position mod period, token).

    Only positions before the final window count when ``exclude_window`` (the window is kept
    verbatim, so it is compared token by token, not by type).
    """
    tokens = check_tokens(tokens, structure, "tokens")
    end = max(tokens.shape[0] - structure.tail, 0) if exclude_window else tokens.shape[0]
    residues = np.arange(end) % structure.period
    counts = np.zeros((structure.period, structure.vocab_size), dtype=np.int64)
    np.add.at(counts, (residues, tokens[:end]), 1)
    return counts


def _proportions(tokens: np.ndarray, structure: Structure) -> np.ndarray:
    """Joint type proportions outside the window (all zero when there are no such positions)."""
    counts = type_counts(tokens, structure)
    return counts / max(int(counts.sum()), 1)


def type_error(x: np.ndarray, z: np.ndarray, structure: Structure) -> float:
    """Largest gap, over types, between the proportions in z and in x outside the window.

    Proportions are joint: a type's count over the number of positions outside the window. A
    sequence with no positions outside the window has all proportions 0, so the error is 0
    when neither has any.
    """
    return type_error_to(_proportions(x, structure), z, structure)


def type_error_to(target: np.ndarray, z: np.ndarray, structure: Structure) -> float:
    """`type_error` against x's precomputed proportions (x is shared by many witnesses)."""
    return float(np.abs(_proportions(z, structure) - target).max())


def admissible_lengths(n: int, max_length: int, structure: Structure) -> list[int]:
    """Witness lengths m, ascending: min_length <= m <= max_length, m > window, m = n mod period.

    The congruence keeps the query's residue mod period, hence every position's residue
    relative to the end.
    """
    n = check_positive(n, "n")
    max_length = check_positive(max_length, "max_length")
    if max_length < structure.tail:
        raise SimcheckError(
            f"window={structure.window} needs witnesses of at least {structure.tail} tokens but "
            f"max_length={max_length}: lower the window or raise max_length"
        )
    if max_length < structure.min_length:
        raise SimcheckError(
            f"min_length={structure.min_length} exceeds max_length={max_length}: "
            "lower min_length or raise max_length"
        )
    low = max(structure.min_length, structure.tail)
    first = low + (n - low) % structure.period
    lengths = list(range(first, max_length + 1, structure.period))
    if not lengths:
        raise SimcheckError(
            f"no length in [{low}, {max_length}] is congruent to n={n} mod "
            f"period={structure.period}: raise max_length or lower min_length"
        )
    return lengths
