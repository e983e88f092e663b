"""`TrainConfig`: how to train, every field checked and recorded.

Kept apart from `simcheck.training.trainer`, which trains with torch and TransformerLens, so that
a configuration can be read, checked and turned into command-line flags without importing
either. `simcheck.training.trainer` offers the same name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from simcheck.errors import SimcheckError
from simcheck.settings.fields import check_field_types, setting

TRAIN_FORWARDS: tuple[str, ...] = ("fused", "hooked")
"""How a training step computes the model: ``fused`` (`simcheck.model.fused`: the same
function and parameters through batched products and fused attention, about twice as fast)
or ``hooked`` (the `HookedTransformer` itself, every hook point on the way)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every field is recorded in the run's ``spec.json``.

    Attributes:
        train_len: N, the longest training length.
        min_len: the shortest training length (default: the task's ``min_length``).
        steps: optimizer steps.
        batch_size: sequences per step (all of one length).
        lr: peak learning rate; warmup over ``warmup`` of the steps, cosine decay to
            ``lr * min_lr_ratio``.
        weight_decay: AdamW's decoupled weight decay (>= 0).
        warmup: the fraction of the steps spent warming up, in [0, 1).
        min_lr_ratio: where the cosine decay ends, as a fraction of ``lr``, in [0, 1].
        grad_clip: maximum global gradient norm (0 disables clipping).
        data_seed: seed of the data stream (lengths, inputs, position offsets), >= 0.
        curriculum: a length curriculum, as a fraction of the steps: the longest length a
            batch may have grows linearly from the shortest to ``train_len`` over the first
            ``curriculum * steps`` steps (lengths stay uniform below it), then stays at N.
            0 draws every length from the start.
        pos_offsets: for ``learned`` positions, shift each batch by a random offset in
            [0, n_ctx - length] so every row of the table is trained.
        log_every: steps between lines of ``metrics.jsonl``.
        checkpoint_every: steps between checkpoints.
        forward: how each step computes the model, one of `TRAIN_FORWARDS`. Both compute
            the same function of the same parameters; their weights after training differ
            only by float rounding. A model the fused path cannot take
            (`simcheck.model.fused.fast_path_problem`) trains hooked.
    """

    train_len: int = setting(32, help="longest training length N")
    min_len: int | None = setting(
        None, help="shortest training length", shown="the task's shortest"
    )
    steps: int = setting(3000, help="optimizer steps")
    batch_size: int = setting(64, help="sequences per step")
    lr: float = setting(3e-3, help="peak learning rate")
    weight_decay: float = setting(0.0, help="AdamW weight decay")
    warmup: float = setting(0.05, help="warmup, as a fraction of the steps")
    min_lr_ratio: float = setting(0.1, help="end of the cosine decay, as a fraction of --lr")
    grad_clip: float = setting(1.0, help="largest gradient norm, 0 = no clipping")
    data_seed: int = setting(0, help="seed of the data stream")
    pos_offsets: bool = setting(False, help="random position offsets for learned positions")
    curriculum: float = setting(
        0.0,
        help="fraction of the steps over which the longest length drawn grows from the "
        "shortest to N (0 = none)",
    )
    log_every: int = setting(50, help="steps between metric lines")
    checkpoint_every: int = setting(500, help="steps between checkpoints")
    forward: str = setting(
        "fused", help="training forward pass: fused (fast) or hooked", choices=TRAIN_FORWARDS
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.train_len < 1:
            raise SimcheckError(f"train_len must be >= 1, got {self.train_len}")
        if self.min_len is not None and not 1 <= self.min_len <= self.train_len:
            raise SimcheckError(
                f"min_len must be between 1 and train_len={self.train_len}, got {self.min_len}"
            )
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise SimcheckError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise SimcheckError(f"lr must be positive and finite, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise SimcheckError(f"weight_decay must be >= 0 and finite, got {self.weight_decay}")
        if not 0 <= self.warmup < 1:
            raise SimcheckError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if not 0 <= self.curriculum <= 1:
            raise SimcheckError(
                f"curriculum is a fraction of the steps in [0, 1], got {self.curriculum}"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise SimcheckError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.grad_clip < math.inf:
            raise SimcheckError(
                f"grad_clip must be >= 0 and finite (0 turns clipping off), got {self.grad_clip}"
            )
        if self.data_seed < 0:
            raise SimcheckError(f"data_seed must be >= 0, got {self.data_seed}")
        if self.forward not in TRAIN_FORWARDS:
            raise SimcheckError(
                f"unknown training forward '{self.forward}'; choose one of "
                f"{', '.join(TRAIN_FORWARDS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The configuration a record (``spec.json``) holds. Runs recorded before the fused
        forward existed trained hooked, and resume that way."""
        return cls(**{"forward": "hooked", **data})
