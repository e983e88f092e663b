"""Certificates over a range of lengths: where the certificate stops, and a forecast of it.

A check with ``up_to`` (`simcheck.checking.config.CheckConfig`) runs T = 2N, 4N, 8N, ... and
stops at the first length where the model fails (not-simulatable or fails-short; past an
undecided length or an unexplained pass it goes on). `LengthRange` says what came out: the
longest length up to which all are certified, the first that is not, the first failure (its
diagnosis is that length's), and a **forecast** of the length at which the certificate
ends.

The forecast comes from an intervention, not from a curve fit (`simcheck.checking.interventions`
`forecast_by_emulation`): the long inputs of the longest certified length T_c are run *as
if they were k times longer with the same type proportions*. In a k times longer input every
key type (token, position mod Delta) that occurs more than once occurs k times as often, while
a type met once (a needle, a BOS token, the keys of the local window) is still met once; for
softmax attention that is exactly log k added to the logits of the repeated types' keys, in
every head. The smallest k at which the certificate's statistic crosses 0 gives the forecast
k T_c. The statistic is each input's *slack*, how far it is from breaking the certificate:

- scalar and distribution tasks (and class tasks judged by total variation): eps minus the
  input's error;
- class tasks judged by decisions (the default): the model's decision margin on x, the
  logit of the task's class minus the largest other logit,

and the certificate breaks when its delta-quantile falls below 0 (more than a delta fraction
of the inputs erring). What the emulation captures is dilution: a head that finds a rare
key loses it as its competitors multiply. It does not capture what changes with absolute
position (learned position rows) or with the log n scale of finite precision, and no
forecast is made in those cases. The basis says what the forecast rests on, with the heads
whose top attention weight thins over the certified lengths (top weight and entropy against
T: the dilution trend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_FACTOR = 4096
"""The longest emulation, as a multiple of the longest certified length."""


@dataclass(frozen=True)
class Forecast:
    """A forecast end of a certificate, from inputs emulated k times longer.

    Attributes:
        length: the forecast T = factor x from_length (None when the slack stays above 0 up
            to `MAX_FACTOR`).
        from_length: the certified length whose inputs were emulated longer.
        factor: the smallest factor k at which the slack's delta-quantile reaches 0.
        statistic: what the slack is (``decision margin`` or ``eps - error``).
        basis: what the forecast rests on, in sentences.
    """

    length: float | None
    from_length: int
    factor: float | None
    statistic: str
    basis: str

    def line(self) -> str:
        """The forecast as the summary prints it."""
        if self.length is None:
            return (
                f"forecast (an extrapolation, not a check): no end up to "
                f"T = {MAX_FACTOR * self.from_length}; {self.basis}"
            )
        return (
            f"forecast (an extrapolation, not a check): the certificate ends near "
            f"T = {self.length:.0f}; {self.basis}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "from_length": self.from_length,
            "factor": self.factor,
            "statistic": self.statistic,
            "basis": self.basis,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Forecast:
        length, factor = data["length"], data["factor"]
        return cls(
            None if length is None else float(length),
            int(data["from_length"]),
            None if factor is None else float(factor),
            data["statistic"],
            data["basis"],
        )


def slack_quantile(slack: np.ndarray, delta: float) -> float:
    """The delta-quantile of the slack: a delta fraction of the inputs lies below it."""
    return float(np.quantile(np.asarray(slack, dtype=float), delta))


def crossing(factors: Sequence[float], quantiles: Sequence[float]) -> float | None:
    """The factor where the quantile first reaches 0, interpolated linearly in log2 of the
    factor between the last point above 0 and the first at or below it (None if none is)."""
    previous = None
    for factor, value in zip(factors, quantiles, strict=True):
        if value <= 0:
            if previous is None:
                return float(factor)
            f0, v0 = previous
            share = v0 / (v0 - value)
            return float(2 ** (math.log2(f0) + share * (math.log2(factor) - math.log2(f0))))
        previous = (factor, value)
    return None


def dilution_trends(
    lengths: Sequence[int], attention: Sequence[dict[int, dict[str, list[float]]]]
) -> list[str]:
    """Heads whose median top attention weight falls at every step over ``lengths``
    (``attention`` holds each length's per-layer summary), as sentences with their top
    weight and entropy at each length, the largest fall first."""
    if len(lengths) < 2:
        return []
    found = []
    for layer, summary in attention[0].items():
        for head in range(len(summary.get("top", []))):
            tops = [a.get(layer, {}).get("top", [math.nan] * (head + 1))[head] for a in attention]
            if not (all(math.isfinite(t) for t in tops) and np.all(np.diff(tops) < 0)):
                continue
            entropy = [
                a.get(layer, {}).get("entropy", [math.nan] * (head + 1))[head] for a in attention
            ]
            found.append(
                (
                    tops[0] - tops[-1],
                    f"L{layer} head {head}'s median top weight "
                    f"{' -> '.join(f'{t:.3g}' for t in tops)} and entropy "
                    f"{' -> '.join(f'{e:.3g}' for e in entropy)} nats over T = "
                    f"{', '.join(str(t) for t in lengths)}",
                )
            )
    return [text for _, text in sorted(found, reverse=True)]


@dataclass(frozen=True)
class LengthRange:
    """What a check over several lengths says about the range.

    Attributes:
        lengths, outcomes: the lengths checked and their outcomes, in order.
        longest_certified: the longest length up to which every checked length is
            certified (None when the first is not).
        first_uncertified: the first length that is not certified (None when all are).
        first_failure: the first length where the model fails (not-simulatable or
            fails-short; None when none does).
        forecast: where the certificate is forecast to end (None where none was made).
    """

    lengths: tuple[int, ...]
    outcomes: tuple[str, ...]
    longest_certified: int | None
    first_uncertified: int | None
    first_failure: int | None
    forecast: Forecast | None

    def lines(self) -> list[str]:
        """The range as sentences."""
        if self.longest_certified is None:
            out = [f"range: not certified from the first length, T = {self.lengths[0]}"]
        else:
            out = [f"range: certified at every checked length up to T = {self.longest_certified}"]
        if self.first_uncertified is not None:
            outcome = self.outcomes[self.lengths.index(self.first_uncertified)]
            out.append(f"first length not certified: T = {self.first_uncertified} ({outcome})")
        if self.first_failure is not None and self.first_failure != self.first_uncertified:
            outcome = self.outcomes[self.lengths.index(self.first_failure)]
            out.append(f"first length where the model fails: T = {self.first_failure} ({outcome})")
        if self.forecast is not None:
            out.append(self.forecast.line())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "lengths": list(self.lengths),
            "outcomes": list(self.outcomes),
            "longest_certified": self.longest_certified,
            "first_uncertified": self.first_uncertified,
            "first_failure": self.first_failure,
            "forecast": None if self.forecast is None else self.forecast.to_dict(),
        }
