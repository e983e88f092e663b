"""Statistics over seeds: curve families, mean / min / max per group, the loss curves, and
how numbers are written in labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import simcheck
from simcheck.sweeps.table import column, lengths_of


@dataclass(frozen=True)
class Family:
    """A set of curves: one per value of ``param``, with the other task parameters fixed."""

    param: str
    symbol: str
    fixed: tuple[tuple[str, Any], ...] = ()

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``table`` in this family."""
        keep = np.ones(len(table), dtype=bool)
        for name, value in self.fixed:
            keep &= (table[name] == value).to_numpy()
        return table[keep]

    def where(self) -> str:
        """``" at k=2"`` for the fixed parameters (empty when none)."""
        if not self.fixed:
            return ""
        return " at " + ", ".join(f"{c.split('.')[-1]}={show(v)}" for c, v in self.fixed)


KGRAM_PAIRS = Family("task.S,k", "S,k,heads")
"""Every k-gram configuration as one curve (the ``task.S,k`` label of `with_kgram_label`)."""


def show(value: Any) -> str:
    """A parameter value as written in labels: 3.0 -> "3"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def fmt(value: float) -> str:
    """Two significant digits in scientific notation."""
    return "nan" if not np.isfinite(value) else f"{value:.2e}"


def seed_stats(rows: pd.DataFrame, by: Sequence[str], name: str) -> pd.DataFrame:
    """Mean, min, max and count over seeds of column ``name`` for each combination of ``by``."""
    grouped = rows.groupby(list(by))[name]
    stats = grouped.agg(["mean", "min", "max", "count"])
    return stats.rename(columns={"count": "n"})


def seed_list(rows: pd.DataFrame) -> list[int]:
    """The seeds present in ``rows``, sorted."""
    return sorted(int(s) for s in rows["seed"].unique())


def check_length(table: pd.DataFrame) -> int:
    """T of the checker's columns (``model_gap@T``)."""
    found = lengths_of(table, "model_gap")
    if not found:
        raise simcheck.SimcheckError("the results table has no model_gap@T column")
    return found[-1]


def loss_curves(rows: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """For each N: mean, min and max over seeds of the test loss at each test length."""
    lengths = lengths_of(rows, "loss")
    curves = {}
    for train_len, part in rows.groupby("train_len"):
        values = part[[column("loss", t) for t in lengths]].to_numpy(dtype=float)
        curves[int(train_len)] = pd.DataFrame(
            {
                "mean": values.mean(0),
                "min": values.min(0),
                "max": values.max(0),
                "n": len(values),
            },
            index=pd.Index(lengths, name="length"),
        )
    return curves


def plateau_lengths(lengths: Sequence[int], train_len: int) -> list[int]:
    """The (up to) three longest test lengths beyond N: the ones the plateau averages."""
    return [t for t in lengths if t > train_len][-3:]


def with_kgram_label(kgram: pd.DataFrame) -> pd.DataFrame:
    """The k-gram table with a ``task.S,k`` column, "S,k,heads", for `KGRAM_PAIRS`."""
    label = (
        kgram["task.S"].map(show) + "," + kgram["task.k"].map(show) + ","
        + kgram["n_heads"].map(show)
    )  # fmt: skip
    return kgram.assign(**{"task.S,k": label})


def kgram_loss_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The k-gram rows whose loss curves Figure 4 shows: S=3, k=2, one head."""
    return rows[(rows["task.S"] == 3) & (rows["task.k"] == 2) & (rows["n_heads"] == 1)]
