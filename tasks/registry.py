"""Task registry: names to classes, and spec strings like ``"modp:p=3,k=0"`` to instances."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any

from simcheck.errors import TaskSpecError

from .base import Task

_REGISTRY: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` reachable as ``get_task(cls.name)`` and from the CLI.

    The class must be a dataclass so that its parameters can be parsed from a spec string.
    Registering a new class under an existing name replaces it (handy when a notebook cell
    that defines a task is run again).
    """
    if not dataclasses.is_dataclass(cls):
        raise TaskSpecError(
            f"cannot register {cls.__name__}: decorate it with @dataclass(frozen=True) first, "
            "so its parameters can be parsed from a spec string"
        )
    _REGISTRY[cls.name] = cls
    return cls


def task_names() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_REGISTRY)


def task_class(name: str) -> type[Task]:
    """The registered class for ``name``, or a TaskSpecError that suggests the nearest name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, _REGISTRY, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TaskSpecError(
        f"unknown task '{name}': {hint}known tasks are {', '.join(task_names())} "
        "(run `simcheck tasks` to list them with their parameters)"
    )


def task_parameters(cls: type[Task]) -> dict[str, tuple[type, Any]]:
    """Each parameter of a registered task class with its type and default."""
    return dict(_parameters(cls))


@functools.cache
def _parameters(cls: type[Task]) -> dict[str, tuple[type, Any]]:
    """`task_parameters`, read once per class: resolving the annotations costs a millisecond,
    and a sweep builds its tasks from spec strings thousands of times."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type, Any]] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        out[field.name] = (hints.get(field.name, str), default)
    return out


def _coerce(task: str, name: str, kind: type, text: str) -> Any:
    try:
        if kind is bool:
            if text.lower() in {"1", "true", "yes"}:
                return True
            if text.lower() in {"0", "false", "no"}:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return kind(text)
    except (TypeError, ValueError):
        raise TaskSpecError(
            f"parameter {name}={text!r} of task '{task}' must be of type {kind.__name__}"
        ) from None


def get_task(spec: str | Task) -> Task:
    """Build a task from a spec string ``"name"`` or ``"name:key=value,key=value"``.

    Unspecified parameters take their defaults; a Task instance is returned unchanged.
    """
    if isinstance(spec, Task):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise TaskSpecError(f"a task spec is a string like 'modp:p=3,k=0', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    cls = task_class(name.strip())
    params = task_parameters(cls)
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq:
            raise TaskSpecError(
                f"task spec '{spec}': '{item}' is not key=value (example: 'modp:p=3,k=0')"
            )
        if key not in params:
            valid = ", ".join(f"{k}={d}" for k, (_, d) in params.items()) or "none"
            raise TaskSpecError(
                f"task '{name}' has no parameter '{key}'; its parameters (with defaults) are "
                f"{valid}"
            )
        kwargs[key] = _coerce(name, key, params[key][0], value)
    return cls(**kwargs)


def task_record(task: Task) -> dict[str, Any]:
    """How a task is written into a spec: its name, parameters and defining class."""
    cls = type(task)
    return {
        "name": task.name,
        "spec": task.spec(),
        "params": task.params(),
        "class": f"{cls.__module__}.{cls.__qualname__}",
    }
