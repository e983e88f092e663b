"""`bounds` on what a user holds: a `Run`, a run directory or a model."""

from __future__ import annotations

from typing import Any

from simcheck.settings.adapter import ModelAdapter
from simcheck.storage.subjects import resolve
from simcheck.theory.bounds import Bounds
from simcheck.theory.bounds import bounds as bounds_of


def bounds(
    run_or_model: Any,
    eps: float = 0.1,
    bits: int = 8,
    tie_tol: float = 1e-6,
    n_star: int | None = None,
    adapter: ModelAdapter | None = None,
) -> Bounds:
    """`simcheck.theory.bounds.bounds` of a `Run`, a run directory or a model: the theory's
    numbers from its weights (Thm 4.1 for one layer, Thm 5.2 for two)."""
    subject = resolve(run_or_model, adapter=adapter, needs=())
    return bounds_of(subject, eps, bits, tie_tol, n_star)
