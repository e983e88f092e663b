"""What an intervention did: the share of an error it removed, with a bootstrap interval.

`simcheck.checking.interventions` runs the model with one change (a state patched from the witness,
a repair of a suspected cause) on the long inputs the check could not cover, and measures
each input's error before and after. This module holds what comes out of that, and nothing
that needs a model, so the diagnosis and the report can read it:

- `Effect`: the removed share 1 - sum(after) / sum(before) over the inputs, with a
  percentile bootstrap interval over inputs (the inputs are resampled together, so the
  before and after of an input stay paired). The share is of the *total* error, so inputs
  that err most weigh most; it is negative when the change makes things worse.
- `PatchRow`: one interchange intervention (a site: a state at one layer, and a head where
  it has one) with its effect on the long error and on the model gap |g(z) - g(x)|.
- `Repair`: one repair of a cause, its effect, and whether it confirms the cause
  (`CONFIRM_SHARE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIRM_SHARE = 0.5
"""A cause is confirmed when its repair removes at least this share of the long error on the
uncovered inputs and the lower end of the interval is above 0 (the removal is not chance)."""
BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the inputs behind each interval."""


@dataclass(frozen=True)
class Effect:
    """The share of an error an intervention removed on ``inputs`` inputs.

    Attributes:
        before, after: the mean error per input before and after the intervention.
        removed: 1 - after / before (NaN when there was no error to remove).
        low, high: the bootstrap interval of ``removed`` at ``level``.
    """

    inputs: int
    before: float
    after: float
    removed: float
    low: float
    high: float
    level: float

    @property
    def confirms(self) -> bool:
        """Whether the effect is large enough to confirm a cause (`CONFIRM_SHARE`)."""
        return self.removed >= CONFIRM_SHARE and self.low > 0

    def describe(self, what: str = "the long error") -> str:
        """``removes 87% [71%, 97%] of the long error on 40 inputs``."""
        if math.isnan(self.removed):
            return f"had no {what.removeprefix('the ')} to remove on {self.inputs} inputs"
        return (
            f"removes {self.removed:.0%} [{self.low:.0%}, {self.high:.0%}] of {what} on "
            f"{self.inputs} inputs"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "before": self.before,
            "after": self.after,
            "removed": self.removed,
            "low": self.low,
            "high": self.high,
            "level": self.level,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Effect:
        """The effect a certificate recorded (non-finite numbers are stored as strings)."""
        numbers = ("before", "after", "removed", "low", "high", "level")
        return cls(inputs=int(data["inputs"]), **{key: float(data[key]) for key in numbers})


def measure_effect(
    before: np.ndarray, after: np.ndarray, rng: np.random.Generator, level: float
) -> Effect:
    """The `Effect` of turning per-input errors ``before`` into ``after`` (paired arrays)."""
    before = np.asarray(before, dtype=float)
    after = np.asarray(after, dtype=float)
    count = len(before)
    total = before.sum()
    removed = 1.0 - after.sum() / total if total > 0 else math.nan
    low = high = math.nan
    if total > 0:
        rows = rng.integers(0, count, size=(BOOTSTRAP_RESAMPLES, count))
        sums_before, sums_after = before[rows].sum(1), after[rows].sum(1)
        kept = sums_before > 0
        shares = 1.0 - sums_after[kept] / sums_before[kept]
        tail = (1.0 - level) / 2
        low, high = (float(q) for q in np.quantile(shares, [tail, 1.0 - tail]))
    return Effect(
        inputs=count,
        before=float(before.mean()) if count else math.nan,
        after=float(after.mean()) if count else math.nan,
        removed=float(removed),
        low=low,
        high=high,
        level=level,
    )


SITE_KINDS = ("resid_pre", "head_out", "attn_types", "mlp_out")
"""The states an interchange intervention replaces at the query position: the residual
stream before a layer, one head's output (its ``hook_z`` row), one head's attention
redistributed to the witness's mass per key type, and a layer's MLP output."""
SITE_LABELS = {
    "resid_pre": "residual stream before the layer",
    "head_out": "head output",
    "attn_types": "head attention per key type",
    "mlp_out": "MLP output",
}


@dataclass(frozen=True)
class PatchRow:
    """One interchange intervention: x run with one state at its query position taken from
    its witness z, and what that removed of the long error and of the model gap."""

    kind: str
    layer: int
    head: int | None
    error: Effect
    gap: Effect

    @property
    def site(self) -> str:
        """``L1 head 0 head_out``, ``L0 resid_pre``."""
        head = f" head {self.head}" if self.head is not None else ""
        return f"L{self.layer}{head} {self.kind}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "head": self.head,
            "error": self.error.to_dict(),
            "gap": self.gap.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchRow:
        return cls(
            data["kind"],
            data["layer"],
            data["head"],
            Effect.from_dict(data["error"]),
            Effect.from_dict(data["gap"]),
        )


@dataclass(frozen=True)
class Repair:
    """A repair of one cause: an intervention on the model (not on the input) that removes
    the cause, and its effect on the uncovered inputs.

    Attributes:
        cause: the cause kind it repairs (`simcheck.checking.diagnosis` names them).
        target: where (``position table``, ``L0 head 1``, ``attention precision``,
            ``all repairs together``).
        action: what was done, in one sentence.
        error, gap: the effect on the long error and on the model gap; None where no repair
            exists (witness resolution: the witnesses, not the model, fall short).
        layer, head: the head a dilution repair rescales.
    """

    cause: str
    target: str
    action: str
    error: Effect | None
    gap: Effect | None
    layer: int | None = None
    head: int | None = None

    @property
    def confirmed(self) -> bool:
        """Whether the repair confirms its cause (`Effect.confirms`)."""
        return self.error is not None and self.error.confirms

    @property
    def strength(self) -> float:
        """The removed share, for ordering (-inf where nothing was measured)."""
        if self.error is None or math.isnan(self.error.removed):
            return -math.inf
        return self.error.removed

    def describe(self) -> str:
        """One sentence: target, action and effect."""
        if self.error is None:
            return f"{self.target}: {self.action}"
        return f"{self.target}: {self.action}; this {self.error.describe()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "target": self.target,
            "action": self.action,
            "layer": self.layer,
            "head": self.head,
            "confirmed": self.confirmed,
            "error": None if self.error is None else self.error.to_dict(),
            "gap": None if self.gap is None else self.gap.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Repair:
        return cls(
            cause=data["cause"],
            target=data["target"],
            action=data["action"],
            error=None if data["error"] is None else Effect.from_dict(data["error"]),
            gap=None if data["gap"] is None else Effect.from_dict(data["gap"]),
            layer=data["layer"],
            head=data["head"],
        )
