"""Witnesses from a user's function, validated."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from simcheck.checking.witnesses.base import (
    Structure,
    Witness,
    WitnessFn,
    check_long_input,
    check_positive,
    check_tokens,
)
from simcheck.errors import SimcheckError

# ------------------------------------------------------------------ user witnesses


def user_witnesses(
    fn: WitnessFn,
    x: np.ndarray,
    max_length: int,
    structure: Structure,
    rng: np.random.Generator | None = None,
    name: str | None = None,
) -> list[Witness]:
    """Witnesses from ``fn(x, max_length, structure, rng)`` (one array or a sequence of
    them), validated: 1-D integer tokens in the vocabulary, min_length <= length <=
    max_length; named ``name`` (default: the function's, `witness_name`)."""
    x = check_long_input(x, structure)
    max_length = check_positive(max_length, "max_length")
    name = name or witness_name(fn)
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
        tokens = check_tokens(item, structure, what)
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
