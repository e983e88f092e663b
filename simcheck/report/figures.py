"""Figures of a `CheckReport`: error decomposition against T, per-probe discrepancy heatmap,
coverage against T, and per test length the attention of a long input beside its witness's.
Matplotlib's object API only (no pyplot state); each figure is a
`simcheck._util.plotting.InlineFigure`, shown inline by a notebook.

The coverage panel and the heatmap measure different things, and the diagnosis reads both:
the heatmap compares each long input's state with the state of *its own* witness (the
diagnosis's "diverging" states lie above ``diverge_at`` there), coverage compares it with the
nearest state of *any* input of length <= N. A state can diverge from its witness and still
lie near some short state (learned position rows beyond N land near the trained rows of
other lengths), so the coverage panel rings the states the diagnosis calls diverging.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm

from simcheck._util.plotting import InlineFigure
from simcheck.checking.diagnosis import COVERAGE_OUTSIDE
from simcheck.checking.effects import SITE_KINDS


class CheckReport(Protocol):
    """What the figures read of a `simcheck.report.check_report.CheckReport` (named here by
    shape, so
    this module does not import the report that imports it)."""

    config: dict[str, Any]
    results: list[Any]

    def probe_table(self) -> pd.DataFrame: ...

    def coverage_table(self) -> pd.DataFrame: ...

    def patching(self, length: int) -> pd.DataFrame: ...


_TERMS = (
    ("long_error", "long error |f(x)-g(x)|"),
    ("task_gap", "task gap |f(x)-f(z)|"),
    ("short_error", "short error |f(z)-g(z)|"),
    ("model_gap", "model gap |g(z)-g(x)|"),
)
LEGEND_SIZE = 8
"""Font size of legends and tick labels: legible in the HTML report at its width."""
MAX_TYPES = 12
"""The attention figure shows at most this many key types (those with the most mass); the
rest are summed into one bar."""
DISCREPANCY_FLOOR = 1e-4
"""Discrepancies below this are drawn with its colour (the log scale has no zero)."""


def _legend_outside(ax: Axes) -> None:
    """The axes' legend to the right of the data, so it hides none of it."""
    ax.legend(fontsize=LEGEND_SIZE, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def draw_decomposition(report: CheckReport, ax: Axes) -> None:
    """Mean of each term of the bound over the long inputs, and the 1 - delta quantiles
    (chain bound, eps*, task floor), against T."""
    lengths = [r.length for r in report.results]
    for name, label in _TERMS:
        ax.plot(lengths, [getattr(r, name).mean() for r in report.results], "o-", label=label)
    quantile = f"{1 - report.config['delta']:g} quantile"
    ax.plot(
        lengths, [r.chain_bound for r in report.results], "ks-", label=f"chain bound ({quantile})"
    )
    ax.plot(lengths, [r.eps_star for r in report.results], "k^--", label=f"eps* ({quantile})")
    ax.plot(
        lengths, [r.task_floor for r in report.results], "kv:", label=f"task floor ({quantile})"
    )
    ax.axhline(report.config["eps"], color="red", lw=0.8, label="eps")
    ax.set_xscale("log", base=2)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("test length T")
    ax.set_ylabel("error (the terms: mean over long inputs)")
    ax.set_title(f"error decomposition (N={report.config['train_len']})", fontsize=9)
    ax.tick_params(labelsize=LEGEND_SIZE)
    _legend_outside(ax)
    ax.grid(alpha=0.3)


def draw_discrepancy(report: CheckReport, ax: Axes) -> None:
    """Heatmap of the median normalised discrepancy, probe/head by T, on a log10 colour
    scale that turns from blue to red at ``diverge_at`` (marked on the colour bar): red
    cells are the states the diagnosis calls diverging."""
    table = report.probe_table()
    values = table.to_numpy(dtype=float)
    logs = np.log10(np.clip(values, DISCREPANCY_FLOOR, None))
    threshold = math.log10(report.config["diverge_at"])
    finite = logs[np.isfinite(logs)]
    low = min(float(finite.min()) if finite.size else threshold, threshold - 1.0)
    high = max(float(finite.max()) if finite.size else threshold, threshold + 0.5)
    norm = TwoSlopeNorm(vmin=low, vcenter=threshold, vmax=high)
    image = ax.imshow(logs, aspect="auto", cmap="coolwarm", norm=norm)
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            strong = abs(float(norm(logs[row, col])) - 0.5) > 0.35
            color = "white" if strong else "black"
            ax.text(col, row, f"{value:.2g}", ha="center", va="center", fontsize=7, color=color)
    ax.set_yticks(range(len(table.index)))
    ax.set_yticklabels([f"{p} h{h}" if h != "" else p for p, h in table.index], fontsize=7)
    ax.set_xticks(range(len(table.columns)))
    ax.set_xticklabels([str(c) for c in table.columns], fontsize=LEGEND_SIZE)
    ax.set_xlabel("test length T")
    ax.set_title("median discrepancy from the witness's state / spread", fontsize=9)
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.05)
    bar.set_label("discrepancy / spread (log10 colour scale)", fontsize=LEGEND_SIZE)
    decades = [float(d) for d in range(math.ceil(low), math.floor(high) + 1)]
    ticks = sorted({*decades, threshold})
    bar.set_ticks(ticks)
    bar.set_ticklabels(
        [
            f"diverge_at {report.config['diverge_at']:g}" if t == threshold else f"{10**t:g}"
            for t in ticks
        ],
        fontsize=7,
    )
    bar.ax.axhline(threshold, color="black", lw=1.5)


def draw_coverage(report: CheckReport, ax: Axes) -> None:
    """Fraction of long residual states farther from every state of the inputs of lengths
    <= N than those lie from each other (the 99th percentile of their nearest-neighbour
    distances), against T; ringed where the state diverges from its own witness's (median
    discrepancy above ``diverge_at``, the diagnosis's test; see the module docstring)."""
    table = report.coverage_table()
    lengths = [int(c) for c in table.columns]
    for name, row in table.iterrows():
        ax.plot(lengths, row.to_numpy(dtype=float), "o-", label=name)
    diverge_at = report.config["diverge_at"]
    ringed = [
        (r.length, r.coverage[s.name].outside)
        for r in report.results
        for s in r.probes
        if s.head is None and s.name in r.coverage and s.median > diverge_at
    ]
    if ringed:
        ax.plot(
            *zip(*ringed, strict=True),
            "o",
            ms=13,
            mfc="none",
            mec="red",
            mew=1.5,
            label=f"diverges from its witness\n(median > diverge_at {diverge_at:g})",
        )
    ax.axhline(COVERAGE_OUTSIDE, color="grey", ls=":", lw=1, label="half the inputs")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("test length T")
    ax.set_ylabel("fraction of long inputs outside", fontsize=LEGEND_SIZE)
    ax.set_title("coverage: nearest state of any input of length <= N", fontsize=9)
    ax.tick_params(labelsize=LEGEND_SIZE)
    _legend_outside(ax)
    ax.grid(alpha=0.3)


def attention_figure(report: CheckReport, result: Any) -> InlineFigure | None:
    """The last query's attention mass per key type (token, position mod Delta), per head
    of each layer, on the long input with the largest chain beside its witness; None when
    the check recorded none."""
    worst = result.worst[0] if result.worst else None
    if worst is None or worst.attention_x is None or worst.attention_z is None:
        return None
    period = report.config["structure"]["period"]
    long, short = np.asarray(worst.attention_x), np.asarray(worst.attention_z)
    layers, heads, types = long.shape
    shown = np.arange(types)
    if types > MAX_TYPES:
        weight = np.maximum(long, short).max(axis=(0, 1))
        shown = np.sort(np.argsort(-weight, kind="stable")[:MAX_TYPES])
    labels = [f"{t // period},{t % period}" if period > 1 else f"{t}" for t in shown]
    rest = np.setdiff1d(np.arange(types), shown)
    if rest.size:
        labels.append("other")
    fig = InlineFigure(figsize=(1.2 + 2.8 * heads, 0.9 + 2.1 * layers), layout="constrained")
    axes = np.atleast_2d(fig.subplots(layers, heads, squeeze=False))
    where = np.arange(len(labels))
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer, head]
            for offset, values, label in (
                (-0.2, long[layer, head], f"x (T={len(worst.x)})"),
                (0.2, short[layer, head], f"z ({worst.z.method}, length {worst.z.length})"),
            ):
                bars = list(values[shown]) + ([values[rest].sum()] if rest.size else [])
                ax.bar(where + offset, bars, width=0.4, label=label)
            ax.set_ylim(0, 1)
            ax.set_xticks(where)
            ax.set_xticklabels(labels, fontsize=7, rotation=90 if len(labels) > 8 else 0)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"L{layer} head {head}", fontsize=9)
    key = "key (token, position mod Delta)" if period > 1 else "key token"
    for ax in axes[-1]:
        ax.set_xlabel(key, fontsize=LEGEND_SIZE)
    for ax in axes[:, 0]:
        ax.set_ylabel("attention mass", fontsize=LEGEND_SIZE)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=LEGEND_SIZE)
    fig.suptitle(
        f"T={result.length}, input {worst.index}: the last query's attention by key type",
        fontsize=9,
    )
    return fig


def patching_columns(frame: pd.DataFrame) -> list[tuple[str, int | None]]:
    """The heatmap's columns, in forward order within a layer: the residual stream, each
    head's output, each head's attention per key type, the MLP output."""
    order = {kind: i for i, kind in enumerate(SITE_KINDS)}
    keys = {(row.kind, None if pd.isna(row.head) else int(row.head)) for row in frame.itertuples()}
    return sorted(keys, key=lambda k: (order.get(k[0], len(order)), -1 if k[1] is None else k[1]))


def patching_figure(frame: pd.DataFrame, column: str = "removed") -> InlineFigure:
    """Heatmap of a `simcheck.report.check_report.CheckReport.patching` table: rows the layers,
    columns
    the sites of a layer, colour the share of the error removed (blue: removed, red: made
    worse), each cell labelled with its share."""
    if frame.empty:
        fig = InlineFigure(figsize=(5, 1.2))
        fig.text(
            0.5,
            0.5,
            "no interventions at this length (it is certified or fails short, or the check "
            "ran with interventions=False)",
            ha="center",
            va="center",
            fontsize=8,
            wrap=True,
        )
        return fig
    columns = patching_columns(frame)
    layers = sorted({int(v) for v in frame["layer"]})
    values = np.full((len(layers), len(columns)), np.nan)
    for row in frame.itertuples():
        head = None if pd.isna(row.head) else int(row.head)
        values[layers.index(int(row.layer)), columns.index((row.kind, head))] = getattr(row, column)
    fig = InlineFigure(figsize=(2.2 + 0.9 * len(columns), 1.5 + 0.55 * len(layers)))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", cmap="RdBu", vmin=-1.0, vmax=1.0)
    for (r, c), value in np.ndenumerate(values):
        if np.isfinite(value):
            color = "white" if abs(value) > 0.6 else "black"
            ax.text(c, r, f"{value:.0%}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(
        [kind if head is None else f"{kind} h{head}" for kind, head in columns],
        fontsize=7,
        rotation=45,
        ha="right",
    )
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([f"L{layer}" for layer in layers], fontsize=LEGEND_SIZE)
    what = "long error" if column == "removed" else "model gap"
    length = frame.attrs.get("T")
    ax.set_title(
        f"{'T=' + str(length) + ': ' if length else ''}{what} removed\nby patching a state "
        "from the witness",
        fontsize=8,
    )
    bar = fig.colorbar(image, ax=ax, fraction=0.05)
    bar.set_label("share removed", fontsize=LEGEND_SIZE)
    fig.tight_layout()
    return fig


def patching_figure_name(length: int) -> str:
    """The file name of the patching heatmap at test length ``length``."""
    return f"patching-T{length}.png"


def attention_figure_name(length: int) -> str:
    """The file name of the attention figure at test length ``length``."""
    return f"attention-T{length}.png"


def figures(report: CheckReport) -> dict[str, InlineFigure]:
    """The three summary figures, then one attention figure per test length, keyed by
    their file names."""
    out = {}
    for name, draw, size in (
        ("decomposition.png", draw_decomposition, (8, 4)),
        ("discrepancy.png", draw_discrepancy, (6.5, 1.0 + 0.2 * len(report.probe_table()))),
        ("coverage.png", draw_coverage, (8, 4)),
    ):
        fig = InlineFigure(figsize=size)
        draw(report, fig.add_subplot())
        out[name] = fig
    for result in report.results:
        fig = attention_figure(report, result)
        if fig is not None:
            out[attention_figure_name(result.length)] = fig
        if result.patching:
            frame = report.patching(result.length)
            out[patching_figure_name(result.length)] = patching_figure(frame)
    return out


def report_figure(report: CheckReport) -> InlineFigure:
    """The three summary panels side by side, for a notebook."""
    fig = InlineFigure(figsize=(20, 5), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    draw_decomposition(report, left)
    draw_discrepancy(report, middle)
    draw_coverage(report, right)
    return fig
