"""Figures of a `CheckReport`: error decomposition against T, per-probe discrepancy heatmap,
coverage against T. Matplotlib's object API only (no pyplot state)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure


class CheckReport(Protocol):
    """What the figures read of a `simcheck.report.CheckReport` (named here by shape, so
    this module does not import the report that imports it)."""

    config: dict[str, Any]
    results: list[Any]

    def probe_table(self) -> pd.DataFrame: ...

    def coverage_table(self) -> pd.DataFrame: ...


_TERMS = (
    ("long_error", "long error |f(x)-g(x)|"),
    ("task_gap", "task gap |f(x)-f(z)|"),
    ("short_error", "short error |f(z)-g(z)|"),
    ("model_gap", "model gap |g(z)-g(x)|"),
)


def draw_decomposition(report: CheckReport, ax: Axes) -> None:
    """Mean of each term of the bound, eps* and the task floor against T."""
    lengths = [r.length for r in report.results]
    for name, label in _TERMS:
        ax.plot(lengths, [getattr(r, name).mean() for r in report.results], "o-", label=label)
    ax.plot(lengths, [r.chain_bound for r in report.results], "ks-", label="chain bound")
    ax.plot(lengths, [r.eps_star for r in report.results], "k^--", label="eps*")
    ax.plot(lengths, [r.task_floor for r in report.results], "kv:", label="task floor")
    ax.axhline(report.config["eps"], color="red", lw=0.8, label="eps")
    ax.set_xscale("log", base=2)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("test length T")
    ax.set_ylabel("error (mean over inputs)")
    ax.set_title(f"error decomposition (N={report.config['train_len']})", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def draw_discrepancy(report: CheckReport, ax: Axes) -> None:
    """Heatmap of median normalised discrepancy, probe/head by T."""
    table = report.probe_table()
    values = table.to_numpy(dtype=float)
    image = ax.imshow(np.log10(np.clip(values, 1e-4, None)), aspect="auto", cmap="magma")
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            color = "black" if value > 0.1 else "white"
            ax.text(col, row, f"{value:.2g}", ha="center", va="center", fontsize=6, color=color)
    ax.set_yticks(range(len(table.index)))
    ax.set_yticklabels([f"{p} h{h}" if h != "" else p for p, h in table.index], fontsize=6)
    ax.set_xticks(range(len(table.columns)))
    ax.set_xticklabels([str(c) for c in table.columns], fontsize=7)
    ax.set_xlabel("test length T")
    ax.set_title("log10 discrepancy / spread (median)", fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.05)


def draw_coverage(report: CheckReport, ax: Axes) -> None:
    """Fraction of long residual states outside the states of lengths <= N, against T."""
    table = report.coverage_table()
    for name, row in table.iterrows():
        ax.plot([int(c) for c in table.columns], row.to_numpy(dtype=float), "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("test length T")
    ax.set_ylabel("fraction outside training states")
    ax.set_title("coverage", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def figures(report: CheckReport) -> dict[str, Figure]:
    """The three figures, keyed by their file names."""
    out = {}
    for name, draw, size in (
        ("decomposition.png", draw_decomposition, (6, 4)),
        ("discrepancy.png", draw_discrepancy, (6, 0.8 + 0.18 * len(report.probe_table()))),
        ("coverage.png", draw_coverage, (6, 4)),
    ):
        fig = Figure(figsize=size)
        draw(report, fig.add_subplot())
        out[name] = fig
    return out


def report_figure(report: CheckReport) -> Figure:
    """The three panels side by side, for a notebook."""
    fig = Figure(figsize=(16, 5), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    draw_decomposition(report, left)
    draw_discrepancy(report, middle)
    draw_coverage(report, right)
    return fig
