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

from enum import Enum

from simcheck.checking.confidence import Interval


class Outcome(str, Enum):
    """An outcome of the check at one test length: its name (the member's value, what the
    certificate and the command line print), what it says about the model (``meaning``),
    what a user can do about it (``advice``) and how bad it is (``rank``: 0 the worst; a
    check over several target roles reports its worst role). Adding an outcome is adding a
    member here and its place in `decide`; everything that prints outcomes reads them from
    here. A member is a ``str``: it compares, hashes and serialises as its name."""

    CERTIFIED = (
        "certified",
        4,
        "short inputs the model gets right simulate the long ones: the long error is at most "
        "eps on all but a delta fraction of inputs",
        "nothing to fix; the certificate states the bound and the confidence",
    )
    FAILS_SHORT = (
        "fails-short",
        0,
        "the model already errs at lengths <= N: a training problem, not a length-"
        "generalization one",
        "train longer or larger until the error at lengths <= N is within eps",
    )
    NOT_SIMULATABLE = (
        "not-simulatable",
        1,
        "the model errs on long inputs and no witness of length <= N reproduces it: an "
        "extrapolation failure",
        "read the diagnosis: the term, the first diverging state and the cause point at what "
        "to change (positions, attention, training length)",
    )
    UNEXPLAINED_PASS = (
        "unexplained-pass",
        3,
        "the measured long error is within eps, but no witness of length <= N explains it",
        "raise N, or eps above about twice the task floor (a model that follows the task "
        "repeats the task gap as its model gap), or add a witness construction that "
        "resolves the statistic the diagnosis names",
    )
    UNDECIDED = (
        "undecided",
        2,
        "the confidence interval still straddles delta after the sampling budget",
        "raise max_samples, or move eps or delta away from the model's error rate",
    )

    def __new__(cls, name: str, rank: int, meaning: str, advice: str) -> Outcome:
        member = str.__new__(cls, name)
        member._value_ = name
        member.rank = rank
        member.meaning = meaning
        member.advice = advice
        return member

    rank: int
    meaning: str
    advice: str

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


CERTIFIED = Outcome.CERTIFIED
FAILS_SHORT = Outcome.FAILS_SHORT
NOT_SIMULATABLE = Outcome.NOT_SIMULATABLE
UNEXPLAINED_PASS = Outcome.UNEXPLAINED_PASS
UNDECIDED = Outcome.UNDECIDED
"""The members by short names, for the rule below and its callers."""


def decide(chain: Interval, short: Interval, long: Interval, delta: float) -> Outcome:
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
