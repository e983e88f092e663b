"""simcheck: mechanistic interpretability of length generalization in transformers.

The public API (every name below is importable from ``simcheck``):

- tasks: `get_task`, `Task` (subclass it), `register_task` (from `simcheck.tasks`);
- models: `build_model`, `ModelSpec`; `ModelAdapter` says how to read any other
  `HookedTransformer` (which logits answer the task, a BOS prefix, its period and window);
- training: `train`, `TrainConfig`, `load_run`, `Run`;
- evaluation: `evaluate`, `EvalResult`;
- the simulation check: `check` (returns a `CheckReport`, whose ``outcome`` per test length
  is one of `simcheck.checking.outcomes.Outcome`), its settings `CheckConfig`;
  `check_positions` (a `PositionCheck`) checks the target positions of a task with targets
  at many positions, each as the last-position problem of its prefix;
- sweeps: `sweep` (a grid of points trained, evaluated and checked; returns a `SweepResult`),
  `load_sweep` (a sweep directory's results table), `empirical_n_star` (the measured N* of
  that table); `bounds`, the theory's numbers from a model's weights;
- recording internal states: `record`, `Recording`, `FinitePrecision` (probes live in
  `simcheck.probes`);
- errors: `SimcheckError` and its subclasses.

The package is laid out by stage, each a folder that imports only the ones below it
(``docs/contributing/layers.md`` has the map): `settings` (no torch), `model`, `checking`
and `theory` (the analysis, on a resolved subject), `storage` (run directories), `report`,
`training`, `evaluation`, `api` (the entry points above, which take a run, a path or a
model), `sweeps`, and the command line. Names are imported on first use, so
``simcheck.probes`` and ``simcheck.record`` load without the parts that need TransformerLens
3.x's ``HookedTransformer`` (they also read 4.x ``TransformerBridge`` models).
"""

from __future__ import annotations

import importlib
from typing import Any

from simcheck._util.progress import quiet_tqdm_auto
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

quiet_tqdm_auto()  # before TransformerLens imports tqdm.auto: see `simcheck._util.progress`

__version__ = "0.1.0"

_LAZY = {
    "ModelAdapter": "simcheck.settings.adapter",
    "FinitePrecision": "simcheck.settings.attention",
    "CheckConfig": "simcheck.checking.config",
    "check": "simcheck.api.check",
    "CheckReport": "simcheck.report.check_report",
    "bounds": "simcheck.api.bounds",
    "check_positions": "simcheck.api.roles",
    "PositionCheck": "simcheck.api.roles",
    "EvalResult": "simcheck.evaluation.evaluation",
    "evaluate": "simcheck.evaluation.evaluation",
    "parse_lengths": "simcheck.settings.lengths",
    "POSITIONAL_ENCODINGS": "simcheck.settings.model",
    "ModelSpec": "simcheck.settings.model",
    "build_model": "simcheck.model.build",
    "Recording": "simcheck.model.recording",
    "record": "simcheck.api.record",
    "Run": "simcheck.storage.runs",
    "load_run": "simcheck.storage.runs",
    "empirical_n_star": "simcheck.sweeps.table",
    "SweepResult": "simcheck.sweeps.runner",
    "sweep": "simcheck.sweeps.runner",
    "load_sweep": "simcheck.sweeps.runner",
    "Task": "simcheck.tasks",
    "get_task": "simcheck.tasks",
    "register_task": "simcheck.tasks",
    "TrainConfig": "simcheck.settings.train",
    "train": "simcheck.training.trainer",
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
    "CheckReport",
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
    "bounds",
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
