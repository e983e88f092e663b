"""The statistics of the simulation check: the error quantile eps*, probe spreads and
discrepancies, and coverage of long states by short ones.

Pure functions of tensors; `simcheck.checking.checker` feeds them recorded states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def simulation_error(errors: np.ndarray, delta: float) -> float:
    """The smallest eps that at least a 1 - delta fraction of ``errors`` reach: the
    ceil((1 - delta) M)-th smallest of the M per-input errors."""
    if errors.size == 0:
        raise ValueError("no errors to summarise")
    needed = needed_count(errors.size, delta)
    return float(np.sort(errors)[needed - 1])


def needed_count(samples: int, delta: float) -> int:
    """How many of ``samples`` inputs must be within eps for a 1 - delta guarantee."""
    return max(1, math.ceil((1.0 - delta) * samples - 1e-9))


def head_vectors(state: torch.Tensor, per_head: bool) -> torch.Tensor:
    """A probe's states [inputs, ...] as [inputs, groups, features]: one group per head when
    the probe is per-head (axis 1 after the query axis is dropped), else one group."""
    state = state.float()
    if per_head:
        return state.reshape(state.shape[0], state.shape[1], -1)
    return state.reshape(state.shape[0], 1, -1)


def spread(vectors: torch.Tensor) -> torch.Tensor:
    """Root-mean-square distance of states [inputs, groups, features] from their mean, per
    group, ignoring non-finite entries: the scale a discrepancy is measured against."""
    finite = torch.isfinite(vectors).all(-1)  # [inputs, groups]
    clean = torch.where(finite[..., None], vectors, torch.zeros_like(vectors))
    count = finite.sum(0).clamp_min(1)[:, None]
    mean = clean.sum(0) / count
    squared = ((clean - mean) ** 2).sum(-1) * finite
    return (squared.sum(0) / count[:, 0]).sqrt()


def discrepancy(long: torch.Tensor, short: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Distance between paired states [inputs, groups, features], divided by ``scale``
    [groups]: [inputs, groups]. Equal non-finite entries (e.g. two infinite margins) count
    as equal; any other non-finite pair gives NaN, which the summaries skip."""
    same = (long == short) | (torch.isnan(long) & torch.isnan(short))
    diff = torch.where(same, torch.zeros_like(long), long - short)
    distance = diff.norm(dim=-1)
    distance = torch.where(torch.isfinite(distance), distance, torch.full_like(distance, math.nan))
    floor = torch.finfo(torch.float32).eps
    return distance / scale.clamp_min(floor)


@dataclass(frozen=True)
class Coverage:
    """How far long states lie from the states inputs of training length produce.

    Attributes:
        long_nn: distance of each long state to its nearest short state [inputs].
        short_nn: the same among short states, leaving each out [short inputs].
        threshold: the 99th percentile of ``short_nn``; a long state beyond it is outside.
    """

    long_nn: np.ndarray
    short_nn: np.ndarray
    threshold: float

    @property
    def outside(self) -> float:
        """Fraction of long states farther from every short state than ``threshold``."""
        return float(np.mean(self.long_nn > self.threshold))

    @property
    def ratio(self) -> float:
        """Median nearest-neighbour distance of long states over that of short states."""
        base = float(np.median(self.short_nn))
        return float(np.median(self.long_nn)) / base if base > 0 else math.inf


def coverage(long: torch.Tensor, short: torch.Tensor) -> Coverage:
    """Nearest-neighbour coverage of long states [inputs, features] by short ones. Repeated
    short states count once, so the short distances measure the spacing of distinct
    states (short inputs often share their last-position state exactly)."""
    long, short = long.double(), torch.unique(short.double(), dim=0)
    if short.shape[0] < 2:
        short = torch.cat([short, short])
    to_short = torch.cdist(long, short).amin(dim=1)
    among = torch.cdist(short, short)
    among.fill_diagonal_(math.inf)
    short_nn = among.amin(dim=1)
    threshold = float(torch.quantile(short_nn, 0.99))
    return Coverage(to_short.numpy(), short_nn.numpy(), threshold)
