"""Type checks of a settings dataclass's fields, read from its annotations.

`simcheck.settings.model.ModelSpec` and `simcheck.settings.train.TrainConfig` are filled from
keywords, JSON records, sweep specs and the command line. Without a check a value of the
wrong type slips through and changes what runs: ``steps=2.5`` trained 3 steps, ``steps=True``
one, ``train_len="32"`` failed deep inside training. `check_field_types` refuses such values
with a one-line `SimcheckError` and turns NumPy numbers into plain Python ones, so records
stay JSON. No NumPy import: `numbers` knows NumPy's scalar types.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any

from simcheck.errors import SimcheckError

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def field_kinds(hint: Any) -> tuple[type, ...]:
    """The plain types a field annotation allows: ``int | None`` gives (int, NoneType), a
    ``Literal`` of strings gives (str,), ``tuple[int, ...]`` gives (tuple,)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(kind for arg in typing.get_args(hint) for kind in field_kinds(arg))
    if origin is typing.Literal:
        return tuple({type(value) for value in typing.get_args(hint)})
    if origin is not None:
        return (origin,)
    return (hint,)


def _converted(value: Any, kind: type) -> tuple[bool, Any]:
    """Whether ``value`` is of ``kind`` (an int is a float; a bool is neither), and the value
    as a plain Python object of that kind."""
    if kind is type(None):
        return value is None, value
    if kind in (int, float):
        number = numbers.Integral if kind is int else numbers.Real
        if isinstance(value, number) and not isinstance(value, bool):
            return True, kind(value)
        return False, value
    return isinstance(value, kind), value


def check_field_types(instance: Any) -> None:
    """Refuse a field of the frozen dataclass ``instance`` whose value does not have its
    annotated type (ints must be ints, not bools or floats); store NumPy numbers as Python
    ones. Call it first in ``__post_init__``."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        kinds = field_kinds(hints[field.name])
        for kind in kinds:
            ok, plain = _converted(value, kind)
            if ok:
                object.__setattr__(instance, field.name, plain)
                break
        else:
            wanted = " or ".join(_NAMES.get(kind, "None") for kind in kinds)
            raise SimcheckError(f"{field.name} must be {wanted}, got {value!r}")


# ------------------------------------------------------------------ one home per setting

PARSERS = ("lengths", "names", "ids")
"""How a setting's value is written on the command line when it is not a plain number or
string: a list of lengths (`simcheck.settings.lengths`), comma-separated names, or
comma-separated token ids."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    shown: str | None = None,
    choices: tuple[str, ...] | None = None,
    parse: str | None = None,
    metavar: str | None = None,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    cli: bool = True,
) -> Any:
    """A settings field declared once: its default, what it sets (``help``), its
    command-line ``flag`` (default ``--`` and the name with dashes; a bool whose default is
    True is turned off by its flag), the default as the help states it where the field's
    own does not apply (``shown``: "the task's"), the values allowed (``choices``), its
    range (``above``/``at_least``/``below``/``at_most``), how the command line parses it
    (``parse``, one of `PARSERS`) and whether it has a flag at all (``cli``). Validation
    (`check_field_values`), the command line's flags and the documentation's settings page
    read this metadata; nothing restates it."""
    if parse is not None and parse not in PARSERS:
        raise ValueError(f"parse must be one of {PARSERS}, got {parse!r}")
    metadata = {
        "help": help,
        "flag": flag,
        "shown": shown,
        "choices": choices,
        "parse": parse,
        "metavar": metavar,
        "range": (above, at_least, below, at_most),
        "cli": cli,
    }
    if isinstance(default, list | dict | set):
        raise ValueError("a mutable default: use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


def field_flag(field: dataclasses.Field) -> str:
    """The command-line flag of a settings field."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _range_rule(bounds: tuple[float | None, ...]) -> str:
    """A range as the error messages say it: ``positive``, ``positive and finite``,
    ``in (0, 1)``, ``in [0, 1]``, ``>= 1``."""
    above, at_least, below, at_most = bounds
    if below == math.inf:  # an upper bound of inf only rules out inf itself
        lower = "positive" if above == 0 else _one_sided(above, at_least)
        return f"{lower} and finite"
    low = ("(", above) if above is not None else ("[", at_least)
    high = (")", below) if below is not None else ("]", at_most)
    if low[1] is not None and high[1] is not None:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low[1] is not None:
        return "positive" if above == 0 else _one_sided(above, at_least)
    return f"< {below:g}" if below is not None else f"<= {at_most:g}"


def _one_sided(above: float | None, at_least: float | None) -> str:
    return f"> {above:g}" if above is not None else f">= {at_least:g}"


def check_field_values(instance: Any) -> None:
    """Refuse a field whose value is outside the range or the choices its `setting`
    declares, with a one-line `SimcheckError` that says the rule (None, where a field
    allows it, is not judged)."""
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if value is None or not field.metadata:
            continue
        choices = field.metadata.get("choices")
        if choices is not None and value not in choices:
            raise SimcheckError(f"{field.name} must be one of {', '.join(choices)}, got {value!r}")
        bounds = field.metadata.get("range", (None, None, None, None))
        above, at_least, below, at_most = bounds
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if (
            math.isnan(value)
            or (above is not None and not value > above)
            or (at_least is not None and not value >= at_least)
            or (below is not None and not value < below)
            or (at_most is not None and not value <= at_most)
        ):
            raise SimcheckError(f"{field.name} must be {_range_rule(bounds)}, got {value!r}")
