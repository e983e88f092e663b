"""The witness methods a check can name, each declared once, here: its name, what it builds
from a long input, the `CheckConfig` settings it reads, and a line for the help.

A *construction* builds candidate witnesses of x on its own (``types``, ``blocks``, the
task's own ``task`` instances, or one registered with `register_witness`); a *refinement*
(``search``) improves the constructed witnesses with the check's objective, so the check runs
it itself after the constructions. `CheckConfig` validates names against this registry, the
command line lists it, and sweeps accept what it holds. A construction receives a
`WitnessContext` and returns witnesses or token arrays (validated like a user function's).

Adding one is one file::

    from simcheck.checking.witnesses import register_witness

    @register_witness("reversed_window", help="x's window, alone")
    def reversed_window(context):
        return [context.x[-context.structure.tail:]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simcheck.checking.witnesses.base import Structure, Witness
from simcheck.checking.witnesses.blocks import blocks_witnesses
from simcheck.checking.witnesses.types import types_witnesses
from simcheck.checking.witnesses.user import user_witnesses
from simcheck.errors import SimcheckError


@dataclass(frozen=True)
class WitnessContext:
    """What a construction may read: the long input ``x``, the longest witness
    ``max_length`` (N), the ``structure`` (Delta, tau, vocabulary), a generator seeded by the
    check's seed and x's bytes, the ``task`` (its ``short_instances``), and the values of the
    settings the method declares (``options``)."""

    x: np.ndarray
    max_length: int
    structure: Structure
    rng: np.random.Generator
    task: Any = None
    options: dict[str, Any] = field(default_factory=dict)


Build = Callable[[WitnessContext], Sequence[Any]]


@dataclass(frozen=True)
class WitnessMethod:
    """One witness method: its ``name``, ``build`` (None for a refinement, which the check
    runs itself), the `CheckConfig` fields it reads (``options``) and its ``help``."""

    name: str
    build: Build | None
    options: tuple[str, ...] = ()
    help: str = ""

    @property
    def refines(self) -> bool:
        """Whether the method refines constructed witnesses rather than building its own."""
        return self.build is None

    def witnesses(self, context: WitnessContext) -> list[Witness]:
        """The method's witnesses of ``context.x``: what it built, checked (token arrays
        become `Witness` objects named after the method)."""
        assert self.build is not None, f"{self.name} refines; it builds nothing"
        built = list(self.build(context))
        if all(isinstance(w, Witness) for w in built):
            return built
        return user_witnesses(
            lambda *_: built, context.x, context.max_length, context.structure, context.rng,
            name=self.name,
        )  # fmt: skip


_METHODS: dict[str, WitnessMethod] = {}


def register_witness(
    name: str, *, options: tuple[str, ...] = (), help: str = ""
) -> Callable[[Build], Build]:
    """Decorator: make the construction ``fn(context) -> witnesses`` a witness method named
    ``name``, for `simcheck.check` (``witnesses=[..., name]``), ``--witnesses`` and the
    ``[check]`` table of a sweep. Registering a name again replaces it (a notebook cell run
    twice); in a sweep, register it in a module named in the spec's ``imports``."""
    if not name.isidentifier():
        raise SimcheckError(f"a witness method's name must be an identifier, got {name!r}")

    def decorate(fn: Build) -> Build:
        _METHODS[name] = WitnessMethod(name, fn, tuple(options), help)
        return fn

    return decorate


def _register_refinement(name: str, options: tuple[str, ...], help: str) -> None:
    _METHODS[name] = WitnessMethod(name, None, options, help)


def witness_method(name: str) -> WitnessMethod:
    """The registered method ``name``, or a one-line error that lists them."""
    if name not in _METHODS:
        raise SimcheckError(
            f"unknown witness method '{name}'; use {', '.join(_METHODS)} or a function"
        )
    return _METHODS[name]


def witness_methods() -> tuple[str, ...]:
    """The registered methods' names, in registration order."""
    return tuple(_METHODS)


register_witness(
    "types", help="each (token, position mod Delta) type keeps its proportion (Thm 4.1)"
)(lambda c: types_witnesses(c.x, c.max_length, c.structure, c.rng))
register_witness(
    "blocks",
    options=("blocks_candidates",),
    help="contiguous blocks of x kept by a keep/skip Markov chain (Lemma 5.3)",
)(
    lambda c: blocks_witnesses(
        c.x, c.max_length, c.structure, c.rng, candidates=c.options["blocks_candidates"]
    )
)
register_witness(
    "task", help="the task's own short instances of x (Task.short_instances; none for most)"
)(
    lambda c: [
        Witness(z, "task", {"index": i})
        for i, z in enumerate(c.task.short_instances(c.x, c.max_length, c.rng))
    ]
)
_register_refinement(
    "search",
    ("search_rounds", "search_proposals"),
    "a local search from each input's best construction, on the check's objective",
)
