"""Tasks with targets at many positions: an output segment, or every position.

Most length-generalization studies train on tasks whose answer is a sequence (copy, sort,
addition: an output segment after a separator) or whose every position has a target
(formal languages as next-character-set prediction). A `SequenceTask` gives a class target
at each position of a sequence, or `NO_CLASS` where the position has none:

- `position_targets(tokens)` [batch, length]: the target of every position. The target at
  position i depends on tokens 0..i only (teacher forcing: the output tokens written so far
  are read, never their correctness), so the target of position i is the answer of the
  prefix ``tokens[:, : i + 1]`` at its last position. `oracle` is that answer for the last
  position, which makes every sequence task a last-position task for the check.
- `target_span(length)`: the first and last positions that carry a target in a sampled
  sequence of that length. Samples always end on a target, so the last-position problem
  of a sample is the task's "last" target.
- Training sums the loss over a sequence's target positions and averages over sequences;
  evaluation reports accuracy per token and exact match per sequence.

`TargetRole` turns one target position (the first, middle or last of the span) into a
last-position problem of its prefix, for the check (`simcheck.api.roles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simcheck._util.lazy_import import lazy_module
from simcheck.errors import TaskSpecError

from .base import NO_CLASS, OutputKind, Task

torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")

ROLES: tuple[str, ...] = ("first", "middle", "last")
"""Target positions the check reads in a sequence: the first, middle and last of the span."""


class SequenceTask(Task):
    """Base class of tasks with a class target at many positions (see the module docstring).

    Subclasses implement `sample`, `position_targets`, `target_span` and `num_classes`
    (the output classes: the data symbols, or the subsets of next characters).
    """

    output: ClassVar[OutputKind] = "classes"
    per_position: ClassVar[bool] = True

    def position_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        """The class target of every position of ``tokens`` [batch, length] (long), or
        `NO_CLASS` where a position has none. Must accept any token sequence."""
        raise NotImplementedError(f"{type(self).__name__} must implement position_targets()")

    def target_span(self, length: int) -> tuple[int, int]:
        """First and last target positions of a sequence `sample` draws at ``length``."""
        raise NotImplementedError(f"{type(self).__name__} must implement target_span()")

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        """The target of the last position: the answer of the prefix problem."""
        return self.position_targets(tokens)[:, -1]

    def batch_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        """A batch's targets are those of every position, [batch, length]."""
        return self.position_targets(tokens)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sequence loss: with outputs at every position ([batch, length, classes] against
        targets [batch, length]) the cross-entropy summed over the target positions; with
        last-position outputs, that of the last position (`Task.loss`)."""
        if output.dim() == 2:
            return super().loss(output, targets)
        valid = targets >= 0
        losses = F.cross_entropy(
            output.float().flatten(0, 1), targets.clamp_min(0).flatten(), reduction="none"
        ).view(targets.shape)
        return torch.where(valid, losses, torch.zeros_like(losses)).sum(-1)

    def valid(self, targets: torch.Tensor) -> torch.Tensor:
        """Which rows have a target: for [batch, length] targets, a row with any."""
        if targets.dim() == 2:
            return (targets >= 0).any(-1)
        return super().valid(targets)


def sequence_tokens(parts: list[np.ndarray], length: int) -> np.ndarray:
    """Concatenate [batch, *] parts along the positions and keep the first ``length``."""
    return np.concatenate(parts, axis=1)[:, :length].astype(np.int64)


def separator_targets(
    tokens: torch.Tensor, separator: int, answer: Any, pad: int = NO_CLASS
) -> torch.Tensor:
    """Targets of an ``input SEP output`` sequence, for any token string.

    The first ``separator`` splits a row into input and output; ``answer(input)`` gives the
    output as a list of class ids. The separator's position predicts output 0, output
    token k's position predicts output k + 1; positions before the separator, beyond the
    answer, and rows without a separator get ``pad``. ``answer`` returns None for an input
    it has no answer for (the row gets no target)."""
    batch, length = tokens.shape
    out = torch.full((batch, length), pad, dtype=torch.long)
    rows = tokens.tolist()
    for r, row in enumerate(rows):
        try:
            sep = row.index(separator)
        except ValueError:
            continue
        expected = answer(row[:sep])
        if expected is None:
            continue
        count = min(len(expected), length - sep)
        if count > 0:
            out[r, sep : sep + count] = torch.tensor(expected[:count], dtype=torch.long)
    return out


@dataclass(frozen=True)
class TargetRole(Task):
    """One target position of a `SequenceTask` as a last-position problem of its prefix.

    ``role`` is ``"first"``, ``"middle"`` or ``"last"`` of the target span. Asked for inputs
    of length P, it draws sequences of the full length F whose role position is P - 1 (the
    shortest such F) and keeps their first P tokens, so the last position of every input is
    a target of that role. Where no F puts the role at P - 1, it takes the shortest F whose
    span holds P - 1: the input ends on a neighbouring target. Its oracle is the wrapped
    task's for the last position.
    """

    task: SequenceTask
    role: str = "last"

    name: ClassVar[str] = "target_role"
    output: ClassVar[OutputKind] = "classes"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise TaskSpecError(f"unknown target role '{self.role}'; choose one of {ROLES}")

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.task.vocab_size

    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    @property
    def min_length(self) -> int:  # type: ignore[override]
        return self.task.min_length

    def spec(self) -> str:
        return f"{self.task.spec()}@{self.role}"

    def params(self) -> dict[str, Any]:
        return {"task": self.task.spec(), "role": self.role}

    def role_position(self, length: int) -> int:
        """The role's position in a sampled sequence of ``length``."""
        first, last = self.task.target_span(length)
        return {"first": first, "middle": (first + last) // 2, "last": last}[self.role]

    def full_length(self, prefix: int) -> int:
        """The full length F whose role position is ``prefix - 1``; where no F puts it
        there, the shortest F whose target span holds ``prefix - 1`` (a neighbouring
        target: addition's first target is always at an odd position)."""
        low = max(prefix, self.task.min_length)
        candidates = range(low, 4 * low + 8)
        for full in candidates:
            if self.role_position(full) == prefix - 1:
                return full
        for full in candidates:
            first, last = self.task.target_span(full)
            if first <= prefix - 1 <= last:
                return full
        raise TaskSpecError(
            f"task '{self.task.spec()}' has no sequence with a target at position {prefix - 1}"
        )

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        full = self.full_length(length)
        tokens = np.asarray(self.task.sample(batch, full, generator), dtype=np.int64)
        return tokens[:, :length]

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.task.oracle(tokens)

    def short_instances(
        self, x: np.ndarray, max_length: int, generator: np.random.Generator
    ) -> list[np.ndarray]:
        return self.task.short_instances(x, max_length, generator)
