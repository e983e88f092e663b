"""The gap below the top logit of an attention row: one rule, used everywhere.

`simcheck.theory.hardness` (`top_gap`, `off_top_mass`), the `simcheck.probes.LogitMargin` probe and
`simcheck.theory.bounds.logit_gap` (each row's top gap) all take it from here.

The rule: single linkage with an absolute tolerance ``tie_tol`` (default `TIE_TOL` = 1e-6).
Sort a row's logits; two consecutive values whose step is at most ``tie_tol`` belong to one
cluster, so a cluster may be wider than ``tie_tol`` when several small steps chain. The *top
cluster* is the values linked to the row's maximum that way; the *top gap* is the step from
the smallest value of the top cluster down to the next value of the row. It is +inf when the
whole row is one cluster (a query that sees a single key, or only tied keys). Masked keys
(-inf) and NaN are not values of the row.

This module imports only torch and math (and simcheck.errors), so `probes` can use it
without an import circle.
"""

from __future__ import annotations

import math

import torch

from simcheck.errors import SimcheckError

TIE_TOL = 1e-6
"""Default tolerance: sorted logits whose step is at most this are one value."""


def _check_tol(tie_tol: float) -> None:
    if not tie_tol >= 0:  # also refuses nan
        raise SimcheckError(f"tie_tol must be >= 0, got {tie_tol}")


def top_cutoff(logits: torch.Tensor, tie_tol: float = TIE_TOL) -> torch.Tensor:
    """The smallest value of each row's top cluster (module docstring), [..., 1] for logits
    [..., key]; -inf for a row without any finite logit."""
    _check_tol(tie_tol)
    if logits.shape[-1] == 0:
        return logits.new_full((*logits.shape[:-1], 1), -math.inf)
    ordered = logits.nan_to_num(nan=-math.inf).sort(dim=-1, descending=True).values
    steps = ordered[..., :-1] - ordered[..., 1:]  # -inf - -inf is nan: no break
    # a sentinel break after the last key: a row of one cluster is cut at its end
    sentinel = torch.ones_like(ordered[..., :1], dtype=torch.bool)
    breaks = torch.cat([steps > tie_tol, sentinel], dim=-1)
    first = breaks.int().argmax(dim=-1, keepdim=True)  # argmax returns the first maximum
    return ordered.gather(-1, first)


def top_gap(logits: torch.Tensor, tie_tol: float = TIE_TOL) -> torch.Tensor:
    """Each row's top gap (module docstring), [...] for logits [..., key]: the step from its
    top cluster down to the next value; +inf when the row has a single cluster (or no finite
    logit)."""
    if logits.shape[-1] == 0:
        _check_tol(tie_tol)
        return logits.new_full(logits.shape[:-1], math.inf)
    cutoff = top_cutoff(logits, tie_tol)
    below = logits.masked_fill(~(logits < cutoff), -math.inf).amax(dim=-1, keepdim=True)
    gap = torch.where(below > -math.inf, cutoff - below, torch.full_like(cutoff, math.inf))
    return gap[..., 0]


def below_top(logits: torch.Tensor, tie_tol: float = TIE_TOL) -> torch.Tensor:
    """Which keys hold a finite logit outside their row's top cluster, a bool mask shaped
    like ``logits``."""
    return torch.isfinite(logits) & (logits < top_cutoff(logits, tie_tol))
