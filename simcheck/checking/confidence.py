"""Confidence for the check: exact binomial (Clopper-Pearson) intervals and sequential looks.

The check asks of each test length whether the fraction p of inputs whose error exceeds eps
is below delta. From M sampled inputs with k failures, the Clopper-Pearson interval
[low, high] holds p with probability at least 1 - alpha whatever p is: ``high`` solves
P(X <= k | M, high) = alpha / 2 and ``low`` solves P(X >= k | M, low) = alpha / 2, X
binomial. A verdict stands when the interval lies on one side of delta.

When it straddles delta the check draws more inputs: the sample doubles at each look, from
``samples`` up to ``max_samples``. Looking several times at a growing sample would let a
fluke at one look decide, so the error level is split evenly over the planned looks
(Bonferroni): each look's interval has level 1 - alpha / looks, and the chance that any of
them misses p is at most alpha, so the stated confidence holds whenever the check stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simcheck.errors import SimcheckError

_BISECTION_STEPS = 200


def binomial_cdf(failures: int, samples: int, p: float) -> float:
    """P(X <= failures) for X ~ Binomial(samples, p), summed in log space."""
    if failures < 0:
        return 0.0
    if failures >= samples or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(failures + 1, dtype=np.float64)
    log_pmf = (
        math.lgamma(samples + 1)
        - np.array([math.lgamma(k + 1) + math.lgamma(samples - k + 1) for k in i])
        + i * math.log(p)
        + (samples - i) * math.log1p(-p)
    )
    top = float(log_pmf.max())
    return min(1.0, math.exp(top) * float(np.exp(log_pmf - top).sum()))


def _solve_decreasing(fn, target: float) -> float:
    """The p in [0, 1] where the decreasing function ``fn`` crosses ``target``."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if fn(middle) > target:
            low = middle
        else:
            high = middle
        if high - low < 1e-15:
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    """An exact binomial interval for a failure fraction.

    Attributes:
        failures: inputs whose error exceeds eps.
        samples: inputs drawn.
        low, high: the Clopper-Pearson bounds on the true fraction.
        level: the interval's own coverage (1 - alpha / looks).
    """

    failures: int
    samples: int
    low: float
    high: float
    level: float

    @property
    def fraction(self) -> float:
        """The observed failure fraction."""
        return self.failures / self.samples if self.samples else math.nan

    def below(self, threshold: float) -> bool:
        """The whole interval is at or below ``threshold``."""
        return self.high <= threshold

    def above(self, threshold: float) -> bool:
        """The whole interval is above ``threshold``."""
        return self.low > threshold

    def to_dict(self) -> dict[str, float | int]:
        return {
            "failures": self.failures,
            "samples": self.samples,
            "fraction": self.fraction,
            "low": self.low,
            "high": self.high,
            "level": self.level,
        }

    def __str__(self) -> str:
        return f"{self.failures}/{self.samples} [{self.low:.3f}, {self.high:.3f}]"


def clopper_pearson(failures: int, samples: int, alpha: float) -> Interval:
    """The two-sided Clopper-Pearson interval of level 1 - ``alpha`` for ``failures`` out of
    ``samples``."""
    if samples < 1 or not 0 <= failures <= samples:
        raise SimcheckError(
            f"need 0 <= failures <= samples, samples >= 1; got {failures}/{samples}"
        )
    if not 0 < alpha < 1:
        raise SimcheckError(f"alpha must be in (0, 1), got {alpha}")
    half = alpha / 2
    if failures == samples:
        high = 1.0
    else:
        high = _solve_decreasing(lambda p: binomial_cdf(failures, samples, p), half)
    if failures == 0:
        low = 0.0
    else:  # P(X >= k | low) = half  <=>  P(X <= k - 1 | low) = 1 - half
        low = _solve_decreasing(lambda p: binomial_cdf(failures - 1, samples, p), 1 - half)
    return Interval(failures, samples, low, high, 1 - alpha)


def look_schedule(samples: int, max_samples: int) -> list[int]:
    """Cumulative sample sizes at each look: ``samples``, doubling, capped at
    ``max_samples`` (one look when they are equal)."""
    if samples < 1 or max_samples < samples:
        raise SimcheckError(
            f"need 1 <= samples <= max_samples, got samples={samples}, max_samples={max_samples}"
        )
    looks = [samples]
    while looks[-1] < max_samples:
        looks.append(min(2 * looks[-1], max_samples))
    return looks


def look_alpha(confidence: float, looks: int) -> float:
    """The error level of each look's interval: (1 - confidence) split over the looks."""
    return (1.0 - confidence) / looks
