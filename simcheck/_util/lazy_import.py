"""A module imported on first use: ``torch = lazy_module("torch")``.

torch takes seconds to import. The tasks use it only inside their methods, so they name it
through `lazy_module`: listing the tasks, their parameters and their docstrings (``simcheck
tasks``, the command line's help) then costs no torch import, and the first method that
computes imports it. Once imported, each attribute is looked up once and then kept.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    """Stands for the module of its name; imports it at the first attribute looked up."""

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attribute)
        setattr(self, attribute, value)
        return value


def lazy_module(name: str) -> Any:
    """A stand-in for the module ``name`` (e.g. ``"torch.nn.functional"``) that imports it
    when one of its attributes is first used."""
    return _LazyModule(name)
