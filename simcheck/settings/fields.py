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
import numbers
import types
import typing
from typing import Any

from simcheck.errors import SimcheckError

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def field_kinds(hint: Any) -> tuple[type, ...]:
    """The plain types a field annotation allows: ``int | None`` gives (int, NoneType), a
    ``Literal`` of strings gives (str,)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(kind for arg in typing.get_args(hint) for kind in field_kinds(arg))
    if origin is typing.Literal:
        return tuple({type(value) for value in typing.get_args(hint)})
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
