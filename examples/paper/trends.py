"""Checked trend statements: a mean over seeds falls or rises, a curve stays flat, the
plateau beats the trivial predictor, the model gap against the measured error. Each step
against a claim says whether it is within the spread over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pandas as pd

from paper.stats import Family, fmt, plateau_lengths, seed_stats, show
from simcheck.sweeps.table import column

FLAT_FACTOR = 2.0
"""A curve plateaus when its mean loss over the plateau lengths varies by at most this factor."""


def trend(label: str, xs: Sequence[Any], stats: pd.DataFrame, direction: str, x_name: str) -> str:
    """A checked statement that the mean of ``stats`` (indexed by ``xs``) falls or rises.

    Each step against the claim is named, with whether the two min-max ranges over seeds
    overlap (within seed spread) or not."""
    if len(xs) < 2:
        return f"{label}: only {x_name}={', '.join(map(show, xs))} finished, no trend yet"
    means = [float(stats.loc[x, "mean"]) for x in xs]
    falls = direction == "falls"
    signs, against = [], []
    for xa, xb in pairwise(xs):
        a, b = float(stats.loc[xa, "mean"]), float(stats.loc[xb, "mean"])
        signs.append(">" if a > b else "<" if a < b else "=")
        if not (a > b if falls else a < b):
            overlap = (
                stats.loc[xa, "min"] <= stats.loc[xb, "max"]
                and stats.loc[xb, "min"] <= stats.loc[xa, "max"]
            )
            spread = "within seed spread" if overlap else "outside seed spread"
            against.append(f"{x_name}={show(xa)}→{show(xb)} {spread}")
    chain = fmt(means[0]) + "".join(f" {s} {fmt(m)}" for s, m in zip(signs, means[1:], strict=True))
    overall = means[-1] < means[0] if falls else means[-1] > means[0]
    verdict = "yes" if not against else f"no ({'; '.join(against)})"
    first_last = f"; {x_name}={show(xs[0])} vs {show(xs[-1])}: {'yes' if overall else 'no'}"
    return f"{label} {direction} in {x_name}: {chain}: **{verdict}**{first_last}"


def flatness(curves: dict[int, pd.DataFrame]) -> list[str]:
    """Per N: does the mean loss over the plateau lengths stay within `FLAT_FACTOR`?"""
    lines = []
    for train_len, curve in curves.items():
        lengths = plateau_lengths(list(curve.index), train_len)
        if len(lengths) < 2:
            continue
        means = curve.loc[lengths, "mean"]
        ratio = float(means.max() / means.min())
        verdict = "yes" if ratio <= FLAT_FACTOR else "no"
        lines.append(
            f"N={train_len}: loss at T={lengths} = "
            f"{', '.join(fmt(m) for m in means)}; max/min {ratio:.2f} <= {FLAT_FACTOR:g}: "
            f"**{verdict}** (loss at T={curve.index[0]}: {fmt(curve['mean'].iloc[0])})"
        )
    return lines


def against_baseline(rows: pd.DataFrame, family: Family) -> list[str]:
    """Per curve: is the mean plateau below the trivial predictor's loss at every N?"""
    lines = []
    for value, part in family.rows(rows).groupby(family.param):
        plateau = part.groupby("train_len")["plateau"].mean()
        base = part.groupby("train_len")["baseline_plateau"].mean()
        ratio = plateau / base
        below = bool((ratio < 1).all())
        lines.append(
            f"{family.symbol}={show(value)}{family.where()}: plateau / trivial baseline = "
            f"{', '.join(f'{r:.3g}' for r in ratio)} (N={', '.join(map(str, ratio.index))}); "
            f"below the baseline at every N: **{'yes' if below else 'no'}**"
        )
    return lines


def gap_against_error(rows: pd.DataFrame, family: Family, t: int) -> list[str]:
    """Per curve: at how many N the mean model gap is at least the measured long error."""
    lines = []
    for value, part in family.rows(rows).groupby(family.param):
        gap = part.groupby("train_len")[column("model_gap", t)].mean()
        err = part.groupby("train_len")[column("error", t)].mean()
        ratio = gap / err
        count = int((gap >= err).sum())
        lines.append(
            f"{family.symbol}={show(value)}: model gap >= {column('error', t)} at {count} of "
            f"{len(gap)} N; model gap / error = {', '.join(f'{r:.1f}' for r in ratio)} "
            f"(N={', '.join(str(n) for n in gap.index)})"
        )
    return lines


def falls_in_n(rows: pd.DataFrame, family: Family, name: str, label: str) -> list[str]:
    """One `trend` line per value of the family's parameter: column ``name`` falls in N."""
    lines = []
    for value, part in family.rows(rows).groupby(family.param):
        stats = seed_stats(part, ["train_len"], name)
        what = f"{label} for {family.symbol}={show(value)}{family.where()}"
        lines.append(trend(what, list(stats.index), stats, "falls", "N"))
    return lines


def rises_in_param(rows: pd.DataFrame, family: Family, name: str, label: str) -> list[str]:
    """One `trend` line per N: column ``name`` rises with the family's parameter."""
    lines = []
    for train_len, part in family.rows(rows).groupby("train_len"):
        stats = seed_stats(part, [family.param], name)
        what = f"{label} at N={train_len}{family.where()}"
        lines.append(trend(what, list(stats.index), stats, "rises", family.symbol))
    return lines
