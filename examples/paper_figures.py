"""The paper's Figures 1-4 from three sweeps: loss plateaus, the model gap, ModPTask attention.

Runs the sweeps of ``examples/sweeps`` (``fig2_modp.toml``, ``fig1_simple.toml``,
``fig4_kgram.toml``: 36, 36 and 45 models, 3 seeds per point; finished points are reused,
so once they are done the command only draws) and draws

- Figure 1, SimpleTask(omega): test loss against test length for each N (omega=3), the
  plateau against N for omega in {1, 3, 6}, and the checker's model gap at T=256 beside the
  measured long error at the same length;
- Figure 2, ModPTask(p): the same with p in {2, 3, 5} (left panel at p=3);
- Figure 3, the attention row of the trained ModPTask(p=5) model with the largest N (seed 0)
  over the keys of one long input, the residue class coloured, with its statistics over 64
  inputs (every seed at that N in the table);
- Figure 4, in-context k-gram (two layers): the plateau against N for S in {2, 3, 4} at k=2
  at k=2 (one head per layer) and for k in {2, 3} at S=3 (two heads per layer, 10000 steps),
  test loss against length (S=3, k=2, one head), and the model gap panel.

Every curve is the mean over seeds with a min-max band over seeds. The markdown report holds
the numbers behind each curve, a trend statement per claim computed from them, running times,
seeds, versions and the command.

    python examples/paper_figures.py [--out runs/paper] [--workers 2] [--draw-only]
        [--results examples/results] [--quick]

Writes ``paper_fig1_simple.png``, ``paper_fig2_modp.png``, ``paper_fig3_attention.png``,
``paper_fig4_kgram.png`` and ``paper_figures.md`` into ``examples/results/`` (``--quick``:
into ``runs/paper-quick``, a smoke run with 2 seeds, the 2 shortest training lengths, 60
steps and shorter evaluations: about 1 minute on 2 cores). The full sweeps took 532 s,
422 s, and 709 s + 1169 s (Figure 4's one-head and two-head grids) of wall time, 47 minutes
together, on 2 CPU cores with OMP_NUM_THREADS=1 and 2 workers, on a machine busy with other
work as well; drawing from finished sweeps takes a few seconds.
``examples/REPRODUCTION.md`` compares the results with the paper's claims.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import simcheck
from simcheck.plotting import save_figure
from simcheck.probes import AttentionRow
from simcheck.runs import library_versions, source_revision, write_text
from simcheck.sweep_spec import SweepSpec, load_spec
from simcheck.sweeps import POINTS_DIR, RESULTS_PARQUET, load_sweep

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
SWEEPS = HERE / "sweeps"
RESULTS = HERE / "results"
SWEEP_NAMES = ("fig2_modp", "fig1_simple", "fig4_kgram")
"""The sweeps, in the order they run."""
QUICK = {"steps": 60, "seeds": [0, 1], "train_lens": 2, "eval": "8,16,...,256", "samples": 32}
"""The smoke run: steps, seeds, how many of the shortest training lengths, evaluation
lengths and inputs per length; the checker gets 8 long inputs (one look)."""
ATTENTION_LENGTH = 200
ATTENTION_SAMPLES = 64
ATTENTION_SEED = 7
FLAT_FACTOR = 2.0
"""A curve plateaus when its mean loss over the plateau lengths varies by at most this factor."""
CLASS_MASS_MIN = 0.9
OFF_CLASS_MAX = 0.01
UNIFORM_RANGE = (0.5, 2.0)
"""Figure 3's thresholds: near-hardmax means at least CLASS_MASS_MIN of the mass on the class,
no off-class key above OFF_CLASS_MAX, and the 5th-95th percentiles of the in-class weights,
relative to 1/|class|, inside UNIFORM_RANGE."""
BAND = "min-max over seeds"
FINAL_LOSS = (
    "Training loss at the end (`final_loss`: mean over the last 50 steps, random lengths <= N)"
)


# --------------------------------------------------------------------------- sweeps
def read_toml(name: str) -> dict[str, Any]:
    """The spec dict of ``examples/sweeps/<name>.toml``."""
    return tomllib.loads((SWEEPS / f"{name}.toml").read_text())


def quick_spec(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` shrunk to a smoke run (`QUICK`): fewer steps, seeds, lengths and samples."""
    data = copy.deepcopy(data)
    grids = data["grid"] if isinstance(data["grid"], list) else [data["grid"]]
    for grid in grids:
        grid["seed"] = QUICK["seeds"]
        grid["train_len"] = sorted(grid["train_len"])[: QUICK["train_lens"]]
        grid.pop("steps", None)
    data.setdefault("train", {})["steps"] = QUICK["steps"]
    data["eval"] = {"lengths": QUICK["eval"], "samples": QUICK["samples"]}
    data["check"] = {**data.get("check", {}), "samples": 8, "max_samples": 8}
    return data


def sweep_specs(quick: bool) -> dict[str, SweepSpec]:
    """The three specs by name, shrunk when ``quick``."""
    specs = {}
    for name in SWEEP_NAMES:
        data = read_toml(name)
        specs[name] = load_spec(quick_spec(data) if quick else data)
    return specs


def run_sweeps(specs: dict[str, SweepSpec], out: Path, workers: int) -> dict[str, dict[str, float]]:
    """Run (or finish) every sweep into ``out/<name>``; return per sweep this call's wall
    time and how many points it ran, reused and lost to failures."""
    calls = {}
    for name, spec in specs.items():
        started = time.perf_counter()
        result = simcheck.sweep(spec, out / name, workers=workers, progress=True)
        calls[name] = {
            "wall": time.perf_counter() - started,
            "ran": len(result.ran),
            "reused": len(result.reused),
            "failed": len(result.failed),
        }
        print(result.summary().splitlines()[0], flush=True)
        if result.failed:
            print(f"  {len(result.failed)} point(s) failed; the figures leave them out")
    return calls


def read_table(spec: SweepSpec, sweep_dir: Path) -> tuple[pd.DataFrame, int]:
    """The finished rows of a sweep and the number of points it has in all. Reads
    ``results.parquet`` when the sweep wrote one, else the rows of ``points/*.json``
    (a sweep still running)."""
    if (sweep_dir / RESULTS_PARQUET).is_file():
        table = load_sweep(sweep_dir)
    else:
        files = sorted((sweep_dir / POINTS_DIR).glob("*.json")) if sweep_dir.is_dir() else []
        rows = [json.loads(f.read_text())["row"] for f in files if ".failed" not in f.name]
        table = pd.DataFrame(rows)
    if len(table):
        table = table[table["status"] == "ok"].reset_index(drop=True)
        table["baseline_plateau"] = [baseline_plateau(sweep_dir / run) for run in table["run"]]
        table["trained_s"] = [training_seconds(sweep_dir / run) for run in table["run"]]
    return table, len(spec.points)


def training_seconds(run_dir: Path) -> float:
    """The training time the run logged (``seconds`` of the last line of ``metrics.jsonl``):
    the cost of training even when the sweep re-evaluated a model trained earlier."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])["seconds"]) if lines else float("nan")


def baseline_plateau(run_dir: Path) -> float:
    """The task's trivial predictor (constant 0 for SimpleTask, the global fraction of 1s for
    ModPTask, the unigram histogram for the k-gram) scored like the plateau: its mean loss
    over the run's plateau lengths, from the run's ``eval.json``."""
    result = json.loads((run_dir / "eval.json").read_text())
    by_length = {r["length"]: r.get("baseline_loss") for r in result["rows"]}
    values = [by_length[t] for t in result["plateau_lengths"]]
    return float(np.mean(values)) if values and None not in values else float("nan")


def logged_walls(out: Path) -> dict[str, float]:
    """Wall times ``<name> wall <seconds> s`` from ``out/log.txt``, if it has any."""
    path = out / "log.txt"
    if not path.is_file():
        return {}
    pattern = re.compile(r"^(\S+) wall ([\d.]+) s")
    return {
        m.group(1): float(m.group(2))
        for m in map(pattern.match, path.read_text().splitlines())
        if m
    }


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Family:
    """A set of curves: one per value of ``param``, with the other task parameters fixed."""

    param: str
    symbol: str
    fixed: tuple[tuple[str, Any], ...] = ()

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``table`` in this family."""
        keep = np.ones(len(table), dtype=bool)
        for column, value in self.fixed:
            keep &= (table[column] == value).to_numpy()
        return table[keep]

    def where(self) -> str:
        """``" at k=2"`` for the fixed parameters (empty when none)."""
        if not self.fixed:
            return ""
        return " at " + ", ".join(f"{c.split('.')[-1]}={show(v)}" for c, v in self.fixed)


def show(value: Any) -> str:
    """A parameter value as written in labels: 3.0 -> "3"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def fmt(value: float) -> str:
    """Two significant digits in scientific notation."""
    return "nan" if not np.isfinite(value) else f"{value:.2e}"


def seed_stats(rows: pd.DataFrame, by: Sequence[str], column: str) -> pd.DataFrame:
    """Mean, min, max and count over seeds of ``column`` for each combination of ``by``."""
    grouped = rows.groupby(list(by))[column]
    stats = grouped.agg(["mean", "min", "max", "count"])
    return stats.rename(columns={"count": "n"})


def seed_list(rows: pd.DataFrame) -> list[int]:
    """The seeds present in ``rows``, sorted."""
    return sorted(int(s) for s in rows["seed"].unique())


def lengths_of(table: pd.DataFrame, prefix: str = "loss@") -> list[int]:
    """The test lengths of the ``loss@T`` columns, sorted."""
    return sorted(int(c.split("@")[1]) for c in table.columns if c.startswith(prefix))


def check_length(table: pd.DataFrame) -> int:
    """T of the checker's columns (``model_gap@T``)."""
    found = lengths_of(table, "model_gap@")
    if not found:
        raise simcheck.SimcheckError("the results table has no model_gap@T column")
    return found[-1]


def loss_curves(rows: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """For each N: mean, min and max over seeds of the test loss at each test length."""
    lengths = lengths_of(rows)
    curves = {}
    for train_len, part in rows.groupby("train_len"):
        values = part[[f"loss@{t}" for t in lengths]].to_numpy(dtype=float)
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


# --------------------------------------------------------------------------- trends
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
        gap = part.groupby("train_len")[f"model_gap@{t}"].mean()
        err = part.groupby("train_len")[f"error@{t}"].mean()
        ratio = gap / err
        count = int((gap >= err).sum())
        lines.append(
            f"{family.symbol}={show(value)}: model gap >= error@{t} at {count} of {len(gap)} N; "
            f"model gap / error = {', '.join(f'{r:.1f}' for r in ratio)} "
            f"(N={', '.join(str(n) for n in gap.index)})"
        )
    return lines


# --------------------------------------------------------------------------- drawing
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
        gap = seed_stats(sub, ["train_len"], f"model_gap@{t}")
        err = seed_stats(sub, ["train_len"], f"error@{t}")
        long = seed_stats(sub, ["train_len"], f"long_error@{t}")
        x = list(gap.index)
        band(ax, x, gap, color, f"{name}: model gap")
        band(ax, x, err, color, f"{name}: error@{t}", style="s--")
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
    sub = rows[(rows["task.S"] == 3) & (rows["task.k"] == 2) & (rows["n_heads"] == 1)]
    loss_panel(
        axes[0], loss_curves(sub), "k-gram (S=3, k=2): test loss vs length", "test loss (KL)"
    )
    plateau_panel(axes[1], rows, by_s, f"k-gram: plateau vs N{by_s.where()}")
    plateau_panel(axes[2], rows, by_k, f"k-gram: plateau vs N{by_k.where()}")
    gap_panel(axes[3], rows, Family("task.S,k", "S,k,heads"), check_length(rows), "TV")
    fig.suptitle(f"in-context k-gram, 2 layers: mean over seeds, band = {BAND}", fontsize=10)
    return fig


# --------------------------------------------------------------------------- Figure 3
def attention_rows(run: simcheck.Run, length: int, samples: int) -> tuple[torch.Tensor, Any]:
    """Last-position attention of layer 0 on ``samples`` inputs: [batch, head, key], and the
    inputs' tokens."""
    rng = np.random.default_rng([ATTENTION_SEED, length])
    batch = run.task.batch(samples, length, rng)
    rec = simcheck.record(run.model, batch.tokens, probes=[AttentionRow(layer=0)], positions=(-1,))
    return rec[AttentionRow(layer=0).name][:, 0], batch.tokens


def residue_class(task: Any, length: int) -> np.ndarray:
    """Mask of the positions t (0-based) with t = k (mod p)."""
    return np.arange(length) % task.p == task.k


def attention_stats(
    weights: torch.Tensor, tokens: torch.Tensor, in_class: np.ndarray
) -> dict[str, float]:
    """Class mass, in-class weights relative to uniform over the class (all keys, and those
    holding a 0 or a 1), off-class weights."""
    w = weights.double().numpy()
    on, off = w[:, in_class], w[:, ~in_class]
    relative = on * in_class.sum()
    key_tokens = tokens.numpy()[:, in_class]
    return {
        "class_mass_mean": float(on.sum(-1).mean()),
        "class_mass_min": float(on.sum(-1).min()),
        "relative_mean": float(relative.mean()),
        "relative_p5": float(np.percentile(relative, 5)),
        "relative_p95": float(np.percentile(relative, 95)),
        "relative_min": float(relative.min()),
        "relative_max": float(relative.max()),
        "relative_token0": float(relative[key_tokens == 0].mean()),
        "relative_token1": float(relative[key_tokens == 1].mean()),
        "off_class_max": float(off.max()),
        "off_class_mean": float(off.mean()),
    }


def attention_study(table: pd.DataFrame, sweep_dir: Path) -> dict[str, Any] | None:
    """Figure 3's data: the p=5 runs with the largest N (every seed), their attention
    statistics per head, and seed 0's rows for the figure."""
    rows = table[table["task.p"] == 5]
    if rows.empty:
        return None
    train_len = int(rows["train_len"].max())
    study: dict[str, Any] = {"train_len": train_len, "stats": [], "length": ATTENTION_LENGTH}
    for _, row in rows[rows["train_len"] == train_len].sort_values("seed").iterrows():
        run = simcheck.load_run(sweep_dir / row["run"])
        weights, tokens = attention_rows(run, ATTENTION_LENGTH, ATTENTION_SAMPLES)
        in_class = residue_class(run.task, ATTENTION_LENGTH)
        for head in range(weights.shape[1]):
            stats = attention_stats(weights[:, head], tokens, in_class)
            study["stats"].append({"seed": int(row["seed"]), "head": head, **stats})
        if "weights" not in study:
            study.update(
                weights=weights,
                tokens=tokens,
                in_class=in_class,
                task=run.task.spec(),
                seed=int(row["seed"]),
                run=str(row["run"]),
            )
    return study


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


# --------------------------------------------------------------------------- markdown
def cell(stats: pd.DataFrame, key: Any) -> str:
    """``mean [min, max]`` of one row of `seed_stats`."""
    if key not in stats.index:
        return "-"
    row = stats.loc[key]
    return f"{fmt(row['mean'])} [{fmt(row['min'])}, {fmt(row['max'])}]"


def md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = [list(header), ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def curves_md(curves: dict[int, pd.DataFrame], what: str) -> str:
    """The loss curves: one row per N, one column per test length."""
    if not curves:
        return f"{what}: no finished points yet."
    lengths = list(next(iter(curves.values())).index)
    body = [[f"N={n}", *(cell(c, t) for t in lengths)] for n, c in curves.items()]
    return f"{what}, mean [min, max] over seeds:\n\n" + md_table(["", *map(str, lengths)], body)


def family_md(rows: pd.DataFrame, family: Family, column: str) -> str:
    """``column`` per N (rows) and value of the family's parameter (columns)."""
    part = family.rows(rows)
    stats = seed_stats(part, [family.param, "train_len"], column)
    values = sorted(part[family.param].unique())
    lengths = sorted(part["train_len"].unique())
    body = [[f"N={n}", *(cell(stats, (v, n)) for v in values)] for n in lengths]
    if column == "plateau":
        base = part.groupby(family.param)["baseline_plateau"].mean()
        body.append(["trivial baseline", *(fmt(base[v]) for v in values)])
    header = ["", *(f"{family.symbol}={show(v)}" for v in values)]
    return md_table(header, body)


def gaps_md(rows: pd.DataFrame, family: Family, t: int) -> str:
    """Model gap, measured errors, eps* and the task floor per (parameter, N)."""
    part = family.rows(rows)
    columns = [
        f"model_gap@{t}",
        f"error@{t}",
        f"long_error@{t}",
        f"task_gap@{t}",
        f"eps*@{t}",
        f"floor@{t}",
    ]
    by = [family.param, "train_len"]
    stats = {c: seed_stats(part, by, c) for c in columns}
    body = [
        [f"{family.symbol}={show(v)}", f"N={n}", *(cell(stats[c], (v, n)) for c in columns)]
        for v, n in stats[columns[0]].index
    ]
    return md_table([family.symbol, "N", *columns], body)


def falls_in_n(rows: pd.DataFrame, family: Family, column: str, label: str) -> list[str]:
    """One `trend` line per value of the family's parameter: ``column`` falls in N."""
    lines = []
    for value, part in family.rows(rows).groupby(family.param):
        stats = seed_stats(part, ["train_len"], column)
        name = f"{label} for {family.symbol}={show(value)}{family.where()}"
        lines.append(trend(name, list(stats.index), stats, "falls", "N"))
    return lines


def rises_in_param(rows: pd.DataFrame, family: Family, column: str, label: str) -> list[str]:
    """One `trend` line per N: ``column`` rises with the family's parameter."""
    lines = []
    for train_len, part in family.rows(rows).groupby("train_len"):
        stats = seed_stats(part, [family.param], column)
        name = f"{label} at N={train_len}{family.where()}"
        lines.append(trend(name, list(stats.index), stats, "rises", family.symbol))
    return lines


def bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def binary_md(
    number: int, task: str, rows: pd.DataFrame, family: Family, left: Any, total: int
) -> str:
    """Figure 1 or 2's section."""
    t = check_length(rows)
    curves = loss_curves(rows[rows[family.param] == left])
    parts = [
        f"## Figure {number}: {task}",
        "",
        f"`paper_fig{number}_{'simple' if number == 1 else 'modp'}.png`. {len(rows)} of {total} "
        f"points; seeds {seed_list(rows)}; test loss = MSE at the last position.",
        "",
        curves_md(curves, f"Test loss against test length T at {family.symbol}={show(left)}"),
        "",
        "Plateau (mean loss over the 3 longest T beyond N), mean [min, max] over seeds; last "
        "row: the task's trivial predictor (`baseline`) scored the same way:",
        "",
        family_md(rows, family, "plateau"),
        "",
        f"{FINAL_LOSS}, mean [min, max] over seeds:",
        "",
        family_md(rows, family, "final_loss"),
        "",
        f"Simulation check at T={t} (means over the checker's inputs; `error@{t}` is the "
        f"evaluation's mean |f(x) - g(x)| on its own inputs), mean [min, max] over seeds:",
        "",
        gaps_md(rows, family, t),
        "",
        "Trends (computed from the means above; a step against the claim is marked within "
        "seed spread when the two min-max ranges overlap):",
        "",
        f"Result 1, test loss plateaus at {family.symbol}={show(left)} (flat within "
        f"{FLAT_FACTOR:g}x over the plateau lengths):",
        "",
        bullets(flatness(curves)),
        "",
        "Did the models learn the task at all (plateau against the trivial predictor)?",
        "",
        bullets(against_baseline(rows, family)),
        "",
        "Result 2, the plateau falls as N grows:",
        "",
        bullets(falls_in_n(rows, family, "plateau", "plateau")),
        "",
        f"Result 3, the plateau rises with {family.symbol}:",
        "",
        bullets(rises_in_param(rows, family, "plateau", "plateau")),
        "",
        f"The model gap at T={t} against N, and against the measured long error:",
        "",
        bullets(falls_in_n(rows, family, f"model_gap@{t}", "model gap")),
        bullets(gap_against_error(rows, family, t)),
    ]
    return "\n".join(parts)


def kgram_md(rows: pd.DataFrame, by_s: Family, by_k: Family, total: int) -> str:
    """Figure 4's section."""
    t = check_length(rows)
    curves = loss_curves(
        rows[(rows["task.S"] == 3) & (rows["task.k"] == 2) & (rows["n_heads"] == 1)]
    )
    pairs = Family("task.S,k", "S,k,heads")
    parts = [
        "## Figure 4: in-context k-gram (2 layers)",
        "",
        f"`paper_fig4_kgram.png`. {len(rows)} of {total} points; seeds "
        f"{seed_list(rows)}; test loss = KL(target || model) at the last "
        "position, error = total variation.",
        "",
        curves_md(curves, "Test loss against test length T at S=3, k=2"),
        "",
        "Plateau, mean [min, max] over seeds (last row: the unigram predictor `baseline`), by S "
        "at k=2:",
        "",
        family_md(rows, by_s, "plateau"),
        "",
        "by k at S=3:",
        "",
        family_md(rows, by_k, "plateau"),
        "",
        f"{FINAL_LOSS}, mean [min, max] over seeds, by S at k=2 and by k at S=3:",
        "",
        family_md(rows, by_s, "final_loss"),
        "",
        family_md(rows, by_k, "final_loss"),
        "",
        f"Simulation check at T={t}, mean [min, max] over seeds:",
        "",
        gaps_md(rows, pairs, t),
        "",
        "Trends:",
        "",
        f"Result 1, test loss plateaus at S=3, k=2 (flat within {FLAT_FACTOR:g}x):",
        "",
        bullets(flatness(curves)),
        "",
        "Did the models learn the task at all (plateau against the unigram predictor)?",
        "",
        bullets(against_baseline(rows, by_s) + against_baseline(rows, by_k)),
        "",
        "Result 2, the plateau falls as N grows:",
        "",
        bullets(
            falls_in_n(rows, by_s, "plateau", "plateau")
            + falls_in_n(rows, by_k, "plateau", "plateau")
        ),
        "",
        "Result 3, the plateau rises with S (k=2) and with k (S=3):",
        "",
        bullets(
            rises_in_param(rows, by_s, "plateau", "plateau")
            + rises_in_param(rows, by_k, "plateau", "plateau")
        ),
        "",
        f"The model gap at T={t}:",
        "",
        bullets(falls_in_n(rows, pairs, f"model_gap@{t}", "model gap")),
        bullets(gap_against_error(rows, pairs, t)),
    ]
    return "\n".join(parts)


ATTENTION_COLUMNS = {
    "class_mass_mean": "class mass mean",
    "class_mass_min": "class mass min",
    "relative_mean": "rel mean",
    "relative_p5": "rel p5",
    "relative_p95": "rel p95",
    "relative_min": "rel min",
    "relative_max": "rel max",
    "relative_token0": "rel, key token 0",
    "relative_token1": "rel, key token 1",
    "off_class_max": "off-class max",
    "off_class_mean": "off-class mean",
}
"""Figure 3's statistics and their headers; rel = an in-class key's weight times the class
size (1 = uniform over the class)."""


def attention_md(study: dict[str, Any]) -> str:
    """Figure 3's section: the statistics per seed and head, and the checks."""
    records = study["stats"]
    header = ["seed", "head", *ATTENTION_COLUMNS.values()]
    body = [
        [str(r["seed"]), str(r["head"]), *(f"{r[c]:.3g}" for c in ATTENTION_COLUMNS)]
        for r in records
    ]
    lo, hi = UNIFORM_RANGE
    checks = []
    for r in records:
        mass = r["class_mass_mean"] >= CLASS_MASS_MIN
        off = r["off_class_max"] <= OFF_CLASS_MAX
        uniform = lo <= r["relative_p5"] and r["relative_p95"] <= hi
        checks.append(
            f"seed {r['seed']}, head {r['head']}: mean class mass {r['class_mass_mean']:.4f} >= "
            f"{CLASS_MASS_MIN}: **{'yes' if mass else 'no'}**; max off-class weight "
            f"{r['off_class_max']:.2e} <= {OFF_CLASS_MAX}: **{'yes' if off else 'no'}**; "
            f"rel 5th-95th percentile [{r['relative_p5']:.3f}, {r['relative_p95']:.3f}] "
            f"inside [{lo:g}, {hi:g}]: **{'yes' if uniform else 'no'}**"
        )
    n_class = int(study["in_class"].sum())
    return "\n".join(
        [
            "## Figure 3: ModPTask(p=5) attention",
            "",
            f"`paper_fig3_attention.png`: {study['task']}, N={study['train_len']}, seed "
            f"{study['seed']} (`{study['run']}`), layer 0 attention of the last position over "
            f"the keys of one input of length T={study['length']}. The residue class is the "
            f"positions t = k (mod p), 0-based: {n_class} of {study['length']} keys, uniform "
            f"weight 1/{n_class} = {1 / n_class:.4f}. Statistics over {ATTENTION_SAMPLES} inputs "
            f"of length {study['length']} (seed {ATTENTION_SEED}), every seed at this N; "
            "rel is an in-class key's weight times the class size (1 = uniform over the "
            "class); its mean and percentiles are over all inputs and in-class keys, and over "
            "the in-class keys holding a 0 or a 1.",
            "",
            md_table(header, body),
            "",
            "Result 4, near-hardmax (near zero off the class, near uniform on it):",
            "",
            bullets(checks),
        ]
    )


def provenance_md(info: dict[str, Any]) -> str:
    """Command, running times, source revision and versions."""
    lines = ["## Provenance", "", f"Command: `{info['command']}`", "", "Running time:", ""]
    for name, t in info["times"].items():
        wall = info["walls"].get(name)
        walled = f"; wall time in {info['log']}: {wall:.0f} s ({wall / 60:.1f} min)" if wall else ""
        call = info["calls"].get(name)
        if call:
            walled += (
                f"; this command's sweep call: {call['wall']:.0f} s, ran {call['ran']}, "
                f"reused {call['reused']}, failed {call['failed']}"
            )
        lines.append(
            f"- {name}: {t['points']} points, sum of per-point total_s {t['total_s']:.0f} s "
            f"({t['total_s'] / 60:.1f} min; train {t['train_s']:.0f} s, eval "
            f"{t['eval_s']:.0f} s, check {t['check_s']:.0f} s){walled}"
        )
        if t["reused_training"]:
            lines[-1] += (
                f". {t['reused_training']} of these points were re-evaluated from weights "
                "trained earlier, so their total_s leaves the training out; the training "
                f"times the runs logged sum to {t['trained_s']:.0f} s"
            )
    walls = [info["walls"][n] for n in info["times"] if n in info["walls"]]
    if walls:
        total = sum(t["total_s"] for t in info["times"].values())
        lines.append(
            f"- all sweeps: sum of total_s {total:.0f} s ({total / 60:.1f} min); sum of the "
            f"logged wall times {sum(walls):.0f} s ({sum(walls) / 60:.1f} min)"
        )
    mode = "drawing only" if info["draw_only"] else f"{info['workers']} sweep worker(s)"
    lines += [
        f"- this command: {info['seconds']:.0f} s on {info['cpus']} CPU cores ({mode}, "
        f"{torch.get_num_threads()} torch thread(s) for Figure 3)",
        "",
        f"Source: git {info['revision']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def timing(table: pd.DataFrame) -> dict[str, float]:
    """Sums of the timing columns and of the training times the runs logged, and how many
    points reused weights trained earlier (train_s under half the logged training time)."""
    columns = ("train_s", "eval_s", "check_s", "total_s", "trained_s")
    sums = {c: float(table[c].sum()) for c in columns}
    reused = int((table["train_s"] < 0.5 * table["trained_s"]).sum())
    return {"points": len(table), "reused_training": reused, **sums}


def draw(
    tables: dict[str, pd.DataFrame], totals: dict[str, int], out: Path, results: Path
) -> list[str]:
    """Save every figure whose sweep has rows; return the report's figure sections."""
    sections = []
    omega, p = Family("task.omega", "omega"), Family("task.p", "p")
    simple, modp, kgram = (tables.get(n) for n in ("fig1_simple", "fig2_modp", "fig4_kgram"))
    if simple is not None and len(simple):
        fig = binary_figure(simple, omega, 3.0, "SimpleTask", "|f(x) - g(x)|")
        save_figure(fig, results / "paper_fig1_simple.png")
        sections.append(
            binary_md(1, "SimpleTask(omega)", simple, omega, 3.0, totals["fig1_simple"])
        )
    if modp is not None and len(modp):
        fig = binary_figure(modp, p, 3, "ModPTask", "|f(x) - g(x)|")
        save_figure(fig, results / "paper_fig2_modp.png")
        sections.append(binary_md(2, "ModPTask(p)", modp, p, 3, totals["fig2_modp"]))
        study = attention_study(modp, out / "fig2_modp")
        if study is not None:
            save_figure(attention_figure(study), results / "paper_fig3_attention.png")
            sections.append(attention_md(study))
    if kgram is not None and len(kgram):
        label = (
            kgram["task.S"].map(show) + "," + kgram["task.k"].map(show) + ","
            + kgram["n_heads"].map(show)
        )  # fmt: skip
        kgram = kgram.assign(**{"task.S,k": label})
        by_s = Family("task.S", "S", (("task.k", 2), ("n_heads", 1)))
        by_k = Family("task.k", "k", (("task.S", 3), ("n_heads", 2)))
        save_figure(kgram_figure(kgram, by_s, by_k), results / "paper_fig4_kgram.png")
        sections.append(kgram_md(kgram, by_s, by_k, totals["fig4_kgram"]))
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="sweep directories (runs/paper)")
    parser.add_argument("--workers", type=int, default=2, help="parallel sweep points")
    parser.add_argument("--draw-only", action="store_true", help="read the results; run nothing")
    parser.add_argument("--results", type=Path, default=None, help="where figures and report go")
    parser.add_argument("--quick", action="store_true", help="a 2-minute smoke run")
    args = parser.parse_args()
    if args.out is None:
        args.out = Path("runs/paper-quick" if args.quick else "runs/paper")
    if args.results is None:
        args.results = args.out if args.quick else RESULTS
    started = time.perf_counter()
    specs = sweep_specs(args.quick)
    calls = {} if args.draw_only else run_sweeps(specs, args.out, args.workers)
    tables, totals = {}, {}
    for name, spec in specs.items():
        tables[name], totals[name] = read_table(spec, args.out / name)
        print(f"{name}: {len(tables[name])} of {totals[name]} points finished")
    args.results.mkdir(parents=True, exist_ok=True)
    sections = draw(tables, totals, args.out, args.results)
    info = {
        "command": shlex.join(["python", "examples/paper_figures.py", *sys.argv[1:]]),
        "seconds": time.perf_counter() - started,
        "cpus": os.cpu_count(),
        "draw_only": args.draw_only,
        "workers": args.workers,
        "walls": logged_walls(args.out),
        "calls": calls,
        "log": args.out / "log.txt",
        "times": {n: timing(t) for n, t in tables.items() if len(t)},
        "revision": source_revision(HERE),
        "versions": {
            **library_versions(),
            **{name: metadata.version(name) for name in ("pandas", "matplotlib")},
        },
    }
    head = [
        "# The paper's Figures 1-4, reproduced",
        "",
        f"Sweeps in `{args.out}` (specs: `examples/sweeps/*.toml`"
        f"{', shrunk by --quick' if args.quick else ''}). Every number is a mean over seeds "
        "with [min, max] over seeds; curves in the figures show the mean with a min-max band. "
        "Trend lines are computed from these numbers by `examples/paper_figures.py`.",
        "",
    ]
    report = "\n".join(head) + "\n" + "\n\n".join(sections) + "\n\n" + provenance_md(info)
    write_text(args.results / "paper_figures.md", report)
    print(f"{info['seconds']:.0f} s; figures and paper_figures.md in {args.results}")


if __name__ == "__main__":
    main()
