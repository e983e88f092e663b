"""Confidence and outcomes: exact Clopper-Pearson bounds, their coverage, the sequential
looks with the error level split over them, and the rule that picks one of five outcomes."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from simcheck.checking.confidence import (
    Interval,
    binomial_cdf,
    clopper_pearson,
    look_alpha,
    look_schedule,
)
from simcheck.checking.outcomes import (
    CERTIFIED,
    FAILS_SHORT,
    NOT_SIMULATABLE,
    UNDECIDED,
    UNEXPLAINED_PASS,
    Outcome,
    decide,
)
from simcheck.errors import SimcheckError


def exact_binomial_sum(samples: int, p: float, first: int, last: int) -> Fraction:
    """P(first <= X <= last) for X ~ Binomial(samples, p), in exact rational arithmetic at the
    float ``p`` (read exactly with ``Fraction(p)``)."""
    q = Fraction(p)
    a, d = q.numerator, q.denominator  # p = a / d, 1 - p = (d - a) / d
    total = sum(
        math.comb(samples, i) * a**i * (d - a) ** (samples - i)
        for i in range(max(first, 0), min(last, samples) + 1)
    )
    return Fraction(total, d**samples)


def exact_cdf(failures: int, samples: int, p: float) -> Fraction:
    """P(X <= failures)."""
    return exact_binomial_sum(samples, p, 0, failures)


def exact_upper_tail(failures: int, samples: int, p: float) -> Fraction:
    """P(X >= failures)."""
    return exact_binomial_sum(samples, p, failures, samples)


def grid() -> list[tuple[int, int, float]]:
    """(failures, samples, alpha): no failures, one, half, all but one, all."""
    cases = set()
    for samples in (1, 5, 20, 100, 400):
        for failures in {0, 1, samples // 2, samples - 1, samples}:
            for alpha in (0.05, 0.0125):
                cases.add((failures, samples, alpha))
    return sorted(cases)


# --- Clopper-Pearson against an independent exact binomial -------------------------------


@pytest.mark.parametrize(("failures", "samples", "alpha"), grid())
def test_clopper_pearson_bounds_solve_the_exact_binomial_tails(failures, samples, alpha):
    interval = clopper_pearson(failures, samples, alpha)
    half = alpha / 2
    if failures < samples:
        assert float(exact_cdf(failures, samples, interval.high)) == pytest.approx(half, abs=1e-9)
    else:
        assert interval.high == 1.0
    if failures > 0:
        tail = exact_upper_tail(failures, samples, interval.low)
        assert float(tail) == pytest.approx(half, abs=1e-9)
    else:
        assert interval.low == 0.0
    assert 0.0 <= interval.low <= failures / samples <= interval.high <= 1.0
    assert interval.failures == failures and interval.samples == samples
    assert interval.level == pytest.approx(1 - alpha)


@pytest.mark.parametrize("samples", [1, 5, 20, 100, 400])
@pytest.mark.parametrize("alpha", [0.05, 0.0125])
def test_clopper_pearson_closed_forms_at_no_and_all_failures(samples, alpha):
    none = clopper_pearson(0, samples, alpha)
    assert none.low == 0.0
    assert none.high == pytest.approx(1 - (alpha / 2) ** (1 / samples), abs=1e-12)
    every = clopper_pearson(samples, samples, alpha)
    assert every.high == 1.0
    assert every.low == pytest.approx((alpha / 2) ** (1 / samples), abs=1e-12)


def test_clopper_pearson_matches_textbook_values():
    # R: binom.test(0, 100)$conf.int and binom.test(5, 100)$conf.int
    zero = clopper_pearson(0, 100, 0.05)
    assert zero.high == pytest.approx(0.03621669, abs=1e-8)
    five = clopper_pearson(5, 100, 0.05)
    assert five.low == pytest.approx(0.01643188, abs=1e-8)
    assert five.high == pytest.approx(0.11283491, abs=1e-8)
    assert five.fraction == 0.05


def test_smaller_alpha_gives_a_wider_interval():
    wide = clopper_pearson(7, 60, 0.0125)
    narrow = clopper_pearson(7, 60, 0.05)
    assert wide.low < narrow.low < narrow.high < wide.high


@pytest.mark.parametrize("p", [0.02, 0.05, 0.2])
def test_clopper_pearson_covers_the_true_fraction_at_least_at_its_level(p):
    samples, alpha, draws = 50, 0.05, 2000
    intervals = [clopper_pearson(k, samples, alpha) for k in range(samples + 1)]
    contains = np.array([iv.low <= p <= iv.high for iv in intervals])
    counts = np.random.default_rng(12345).binomial(samples, p, size=draws)
    coverage = contains[counts].mean()
    assert coverage >= 0.94  # at least 1 - alpha (conservative), less Monte-Carlo noise


# --- binomial_cdf -----------------------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 2, 7, 12])
@pytest.mark.parametrize("p", [1e-3, 0.1, 0.37, 0.5, 0.9, 0.999])
def test_binomial_cdf_equals_the_exact_sum(samples, p):
    for failures in range(samples):
        expected = float(exact_cdf(failures, samples, p))
        assert binomial_cdf(failures, samples, p) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_binomial_cdf_edge_cases():
    assert binomial_cdf(-1, 10, 0.3) == 0.0
    assert binomial_cdf(-5, 10, 0.0) == 0.0
    assert binomial_cdf(10, 10, 0.3) == 1.0
    assert binomial_cdf(12, 10, 0.3) == 1.0
    assert binomial_cdf(3, 10, 0.0) == 1.0
    assert binomial_cdf(0, 10, 0.0) == 1.0
    assert binomial_cdf(3, 10, 1.0) == 0.0
    assert binomial_cdf(9, 10, 1.0) == 0.0
    assert binomial_cdf(10, 10, 1.0) == 1.0


def test_binomial_cdf_is_decreasing_in_p():
    values = [binomial_cdf(4, 30, p) for p in np.linspace(0.01, 0.99, 50)]
    assert all(a >= b for a, b in itertools.pairwise(values))


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "samples", "alpha"),
    [
        (0, 0, 0.05),
        (3, 2, 0.05),
        (-1, 10, 0.05),
        (1, 10, 0.0),
        (1, 10, 1.0),
        (1, 10, -0.1),
        (1, 10, 1.5),
    ],
)
def test_clopper_pearson_refuses_bad_input(failures, samples, alpha):
    with pytest.raises(SimcheckError):
        clopper_pearson(failures, samples, alpha)


# --- looks ------------------------------------------------------------------------------


def test_look_schedule_doubles_up_to_the_cap():
    assert look_schedule(100, 800) == [100, 200, 400, 800]
    assert look_schedule(100, 100) == [100]
    assert look_schedule(100, 300) == [100, 200, 300]
    assert look_schedule(1, 5) == [1, 2, 4, 5]


@pytest.mark.parametrize(("samples", "max_samples"), [(100, 99), (0, 10), (0, 0)])
def test_look_schedule_refuses_bad_sizes(samples, max_samples):
    with pytest.raises(SimcheckError, match="max_samples"):
        look_schedule(samples, max_samples)


def test_look_alpha_splits_the_error_level_over_the_looks():
    # (1 - 0.95) is 0.05000000000000004 in floating point, hence approx
    assert look_alpha(0.95, 4) == pytest.approx(0.0125, rel=1e-12)
    assert look_alpha(0.9, 1) == pytest.approx(0.1, rel=1e-12)


def sequential_stops(p: float, delta: float, confidence: float, reps: int, seed: int):
    """Run the sequential check ``reps`` times on Bernoulli(p) failures: one stream of draws
    per repetition, looks at ``look_schedule(100, 800)``, each at level ``look_alpha``; stop
    at the first look whose interval lies above delta or at/below it. Returns the fraction of
    repetitions that stop "below" and the fraction that stop "above"."""
    schedule = look_schedule(100, 800)
    alpha = look_alpha(confidence, len(schedule))
    draws = np.random.default_rng(seed).random((reps, schedule[-1])) < p
    counts = np.cumsum(draws, axis=1)[:, np.array(schedule) - 1]  # failures at each look
    cache: dict[tuple[int, int], Interval] = {}

    def interval(k: int, n: int) -> Interval:
        if (k, n) not in cache:
            cache[(k, n)] = clopper_pearson(k, n, alpha)
        return cache[(k, n)]

    below = above = 0
    for row in counts:
        for k, n in zip(row, schedule, strict=True):
            iv = interval(int(k), n)
            if iv.below(delta):
                below += 1
                break
            if iv.above(delta):
                above += 1
                break
    return below / reps, above / reps


def test_sequential_looks_keep_the_stated_confidence_at_the_boundary():
    delta, confidence = 0.05, 0.95
    below, above = sequential_stops(delta, delta, confidence, reps=2000, seed=7)
    # with p = delta, stopping on the certified side is the error the level bounds
    assert below <= (1 - confidence) / 2 + 0.01
    assert below + above <= (1 - confidence) + 0.01


def test_sequential_looks_stop_below_when_the_fraction_is_well_below_delta():
    below, above = sequential_stops(0.005, 0.05, 0.95, reps=300, seed=8)
    assert below > 0.95 and above == 0.0


# --- intervals and outcomes -------------------------------------------------------------


def iv(low: float, high: float) -> Interval:
    """A hand-made interval (only low and high matter to `decide`)."""
    return Interval(failures=5, samples=100, low=low, high=high, level=0.95)


DELTA = 0.05
BELOW = iv(0.0, 0.04)
AT = iv(0.01, DELTA)  # high == delta counts as below
STRADDLE = iv(0.03, 0.08)
ABOVE = iv(0.06, 0.2)


def test_interval_sides_and_summary():
    assert BELOW.below(DELTA) and not BELOW.above(DELTA)
    assert AT.below(DELTA)
    assert not STRADDLE.below(DELTA) and not STRADDLE.above(DELTA)
    assert ABOVE.above(DELTA) and not ABOVE.below(DELTA)
    assert not iv(DELTA, 0.1).above(DELTA)  # low == delta is not above
    assert BELOW.to_dict() == {
        "failures": 5,
        "samples": 100,
        "fraction": 0.05,
        "low": 0.0,
        "high": 0.04,
        "level": 0.95,
    }
    assert str(BELOW) == "5/100 [0.000, 0.040]"
    assert math.isnan(Interval(0, 0, 0.0, 1.0, 0.95).fraction)


def test_outcome_names_in_their_documented_order():
    assert tuple(Outcome) == (CERTIFIED, FAILS_SHORT, NOT_SIMULATABLE, UNEXPLAINED_PASS, UNDECIDED)
    assert tuple(Outcome) == (
        "certified",
        "fails-short",
        "not-simulatable",
        "unexplained-pass",
        "undecided",
    )


@pytest.mark.parametrize(
    ("chain", "short", "long", "outcome"),
    [
        (BELOW, BELOW, ABOVE, CERTIFIED),
        (BELOW, ABOVE, ABOVE, CERTIFIED),  # the chain wins even when short is above
        (AT, ABOVE, STRADDLE, CERTIFIED),
        (STRADDLE, ABOVE, BELOW, FAILS_SHORT),
        (ABOVE, ABOVE, ABOVE, FAILS_SHORT),
        (STRADDLE, BELOW, BELOW, UNDECIDED),
        (STRADDLE, STRADDLE, ABOVE, UNDECIDED),
        (iv(DELTA, 0.1), BELOW, ABOVE, UNDECIDED),  # low == delta: the chain straddles
        (ABOVE, BELOW, BELOW, UNEXPLAINED_PASS),
        (ABOVE, STRADDLE, AT, UNEXPLAINED_PASS),
        (ABOVE, BELOW, ABOVE, NOT_SIMULATABLE),
        (ABOVE, STRADDLE, ABOVE, NOT_SIMULATABLE),
        (ABOVE, BELOW, STRADDLE, UNDECIDED),
    ],
)
def test_decide_applies_the_rules_in_order(chain, short, long, outcome):
    assert decide(chain, short, long, DELTA) == outcome


def test_decide_reaches_every_outcome():
    reached = {
        decide(c, s, lo, DELTA)
        for c in (BELOW, STRADDLE, ABOVE)
        for s in (BELOW, STRADDLE, ABOVE)
        for lo in (BELOW, STRADDLE, ABOVE)
    }
    assert reached == set(Outcome)
    assert all(isinstance(outcome, Outcome) for outcome in reached)


def test_every_outcome_has_a_meaning_advice_and_a_rank():
    for outcome in Outcome:
        assert outcome.meaning.strip() and "\n" not in outcome.meaning
        assert outcome.advice.strip() and "\n" not in outcome.advice
    ranks = sorted(Outcome, key=lambda o: o.rank)
    assert ranks == [FAILS_SHORT, NOT_SIMULATABLE, UNDECIDED, UNEXPLAINED_PASS, CERTIFIED]
    assert len({o.rank for o in Outcome}) == len(Outcome)


def test_an_outcome_is_its_name_wherever_it_is_printed_or_stored():
    assert Outcome("not-simulatable") is NOT_SIMULATABLE
    assert f"{NOT_SIMULATABLE}" == str(NOT_SIMULATABLE) == "not-simulatable"
    assert json.dumps({"T": NOT_SIMULATABLE}) == '{"T": "not-simulatable"}'
    assert {"not-simulatable": 1}[NOT_SIMULATABLE] == 1
