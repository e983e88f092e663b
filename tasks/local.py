"""Lag: the token tau positions before the last. The task that isolates locality.

The answer sits in the local window the limit transformer's tau-local attention bias reads
(the last tau + 1 tokens): a model with that bias (periodic positions with ``locality``)
finds it at any length by the offset alone; a model with learned absolute positions finds it
through the rows of the query and of the key, and beyond the training length those rows
were never trained; a model without positions cannot find it at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module

from .base import MAX_VOCAB, NO_CLASS, OutputKind, Task, check_range
from .registry import register_task

torch = lazy_module("torch")

MAX_LAG = 1 << 10
"""The longest lag the task takes: a window wider than this is no longer local."""


@register_task
@dataclass(frozen=True)
class Lag(Task):
    """Lag(V, tau): the class is the token at position n - 1 - tau of an input of n i.i.d.
    uniform tokens over V (no class when n <= tau)."""

    name: ClassVar[str] = "lag"
    output: ClassVar[OutputKind] = "classes"
    default_layers: ClassVar[int] = 1
    default_pos: ClassVar[str] = "periodic"

    V: int = 4
    tau: int = 1

    def __post_init__(self) -> None:
        check_range(self.name, "V", self.V, 2, MAX_VOCAB)
        check_range(self.name, "tau", self.tau, 1, MAX_LAG, " (the lag)")

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.V

    @property
    def locality(self) -> int:  # type: ignore[override]
        """tau: the answer lies in the last tau + 1 tokens."""
        return self.tau

    @property
    def min_length(self) -> int:  # type: ignore[override]
        return self.tau + 1

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        return generator.integers(0, self.V, size=(batch, length)).astype(np.int64)

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] <= self.tau:
            return torch.full((tokens.shape[0],), NO_CLASS, dtype=torch.long)
        return tokens[:, -1 - self.tau].long()

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """x's last ``max_length`` tokens: the window, and so the answer, kept."""
        if max_length <= self.tau:
            return []
        return [np.asarray(x)[-max_length:].copy()]
