"""Lists of test lengths written as text: ``8,16,32``, ``8..1024*2`` or ``10..100+10``.

One rule, with nothing to guess: a comma-separated list of items, each a length or a
progression that names its step.

- ``A..B*F`` multiplies: A, A F, A F^2, ..., B (``8..1024*2`` is 8, 16, ..., 1024);
- ``A..B+S`` adds: A, A + S, A + 2 S, ..., B (``10..100+10`` is 10, 20, ..., 100);
- B must be a term of its progression, so the last length is the one written.

Items combine (``4,8..64*2,100``); the result is sorted and without repeats. The old
``a,b,...,end`` form left the step to be guessed (``10,20,...,80`` doubled while
``10,20,...,90`` added) and is refused with the spelling that says which was meant. More
than `MAX_LENGTHS` lengths, or a number of more than `MAX_DIGITS` digits, are refused before
any list is built. No torch import: the command line reads lengths while it parses its
arguments.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable

from simcheck.errors import SimcheckError

MAX_LENGTHS = 10_000
"""The most test lengths one list may hold: each length is a separate evaluation."""
MAX_DIGITS = 18
"""The most digits a number in a list of lengths may have: far beyond any length a model
takes, and short of Python's limit on reading integers from text (4300 digits)."""
SHOWN_CHARS = 80
"""The most characters of the user's text an error message repeats."""

_INT = r"\s*(-?\d+)\s*"
_PROGRESSION = re.compile(rf"{_INT}\.\.{_INT}([*+]){_INT}")
_HOW = "write a list like 8,16,32, a doubling like 8..1024*2 or a step like 10..100+10"


def _shown(value: object) -> str:
    """``repr(value)`` for an error message, cut to `SHOWN_CHARS` characters: a message
    repeats what the user wrote, but not all of a long text."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _number(text: str, item: str) -> int:
    """The integer ``text`` (digits with an optional minus sign) in ``item``; refuses more
    than `MAX_DIGITS` digits before converting them."""
    digits = len(text.strip().lstrip("-"))
    if digits > MAX_DIGITS:
        raise SimcheckError(
            f"lengths {_shown(item)}: a number of {digits} digits is no length; write lengths "
            f"of at most {MAX_DIGITS} digits"
        )
    return int(text)


def _old_form(text: str) -> SimcheckError:
    """The refusal of ``a,b,...,end``, with the spellings it could have meant."""
    parts = [p.strip() for p in text.split(",")]
    options, too_many = [], []
    numbers = (*parts[:2], parts[-1])
    if len(parts) == 4 and parts[2] == "..." and all(re.fullmatch(r"\d+", p) for p in numbers):
        first, second, end = (_number(p, text) for p in numbers)
        candidates = []
        if 0 < first < second and second % first == 0:
            candidates.append(("*", second // first, "multiply by"))
        if 0 < first < second:
            candidates.append(("+", second - first, "add"))
        for op, step, meaning in candidates:
            spelling = f"{first}..{end}{op}{step}"
            try:
                count = _count(first, end, op, step, spelling)
            except SimcheckError:  # the end is not a term of this reading
                continue
            if count > MAX_LENGTHS:
                too_many.append(f"{spelling} would make {count} lengths, more than {MAX_LENGTHS}")
            else:
                options.append(f"{spelling} to {meaning} {step}")
    if options:
        return SimcheckError(
            f"lengths {_shown(text)}: 'a,b,...,end' does not say whether to add or multiply; "
            f"write {' or '.join(options)}"
        )
    if too_many:
        return SimcheckError(
            f"lengths {_shown(text)}: 'a,b,...,end' is not read, and {too_many[0]}: "
            "use a larger step or factor"
        )
    return SimcheckError(f"lengths {_shown(text)}: 'a,b,...,end' is not read; {_HOW}")


def _count(first: int, end: int, op: str, step: int, item: str) -> int:
    """How many terms ``first..end<op>step`` has; refuses a progression that never ends at
    ``end``."""
    if first < 1:
        raise SimcheckError(f"lengths must be positive integers, got {first} in {_shown(item)}")
    if end < first:
        raise SimcheckError(f"lengths {_shown(item)}: the end {end} is below the start {first}")
    if op == "+":
        if step < 1:
            raise SimcheckError(
                f"lengths {_shown(item)}: the step after + must be >= 1, got {step}"
            )
        if (end - first) % step:
            below = end - (end - first) % step
            raise SimcheckError(
                f"lengths {_shown(item)}: {end} is not {first} plus a multiple of {step}; "
                f"end at {below} or {below + step}"
            )
        return (end - first) // step + 1
    if step < 2:
        raise SimcheckError(f"lengths {_shown(item)}: the factor after * must be >= 2, got {step}")
    terms, value = 1, first
    while value < end:
        value *= step
        terms += 1
    if value != end:
        raise SimcheckError(
            f"lengths {_shown(item)}: {end} is not {first} times a power of {step}; "
            f"end at {value // step} or {value}"
        )
    return terms


def _parse_text(text: str) -> list[int]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if "..." in items:
        raise _old_form(text)
    plans: list[tuple[int, int, str, int]] = []
    total = 0
    for item in items:
        match = _PROGRESSION.fullmatch(item)
        if match:
            first, end, step = (_number(match[i], item) for i in (1, 2, 4))
            op = match[3]
            total += _count(first, end, op, step, item)
        elif re.fullmatch(_INT, item):
            first = end = _number(item, item)
            op, step = "+", 1
            total += 1
        else:
            raise SimcheckError(f"cannot read lengths {_shown(text)} at {_shown(item)}: {_HOW}")
        if total > MAX_LENGTHS:
            raise SimcheckError(
                f"lengths {_shown(text)} make more than {MAX_LENGTHS} lengths (at least {total}); "
                "use a larger step or factor"
            )
        plans.append((first, end, op, step))
    values: list[int] = []
    for first, end, op, step in plans:
        if op == "+":
            values.extend(range(first, end + 1, step))
        else:
            value = first
            while value <= end:
                values.append(value)
                value *= step
    return values


def _parse_values(lengths: object) -> list[int]:
    """The integers of a sequence; refuses anything else, bytes included (iterating them
    would give their byte values)."""
    if isinstance(lengths, bytes | bytearray) or not isinstance(lengths, Iterable):
        raise SimcheckError(
            f"lengths are text like '8..1024*2' or a list of integers like [8, 16], got "
            f"{_shown(lengths)} ({type(lengths).__name__})"
        )
    values = []
    for value in lengths:
        try:
            if isinstance(value, bool):
                raise TypeError
            values.append(operator.index(value))
        except TypeError:
            raise SimcheckError(f"lengths must be integers, got {_shown(value)}") from None
        if len(values) > MAX_LENGTHS:
            raise SimcheckError(f"more than {MAX_LENGTHS} lengths: give fewer")
    return values


def parse_lengths(lengths: str | Iterable[int]) -> list[int]:
    """The sorted, distinct lengths of ``"8,16,32"``, ``"8..1024*2"``, ``"10..100+10"`` (see
    the module docstring for the rule) or of a sequence of integers.

    Raises a one-line `SimcheckError` for anything else: a length below 1, a non-integer, the
    ambiguous ``a,b,...,end`` form, or more than `MAX_LENGTHS` lengths.
    """
    values = _parse_text(lengths) if isinstance(lengths, str) else _parse_values(lengths)
    if not values:
        raise SimcheckError(f"no lengths given: {_HOW}")
    bad = [v for v in values if v < 1]
    if bad:
        raise SimcheckError(f"lengths must be positive integers, got {bad[0]}")
    return sorted(set(values))
