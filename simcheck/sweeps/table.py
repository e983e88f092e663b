"""The results table of a sweep: its per-length columns, how a row gets them, and what it says.

A sweep (`simcheck.sweeps.runner`) writes one row per point: the point's configuration, then what
was measured. The measurements at a test length T are columns named ``KIND@T`` (``loss@256``,
``simulatable@64``); this module is the one place that knows those names:

- `KINDS`: the kinds of per-length column, in table order (`EVAL_KINDS` from the
  evaluation, `CHECK_KINDS` from the simulation check);
- `column` names one (``column("long_error", 256) == "long_error@256"``), `parse_column`
  reads one back, `lengths_of` lists the test lengths a table has for a kind;
- `eval_columns` and `check_columns` build a row's per-length columns from an
  `simcheck.EvalResult` and a `simcheck.report.check_report.CheckReport`;
- `empirical_n_star` reads the measured N* off a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from simcheck.checking.columns import SWEEP_COLUMNS
from simcheck.errors import SimcheckError
from simcheck.tasks import Task

if TYPE_CHECKING:
    from simcheck.checking.results import LengthResult

EVAL_KINDS = ("loss", "error")
"""Per-length columns of the evaluation: mean test loss and mean error metric |f - g| on the
evaluation's inputs of length T."""
CHECK_KINDS = tuple(column.key for column in SWEEP_COLUMNS)
"""Per-length columns of the simulation check at T (`simcheck.checking.columns`): the outcome,
the uncovered fraction, the chain bound, eps*, the task floor, the means of the long error
and of the chain's terms, and whether eps* <= eps."""
KINDS = EVAL_KINDS + CHECK_KINDS
"""Every kind of per-length column, in the order the table holds them."""
_SEPARATOR = "@"


def column(kind: str, length: int) -> str:
    """The name of the ``kind`` column at test length ``length``: ``"long_error@256"``."""
    if kind not in KINDS:
        raise SimcheckError(f"'{kind}' is not a per-length column; the kinds are {list(KINDS)}")
    return f"{kind}{_SEPARATOR}{int(length)}"


def parse_column(name: Any) -> tuple[str, int] | None:
    """``(kind, length)`` of a per-length column name; None for any other column."""
    kind, separator, digits = str(name).partition(_SEPARATOR)
    if not separator or kind not in KINDS or not (digits.isascii() and digits.isdigit()):
        return None
    return kind, int(digits)


def lengths_of(table: pd.DataFrame, kind: str) -> list[int]:
    """The test lengths T, sorted, for which ``table`` has a ``kind@T`` column."""
    if kind not in KINDS:
        raise SimcheckError(f"'{kind}' is not a per-length column; the kinds are {list(KINDS)}")
    parsed = (parse_column(name) for name in table.columns)
    return sorted(p[1] for p in parsed if p is not None and p[0] == kind)


def eval_columns(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``loss@T`` and ``error@T`` from the rows of an `simcheck.EvalResult` (one per T)."""
    rows = list(rows)
    out = {column("loss", r["length"]): r["loss_mean"] for r in rows}
    out.update({column("error", r["length"]): r["metric_mean"] for r in rows})
    return out


def check_columns(results: Iterable[LengthResult]) -> dict[str, Any]:
    """The `CHECK_KINDS` columns at each length of a check report's ``results``."""
    out: dict[str, Any] = {}
    for r in results:
        out.update({column(c.key, r.length): c.value(r) for c in SWEEP_COLUMNS})
    return out


# ------------------------------------------------------------------ measured N*
def _check_lengths(table: pd.DataFrame) -> list[int]:
    missing = {"train_len", "seed", "status"} - set(table.columns)
    if missing:
        raise SimcheckError(
            f"the sweep table lacks columns {sorted(missing)}; pass the results table a sweep "
            "writes (one row per point, with train_len, seed, status, simulatable@T, "
            "long_error@T)"
        )
    errors = set(lengths_of(table, "long_error"))
    lengths = [t for t in lengths_of(table, "simulatable") if t in errors]
    if not lengths:
        raise SimcheckError(
            "the sweep table has no pair of simulatable@T and long_error@T columns; pass the "
            "results table of a sweep that ran the check"
        )
    return lengths


def empirical_n_star(
    table: pd.DataFrame,
    eps: float,
    task: str | Task | None = None,
    pos: str | None = None,
    n_layers: int | None = None,
    d_model: int | None = None,
    length: int | None = None,
) -> int | None:
    """The measured N*: the smallest training length of a sweep whose models are all
    simulatable and length-generalize.

    ``table`` has one row per sweep point with columns ``task`` (canonical spec), ``pos``,
    ``n_layers``, ``d_model``, ``train_len``, ``seed``, ``status`` ("ok"/"failed") and, per
    test length T, ``simulatable@T`` (bool) and ``long_error@T`` (mean |f - g| at T). Rows
    with status ok matching the given filters (None: any) are kept; T is ``length`` or the
    largest present. A training length qualifies when every one of its rows has
    simulatable@T true and long_error@T <= eps (a missing value fails). Returns None when no
    training length qualifies, including when no row matches the filters.
    """
    lengths = _check_lengths(table)
    test_len = max(lengths) if length is None else length
    if test_len not in lengths:
        raise SimcheckError(
            f"the sweep table has no columns for T={test_len}; it has T in {lengths}"
        )
    rows = table[table["status"] == "ok"]
    task_spec = task.spec() if isinstance(task, Task) else task
    for name, wanted in (
        ("task", task_spec),
        ("pos", pos),
        ("n_layers", n_layers),
        ("d_model", d_model),
    ):
        if wanted is None:
            continue
        if name not in rows.columns:
            raise SimcheckError(f"the sweep table has no '{name}' column to filter on")
        rows = rows[rows[name] == wanted]
    simulatable = rows[column("simulatable", test_len)].eq(True)
    good = simulatable & (rows[column("long_error", test_len)] <= eps)
    qualifies = good.groupby(rows["train_len"]).all()
    passing = qualifies[qualifies].index
    return int(min(passing)) if len(passing) else None
