"""The four figures: loss against length, plateau against N, the model gap beside the
measured error (Figures 1, 2 and 4), and one input's attention row (Figure 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from paper.stats import (
    KGRAM_PAIRS,
    Family,
    check_length,
    kgram_loss_rows,
    loss_curves,
    seed_stats,
    show,
)
from simcheck.sweeps.table import column

BAND = "min-max over seeds"


def band(
    ax: Axes,
    x: Sequence[float],
    stats: pd.DataFrame,
    color: str,
    label: str,
    style: str = "o-",
    shade: bool = True,
) -> None:
    """The mean with a shaded min-max band."""
    ax.plot(x, stats["mean"], style, color=color, label=label, ms=3, lw=1.3)
    if shade:
        ax.fill_between(x, stats["min"], stats["max"], color=color, alpha=0.15, lw=0)


def loss_panel(ax: Axes, curves: dict[int, pd.DataFrame], title: str, ylabel: str) -> None:
    """Test loss against test length, one curve per N, N dotted."""
    for index, (train_len, curve) in enumerate(curves.items()):
        color = f"C{index}"
        band(ax, list(curve.index), curve, color, f"N={train_len}")
        ax.axvline(train_len, color=color, ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("test length T (dotted: N)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plateau_panel(ax: Axes, rows: pd.DataFrame, family: Family, title: str) -> None:
    """The plateau against N, one curve per value of the family's parameter."""
    part = family.rows(rows)
    for index, (value, sub) in enumerate(part.groupby(family.param)):
        stats = seed_stats(sub, ["train_len"], "plateau")
        band(ax, list(stats.index), stats, f"C{index}", f"{family.symbol}={show(value)}")
        base = sub["baseline_plateau"].mean()
        ax.axhline(base, color=f"C{index}", ls="--", lw=0.8, alpha=0.7)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("training length N")
    ax.set_ylabel("plateau (mean loss, 3 longest T); dashed: trivial predictor")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def gap_panel(ax: Axes, rows: pd.DataFrame, family: Family, t: int, metric: str) -> None:
    """The checker's model gap at T (solid, band) beside the measured long error at T
    (dashed: the evaluation's inputs, band; dotted: the checker's long inputs), against N."""
    part = family.rows(rows)
    for index, (value, sub) in enumerate(part.groupby(family.param)):
        color, name = f"C{index}", f"{family.symbol}={show(value)}"
        gap = seed_stats(sub, ["train_len"], column("model_gap", t))
        err = seed_stats(sub, ["train_len"], column("error", t))
        long = seed_stats(sub, ["train_len"], column("long_error", t))
        x = list(gap.index)
        band(ax, x, gap, color, f"{name}: model gap")
        band(ax, x, err, color, f"{name}: {column('error', t)}", style="s--")
        band(ax, x, long, color, f"{name}: checker long error", style=":", shade=False)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("training length N")
    ax.set_ylabel(f"mean {metric} at T={t}")
    ax.set_title(f"model gap |g(x)-g(z)| vs long error |f(x)-g(x)|, T={t}", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))


def binary_figure(rows: pd.DataFrame, family: Family, left: Any, task: str, metric: str) -> Figure:
    """Figures 1 and 2: loss vs length at ``left``, plateau vs N, model gap vs long error."""
    fig = Figure(figsize=(17, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    sub = rows[rows[family.param] == left]
    loss_panel(
        axes[0],
        loss_curves(sub),
        f"{task}({family.symbol}={show(left)}): test loss vs length",
        "test loss (MSE, mean over inputs)",
    )
    plateau_panel(axes[1], rows, family, f"{task}: plateau vs N")
    gap_panel(axes[2], rows, family, check_length(rows), metric)
    fig.suptitle(f"{task}: mean over seeds, band = {BAND}", fontsize=10)
    return fig


def kgram_figure(rows: pd.DataFrame, by_s: Family, by_k: Family) -> Figure:
    """Figure 4: loss vs length (S=3, k=2), plateau vs N by S and by k, the model gap."""
    fig = Figure(figsize=(14, 9), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    loss_panel(
        axes[0],
        loss_curves(kgram_loss_rows(rows)),
        "k-gram (S=3, k=2): test loss vs length",
        "test loss (KL)",
    )
    plateau_panel(axes[1], rows, by_s, f"k-gram: plateau vs N{by_s.where()}")
    plateau_panel(axes[2], rows, by_k, f"k-gram: plateau vs N{by_k.where()}")
    gap_panel(axes[3], rows, KGRAM_PAIRS, check_length(rows), "TV")
    fig.suptitle(f"in-context k-gram, 2 layers: mean over seeds, band = {BAND}", fontsize=10)
    return fig


def attention_figure(study: dict[str, Any]) -> Figure:
    """Figure 3: one input's last-position attention over keys, linear and log scale."""
    weights = study["weights"][0, 0].double().numpy()
    in_class = study["in_class"]
    positions = np.arange(len(weights))
    uniform = 1 / in_class.sum()
    fig = Figure(figsize=(13, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, log in zip(axes, (False, True), strict=True):
        ax.bar(
            positions[in_class],
            weights[in_class],
            width=1.0,
            color="C3",
            label="key in the residue class",
        )
        ax.bar(positions[~in_class], weights[~in_class], width=1.0, color="C0", label="other keys")
        ax.axhline(uniform, color="k", ls="--", lw=1, label=f"1/|class| = {uniform:.3f}")
        ax.set_xlabel("key position j (0-based)")
        ax.set_ylabel("attention weight of the last position")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(max(weights.min() / 2, 1e-12), 1)
        ax.legend(fontsize=7)
    title = (
        f"{study['task']}, N={study['train_len']}, seed {study['seed']}: layer 0 attention of "
        f"the last query (T={study['length']}), one input; class t = k mod p"
    )
    fig.suptitle(title, fontsize=10)
    return fig
