"""Needle: does one rare token occur anywhere? The task that isolates attention dilution.

Half the sequences hold exactly one *needle* (token V-1) at a uniform position, the others
none; every other token is uniform over 0..V-2. The answer needs no position at all, so a
model without positions (NoPE) can learn it at training length: one head finds the needle by
its content. But with a single needle among n keys that head gives it weight
e^a / (e^a + n - 1), which falls as n grows, so a model trained at N misses the needle at
long enough lengths: attention dilution, with a known mechanism. (Half with, half without,
so both answers are common at every length.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import TaskSpecError

from .base import MAX_VOCAB, OutputKind, Task
from .registry import register_task

torch = lazy_module("torch")


@register_task
@dataclass(frozen=True)
class Needle(Task):
    """Needle(V): class 1 when the needle, token V-1, occurs anywhere, else class 0."""

    name: ClassVar[str] = "needle"
    output: ClassVar[OutputKind] = "classes"
    default_layers: ClassVar[int] = 1
    default_pos: ClassVar[str] = "none"

    V: int = 4

    def __post_init__(self) -> None:
        if not 2 <= self.V <= MAX_VOCAB:
            raise TaskSpecError(
                f"task '{self.name}': V must be in 2..{MAX_VOCAB} (the needle is token V-1, "
                f"the others 0..V-2), got V={self.V}"
            )

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.V

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def needle(self) -> int:
        """The needle's token id."""
        return self.V - 1

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        tokens = generator.integers(0, self.V - 1, size=(batch, length))
        holds = generator.random(batch) < 0.5
        where = generator.integers(0, length, size=batch)
        tokens[holds, where[holds]] = self.needle
        return tokens.astype(np.int64)

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens == self.needle).any(-1).long()

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        """A subsequence of x of length ``max_length`` (order kept) that holds x's last
        token and, when x has them, its needles (up to the length): the same answer. The
        other kept positions are drawn uniformly."""
        x = np.asarray(x)
        if len(x) <= max_length:
            return [x.copy()]
        last = len(x) - 1
        needles = np.flatnonzero(x[:-1] == self.needle)[: max_length - 1]
        keep = {last, *needles.tolist()}
        rest = np.setdiff1d(np.arange(last), np.fromiter(keep, dtype=np.int64))
        keep.update(generator.choice(rest, size=max_length - len(keep), replace=False).tolist())
        return [x[np.sort(np.fromiter(keep, dtype=np.int64))]]
