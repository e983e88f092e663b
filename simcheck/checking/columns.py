"""The per-length columns of a check, declared once: each column's key (the sweep table's
``KIND@T`` name), its label (the header of `simcheck.report.check_report.CheckReport.table`
and of the HTML report), what it means, and how it is read off a `LengthResult`.
`CheckReport.table`, the HTML report's table and the sweep table's check columns
(`simcheck.sweeps.table`) all come from `COLUMNS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simcheck.checking.results import LengthResult


@dataclass(frozen=True)
class Column:
    """One per-length column: ``key`` (None: not in the sweep table), ``label`` (None: not
    in the report's table), ``help`` and ``value``, which reads it off a `LengthResult`."""

    key: str | None
    label: str | None
    help: str
    value: Callable[[LengthResult], Any]


COLUMNS: tuple[Column, ...] = (
    Column(None, "T", "the test length: every long input x has T tokens", lambda r: r.length),
    Column(
        "outcome",
        "outcome",
        "the verdict at this length; the outcomes are explained below the table",
        lambda r: r.outcome,
    ),
    Column(
        None,
        "M",
        "long inputs drawn, over all looks (the sample doubles while undecided)",
        lambda r: r.samples,
    ),
    Column(
        "uncovered",
        "uncovered",
        "fraction of long inputs with no witness z (|z| <= N) whose chain, task gap + short "
        "error + model gap, is at most eps",
        lambda r: r.chain_interval.fraction,
    ),
    Column(
        None,
        "interval",
        "the exact binomial (Clopper-Pearson) interval of the uncovered fraction at the "
        "per-look level; certified when it lies below delta",
        lambda r: f"[{r.chain_interval.low:.3f}, {r.chain_interval.high:.3f}]",
    ),
    Column(
        "chain_bound",
        "chain bound",
        "the 1 - delta quantile of the chain at each input's best witness: the bound on the "
        "long error that the witnesses give",
        lambda r: r.chain_bound,
    ),
    Column(
        "eps*",
        "eps*",
        "the 1 - delta quantile of the simulation error, min over witnesses of max(task gap, "
        "model gap): how closely short inputs reproduce task and model at once",
        lambda r: r.eps_star,
    ),
    Column(
        "floor",
        "task floor",
        "the same quantile of the least task gap over the witnesses: it depends on the task, "
        "N and the inputs only, and no model is certified below it",
        lambda r: r.task_floor,
    ),
    Column(
        None,
        "ratio",
        "eps* / task floor: 1 means as simulatable as the task itself (- when the floor is 0)",
        lambda r: r.ratio,
    ),
    Column(
        "long_error",
        "long error",
        "mean |f(x) - g(x)| over the long inputs, in the task's metric",
        lambda r: float(r.long_error.mean()),
    ),
    Column(
        "task_gap",
        "task gap",
        "mean |f(x) - f(z)| at each input's chain witness z",
        lambda r: float(r.task_gap.mean()),
    ),
    Column(
        "short_error",
        "short error",
        "mean |f(z) - g(z)| there: the model's error on the short witness",
        lambda r: float(r.short_error.mean()),
    ),
    Column(
        "model_gap",
        "model gap",
        "mean |g(z) - g(x)| there: how differently the model treats z and x",
        lambda r: float(r.model_gap.mean()),
    ),
    Column(
        None,
        "witness len",
        "mean length of the chain witnesses (at most N)",
        lambda r: float(r.witness_lengths.mean()),
    ),
    Column(
        "simulatable",
        None,
        "whether eps* <= eps: the simulation criterion alone, without the short error",
        lambda r: bool(r.simulatable),
    ),
)
"""Every per-length column of a check, in table order."""
TABLE_COLUMNS = tuple(c for c in COLUMNS if c.label is not None)
"""The columns of `CheckReport.table` and of the HTML report."""
SWEEP_COLUMNS = tuple(c for c in COLUMNS if c.key is not None)
"""The check's columns of the sweep table (``KEY@T``)."""


def table_row(result: LengthResult) -> dict[str, Any]:
    """One row of `CheckReport.table`: `TABLE_COLUMNS` read off one length's result."""
    return {column.label: column.value(result) for column in TABLE_COLUMNS}
