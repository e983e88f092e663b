"""Training: fresh data every step, lengths drawn per batch, checkpoints you can resume.

`train(task, out, ...)` trains a `HookedTransformer` built by `simcheck.build_model` on
batches that `task` generates on the fly. Each batch has one length, drawn uniformly from
[min_len, train_len]; the loss is taken at the last position (averaged over the rows that
have a target: class tasks leave out inputs without a class). AdamW with linear warmup
and cosine decay, gradient clipping, and separate seeds for the model's initialisation and
for the data.

Checkpoints (weights, optimizer, scheduler and data-generator state) are written atomically
every ``checkpoint_every`` steps and at the end. Ctrl-C finishes the current step, writes a
checkpoint and stops; ``resume=True`` (CLI: ``--resume``) continues from it and gives the same
weights as an uninterrupted run at the same thread count. A non-finite loss stops training
with `TrainingDiverged` and leaves the last good checkpoint in place. One process at a time
trains into a run directory (`simcheck.storage.runs.run_lock`); ``tensorboard=DIR`` also logs the
metrics to TensorBoard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformer_lens import HookedTransformer

from simcheck._util.io import (
    atomic_write,
    library_versions,
    torch_threads,
    write_json,
    write_text,
)
from simcheck._util.paths import check_output_dir
from simcheck._util.plotting import InlineFigure, save_figure
from simcheck._util.progress import progress_bar
from simcheck._util.safe_load import load_tensors
from simcheck.errors import (
    RunDirError,
    SimcheckError,
    TrainingDiverged,
    TrainingInterrupted,
    error_gist,
)
from simcheck.model.build import ModelSpec, check_input_length, model_from_spec
from simcheck.model.fused import fast_path_problem, member_views, stacked_logits
from simcheck.settings.train import TrainConfig
from simcheck.storage.runs import (
    FORMAT_VERSION,
    LOSS_CURVE_FILE,
    METRICS_FILE,
    RUN_FILES,
    SPEC_FILE,
    STATE_FILE,
    STATUS_FILE,
    WEIGHTS_FILE,
    Run,
    check_run_dir,
    load_run,
    read_json_object,
    read_metrics,
    run_lock,
    save_weights,
)
from simcheck.tasks import Batch, Task, get_task, task_record

RESUME_FIX = (
    "the checkpoint is corrupt: start again without --resume (model.safetensors keeps the "
    "weights of the last checkpoint)"
)
"""What to do when train_state.pt cannot be resumed from."""


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warmup, then cosine decay."""
    warmup_steps = max(1, round(config.warmup * config.steps))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, config.steps - warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine


@contextlib.contextmanager
def deferred_sigint() -> Iterator[list[bool]]:
    """Turn the first Ctrl-C into a flag the loop checks between steps; a second Ctrl-C
    interrupts at once. Outside the main thread signals cannot be caught: no-op there."""
    flag = [False]

    def handler(signum: int, frame: Any) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Use torch's deterministic kernels while training, restoring the caller's setting after.

    On the CPU the backward passes of embedding lookups and indexing accumulate in parallel
    in a varying order; without this, the same seed gives slightly different weights."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _shifted_positions(model: HookedTransformer, offset: int, length: int):
    """A hook that replaces the position embeddings with rows offset..offset+length-1."""
    rows = model.pos_embed.W_pos[offset : offset + length]

    def hook(value: torch.Tensor, hook: Any) -> torch.Tensor:
        return rows.unsqueeze(0).expand_as(value)

    return hook


def _summary_writer_class() -> type:
    """TensorBoard's ``SummaryWriter``, or a one-line error when tensorboard is not installed
    (simcheck does not depend on it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SimcheckError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard, or "
            "train without --tensorboard"
        ) from None
    return SummaryWriter


def plot_loss_curve(run_dir: Path) -> Path | None:
    """Plot ``metrics.jsonl`` of a run into ``loss.png``; returns the path (None if no log)."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    fig = InlineFigure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(run_dir.name, fontsize=9)
    ax.grid(alpha=0.3)
    path = run_dir / LOSS_CURVE_FILE
    save_figure(fig, path)
    return path


class Trainer:
    """One training run's mutable state: model, optimizer, data stream and files."""

    def __init__(
        self,
        run_dir: Path,
        task: Task,
        spec: ModelSpec,
        config: TrainConfig,
        tensorboard: str | os.PathLike[str] | None = None,
    ) -> None:
        self.dir = run_dir
        self.tensorboard = tensorboard
        # looked up here, so that a missing tensorboard is refused before any file is written
        self.writer_class = _summary_writer_class() if tensorboard is not None else None
        self.writer: Any = None  # the open SummaryWriter while the loop runs
        self.task = task
        self.config = config
        self.model = model_from_spec(spec)
        self.min_len = config.min_len or min(task.min_length, config.train_len)
        check_input_length(self.model, config.train_len)
        # a task that cannot make inputs of the training length says so before any file
        task.batch(1, config.train_len, np.random.default_rng(0))
        if config.pos_offsets and spec.pos != "learned":
            raise SimcheckError("pos_offsets applies to learned positions only; drop it")
        self.fused = config.forward == "fused" and fast_path_problem(self.model) is None
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.lr, weight_decay=config.weight_decay, foreach=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, config)
        )
        self.rng = np.random.default_rng(config.data_seed)
        self.step = 0
        self.checkpoint_step: int | None = None  # the step of the weights on disk
        self.window: list[float] = []  # losses since the last metrics line

    # ------------------------------------------------------------------ state
    def save_checkpoint(self, state: str) -> None:
        save_weights(self.dir / WEIGHTS_FILE, self.model)
        payload = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "window": list(self.window),
        }
        atomic_write(self.dir / STATE_FILE, lambda tmp: torch.save(payload, tmp))
        self.checkpoint_step = self.step
        self.write_status(state)

    def write_status(self, state: str, **extra: Any) -> None:
        """Record the run's state; ``step`` is that of the weights in model.safetensors."""
        status = {"state": state, "step": self.checkpoint_step or 0, "steps": self.config.steps}
        status.update(extra)
        write_json(self.dir / STATUS_FILE, status)

    def restore(self) -> None:
        """Load the checkpoint in train_state.pt: model, optimizer, scheduler, data stream."""
        path = self.dir / STATE_FILE
        try:
            payload = load_tensors(path, "the checkpoint", RESUME_FIX)
        except SimcheckError as err:
            raise RunDirError(f"cannot resume: {err}") from None
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.rng.bit_generator.state = json.loads(payload["rng"])
            self.window = [float(x) for x in payload["window"]]
            self.step = self.checkpoint_step = int(payload["step"])
        except Exception as err:  # any unreadable or mismatched checkpoint is corrupt
            raise RunDirError(
                f"cannot resume from {path} ({error_gist(err)}); {RESUME_FIX}"
            ) from None
        self.clear_metrics()

    def clear_metrics(self) -> None:
        """Drop the metric lines logged after the current step, which the resumed run redoes,
        and a torn last line left by a kill in the middle of a write, so that appending
        starts on a line of its own."""
        path = self.dir / METRICS_FILE
        if not path.is_file():
            return
        keep = [record for record in read_metrics(self.dir) if record["step"] <= self.step]
        write_text(path, "".join(json.dumps(record) + "\n" for record in keep))

    # ------------------------------------------------------------------ loop
    def draw_batch(self) -> tuple[Batch, int | None]:
        """The next training batch from the data stream, and the first row of the position
        table it reads (None without ``pos_offsets``)."""
        config = self.config
        length = int(self.rng.integers(self.min_len, self.longest_length() + 1))
        batch = self.task.batch(config.batch_size, length, self.rng)
        offset = None
        if config.pos_offsets:
            offset = int(self.rng.integers(0, self.model.cfg.n_ctx - length + 1))
        return batch, offset

    def longest_length(self) -> int:
        """The longest length the coming step may draw: N, or under a ``curriculum`` a
        length that grows linearly from the shortest to N over its share of the steps."""
        config = self.config
        ramp = config.curriculum * config.steps
        if ramp < 1 or self.step + 1 >= ramp:
            return config.train_len
        grown = (config.train_len - self.min_len) * (self.step + 1) / ramp
        return self.min_len + math.ceil(grown)

    def diverged(self, loss: float) -> TrainingDiverged:
        """The error for a non-finite loss at the coming step (the last good checkpoint is
        kept), after recording it in ``status.json``."""
        kept = (
            "no checkpoint had been written yet"
            if self.checkpoint_step is None
            else f"the checkpoint at step {self.checkpoint_step} is kept"
        )
        message = (
            f"loss became {loss} at step {self.step + 1}; {kept}. Lower --lr (now "
            f"{self.config.lr}) or --grad-clip and start again"
        )
        self.write_status("diverged", message=message, diverged_at=self.step + 1)
        return TrainingDiverged(message)

    def train_step(self) -> tuple[float, float, int]:
        config = self.config
        batch, offset = self.draw_batch()
        length = batch.tokens.shape[1]
        loss = self.task.mean_loss(self.last_output(batch.tokens, offset), batch.targets)
        if not torch.isfinite(loss):
            raise self.diverged(loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.trainable, config.grad_clip)
        else:
            grads = [p.grad.norm() for p in self.trainable if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros(())
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item(), float(norm), length

    def last_output(self, tokens: torch.Tensor, offset: int | None) -> torch.Tensor:
        """The model's output where the task's loss reads it, its learned positions shifted to
        start at row ``offset`` when given: the last position [batch, d_vocab_out], or every
        position [batch, length, d_vocab_out] for a task with targets at many positions."""
        every = self.task.per_position
        if self.fused:
            read_at = None if every else torch.tensor([tokens.shape[1] - 1])
            offsets = None if offset is None else torch.tensor([offset])
            params = member_views(self.model)
            return stacked_logits(self.model, params, tokens[None], read_at, offsets)[0]
        hooks = []
        if offset is not None:
            hooks = [("hook_pos_embed", _shifted_positions(self.model, offset, tokens.shape[1]))]
        output = self.model.run_with_hooks(tokens, fwd_hooks=hooks)
        return output if every else output[:, -1, :]

    def run(self, progress: bool) -> None:
        config = self.config
        bar = progress_bar(
            total=config.steps,
            initial=self.step,
            disable=not progress,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        self.model.train()
        with deferred_sigint() as interrupted, deterministic_algorithms(), bar, self._writer():
            while self.step < config.steps:
                loss, norm, length = self.train_step()
                logged = self.after_step(loss, norm, length, time.perf_counter() - started)
                if logged is not None:
                    bar.set_postfix(loss=f"{logged:.3g}")
                bar.update(1)
                if interrupted[0]:
                    raise self.interrupt()
        self.finish()

    def after_step(self, loss: float, norm: float, length: int, elapsed: float) -> float | None:
        """Book-keeping after a step: the loss window, a metrics line every ``log_every``
        steps (its mean loss is returned; None between lines) and a checkpoint every
        ``checkpoint_every``."""
        config = self.config
        self.window.append(loss)
        logged = None
        if self.step % config.log_every == 0 or self.step == config.steps:
            logged = float(np.mean(self.window))
            self._log(norm, length, elapsed)
        if self.step % config.checkpoint_every == 0 and self.step < config.steps:
            self.save_checkpoint("running")
        return logged

    def interrupt(self) -> TrainingInterrupted:
        """Checkpoint as interrupted; the error that tells how to continue."""
        self.save_checkpoint("interrupted")
        plot_loss_curve(self.dir)
        return TrainingInterrupted(
            f"interrupted: checkpoint written at step {self.step}/{self.config.steps}; "
            f"continue with `simcheck train --resume {self.dir}`"
        )

    def finish(self) -> None:
        """The final checkpoint and loss plot."""
        self.model.eval()
        self.save_checkpoint("finished")
        plot_loss_curve(self.dir)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """Hold a TensorBoard writer open while the loop runs, when one is asked for. Its
        ``purge_step`` hides the events that an earlier run in the same directory logged from
        the next step on (a resumed run's redone steps, a replaced run's): each step shows
        once, as this run logs it."""
        if self.writer_class is None:
            yield
            return
        self.writer = self.writer_class(os.fspath(self.tensorboard), purge_step=self.step + 1)
        try:
            yield
        finally:
            self.writer.close()
            self.writer = None

    def _log(self, norm: float, length: int, elapsed: float) -> None:
        """Append a metrics line with the mean loss since the last one (and the same scalars
        to TensorBoard, as ``train/<column>``)."""
        record = {
            "step": self.step,
            "loss": float(np.mean(self.window)),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": norm,
            "length": length,
            "seconds": round(elapsed, 3),
        }
        with open(self.dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in record.items():
                if name != "step":
                    self.writer.add_scalar(f"train/{name}", value, self.step)
        self.window = []


def _split_overrides(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    model_fields = {f.name for f in dataclasses.fields(ModelSpec)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(kwargs) - model_fields - train_fields
    if unknown:
        raise SimcheckError(
            f"train() got unknown options {sorted(unknown)}; model options are "
            f"{sorted(model_fields)}, training options are {sorted(train_fields)}"
        )
    model_kw = {k: v for k, v in kwargs.items() if k in model_fields}
    train_kw = {k: v for k, v in kwargs.items() if k in train_fields}
    return model_kw, train_kw


def default_run_dir(task: Task, spec: ModelSpec, config: TrainConfig) -> Path:
    """``runs/<task>-<pos>-N<train_len>-s<seed>``."""
    return Path("runs") / f"{task.name}-{spec.pos}-N{config.train_len}-s{spec.seed}"


def train(
    task: Task | str,
    out: str | Path | None = None,
    *,
    model: ModelSpec | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Run:
    """Train a model on ``task`` into the run directory ``out`` and return the `Run`.

    Model and training options can be given as a `ModelSpec` / `TrainConfig` or as keywords
    (``pos="periodic", train_len=32, steps=2000, seed=1``): fields of either class are routed
    to it. With ``resume=True`` and an existing ``out``, training continues from its last
    checkpoint and the recorded configuration is used. ``tensorboard`` names a directory that
    also gets the logged metrics as TensorBoard scalars (needs the tensorboard package).
    While training, the process holds ``out`` (`simcheck.storage.runs.run_lock`): another process
    that trains into it is refused with a `RunDirError` that names this one.
    """
    task = get_task(task)
    model_kw, train_kw = _split_overrides(options)
    spec = model or ModelSpec.for_task(task, **model_kw)
    config = config or TrainConfig(**train_kw)
    run_dir = Path(out) if out is not None else default_run_dir(task, spec, config)
    if resume:
        return resume_training(run_dir, task=task, progress=progress, tensorboard=tensorboard)
    check_new_run(task, spec, run_dir)
    trainer = Trainer(run_dir, task, spec, config, tensorboard)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        start_run(trainer, overwrite)
        trainer.run(progress)
        return load_run(run_dir, task=task)


def check_new_run(task: Task, spec: ModelSpec, run_dir: Path) -> None:
    """Refuse a model that does not fit ``task`` or a run directory that cannot be written,
    before anything is built."""
    if spec.d_vocab != task.vocab_size or spec.d_vocab_out != task.output_size:
        raise SimcheckError(
            f"model vocabulary {spec.d_vocab}->{spec.d_vocab_out} does not fit task "
            f"'{task.spec()}' ({task.vocab_size}->{task.output_size}); build it with "
            "ModelSpec.for_task(task, ...)"
        )
    check_output_dir(run_dir, "run directory")


def start_run(trainer: Trainer, overwrite: bool) -> None:
    """Write a fresh run's ``spec.json`` and status into ``trainer.dir`` (held by the
    caller's `run_lock`), replacing an earlier run only with ``overwrite``."""
    run_dir, task = trainer.dir, trainer.task
    if (run_dir / SPEC_FILE).exists() and not overwrite:
        raise SimcheckError(
            f"{run_dir} already holds a run; continue it with `--resume {run_dir}`, choose "
            "another --out, or pass --overwrite to replace it"
        )
    for stale in RUN_FILES:  # an overwritten run keeps nothing of the old one
        (run_dir / stale).unlink(missing_ok=True)
    write_json(
        run_dir / SPEC_FILE,
        {
            "format_version": FORMAT_VERSION,
            "task": task_record(task),
            "model": trainer.model.simcheck_spec.to_dict(),
            "training": trainer.config.to_dict(),
            "versions": library_versions(),
            "torch_threads": torch_threads(),
        },
    )
    trainer.write_status("running")


def resume_training(
    run_dir: str | Path,
    task: Task | None = None,
    progress: bool = True,
    tensorboard: str | os.PathLike[str] | None = None,
) -> Run:
    """Continue the run in ``run_dir`` from its last checkpoint, with its recorded config,
    holding the directory as `train` does; ``tensorboard`` as in `train`.

    Weights equal to an uninterrupted run's need the thread count it was trained with
    (``torch_threads`` in ``spec.json``); a note on stderr says when it differs."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    with run_lock(run_dir):
        reopened = reopen_run(run_dir, task, tensorboard)
        if isinstance(reopened, Run):
            return reopened
        reopened.run(progress)
        return load_run(run_dir, task=reopened.task)


def reopen_run(
    run_dir: Path, task: Task | None = None, tensorboard: str | os.PathLike[str] | None = None
) -> Run | Trainer:
    """The trainer of the started run in ``run_dir`` (held by the caller's `run_lock`),
    restored from its last checkpoint with its recorded configuration; or the `Run` itself
    when it has finished."""
    record = load_run(run_dir, task=task) if (run_dir / WEIGHTS_FILE).exists() else None
    if record is None:
        spec_json = read_json_object(run_dir / SPEC_FILE)
        task = task or get_task(spec_json["task"]["spec"])
    else:
        spec_json, task = record.spec, record.task
        if record.finished:
            return record
    spec = ModelSpec.from_dict(spec_json["model"])
    config = TrainConfig.from_dict(spec_json["training"])
    trainer = Trainer(run_dir, task, spec, config, tensorboard)
    recorded = spec_json.get("torch_threads")
    if recorded is not None and recorded != torch_threads():
        print(
            f"note: {run_dir} was trained with {recorded} torch threads and resumes with "
            f"{torch_threads()}: its weights will not match an uninterrupted run's bit "
            f"for bit (set OMP_NUM_THREADS={recorded} to match them)",
            file=sys.stderr,
        )
    if (run_dir / STATE_FILE).exists():
        trainer.restore()
    else:
        trainer.clear_metrics()
    trainer.write_status("running")
    return trainer
