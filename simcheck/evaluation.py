"""Evaluation across test lengths: loss and error per length, the plateau, table, files, figure.

`evaluate(run, lengths="8..2048*2")` (or a list; see `simcheck.lengths`) samples fresh inputs
from the run's task at each length (seeded per length, so adding a length never changes the
others), compares the model's output at the last position with the task's oracle, and reports
per length the mean loss with its spread over samples, the task's error metric, and the task's
trivial baseline where it has one. The **plateau** is the mean loss over the (up to) three
longest tested lengths beyond the training length N: the level the paper's long-length curves
flatten to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from simcheck.adapter import ModelAdapter, resolve
from simcheck.errors import SimcheckError
from simcheck.io import library_versions, weights_hash, write_json, write_text
from simcheck.lengths import parse_lengths
from simcheck.paths import check_output_dir
from simcheck.plotting import length_curves_figure, save_figure
from simcheck.progress import progress_bar
from simcheck.runs import (
    EVAL_CSV,
    EVAL_JSON,
    EVAL_PNG,
)
from simcheck.tasks import Task

PLATEAU_POINTS = 3


def _check_count(name: str, value: Any, low: int) -> None:
    """Refuse ``value`` unless it is an integer (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise SimcheckError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass
class EvalResult:
    """Loss and error of one run at each test length.

    Attributes:
        rows: one dict per length (see `table` for the columns).
        train_len: the run's training length N.
        plateau: mean loss over the longest tested lengths beyond N (None if none is beyond).
        plateau_lengths: the lengths averaged into ``plateau``.
        meta: task, model hash, samples, seed and library versions.
    """

    rows: list[dict[str, Any]]
    train_len: int
    plateau: float | None
    plateau_lengths: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """The per-length results as a DataFrame indexed by length."""
        return pd.DataFrame(self.rows).set_index("length")

    def format_table(self) -> str:
        """A fixed-width text table for the terminal."""
        metric = self.meta.get("metric", "metric")
        classes = self.meta.get("output") == "classes"
        has_base = any(r.get("baseline_loss") is not None for r in self.rows)
        head = f"{'length':>7} {'loss mean':>10} {'± sem':>9} {'median':>10} {'p95':>10}"
        head += f" {'accuracy':>9} {'no class':>8}" if classes else f" {metric + ' mean':>13}"
        head += f" {'baseline':>10}" if has_base else ""
        lines = [head, "-" * len(head)]
        for r in self.rows:
            mark = "*" if r["length"] > self.train_len else " "
            line = (
                f"{r['length']:>6}{mark} {r['loss_mean']:>10.3e} {r['loss_sem']:>9.1e} "
                f"{r['loss_median']:>10.3e} {r['loss_p95']:>10.3e}"
            )
            if classes:
                line += f" {r['accuracy']:>9.4f} {r['no_class']:>8}"
            else:
                line += f" {r['metric_mean']:>13.3e}"
            if has_base:
                line += f" {r['baseline_loss']:>10.3e}"
            lines.append(line)
        lines.append(f"* beyond the training length N={self.train_len}")
        if classes:
            lines.append("accuracy over inputs with a class; 'no class': inputs left out (ties)")
        if self.plateau is not None:
            lines.append(f"plateau (mean loss at {self.plateau_lengths}): {self.plateau:.3e}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def __repr__(self) -> str:
        """The table, also where Python shows the repr (a console, a notebook's text view)."""
        return self.format_table()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "train_len": self.train_len,
            "plateau": self.plateau,
            "plateau_lengths": self.plateau_lengths,
            "meta": self.meta,
        }

    def _repr_html_(self) -> str:
        caption = f"{self.meta.get('task', '')} pos={self.meta.get('pos', '')} N={self.train_len}"
        plateau = "" if self.plateau is None else f"<p>plateau: {self.plateau:.3e}</p>"
        return f"<p><b>{caption}</b></p>" + self.table().to_html(float_format="%.3e") + plateau

    def plot(self, label: str | None = None) -> Figure:
        """Loss against test length (mean ± 2 standard errors), N marked, baseline dashed."""
        label = label or f"{self.meta.get('task', '')} ({self.meta.get('pos', '')})"
        return length_curves_figure(
            [self.curve(label)],
            ylabel=f"test loss (mean ± 2 sem, {self.meta.get('samples', '?')} samples)",
            title=str(self.meta.get("run", "")),
        )

    def curve(self, label: str) -> dict[str, Any]:
        """This result as a curve for `simcheck.plotting.length_curves_figure`."""
        mean = np.array([r["loss_mean"] for r in self.rows])
        sem = np.array([r["loss_sem"] for r in self.rows])
        floor = np.maximum(mean / 10, 1e-12)
        base = [r.get("baseline_loss") for r in self.rows]
        return {
            "label": label,
            "lengths": [r["length"] for r in self.rows],
            "mean": mean,
            "low": np.maximum(mean - 2 * sem, floor),
            "high": mean + 2 * sem,
            "train_len": self.train_len,
            "baseline": None if any(b is None for b in base) else base,
        }


def _row(
    length: int,
    loss: torch.Tensor,
    metric: torch.Tensor,
    base: torch.Tensor | None,
    excluded: int,
    classes: bool,
) -> dict[str, Any]:
    """One length's row, from the per-sample losses and metrics of the rows that have a
    target (``excluded`` counts the others)."""
    n = loss.numel()

    def stat(values: torch.Tensor, fn) -> float:
        return float(fn(values.double())) if values.numel() else math.nan

    std = float(loss.std()) if n > 1 else (0.0 if n else math.nan)
    row = {
        "length": length,
        "samples": n,
        "no_class": excluded,
        "loss_mean": stat(loss, torch.mean),
        "loss_std": std,
        "loss_sem": std / math.sqrt(n) if n else math.nan,
        "loss_median": stat(loss, torch.median),
        "loss_p95": stat(loss, lambda v: torch.quantile(v, 0.95)),
        "metric_mean": stat(metric, torch.mean),
        "metric_std": float(metric.std()) if n > 1 else (0.0 if n else math.nan),
        "metric_p95": stat(metric, lambda v: torch.quantile(v, 0.95)),
        "baseline_loss": None if base is None else stat(base, torch.mean),
    }
    if classes:
        row["accuracy"] = 1.0 - row["metric_mean"]
    return row


def _plateau(rows: Sequence[dict[str, Any]], train_len: int) -> tuple[float | None, list[int]]:
    beyond = [r for r in rows if r["length"] > train_len][-PLATEAU_POINTS:]
    if not beyond:
        return None, []
    return float(np.mean([r["loss_mean"] for r in beyond])), [r["length"] for r in beyond]


def evaluate(
    subject: Any,
    lengths: Iterable[int] | str = (8, 16, 32, 64, 128, 256, 512, 1024),
    samples: int = 512,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    save: bool = True,
    *,
    task: Task | str | None = None,
    train_len: int | None = None,
    adapter: ModelAdapter | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
) -> EvalResult:
    """Evaluate a run, a run directory or any `HookedTransformer` at each test length.

    A bare model needs ``task`` and ``train_len``; ``adapter`` says how to read a model
    simcheck did not build (`simcheck.adapter.ModelAdapter`), ``device`` where to run it.
    With ``save``, writes ``eval.json``, ``eval.csv`` and ``eval.png`` into ``out`` (default:
    the run directory; a bare model's results are written only when ``out`` is given).
    Lengths (a list or text, see `parse_lengths`) beyond what the model can take, an ``out``
    that cannot be written, and ``samples``, ``seed`` or ``batch_size`` that are not integers
    in range (>= 1, >= 0, >= 1) are refused before any work is done.
    """
    lengths = parse_lengths(lengths)
    _check_count("samples", samples, 1)
    _check_count("seed", seed, 0)
    if batch_size is not None:
        _check_count("batch_size", batch_size, 1)
    if save and out is not None:
        check_output_dir(out, "evaluation directory")
    resolved = resolve(subject, task, train_len, adapter, device)
    task, train_len = resolved.task, resolved.train_len
    assert task is not None and train_len is not None
    resolved.check_length(max(lengths))
    rows = []
    for length in progress_bar(lengths, desc="eval", unit="length", disable=not progress):
        rng = np.random.default_rng([seed, length])
        batch = task.batch(samples, length, rng)
        output = resolved.last_outputs(batch.tokens, batch_size)
        valid = task.valid(batch.targets)
        loss = task.loss(output, batch.targets)[valid]
        metric = task.metric(output, batch.targets)[valid]
        base_out = task.baseline(batch.tokens)
        base = None if base_out is None else task.loss(base_out, batch.targets)[valid]
        excluded = int((~valid).sum())
        rows.append(_row(length, loss, metric, base, excluded, task.output == "classes"))
    plateau, plateau_lengths = _plateau(rows, train_len)
    result = EvalResult(
        rows=rows,
        train_len=train_len,
        plateau=plateau,
        plateau_lengths=plateau_lengths,
        meta={
            "run": resolved.source,
            "task": task.spec(),
            "pos": resolved.adapter.positions,
            "metric": task.metric_name,
            "output": task.output,
            "samples": samples,
            "seed": seed,
            "weights_sha256": weights_hash(resolved.model),
            "run_spec": resolved.run.spec if resolved.run is not None else None,
            "adapter": resolved.adapter.to_dict(),
            "device": str(resolved.device),
            "versions": library_versions(),
        },
    )
    target = Path(out) if out is not None else (resolved.run.path if resolved.run else None)
    if save and target is not None:
        save_eval(result, target)
    return result


def save_eval(result: EvalResult, run_dir: Path) -> None:
    """Write ``eval.json``, ``eval.csv`` and ``eval.png`` into ``run_dir`` (made if missing)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SimcheckError(f"cannot write the evaluation into {run_dir}: it is a file")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / EVAL_JSON, result.to_dict())
    write_text(run_dir / EVAL_CSV, result.table().to_csv())
    save_figure(result.plot(), run_dir / EVAL_PNG)
