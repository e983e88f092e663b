"""simcheck: mechanistic interpretability of length generalization in transformers.

The public API:

- tasks: `get_task`, `Task` (subclass it), `register_task` (from `simcheck.tasks`);
- models: `build_model`, `ModelSpec`; `ModelAdapter` says how to read any other
  `HookedTransformer` (which logits answer the task, a BOS prefix, its period and window);
- training: `train`, `TrainConfig`, `load_run`, `Run`;
- evaluation: `evaluate`, `EvalResult`;
- the simulation check: `check` (returns a `simcheck.report.CheckReport`, whose ``outcome``
  per test length is one of `simcheck.outcomes.OUTCOMES`), its settings `CheckConfig`;
  `check_positions` (a `PositionCheck`) checks the target positions of a task with targets
  at many positions, each as the last-position problem of its prefix;
- sweeps: `sweep` (a grid of points trained, evaluated and checked; returns a `SweepResult`),
  `load_sweep` (a sweep directory's results table, read by `simcheck.sweep_table`),
  `empirical_n_star` (the measured N* of that table); the theory's numbers are in
  `simcheck.bounds`;
- recording internal states: `record`, `Recording`, `FinitePrecision` (probes live in
  `simcheck.probes`);
- errors: `SimcheckError` and its subclasses.

Names are imported on first use, so ``simcheck.probes`` and ``simcheck.record`` load without
the parts that need TransformerLens 3.x's ``HookedTransformer`` (they also read 4.x
``TransformerBridge`` models).
"""

from __future__ import annotations

import importlib
from typing import Any

from simcheck.errors import (
    LengthError,
    RunDirError,
    SimcheckError,
    SweepInterrupted,
    SweepSpecError,
    TaskSpecError,
    TokenError,
    TrainingDiverged,
    TrainingInterrupted,
)
from simcheck.progress import quiet_tqdm_auto

quiet_tqdm_auto()  # before TransformerLens imports tqdm.auto: see `simcheck.progress`

__version__ = "0.1.0"

_LAZY = {
    "ModelAdapter": "simcheck.model_adapter",
    "FinitePrecision": "simcheck.precision",
    "CheckConfig": "simcheck.check_config",
    "check": "simcheck.checker",
    "check_positions": "simcheck.position_check",
    "PositionCheck": "simcheck.position_check",
    "EvalResult": "simcheck.evaluation",
    "evaluate": "simcheck.evaluation",
    "parse_lengths": "simcheck.lengths",
    "POSITIONAL_ENCODINGS": "simcheck.model_spec",
    "ModelSpec": "simcheck.model_spec",
    "build_model": "simcheck.models",
    "Recording": "simcheck.recording",
    "record": "simcheck.recording",
    "Run": "simcheck.runs",
    "load_run": "simcheck.runs",
    "empirical_n_star": "simcheck.sweep_table",
    "SweepResult": "simcheck.sweeps",
    "sweep": "simcheck.sweeps",
    "load_sweep": "simcheck.sweeps",
    "Task": "simcheck.tasks",
    "get_task": "simcheck.tasks",
    "register_task": "simcheck.tasks",
    "TrainConfig": "simcheck.train_config",
    "train": "simcheck.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simcheck' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "POSITIONAL_ENCODINGS",
    "CheckConfig",
    "EvalResult",
    "FinitePrecision",
    "LengthError",
    "ModelAdapter",
    "ModelSpec",
    "Recording",
    "Run",
    "RunDirError",
    "SimcheckError",
    "SweepInterrupted",
    "SweepResult",
    "SweepSpecError",
    "Task",
    "TaskSpecError",
    "TokenError",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_model",
    "check",
    "empirical_n_star",
    "evaluate",
    "get_task",
    "load_run",
    "load_sweep",
    "parse_lengths",
    "record",
    "register_task",
    "sweep",
    "train",
]
