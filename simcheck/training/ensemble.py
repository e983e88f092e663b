"""Train many models of one architecture at once, each into its own ordinary run directory.

`train_ensemble(members)` trains K models whose `ModelSpec` differ only in their seed (and
whose batches have the same size) as one stacked model: every parameter is a tensor
[K, *shape], one forward pass (`simcheck.model.fused`) computes every member on its own
batch, and one AdamW step updates every member with its own learning rate. Everything else
stays per member, as if it trained alone with `simcheck.train`:

- its initialisation seed, data stream (lengths, inputs, position offsets, drawn in the
  same order), task, learning-rate schedule, weight decay, gradient clipping (on its own
  gradient norm), number of steps, logging and checkpoints;
- its run directory (``spec.json``, ``model.safetensors``, ``train_state.pt`` in the
  format `simcheck.train` writes, so ``simcheck train --resume`` continues it alone,
  ``metrics.jsonl``, the loss plot), held with `simcheck.storage.runs.run_lock` while it trains.

A member whose loss becomes non-finite stops with `TrainingDiverged` (its last checkpoint
kept, ``status.json`` saying so) and the others go on; a member that reaches its steps is
finished and leaves the stack. Members train on inputs of their own lengths: each batch is
padded on the right to the longest, which causal attention never reads back.

**Tolerance.** A member computes the same function of the same parameters as when it
trains alone; only float rounding differs (matrix products of another shape, padded
attention). `tests/test_ensemble.py` checks that after 30 steps every member's weights are
within 1e-4 (absolute, on weights of order 0.1 to 1) of the same run trained alone by
`simcheck.train`, and so are its outputs. The exception is the key bias ``b_K``: its true
gradient is zero (it adds a constant to all of a query's logits), so AdamW moves it by
rounding noise in any two runs without changing the model's function. Over thousands of
steps such differences can grow, as between two thread counts; the paper reproduction
trained this way matches an earlier one (each model alone, through the `HookedTransformer`)
within seed spread (`examples/results/paper_reproduction_compare.txt`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simcheck._util.progress import progress_bar
from simcheck.errors import SimcheckError, TrainingDiverged
from simcheck.model.fused import FUSED_ACTIVATIONS, stacked_logits
from simcheck.settings.model import ModelSpec
from simcheck.settings.train import TrainConfig
from simcheck.storage.runs import SPEC_FILE, Run, check_run_dir, load_run, run_lock
from simcheck.tasks import Task
from simcheck.training.trainer import (
    Trainer,
    check_new_run,
    deferred_sigint,
    deterministic_algorithms,
    reopen_run,
    start_run,
)


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: what `simcheck.train` would take for it. A member whose
    ``out`` already holds a run continues it (its recorded configuration wins)."""

    task: Task
    out: Path
    spec: ModelSpec
    config: TrainConfig


def ensemble_key(spec: ModelSpec, config: TrainConfig) -> tuple[Any, ...] | None:
    """Members with equal keys can train as one ensemble; None for a model that trains
    alone (the hooked forward, or an MLP the fused forward does not compute)."""
    if config.forward != "fused" or spec.act_fn not in FUSED_ACTIVATIONS:
        return None
    return (dataclasses.replace(spec, seed=0), config.batch_size)


def train_ensemble(members: Sequence[Member], progress: bool = False) -> list[Run | SimcheckError]:
    """Train ``members`` together; return, in their order, each member's finished `Run` or
    the error that stopped it (`TrainingDiverged`, or a `SimcheckError` refusing its run
    directory). Members that cannot share the stack (another architecture, batch size or a
    hooked forward) train alone, one after another. Ctrl-C checkpoints every member and
    raises `TrainingInterrupted`."""
    results: list[Run | SimcheckError | None] = [None] * len(members)
    with contextlib.ExitStack() as held:
        trainers: dict[int, Trainer] = {}
        for index, member in enumerate(members):
            try:
                opened = _open(member, held)
            except SimcheckError as err:
                results[index] = err
                continue
            if isinstance(opened, Run):
                results[index] = opened
            else:
                trainers[index] = opened
        groups: dict[Any, list[int]] = {}
        for index, trainer in trainers.items():
            key = ensemble_key(trainer.model.simcheck_spec, trainer.config)
            if trainer.task.per_position:  # the stack reads one position per member
                key = None
            groups.setdefault(key if key is not None else ("alone", index), []).append(index)
        for indices in groups.values():
            outcome = _Ensemble([trainers[i] for i in indices]).run(progress)
            for index, result in zip(indices, outcome, strict=True):
                results[index] = load_run(trainers[index].dir) if result is None else result
    return [result for result in results if result is not None]  # every member has one


def _open(member: Member, held: contextlib.ExitStack) -> Trainer | Run:
    """Lock ``member``'s run directory (for as long as ``held`` lasts) and return its
    trainer, fresh or restored from its last checkpoint; or its `Run` when finished."""
    out = Path(member.out)
    if (out / SPEC_FILE).exists():
        check_run_dir(out)
        held.enter_context(run_lock(out))
        return reopen_run(out, member.task)
    check_new_run(member.task, member.spec, out)
    trainer = Trainer(out, member.task, member.spec, member.config)
    out.mkdir(parents=True, exist_ok=True)
    held.enter_context(run_lock(out))
    start_run(trainer, overwrite=False)
    return trainer


class _Ensemble:
    """The stacked parameters and AdamW state of the members still training."""

    def __init__(self, trainers: list[Trainer]) -> None:
        self.trainers = trainers
        self.template = trainers[0].model
        named = list(self.template.named_parameters())
        self.trainable = [name for name, param in named if param.requires_grad]
        self.params = {
            name: torch.stack([t.model.get_parameter(name).detach() for t in trainers])
            .clone()
            .requires_grad_(param.requires_grad)
            for name, param in named
        }
        # AdamW's moments, restored from each member's optimizer (empty on a fresh run)
        self.moments = {
            (name, moment): torch.stack([_moment(t, position, moment) for t in trainers])
            for position, name in enumerate(self.trainable)
            for moment in ("exp_avg", "exp_avg_sq")
        }
        group = trainers[0].optimizer.param_groups[0]
        self.betas: tuple[float, float] = group["betas"]
        self.eps: float = group["eps"]

    # ------------------------------------------------------------------ loop
    def run(self, progress: bool) -> list[SimcheckError | None]:
        """Train until every member has finished or diverged; per member, in order, None
        (finished) or its error."""
        if len(self.trainers) == 1:
            return [self._alone(self.trainers[0], progress)]
        outcome: dict[int, SimcheckError | None] = {}
        order = {id(t): i for i, t in enumerate(self.trainers)}
        total = max(t.config.steps for t in self.trainers)
        bar = progress_bar(
            total=total, initial=min(t.step for t in self.trainers), disable=not progress,
            desc=f"train x{len(self.trainers)}", unit="step", dynamic_ncols=True,
        )  # fmt: skip
        started = time.perf_counter()
        for trainer in self.trainers:
            trainer.model.train()
        with deferred_sigint() as interrupted, deterministic_algorithms(), bar:
            while self.trainers:
                for trainer, error in self.step(time.perf_counter() - started):
                    outcome[order[id(trainer)]] = error
                bar.update(1)
                if interrupted[0]:
                    for trainer in self.trainers:
                        self.sync(trainer)
                    errors = [trainer.interrupt() for trainer in self.trainers]
                    raise errors[0]
        return [outcome[i] for i in range(len(order))]

    @staticmethod
    def _alone(trainer: Trainer, progress: bool) -> SimcheckError | None:
        try:
            trainer.run(progress)
        except TrainingDiverged as err:
            return err
        return None

    def step(self, elapsed: float) -> list[tuple[Trainer, SimcheckError | None]]:
        """One optimizer step of every member; the members that left the stack (finished:
        None, or diverged: the error)."""
        draws = [trainer.draw_batch() for trainer in self.trainers]
        lengths = [batch.tokens.shape[1] for batch, _ in draws]
        tokens = torch.zeros(
            len(draws), draws[0][0].tokens.shape[0], max(lengths), dtype=torch.long
        )
        for k, (batch, _) in enumerate(draws):
            tokens[k, :, : lengths[k]] = batch.tokens
        offsets = None
        if any(offset is not None for _, offset in draws):
            offsets = torch.tensor([offset or 0 for _, offset in draws])
        read_at = torch.tensor(lengths) - 1
        outputs = stacked_logits(self.template, self.params, tokens, read_at, offsets)
        losses = [
            trainer.task.mean_loss(outputs[k], batch.targets)
            for k, (trainer, (batch, _)) in enumerate(zip(self.trainers, draws, strict=True))
        ]
        values = [loss.item() for loss in losses]
        finite = [k for k, value in enumerate(values) if math.isfinite(value)]
        left: list[tuple[Trainer, SimcheckError | None]] = [
            (self.trainers[k], self.trainers[k].diverged(values[k]))
            for k in range(len(values))
            if k not in finite
        ]
        for param in self.params.values():
            param.grad = None
        if finite:
            torch.stack([losses[k] for k in finite]).sum().backward()
        if left:
            self.keep(finite)
        if not self.trainers:  # every member diverged at this step
            return left
        norms = self.clip_gradients()
        self.adamw_step()
        done = []
        for k, trainer in enumerate(self.trainers):
            with warnings.catch_warnings():  # its optimizer is this stack's: it never steps
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                trainer.scheduler.step()
            trainer.step += 1
            length = lengths[finite[k]]
            if (
                trainer.step % trainer.config.checkpoint_every == 0
                or trainer.step >= trainer.config.steps
            ):
                self.sync(trainer)
            trainer.after_step(values[finite[k]], float(norms[k]), length, elapsed)
            if trainer.step >= trainer.config.steps:
                trainer.finish()
                done.append(k)
        if done:
            left += [(self.trainers[k], None) for k in done]
            self.keep([k for k in range(len(self.trainers)) if k not in done])
        return left

    # ------------------------------------------------------------------ AdamW
    def clip_gradients(self) -> torch.Tensor:
        """Scale each member's gradient to its ``grad_clip`` (as `clip_grad_norm_` does on
        the member's own parameters); return each member's norm before clipping."""
        grads = [self.params[name].grad for name in self.trainable]
        members = len(self.trainers)
        squares = torch.stack([g.reshape(members, -1).pow(2).sum(-1) for g in grads])
        norms = squares.sum(0).sqrt()
        limits = torch.tensor([t.config.grad_clip for t in self.trainers], dtype=norms.dtype)
        factors = torch.where(
            limits > 0, (limits / (norms + 1e-6)).clamp(max=1.0), torch.ones_like(norms)
        )
        for grad in grads:
            grad.mul_(factors.view(-1, *[1] * (grad.dim() - 1)))
        return norms

    @torch.no_grad()
    def adamw_step(self) -> None:
        """`torch.optim.AdamW`'s update, with each member's own learning rate, weight decay
        and step count."""
        beta1, beta2 = self.betas
        lrs = torch.tensor([t.scheduler.get_last_lr()[0] for t in self.trainers])
        decays = torch.tensor([t.config.weight_decay for t in self.trainers])
        steps = torch.tensor([t.step + 1 for t in self.trainers], dtype=torch.float64)
        step_sizes = (lrs.double() / (1 - beta1**steps)).float()
        root_corrections = (1 - beta2**steps).sqrt().float()
        for name in self.trainable:
            param, grad = self.params[name], self.params[name].grad
            shape = (-1, *[1] * (param.dim() - 1))
            exp_avg = self.moments[(name, "exp_avg")]
            exp_avg_sq = self.moments[(name, "exp_avg_sq")]
            param.mul_((1 - lrs * decays).view(shape))
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / root_corrections.view(shape)).add_(self.eps)
            param.sub_(exp_avg / denom * step_sizes.view(shape))

    # ------------------------------------------------------------------ members
    def keep(self, indices: list[int]) -> None:
        """Keep only the members at ``indices`` in the stack."""
        index = torch.tensor(indices, dtype=torch.long)
        for name, param in self.params.items():
            kept = param.detach()[index].clone().requires_grad_(param.requires_grad)
            if param.grad is not None:
                kept.grad = param.grad[index].clone()
            self.params[name] = kept
        self.moments = {key: value[index].clone() for key, value in self.moments.items()}
        self.trainers = [self.trainers[i] for i in indices]

    @torch.no_grad()
    def sync(self, trainer: Trainer) -> None:
        """Copy ``trainer``'s slice of the stack into its model and AdamW state, so that
        its checkpoint is the one `simcheck.train` writes."""
        k = self.trainers.index(trainer)
        for name, param in trainer.model.named_parameters():
            param.copy_(self.params[name][k])
        for name, param in zip(self.trainable, trainer.trainable, strict=True):
            trainer.optimizer.state[param] = {
                "step": torch.tensor(float(trainer.step)),
                "exp_avg": self.moments[(name, "exp_avg")][k].clone(),
                "exp_avg_sq": self.moments[(name, "exp_avg_sq")][k].clone(),
            }


def _moment(trainer: Trainer, position: int, moment: str) -> torch.Tensor:
    """A member's AdamW moment for its ``position``-th trainable parameter (zeros before
    its first step)."""
    param = trainer.trainable[position]
    state = trainer.optimizer.state.get(param, {})
    return state[moment].detach().clone() if moment in state else torch.zeros_like(param)
