"""The three terms of the simulation chain for a task, as per-input numbers.

    |f(x) - g(x)|  <=  |f(x) - f(z)|  +  |f(z) - g(z)|  +  |g(z) - g(x)|
      long error        task gap         short error      model gap

f values live in the oracle's space, g values are the model's predictions in that space
(`Task.prediction`). Scalar and distribution tasks use the task's `Task.distance`
(absolute error, total variation). Class tasks are judged by decisions by default: the task
gap is [f(z) != f(x)], the model gap [argmax g(z) != argmax g(x)] and the short (or long)
error [argmax g != f], so a model that is right but less confident on long inputs is not
penalised; with ``class_metric="tv"`` the model gap and error use total variation of the
class probabilities (against the one-hot target). An input without a class (`NO_CLASS`)
matches no class: as a witness its task gap and short error are 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simcheck.tasks import Task


@dataclass(frozen=True)
class ChainTerms:
    """The chain's distances for one task and metric."""

    task: Task
    decisions: bool

    @classmethod
    def for_task(cls, task: Task, class_metric: str = "decision") -> ChainTerms:
        return cls(task, task.output == "classes" and class_metric == "decision")

    def task_gap(self, f_x: torch.Tensor, f_z: torch.Tensor) -> np.ndarray:
        """|f(x) - f(z)| per pair."""
        return self.task.distance(f_x, f_z).numpy()

    def model_gap(self, g_x: torch.Tensor, g_z: torch.Tensor) -> np.ndarray:
        """|g(z) - g(x)| per pair."""
        if self.decisions:
            return (g_x.argmax(-1) != g_z.argmax(-1)).float().numpy()
        if self.task.output == "classes":
            return (0.5 * (g_x - g_z).abs().sum(-1)).numpy()
        return self.task.distance(g_x, g_z).numpy()

    def error(self, f: torch.Tensor, g: torch.Tensor) -> np.ndarray:
        """|f - g| per input: the short error at a witness, the long error at x."""
        if self.task.output != "classes":
            return self.task.distance(f, g).numpy()
        valid = f >= 0
        if self.decisions:
            wrong = g.argmax(-1) != f
        else:
            right = g.gather(-1, f.clamp_min(0)[:, None])[:, 0]
            wrong = 1.0 - right
        return torch.where(valid, wrong.float(), torch.ones_like(wrong, dtype=torch.float)).numpy()

    def surrogate(self, g_x: torch.Tensor, g_z: torch.Tensor) -> np.ndarray:
        """A continuous companion of the model gap for the witness search: total variation
        of class probabilities where decisions are compared (0/1 gaps give a search no
        direction), 0 otherwise."""
        if not self.decisions:
            return np.zeros(g_x.shape[0])
        return (0.5 * (g_x - g_z).abs().sum(-1)).numpy()
