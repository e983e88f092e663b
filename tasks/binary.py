"""The paper's two binary regression tasks: SimpleTask and ModPTask.

Both read counts of 0- and 1-tokens, and both draw token frequencies per sequence from a
symmetric Beta(alpha, alpha) before drawing tokens independently. With a single fixed
frequency the ratios they ask for concentrate as the length grows and the task becomes
trivial at long lengths; a random frequency per sequence keeps long inputs informative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import TaskSpecError

from .base import (
    MAX_PERIOD,
    OutputKind,
    Task,
    bernoulli_tokens,
    beta_frequencies,
    check_alpha,
    check_range,
    mixed_binary_tokens,
)
from .registry import register_task

torch = lazy_module("torch")

EMPTY_CLASS_TARGET = 0.5
"""ModPTask's target when the residue class holds no position (length <= k): the midpoint,
which is also the mean of the symmetric Beta prior over token frequencies."""


@register_task
@dataclass(frozen=True)
class SimpleTask(Task):
    """SimpleTask(omega): sin(omega * (c0 - c1) / (c0 + c1)) at the last position.

    c0 and c1 count the 0- and 1-tokens of the whole sequence. The frequency of 1s is drawn
    per sequence from Beta(alpha, alpha). A 1-layer model without positional encoding can
    compute it (uniform attention averages the token embeddings); the Lipschitz constant of
    the target grows as omega, so larger omega is harder to simulate at a given length.
    """

    name: ClassVar[str] = "simple"
    vocab_size: ClassVar[int] = 2
    output: ClassVar[OutputKind] = "scalar"
    value_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    default_layers: ClassVar[int] = 1
    default_pos: ClassVar[str] = "none"

    omega: float = 3.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.omega):  # the targets would be NaN
            raise TaskSpecError(f"task 'simple': omega must be a finite number, got {self.omega}")
        check_alpha(self.name, self.alpha)

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        return mixed_binary_tokens(generator, self.alpha, batch, length)

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        ones = (tokens == 1).sum(-1).double()
        zeros = (tokens == 0).sum(-1).double()
        return torch.sin(self.omega * (zeros - ones) / (zeros + ones)).float()

    def baseline(self, tokens: torch.Tensor) -> torch.Tensor:
        """Constant 0: the mean target, by the symmetry of the input distribution."""
        return torch.zeros(tokens.shape[0], 1)


@dataclass(frozen=True)
class ResidueTask(Task):
    """Base of the tasks that read the positions t = k (mod p) of a binary sequence (not a
    task itself): the parameters and their checks, the period Delta = p, and the sampler.

    Each residue class draws its own frequency of 1s from Beta(alpha, alpha), so the global
    fraction of 1s does not answer for one class: a model must use positions mod p.
    """

    vocab_size: ClassVar[int] = 2
    default_layers: ClassVar[int] = 1
    default_pos: ClassVar[str] = "periodic"

    p: int = 3
    k: int = 0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_range(self.name, "p", self.p, 1, MAX_PERIOD, " (the period)")
        if not 0 <= self.k < self.p:
            raise TaskSpecError(
                f"task '{self.name}': k must satisfy 0 <= k < p, got k={self.k} with p={self.p}"
            )
        check_alpha(self.name, self.alpha)

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.p

    @property
    def min_length(self) -> int:  # type: ignore[override]
        return self.k + 1

    def in_class(self, length: int) -> torch.Tensor:
        """Which of ``length`` positions are t = k (mod p)."""
        return (torch.arange(length) % self.p) == self.k

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        freq = beta_frequencies(generator, self.alpha, (batch, self.p))
        residues = np.arange(length) % self.p
        return bernoulli_tokens(generator, freq[:, residues])


@register_task
@dataclass(frozen=True)
class ModPTask(ResidueTask):
    """ModPTask(p, k): the fraction of 1-tokens among positions t with t = k (mod p).

    Positions are 0-based: for p=3, k=0 the class is positions 0, 3, 6, ... When the class
    is empty (length <= k) the target is 0.5 (`EMPTY_CLASS_TARGET`). Each residue class
    draws its own frequency of 1s from Beta(alpha, alpha), so the global fraction of 1s
    does not answer the question and a model must use positions mod p. Period Delta = p.
    """

    name: ClassVar[str] = "modp"
    output: ClassVar[OutputKind] = "scalar"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        in_class = self.in_class(tokens.shape[1])
        ones = ((tokens == 1) & in_class).sum(-1).double()
        size = int(in_class.sum())
        if size == 0:
            return torch.full((tokens.shape[0],), EMPTY_CLASS_TARGET)
        return (ones / size).float()

    def baseline(self, tokens: torch.Tensor) -> torch.Tensor:
        """The global fraction of 1s: the best a model blind to positions can do."""
        return (tokens == 1).double().mean(-1, keepdim=True).float()
