"""`ModelAdapter`: how simcheck reads a model it did not build (see `simcheck.model.subject`).

Kept apart from `simcheck.model.subject`, which resolves models with torch and TransformerLens,
so that an adapter can be checked and turned into command-line flags without importing
either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcheck.errors import SimcheckError
from simcheck.settings.fields import setting
from simcheck.settings.model import model_period, model_window

POSITION_KINDS: tuple[str, ...] = ("learned", "shortformer", "rotary", "alibi", "periodic", "none")
"""Position encodings an adapter can declare."""
LEARNED_ABSOLUTE: tuple[str, ...] = ("learned", "shortformer")
"""Encodings that read absolute positions from a learned table: rows past training are untrained."""
_FROM_TRANSFORMER_LENS = {
    "standard": "learned",
    "shortformer": "shortformer",
    "rotary": "rotary",
    "alibi": "alibi",
}


def _ids(value: Any, what: str) -> tuple[int, ...]:
    """A tuple of non-negative ints from an int or a sequence of ints."""
    values = (value,) if isinstance(value, int | np.integer) else tuple(value)
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        raise SimcheckError(f"{what} must be token ids (integers), got {value!r}")
    if any(v < 0 for v in values):
        raise SimcheckError(f"{what} must be token ids >= 0, got {list(values)}")
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class ModelAdapter:
    """How simcheck reads a model (see `simcheck.model.subject`). Fields left as None are taken
    from the model when `resolved`.

    Attributes:
        outputs: output ids that answer the task, in the task's order; None: the whole output.
        prefix: tokens put in front of every input (e.g. ``(bos_id,)``).
        period: Delta of the model's positions (None: 1, or the simcheck model's).
        window: tau, the model's local window (None: 0, or the simcheck model's).
        positions: one of `POSITION_KINDS` (None: from the model).
        trained_positions: leading absolute positions seen in training (None: N + prefix).
    """

    outputs: tuple[int, ...] | None = setting(
        None, help="output ids that answer the task, in the task's order", shown="all",
        parse="ids", metavar="IDS",
    )  # fmt: skip
    prefix: tuple[int, ...] = setting(
        (), help="tokens put before every input, e.g. a BOS id", parse="ids", metavar="IDS"
    )
    period: int | None = setting(
        None, help="Delta of the model's positions", shown="1, or the run's"
    )
    window: int | None = setting(
        None, help="tau, the model's local window", shown="0, or the run's"
    )
    positions: str | None = setting(
        None, help="the model's position encoding", shown="read from the model",
        choices=POSITION_KINDS,
    )  # fmt: skip
    trained_positions: int | None = setting(
        None, help="leading positions training showed the model", shown="N + prefix length"
    )

    def __post_init__(self) -> None:
        if self.outputs is not None:
            object.__setattr__(self, "outputs", _ids(self.outputs, "outputs"))
            if not self.outputs:
                raise SimcheckError("outputs is empty: give the output ids that answer the task")
        object.__setattr__(self, "prefix", _ids(self.prefix, "prefix"))
        for name, low in (("period", 1), ("window", 0), ("trained_positions", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | np.integer) or value < low):
                raise SimcheckError(f"adapter {name} must be an integer >= {low}, got {value!r}")
        if self.positions is not None and self.positions not in POSITION_KINDS:
            raise SimcheckError(
                f"unknown positions '{self.positions}'; choose one of {', '.join(POSITION_KINDS)}"
            )

    @property
    def learned_absolute(self) -> bool:
        """Whether the model reads absolute positions from a learned table."""
        return self.positions in LEARNED_ABSOLUTE

    def resolved(self, model: Any, train_len: int | None = None) -> ModelAdapter:
        """Every field filled, the user's values first, then the model's own."""
        spec = getattr(model, "simcheck_spec", None)
        cfg_kind = getattr(getattr(model, "cfg", None), "positional_embedding_type", None)
        positions = self.positions or (
            spec.pos if spec is not None else _FROM_TRANSFORMER_LENS.get(cfg_kind, "learned")
        )
        trained = self.trained_positions
        if trained is None and train_len is not None:
            trained = train_len + len(self.prefix)
        return dataclasses.replace(
            self,
            period=model_period(model) if self.period is None else self.period,
            window=model_window(model) if self.window is None else self.window,
            positions=positions,
            trained_positions=trained,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["outputs"] = None if self.outputs is None else list(self.outputs)
        data["prefix"] = list(self.prefix)
        return data
