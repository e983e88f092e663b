"""Run directories: what a training run leaves on disk, written atomically, and read back.

A run directory holds

- ``spec.json``: task, model and training configuration, seeds, library versions and the
  torch thread count;
- ``model.safetensors``: the weights of the last checkpoint (the final weights once done);
- ``train_state.pt``: optimizer, scheduler and data-generator state for ``--resume``;
- ``status.json``: ``running``, ``interrupted``, ``diverged`` or ``finished``, and the step;
- ``metrics.jsonl``: one JSON line per logged step; ``loss.png``: the loss curve;
- after evaluation, ``eval.json``, ``eval.csv`` and ``eval.png``;
- ``.lock``: held by the process that trains into the directory (`run_lock`).

Every file but ``metrics.jsonl`` is written to a temporary name and renamed into place, so a
crash or Ctrl-C never leaves a half-written file, and the previous checkpoint survives until
the new one is complete. ``metrics.jsonl`` is appended to line by line: a kill in the middle
of a write can leave its last line torn, which `read_metrics` ignores and a resumed run
drops before it appends.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from simcheck.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: run directories are not locked
    fcntl = None  # type: ignore[assignment]
from simcheck._util.io import atomic_write, weights_of
from simcheck.model.build import ModelSpec, model_from_spec
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
LOCK_FILE = ".lock"


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


def check_run_dir(path: Path) -> None:
    """Raise `RunDirError` unless ``path`` is a directory with a ``spec.json``: checked before
    anything is read from it or written into it."""
    if path.exists() and not path.is_dir():
        raise RunDirError(
            f"{path} is a file, not a run directory: give the folder `simcheck train --out` "
            "wrote (it holds spec.json and model.safetensors); a model of your own goes to "
            "`simcheck check` or `simcheck eval` as --model MODULE:FUNCTION or --weights FILE "
            "--config FILE"
        )
    if not path.is_dir():
        raise RunDirError(
            f"no run directory at {path}; train one with `simcheck train --out {path} ...`"
        )
    if not (path / SPEC_FILE).is_file():
        raise RunDirError(
            f"{path / SPEC_FILE} is missing; this is not a complete simcheck run directory"
        )


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path} is missing; this is not a complete simcheck run directory")
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise RunDirError(f"cannot read {path} ({err.strerror}); check its permissions") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(
            f"{path} is not valid JSON ({err}); the run directory is corrupt"
        ) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """`read_json` for the files that hold one JSON object (``spec.json``, ``status.json``):
    anything else there (a list, a number) is a corrupt run directory."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise RunDirError(
            f"{path} holds a JSON {type(data).__name__}, not an object; the run directory is "
            "corrupt"
        )
    return data


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` in ``run_dir``, in order (none when it is missing).

    Every complete line (ending in a newline) must be a JSON object with ``step`` and
    ``loss``; a last line without its newline is a write that a kill cut short, and is left
    out. Any other bad line raises `RunDirError` naming the file and line."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    *lines, _torn_tail = path.read_bytes().split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunDirError(
                f"{path}, line {number}: not valid JSON ({err}); the metrics log is corrupt"
            ) from None
        if not isinstance(record, dict) or not {"step", "loss"} <= record.keys():
            raise RunDirError(
                f"{path}, line {number}: not a metrics record (a JSON object with step and "
                "loss); the metrics log is corrupt"
            )
        records.append(record)
    return records


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
"""What ``flock`` answers on a file system without locks (some network mounts)."""


def _lock_holder(text: str) -> str:
    """Who the text of a lock file names: ``process PID on HOST``."""
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on {holder['host']}"
    except (json.JSONDecodeError, TypeError, KeyError):
        return "another process"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for one writer: a second process that tries to train into it while
    this one does gets a `RunDirError` naming this process, instead of both writing.

    An exclusive ``fcntl.flock`` on ``run_dir/.lock``, taken without waiting. The operating
    system releases it when the holder's process ends, killed or not, so no run directory
    stays blocked. The holder writes its pid and host into the file and empties it on
    release; a file still naming a process when the lock is taken was left by one that was
    killed, and a note says its lock was taken over. On systems without ``fcntl``
    (Windows) nothing is locked, and on a file system without locks a note says so."""
    path = run_dir / LOCK_FILE
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise RunDirError(
                    f"{run_dir} is being trained by {_lock_holder(handle.read())}; wait for "
                    "it to end or stop it, or train into another --out"
                ) from None
            except OSError as err:
                if err.errno not in _NO_LOCKS:
                    raise
                print(
                    f"note: {path} cannot be locked ({err.strerror}); nothing stops a second "
                    "process from training into the same directory",
                    file=sys.stderr,
                )
        handle.seek(0)
        left = handle.read()
        if left.strip():
            print(
                f"note: took over {path} from {_lock_holder(left)}, which ended without "
                "releasing it",
                file=sys.stderr,
            )
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()


@dataclass
class Run:
    """A trained (or partly trained) model with its task and the record of how it was made.

    Attributes:
        path: the run directory.
        task: the task the model was trained on.
        model: the `HookedTransformer`, in eval mode.
        spec: the parsed ``spec.json`` (task, model, training config, versions, threads).
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

    @property
    def metrics(self) -> pd.DataFrame:
        """The training log ``metrics.jsonl`` as a table, read from disk on each access: one
        row per logged step, with the columns as logged (``step``, ``loss``, the mean
        training loss since the previous row, ``lr``, ``grad_norm``, ``length``, the length
        of the last batch, and ``seconds`` since training started)."""
        return pd.DataFrame(read_metrics(self.path))

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
    check_run_dir(path)
    spec = read_json_object(path / SPEC_FILE)
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
    status = read_json_object(path / STATUS_FILE) if (path / STATUS_FILE).is_file() else {}
    return Run(path=path, task=task, model=model, spec=spec, status=status)
