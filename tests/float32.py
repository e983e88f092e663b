"""The tolerance for comparing two float32 compute paths, and why.

Two paths that compute the same function (the fused training forward and the
HookedTransformer, chunked and whole recording, scaled_dot_product_attention and explicit
attention, a stacked ensemble member and the model alone, a converted model and its
original) evaluate the same expressions on the same float32 inputs but sum in different
orders, and so does one path on another machine: SIMD width, BLAS kernels and the thread
count all choose the order. Their results agree to what float32 arithmetic guarantees, not
to the last digits one CPU gives, so a test compares them with a tolerance derived from the
computation:

- a sum of n products in any order is within gamma_n |x|.|y| of the exact value, with
  gamma_n = n u / (1 - n u) and u = 2^-24 the unit roundoff of float32 (Higham, *Accuracy
  and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5); two paths are each that close
  to the exact value, so within 2 gamma_n of each other;
- a forward pass chains ``depth`` such reductions, the longest of n terms, and their
  first-order errors add: the tolerance is 2 x depth x gamma_n x scale, where scale is the
  size of the operands' products |x|.|y|, taken as max(1, the largest |value| compared).
  That is an approximation (cancellation can make |x|.|y| larger than the result); the
  worst-case gamma_n, where real rounding errors grow like sqrt(n) u, is the margin that
  covers it and the conditioning of layer norm and softmax.

Quantities derived from compared outputs get the output tolerance carried through them
(`squared_error_tolerance`), not a guess. Tests of exact reproducibility (the same path,
seed and thread count give the same bytes) stay exact and do not use this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

UNIT_ROUNDOFF = 2.0**-24
"""u: half the distance from 1 to the next float32."""


def gamma(n: int) -> float:
    """gamma_n = n u / (1 - n u): the relative error bound of a sum of n terms."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def path_tolerance(reduction: int, depth: int = 1, scale: float = 1.0) -> float:
    """How far two float32 paths that chain ``depth`` reductions of at most ``reduction``
    terms, on operands of size ``scale``, may differ (the module docstring)."""
    return 2 * depth * gamma(reduction) * max(1.0, scale)


@dataclass(frozen=True)
class Tolerance:
    """An absolute tolerance (``rtol`` 0: the derivation bounds absolute differences)."""

    atol: float

    @property
    def kwargs(self) -> dict[str, float]:
        """For ``torch.testing.assert_close(actual, expected, **tol.kwargs)``."""
        return {"atol": self.atol, "rtol": 0.0}

    def approx(self, value: float) -> Any:
        """``pytest.approx`` with this tolerance."""
        return pytest.approx(value, abs=self.atol, rel=0.0)

    def scaled(self, scale: float) -> Tolerance:
        """The tolerance for operands of size ``scale`` (at least 1)."""
        return Tolerance(self.atol * max(1.0, scale))


def forward_shape(cfg: Any, length: int, batch: int = 1) -> tuple[int, int]:
    """(the longest reduction, the number of chained reductions) of one forward pass of a
    TransformerLens model with config ``cfg`` on inputs of ``length`` tokens.

    Per layer: the q, k and v projections (d_model terms), the scores (d_head), weights @ v
    (the length), W_O (n_heads x d_head), each LayerNorm (two reductions over d_model: the
    mean and the variance), the MLP's two products (d_model, then d_mlp); then the final
    LayerNorm and the unembedding (d_model). ``batch`` is unused by the forward pass and
    kept for the backward one (`backward_tolerance`)."""
    d_head = cfg.d_head
    d_mlp = 0 if getattr(cfg, "attn_only", False) or not cfg.d_mlp else cfg.d_mlp
    norms = 0 if getattr(cfg, "normalization_type", None) is None else 2
    reduction = max(cfg.d_model, d_head, length, cfg.n_heads * d_head, d_mlp)
    per_layer = 1 + 1 + 1 + 1 + norms * (2 if d_mlp else 1) + (2 if d_mlp else 0)
    return reduction, cfg.n_layers * per_layer + norms + 1


def forward_tolerance(model: Any, length: int, scale: float = 1.0) -> Tolerance:
    """The tolerance between two float32 forward passes of ``model`` on inputs of
    ``length`` tokens whose outputs are of size ``scale``."""
    reduction, depth = forward_shape(model.cfg, length)
    return Tolerance(path_tolerance(reduction, depth, scale))


def backward_tolerance(model: Any, length: int, batch: int, scale: float = 1.0) -> Tolerance:
    """The same for gradients: the backward pass runs the forward's reductions transposed
    (twice the depth), and a weight's gradient sums over the batch and the positions too."""
    reduction, depth = forward_shape(model.cfg, length)
    return Tolerance(path_tolerance(max(reduction, batch * length), 2 * depth, scale))


def squared_error_tolerance(output_tol: float, error: float) -> float:
    """How far (g - f)^2 can move when g moves by at most ``output_tol`` and |g - f| is
    ``error``: |(e + d)^2 - e^2| <= 2 |e| d + d^2."""
    return 2 * abs(error) * output_tol + output_tol**2


def assert_paths_close(actual: Any, expected: Any, model: Any, length: int, msg: str = "") -> None:
    """``actual`` equals ``expected`` (tensors computed by two paths through ``model`` on
    inputs of ``length`` tokens) within `forward_tolerance` at the size of the expected
    values (infinite entries, masked logits, must match exactly)."""
    import torch

    finite = expected.detach()[torch.isfinite(expected.detach())]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    tol = forward_tolerance(model, length, scale)
    torch.testing.assert_close(actual, expected, **tol.kwargs, msg=msg or None)
