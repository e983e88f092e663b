"""Evaluation across test lengths: loss and error per length, the plateau, table, files, figure.

`evaluate(run, lengths="8..2048*2")` (or a list; see `simcheck.settings.lengths`) samples fresh
inputs
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

from simcheck._util.io import library_versions, weights_hash, write_json, write_text
from simcheck._util.paths import check_output_dir
from simcheck._util.plotting import length_curves_figure, save_figure
from simcheck._util.progress import progress_bar
from simcheck.errors import SimcheckError
from simcheck.settings.adapter import ModelAdapter
from simcheck.settings.lengths import parse_lengths
from simcheck.storage.runs import (
    EVAL_CSV,
    EVAL_JSON,
    EVAL_PNG,
)
from simcheck.storage.subjects import resolve
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
        bins: one dict per length bin (``bins=`` of `evaluate`): inputs of lengths drawn
            uniformly in [low, high], as length-generalization papers report them; empty
            when no bins were asked for.
    """

    rows: list[dict[str, Any]]
    train_len: int
    plateau: float | None
    plateau_lengths: list[int]
    meta: dict[str, Any] = field(default_factory=dict)
    bins: list[dict[str, Any]] = field(default_factory=list)

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
        if classes:
            lines.append(self._accuracy_lines())
        return "\n".join(lines)

    def _accuracy_lines(self) -> str:
        """Accuracy per token and exact match per sequence, per length and per bin."""
        head = f"{'lengths':>9} {'token acc':>9} {'exact':>7} {'samples':>7}"
        lines = ["", head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r['length']:>9} {r['token_accuracy']:>9.4f} {r['exact_match']:>7.4f} "
                f"{r['samples']:>7}"
            )
        for b in self.bins:
            lines.append(
                f"{b['bin']:>9} {b['token_accuracy']:>9.4f} {b['exact_match']:>7.4f} "
                f"{b['samples']:>7}"
            )
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
            "bins": self.bins,
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
        """This result as a curve for `simcheck._util.plotting.length_curves_figure`."""
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


@dataclass(frozen=True)
class _Scores:
    """Per-sequence results of the sequences that have a target (``excluded`` counts the
    others): loss, error metric, baseline loss, and for class tasks the targets and the
    right answers per sequence (1 and 0/1 for last-position tasks)."""

    loss: torch.Tensor
    metric: torch.Tensor
    base: torch.Tensor | None
    targets: torch.Tensor
    right: torch.Tensor
    excluded: int

    @staticmethod
    def concat(parts: Sequence[_Scores]) -> _Scores:
        bases = [p.base for p in parts]
        return _Scores(
            loss=torch.cat([p.loss for p in parts]),
            metric=torch.cat([p.metric for p in parts]),
            base=None if any(b is None for b in bases) else torch.cat(bases),  # type: ignore[arg-type]
            targets=torch.cat([p.targets for p in parts]),
            right=torch.cat([p.right for p in parts]),
            excluded=sum(p.excluded for p in parts),
        )


def _scores(task: Task, subject: Any, tokens: torch.Tensor, targets: torch.Tensor,
            batch_size: int | None) -> _Scores:  # fmt: skip
    """Score the model on one batch of equal-length inputs.

    Last-position tasks: the task's loss and metric at the last position. Tasks with targets
    at many positions: the cross-entropy averaged over a sequence's targets (comparable
    across lengths), the share of its targets it gets wrong, and the counts behind accuracy
    per token and exact match."""
    if task.per_position:
        output = subject.position_outputs(tokens, batch_size)
        has = targets >= 0
        counts = has.sum(-1)
        valid = counts > 0
        right = ((output.argmax(-1) == targets) & has).sum(-1)
        loss = task.loss(output, targets) / counts.clamp_min(1)
        metric = 1.0 - right.double() / counts.clamp_min(1)
        base = None
    else:
        output = subject.last_outputs(tokens, batch_size)
        valid = task.valid(targets)
        loss = task.loss(output, targets)
        metric = task.metric(output, targets)
        base_out = task.baseline(tokens)
        base = None if base_out is None else task.loss(base_out, targets)[valid]
        counts = torch.ones_like(valid, dtype=torch.long)
        right = (metric == 0).long() if task.output == "classes" else torch.zeros_like(counts)
    return _Scores(
        loss=loss[valid],
        metric=metric[valid],
        base=base,
        targets=counts[valid],
        right=right[valid],
        excluded=int((~valid).sum()),
    )


def _row(scores: _Scores, classes: bool) -> dict[str, Any]:
    """The statistics of one length or bin, from its sequences' scores."""
    loss, metric, base, n = scores.loss, scores.metric, scores.base, scores.loss.numel()

    def stat(values: torch.Tensor, fn) -> float:
        return float(fn(values.double())) if values.numel() else math.nan

    std = float(loss.std()) if n > 1 else (0.0 if n else math.nan)
    row = {
        "samples": n,
        "no_class": scores.excluded,
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
        total = int(scores.targets.sum())
        row["accuracy"] = 1.0 - row["metric_mean"]
        row["token_accuracy"] = int(scores.right.sum()) / total if total else math.nan
        row["exact_match"] = stat((scores.right == scores.targets).double(), torch.mean)
    return row


def parse_bins(bins: str | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Length bins from text (``"1-50,51-100,101-150"``) or (low, high) pairs, each
    1 <= low <= high."""
    if isinstance(bins, str):
        pairs = []
        for part in filter(None, (p.strip() for p in bins.split(","))):
            low, dash, high = part.partition("-")
            try:
                pairs.append((int(low), int(high)))
            except ValueError:
                raise SimcheckError(
                    f"length bin '{part}' is not low-high (example: '1-50,51-100,101-150')"
                ) from None
            if not dash:
                raise SimcheckError(f"length bin '{part}' is not low-high (example: '51-100')")
        bins = pairs
    out = [(int(low), int(high)) for low, high in bins]
    if not out:
        raise SimcheckError("no length bins given; example: '1-50,51-100,101-150'")
    for low, high in out:
        if not 1 <= low <= high:
            raise SimcheckError(f"length bin {low}-{high} needs 1 <= low <= high")
    return out


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
    bins: str | Sequence[tuple[int, int]] | None = None,
) -> EvalResult:
    """Evaluate a run, a run directory or any `HookedTransformer` at each test length.

    A bare model needs ``task`` and ``train_len``; ``adapter`` says how to read a model
    simcheck did not build (`simcheck.model.subject.ModelAdapter`), ``device`` where to run it.
    With ``save``, writes ``eval.json``, ``eval.csv`` and ``eval.png`` into ``out`` (default:
    the run directory; a bare model's results are written only when ``out`` is given).
    ``bins`` (``"1-50,51-100,101-150"`` or pairs) adds rows over length bins: ``samples``
    inputs with lengths uniform in each bin, scored as one group. Class tasks report accuracy
    per token and exact match per sequence (the same for last-position tasks); tasks with
    targets at many positions are scored at every target.
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
    length_bins = parse_bins(bins) if bins is not None else []
    resolved.check_length(max([*lengths, *(high for _, high in length_bins)]))
    classes = task.output == "classes"
    rows = []
    for length in progress_bar(lengths, desc="eval", unit="length", disable=not progress):
        rng = np.random.default_rng([seed, length])
        batch = task.batch(samples, length, rng)
        scores = _scores(task, resolved, batch.tokens, batch.targets, batch_size)
        rows.append({"length": length, **_row(scores, classes)})
    bin_rows = [
        _bin_row(task, resolved, low, high, samples, seed, batch_size) for low, high in length_bins
    ]
    plateau, plateau_lengths = _plateau(rows, train_len)
    result = EvalResult(
        rows=rows,
        train_len=train_len,
        plateau=plateau,
        plateau_lengths=plateau_lengths,
        bins=bin_rows,
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


def _bin_row(
    task: Task,
    subject: Any,
    low: int,
    high: int,
    samples: int,
    seed: int,
    batch_size: int | None,
) -> dict[str, Any]:
    """One bin's row: ``samples`` inputs with lengths uniform in [low, high] (from the task's
    shortest length on), each length's inputs drawn from a stream seeded by (seed, low,
    high, length)."""
    start = max(low, task.min_length)
    if start > high:
        raise SimcheckError(
            f"length bin {low}-{high} holds no length task '{task.spec()}' can sample (its "
            f"shortest is {task.min_length})"
        )
    drawn = np.random.default_rng([seed, low, high]).integers(start, high + 1, size=samples)
    parts = []
    for length, count in zip(*np.unique(drawn, return_counts=True), strict=True):
        rng = np.random.default_rng([seed, low, high, int(length)])
        batch = task.batch(int(count), int(length), rng)
        parts.append(_scores(task, subject, batch.tokens, batch.targets, batch_size))
    return {"bin": f"{low}-{high}", "low": low, "high": high,
            **_row(_Scores.concat(parts), task.output == "classes")}  # fmt: skip


def save_eval(result: EvalResult, run_dir: Path) -> None:
    """Write ``eval.json``, ``eval.csv`` and ``eval.png`` into ``run_dir`` (made if missing)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SimcheckError(f"cannot write the evaluation into {run_dir}: it is a file")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / EVAL_JSON, result.to_dict())
    write_text(run_dir / EVAL_CSV, result.table().to_csv())
    save_figure(result.plot(), run_dir / EVAL_PNG)
