"""Run directories: what a training run leaves on disk, written atomically, and read back.

A run directory holds

- ``spec.json``: task, model and training configuration, seeds and library versions;
- ``model.safetensors``: the weights of the last checkpoint (the final weights once done);
- ``train_state.pt``: optimizer, scheduler and data-generator state for ``--resume``;
- ``status.json``: ``running``, ``interrupted``, ``diverged`` or ``finished``, and the step;
- ``metrics.jsonl``: one JSON line per logged step; ``loss.png``: the loss curve;
- after evaluation, ``eval.json``, ``eval.csv`` and ``eval.png``.

Every file is written to a temporary name and renamed into place, so a crash or Ctrl-C
never leaves a half-written file, and the previous checkpoint survives until the new one
is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from simcheck.errors import RunDirError
from simcheck.io import atomic_write, weights_of
from simcheck.models import ModelSpec, model_from_spec
from simcheck.tasks import Task, get_task, task_names

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss.png"
EVAL_JSON, EVAL_CSV, EVAL_PNG = "eval.json", "eval.csv", "eval.png"
RUN_FILES = (
    SPEC_FILE,
    WEIGHTS_FILE,
    STATE_FILE,
    STATUS_FILE,
    METRICS_FILE,
    LOSS_CURVE_FILE,
    EVAL_JSON,
    EVAL_CSV,
    EVAL_PNG,
)
"""Every file simcheck writes into a run directory."""
FORMAT_VERSION = 1


def save_weights(path: Path, model: HookedTransformer) -> None:
    spec = json.dumps(model.simcheck_spec.to_dict(), sort_keys=True)
    atomic_write(
        path, lambda tmp: save_file(weights_of(model), str(tmp), metadata={"model_spec": spec})
    )


def load_weights(path: Path, model: HookedTransformer) -> None:
    """Load ``path`` into ``model``; every parameter must be present with the right shape."""
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunDirError(
            f"{path} is not a readable safetensors file ({err}); the run is corrupt: retrain, "
            "or resume from a copy with a good checkpoint"
        ) from None
    expected = dict(model.named_parameters())
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [n for n in expected if n in weights and weights[n].shape != expected[n].shape]
    if missing or unexpected or wrong:
        raise RunDirError(
            f"{path} does not match the model in spec.json (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shape {wrong[:3]}); the files come from different runs"
        )
    with torch.no_grad():
        for name, param in expected.items():
            param.copy_(weights[name])


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path} is missing; this is not a complete simcheck run directory")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(
            f"{path} is not valid JSON ({err}); the run directory is corrupt"
        ) from None


@dataclass
class Run:
    """A trained (or partly trained) model with its task and the record of how it was made.

    Attributes:
        path: the run directory.
        task: the task the model was trained on.
        model: the `HookedTransformer`, in eval mode.
        spec: the parsed ``spec.json`` (task, model, training config, versions).
        status: the parsed ``status.json``.
    """

    path: Path
    task: Task
    model: HookedTransformer
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def train_len(self) -> int:
        return int(self.spec["training"]["train_len"])

    @property
    def finished(self) -> bool:
        return self.status.get("state") == "finished"

    def __repr__(self) -> str:
        state = self.status.get("state", "?")
        step = self.status.get("step", "?")
        return (
            f"Run({str(self.path)!r}, task={self.task.spec()!r}, "
            f"pos={self.model.simcheck_spec.pos!r}, train_len={self.train_len}, "
            f"{state} at step {step})"
        )


def _resolve_task(record: dict[str, Any], path: Path) -> Task:
    name = record.get("name")
    if name not in task_names():
        raise RunDirError(
            f"run {path} was trained on task '{name}' ({record.get('class')}), which is not "
            "registered in this session; pass load_run(path, task=YourTask(...)) or decorate "
            "its class with @simcheck.tasks.register_task"
        )
    return get_task(record["spec"])


def load_run(path: str | os.PathLike[str], task: Task | None = None) -> Run:
    """Load a run directory: the task and a model identical to the one saved (same outputs to
    the bit). ``task`` overrides the recorded one (needed for tasks defined in a notebook and
    not registered)."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(
            f"no run directory at {path}; train one with `simcheck train --out {path} ...`"
        )
    spec = read_json(path / SPEC_FILE)
    try:
        model_spec = ModelSpec.from_dict(spec["model"])
        task_rec = spec["task"]
        spec["training"]["train_len"]  # presence check: every run records its N
    except (KeyError, TypeError) as err:
        raise RunDirError(f"{path / SPEC_FILE} lacks {err}; the run directory is corrupt") from None
    task = task if task is not None else _resolve_task(task_rec, path)
    if (task.vocab_size, task.output_size) != (model_spec.d_vocab, model_spec.d_vocab_out):
        raise RunDirError(
            f"task '{task.spec()}' ({task.vocab_size} tokens -> {task.output_size} outputs) does "
            f"not fit the model in {path} ({model_spec.d_vocab} -> {model_spec.d_vocab_out}); "
            f"pass the task it was trained on ({task_rec.get('spec')})"
        )
    if not (path / WEIGHTS_FILE).is_file():
        raise RunDirError(
            f"{path} has no {WEIGHTS_FILE}: training never reached its first checkpoint; "
            f"train again with `simcheck train --resume {path}`"
        )
    model = model_from_spec(model_spec)
    load_weights(path / WEIGHTS_FILE, model)
    status = read_json(path / STATUS_FILE) if (path / STATUS_FILE).is_file() else {}
    return Run(path=path, task=task, model=model, spec=spec, status=status)
