"""Figures: `InlineFigure`, PNG bytes, atomic saving, and loss against test length.

Uses matplotlib's object API, never pyplot, so saving a figure neither needs a display nor
changes the backend of a notebook that imports simcheck, and a script's figures are freed with
their last reference instead of piling up in pyplot's registry. Every figure simcheck makes is
an `InlineFigure`, which a notebook shows inline as a PNG. The training loss curve is drawn
by `simcheck.training.trainer`, which knows the run directory.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from simcheck._util.io import atomic_write


class InlineFigure(Figure):
    """A matplotlib `Figure` that Jupyter displays as a PNG.

    A bare `Figure` has no image representation of its own: outside pyplot (which simcheck
    avoids, see the module docstring) a notebook shows it as ``<Figure size 650x400 with 1
    Axes>``. This subclass adds IPython's ``_repr_png_``; saving and drawing are unchanged.
    """

    def _repr_png_(self) -> bytes:
        return png_bytes(self, dpi=100)


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes, trimmed to its content (legends outside the axes included)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(fig: Figure, path: Path) -> None:
    """Save ``fig`` as a PNG atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def length_curves_figure(
    curves: Sequence[dict[str, Any]], ylabel: str = "test loss", title: str = ""
) -> InlineFigure:
    """Loss against test length, one line per curve, each training length marked (dotted).

    Each curve is a dict with ``label``, ``lengths``, ``mean``, ``low``, ``high`` (the shaded
    band) and ``train_len``; an optional ``baseline`` list is drawn dashed
    (labelled ``baseline_label`` if given). A notebook shows
    the returned figure inline.
    """
    fig = InlineFigure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for index, curve in enumerate(curves):
        color = f"C{index}"
        ax.plot(curve["lengths"], curve["mean"], "o-", color=color, label=curve["label"], ms=3)
        ax.fill_between(curve["lengths"], curve["low"], curve["high"], color=color, alpha=0.15)
        if curve.get("baseline") is not None:
            ax.plot(
                curve["lengths"],
                curve["baseline"],
                "--",
                color=color,
                lw=1,
                alpha=0.7,
                label=curve.get("baseline_label", f"{curve['label']}: baseline"),
            )
        ax.axvline(curve["train_len"], color=color, ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("test length (dotted: training length N)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig
