"""simcheck: mechanistic interpretability of length generalization in transformers.

The public API:

- tasks: `get_task`, `Task` (subclass it), `register_task` (from `simcheck.tasks`);
- models: `build_model`, `ModelSpec`;
- training: `train`, `TrainConfig`, `load_run`, `Run`;
- evaluation: `evaluate`, `EvalResult`;
- the simulation check: `check` (returns a `simcheck.report.CheckReport`);
- recording internal states: `record`, `Recording`, `FinitePrecision` (probes live in
  `simcheck.probes`);
- errors: `SimcheckError` and its subclasses.
"""

from simcheck.attention import FinitePrecision
from simcheck.checker import check
from simcheck.errors import (
    LengthError,
    RunDirError,
    SimcheckError,
    TaskSpecError,
    TrainingDiverged,
)
from simcheck.evaluation import EvalResult, evaluate, parse_lengths
from simcheck.models import POSITIONAL_ENCODINGS, ModelSpec, build_model
from simcheck.recording import Recording, record
from simcheck.runs import Run, load_run
from simcheck.tasks import Task, get_task, register_task
from simcheck.training import TrainConfig, TrainingInterrupted, train

__version__ = "0.1.0"

__all__ = [
    "POSITIONAL_ENCODINGS",
    "EvalResult",
    "FinitePrecision",
    "LengthError",
    "ModelSpec",
    "Recording",
    "Run",
    "RunDirError",
    "SimcheckError",
    "Task",
    "TaskSpecError",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_model",
    "check",
    "evaluate",
    "get_task",
    "load_run",
    "parse_lengths",
    "record",
    "register_task",
    "train",
]
