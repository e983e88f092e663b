"""The five outcomes of the check at one test length, and the rule that picks one.

Per long input x the chain of the simulation argument is

    |f(x) - g(x)|  <=  |f(x) - f(z)|  +  |f(z) - g(z)|  +  |g(z) - g(x)|
      long error        task gap         short error      model gap

for any witness z of length <= N. An input is *covered* when one of its witnesses makes the
whole right-hand side at most eps: then its long error is at most eps, and the reason is
that a short input the model gets right behaves like it. The rule reads three exact
binomial intervals (`simcheck.checking.confidence`) against delta:

- ``chain``: the fraction of long inputs that are not covered;
- ``short``: the fraction of inputs of lengths <= N whose error exceeds eps;
- ``long``: the fraction of long inputs whose measured error exceeds eps.

In this order: the chain interval below delta gives **certified**; the short interval
above delta gives **fails-short**; a chain interval that straddles delta gives
**undecided**; otherwise (the chain fails) the long interval below delta gives
**unexplained-pass**, above delta **not-simulatable**, and straddling it **undecided**.
"""

from __future__ import annotations

from simcheck.checking.confidence import Interval

CERTIFIED = "certified"
FAILS_SHORT = "fails-short"
NOT_SIMULATABLE = "not-simulatable"
UNEXPLAINED_PASS = "unexplained-pass"
UNDECIDED = "undecided"
OUTCOMES: tuple[str, ...] = (CERTIFIED, FAILS_SHORT, NOT_SIMULATABLE, UNEXPLAINED_PASS, UNDECIDED)

MEANING = {
    CERTIFIED: (
        "short inputs the model gets right simulate the long ones: the long error is at most "
        "eps on all but a delta fraction of inputs"
    ),
    FAILS_SHORT: (
        "the model already errs at lengths <= N: a training problem, not a length-"
        "generalization one"
    ),
    NOT_SIMULATABLE: (
        "the model errs on long inputs and no witness of length <= N reproduces it: an "
        "extrapolation failure"
    ),
    UNEXPLAINED_PASS: (
        "the measured long error is within eps, but no witness of length <= N explains it"
    ),
    UNDECIDED: "the confidence interval still straddles delta after the sampling budget",
}
"""One line per outcome: what it says about the model."""

ADVICE = {
    CERTIFIED: "nothing to fix; the certificate states the bound and the confidence",
    FAILS_SHORT: "train longer or larger until the error at lengths <= N is within eps",
    NOT_SIMULATABLE: (
        "read the diagnosis: the term, the first diverging state and the cause point at what "
        "to change (positions, attention, training length)"
    ),
    UNEXPLAINED_PASS: (
        "raise N, or eps above about twice the task floor (a model that follows the task "
        "repeats the task gap as its model gap), or add a witness construction that "
        "resolves the statistic the diagnosis names"
    ),
    UNDECIDED: "raise max_samples, or move eps or delta away from the model's error rate",
}
"""One line per outcome: what a user can do about it."""


def decide(chain: Interval, short: Interval, long: Interval, delta: float) -> str:
    """The outcome from the three intervals (see the module docstring)."""
    if chain.below(delta):
        return CERTIFIED
    if short.above(delta):
        return FAILS_SHORT
    if not chain.above(delta):
        return UNDECIDED
    if long.below(delta):
        return UNEXPLAINED_PASS
    if long.above(delta):
        return NOT_SIMULATABLE
    return UNDECIDED
