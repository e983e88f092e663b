"""A task defined in a notebook cell trains and evaluates with no change to simcheck.

Paste the class into a notebook cell: subclass `Task`, give it a name and a vocabulary,
`sample` inputs with the numpy generator it is handed, and write the exact `oracle`.
Everything else (model sizing, training, checkpoints, evaluation across lengths) works on it.

    python examples/custom_task.py [--out runs/soft_majority]      # about 30 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

import simcheck
from simcheck.tasks import Task, bernoulli_tokens, beta_frequencies


# --- the notebook cell --------------------------------------------------------------------
@dataclass(frozen=True)
class SoftMajority(Task):
    """1 when 1-tokens outnumber 0-tokens, 0 when they are fewer, 0.5 on a tie."""

    name: ClassVar[str] = "soft_majority"
    vocab_size: ClassVar[int] = 2
    default_pos: ClassVar[str] = "none"  # counting needs no positions
    alpha: float = 1.0  # the frequency of 1s is drawn per sequence from Beta(alpha, alpha)

    def sample(self, batch: int, length: int, generator: np.random.Generator) -> np.ndarray:
        freq = beta_frequencies(generator, self.alpha, (batch, 1))
        return bernoulli_tokens(generator, np.broadcast_to(freq, (batch, length)))

    def oracle(self, tokens: torch.Tensor) -> torch.Tensor:
        margin = (tokens == 1).sum(-1) - (tokens == 0).sum(-1)
        return (torch.sign(margin).float() + 1) / 2


# ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="train and evaluate a task defined here")
    parser.add_argument("--out", type=Path, default=Path("runs/soft_majority"))
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()

    task = SoftMajority()
    print("oracle on [1, 1, 0]:", task.target([1, 1, 0]).item())
    run = simcheck.train(task, args.out, train_len=32, steps=args.steps, overwrite=True)
    result = simcheck.evaluate(run, "8..512*2", samples=256)
    print(result.format_table())
    # An unregistered task is handed back explicitly when the run is loaded again:
    again = simcheck.load_run(args.out, task=task)
    print("reloaded:", again)


if __name__ == "__main__":
    main()
