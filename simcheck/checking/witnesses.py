"""Short witnesses for long inputs: the constructions behind the simulation argument.

For a long input x (n tokens) and a training length N, a *witness* is a sequence z with
``len(z) <= N`` that a limit transformer should treat like x. If f and g agree on every input
of length <= N, then f(x) ~ f(z) ~ g(z) ~ g(x). This module only *builds* candidate witnesses
(plus a generic local search driven by a caller's objective); judging them with a model is the
caller's job. Positions are 0-based and the last position, n-1, is the query.

`Structure` holds what the model class makes relevant: the positional ``period`` Delta (only
``position mod Delta`` matters outside the local window), the ``window`` tau (the last tau+1
tokens are kept verbatim), the shortest admissible witness and the vocabulary size. Lengths
are `admissible_lengths`: between the bounds and congruent to n mod Delta, so the query keeps
its residue and, with it, every position keeps its residue relative to the end.

Constructions
-------------
- **Types** (`types_witness`, `types_witnesses`; Thm 4.1, deterministic). Outside the window a
  one-layer finite-precision model sees only the proportions of the *types* (position mod
  Delta, token). The witness is a prefix followed by x's window; the prefix slots of residue r
  get tokens in the proportions x has within residue class r. Counts are rounded by the
  **largest-remainder** method (floors first, then one extra token to the largest remainders,
  ties to the smaller token id), which makes them sum exactly to the slots and keeps each
  within 1 of its exact share. Within a class the tokens are placed in a **low-discrepancy**
  order (at each slot, the token whose count lags its target share most, ties to the smaller
  id, as in Bresenham's line algorithm), so every prefix of the class keeps the proportions
  too: the prefix histograms a later layer sees stay close to x's. Choosing the length is
  part of the construction: `types_witnesses` returns one witness per admissible length and
  `types_witness` picks the one with the smallest `type_error` (ties to the longer).
- **Blocks** (`blocks_witnesses`; Lemma 5.3, randomized). Keep contiguous blocks of x and the
  final window, so most local windows and the prefix histograms survive. A two-state
  keep/skip Markov chain has geometric sojourn times; conditioned on keeping exactly the
  target number of tokens in k blocks, its block lengths are a uniformly random composition,
  and that conditioned chain is what is sampled, so every candidate has exactly its target
  length. Skips are whole multiples of Delta, so kept tokens keep their residue relative to
  the end. The **mean kept block length** is ``b = max(tau + 1, round(m ** (1/3)))`` for a
  target length m: each of the about m/b block joins breaks up to tau windows (an error of
  about tau/b) while fewer, longer blocks sample x's histogram more coarsely; the cube root
  balances the two as in the paper's (tau + 1)/n^(1/3) bound. Existence is by the
  probabilistic method, so several candidates are drawn and the caller keeps the best.
- **User functions** (`user_witnesses`): any function of (x, max_length, structure, rng)
  that returns sequences; they are validated.

Every construction has the signature ``(x, max_length, structure, rng) -> list[Witness]``
(options by keyword after it) and is reached by name through `CONSTRUCTIONS`;
`construct` runs a name or a user function. ``"search"`` is not a construction but a
refinement of the constructed witnesses that needs the caller's objective.
- **Search** (`local_search`, `local_search_many`): a model-agnostic bounded local search over
  short strings. Each round proposes single edits of the current best (a substitution, an
  insertion or a deletion, each at a uniformly random position and with uniformly random new
  tokens), scores them with one objective call and moves to the best if it strictly improves;
  it stops after 3 rounds without improvement. With ``keep_window`` the last tau+1 tokens are
  never edited; given the long input x, insertions and deletions move Delta tokens at once so
  the length keeps its residue mod Delta.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcheck.errors import SimcheckError

WITNESS_METHODS = ("types", "blocks", "task", "search")
"""The methods a check can name: the two constructions, the task's own short instances
(`simcheck.tasks.Task.short_instances`, none for most tasks) and the model-guided search."""

# Rounds without a strict improvement after which a search stops.
PATIENCE = 3
# Absolute tolerance under which two type errors count as equal (ties go to the longer length).
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


def _check_tokens(tokens: Any, structure: Structure, what: str) -> np.ndarray:
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


def _check_long_input(x: Any, structure: Structure) -> np.ndarray:
    """``x`` validated, and long enough to hold the window."""
    x = _check_tokens(x, structure, "x")
    if x.shape[0] < structure.tail:
        raise SimcheckError(
            f"x has {x.shape[0]} tokens but window={structure.window} needs at least "
            f"{structure.tail}: lower the window or pass a longer x"
        )
    return x


def _check_positive(value: Any, name: str, low: int = 1) -> int:
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
    tokens = _check_tokens(tokens, structure, "tokens")
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
    return _type_error_to(_proportions(x, structure), z, structure)


def _type_error_to(target: np.ndarray, z: np.ndarray, structure: Structure) -> float:
    """`type_error` against x's precomputed proportions (x is shared by many witnesses)."""
    return float(np.abs(_proportions(z, structure) - target).max())


def admissible_lengths(n: int, max_length: int, structure: Structure) -> list[int]:
    """Witness lengths m, ascending: min_length <= m <= max_length, m > window, m = n mod period.

    The congruence keeps the query's residue mod period, hence every position's residue
    relative to the end.
    """
    n = _check_positive(n, "n")
    max_length = _check_positive(max_length, "max_length")
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
    scaled = counts * _check_positive(total, "total", low=0)
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
            "type_error": _type_error_to(target, tokens, structure),
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
    x = _check_long_input(x, structure)
    lengths = admissible_lengths(x.shape[0], max_length, structure)
    return _types_at(x, lengths, structure, requested=True)


def types_witness(
    x: np.ndarray, max_length: int, structure: Structure, length: int | None = None
) -> Witness:
    """The types witness at ``length``, or by default at the admissible length that
    minimises `type_error` (ties to the longer length)."""
    x = _check_long_input(x, structure)
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
    x = _check_long_input(x, structure)
    candidates = _check_positive(candidates, "candidates")
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


# ------------------------------------------------------------------ user witnesses


def user_witnesses(
    fn: WitnessFn,
    x: np.ndarray,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator | None = None,
) -> list[Witness]:
    """Witnesses from ``fn(x, max_length, structure, rng)`` (one array or a sequence of
    them), validated: 1-D integer tokens in the vocabulary, min_length <= length <=
    max_length."""
    x = _check_long_input(x, structure)
    max_length = _check_positive(max_length, "max_length")
    name = witness_name(fn)
    rng = np.random.default_rng(0) if rng is None else rng
    try:
        result = fn(x, max_length, structure, rng)
    except TypeError as err:
        if _takes_three(fn):
            raise SimcheckError(
                f"witness function {name} takes (x, max_length, structure); witness functions "
                "take (x, max_length, structure, rng): add the rng parameter"
            ) from None
        raise err
    items = [result] if isinstance(result, np.ndarray) and result.ndim == 1 else list(result)
    witnesses = []
    for index, item in enumerate(items):
        what = f"witness {index} of {name}"
        tokens = _check_tokens(item, structure, what)
        low = max(structure.min_length, 1)
        if not low <= tokens.shape[0] <= max_length:
            raise SimcheckError(
                f"{what} has {tokens.shape[0]} tokens: return witnesses of "
                f"{low}..{max_length} tokens"
            )
        witnesses.append(Witness(tokens, name, {"index": index}))
    return witnesses


def witness_name(method: Any) -> str:
    """The name a witness method is reported under: its registry name, or a function's
    ``__name__`` ("user" for a lambda)."""
    if isinstance(method, str):
        return method
    name = getattr(method, "__name__", "user")
    return "user" if name == "<lambda>" else name


def _takes_three(fn: Any) -> bool:
    """Whether ``fn`` takes exactly three positional parameters (the old signature)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 3 and not any(p.kind == p.VAR_POSITIONAL for p in parameters)


CONSTRUCTIONS: dict[str, Construction] = {"types": types_witnesses, "blocks": blocks_witnesses}
"""The witness constructions by name, each ``(x, max_length, structure, rng, **options)``."""


def construct(
    method: str | WitnessFn,
    x: np.ndarray,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator,
    **options: Any,
) -> list[Witness]:
    """The witnesses of ``x`` by one construction (a name in `CONSTRUCTIONS`) or a user
    function."""
    if callable(method):
        return user_witnesses(method, x, max_length, structure, rng)
    if method not in CONSTRUCTIONS:
        known = ", ".join(CONSTRUCTIONS)
        raise SimcheckError(f"unknown witness construction '{method}'; use {known} or a function")
    return CONSTRUCTIONS[method](x, max_length, structure, rng, **options)


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
    start = _check_tokens(start, structure, what)
    low = max(structure.min_length, structure.tail if keep_window else 1)
    if not low <= start.shape[0] <= max_length:
        raise SimcheckError(
            f"{what} has {start.shape[0]} tokens: start from {low}..{max_length} tokens"
        )
    if x is None:
        return start
    x = _check_long_input(x, structure)
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
    max_length = _check_positive(max_length, "max_length")
    rounds = _check_positive(rounds, "rounds", low=0)
    proposals = _check_positive(proposals, "proposals")
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
