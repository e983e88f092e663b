"""A task registered by a module of its own, for the sweep's ``imports`` (a worker process
knows it only by importing this module)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from simcheck.tasks import Task, register_task


@register_task
@dataclass(frozen=True)
class LastToken(Task):
    """The last token's value: 1 or 0."""

    name: ClassVar[str] = "last_token_test"
    vocab_size: ClassVar[int] = 2
    default_pos: ClassVar[str] = "none"

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        return generator.integers(0, 2, size=(batch, length))

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[..., -1].float()


@register_task
@dataclass(frozen=True)
class CrashingTask(LastToken):
    """Kills the process that samples it: a worker dying mid-point."""

    name: ClassVar[str] = "crash_test"

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


@register_task
@dataclass(frozen=True)
class LabelledTask(LastToken):
    """`LastToken` with a free-text parameter, which a sweep puts into its point names."""

    name: ClassVar[str] = "labelled_test"
    label: str = "plain"
