"""Delta and tau of a model: what its positions make relevant to a witness.

Read from simcheck's `ModelSpec` (``model.simcheck_spec``) when the model has one; any other
model counts as period 1 without a local window unless a `simcheck.adapter.ModelAdapter`
says otherwise. No TransformerLens import, so probes can use it on any model.
"""

from __future__ import annotations

from typing import Any


def model_period(model: Any) -> int:
    """Delta of a simcheck model's positions (`ModelSpec.delta`); 1 for any other model."""
    spec = getattr(model, "simcheck_spec", None)
    return spec.delta if spec is not None else 1


def model_window(model: Any) -> int:
    """tau of a simcheck model's local attention bias; 0 without one or for any other model."""
    spec = getattr(model, "simcheck_spec", None)
    return spec.locality if spec is not None and spec.locality is not None else 0
