"""Does the certificate bound the long error? A sweep of 18 models.

Trains ModPTask(p=3) with periodic and learned positions at N in {16, 32},
SimpleTask(omega=3) without positions at N in {4, 8, 32} and the in-context 2-gram task
(S=3, two layers, periodic positions with a local bias) at N in {32, 64}, two seeds each,
and for every model compares

- the check at the test length T (``simcheck.check`` with delta=0.05, seed 0, once
  at each eps in {0.05, 0.1}): its outcome (certified, fails-short, not-simulatable,
  unexplained-pass or undecided), the fraction of long inputs the chain leaves uncovered
  (chain > eps) with its exact interval, the long inputs M it drew (it starts from
  ``--samples`` and doubles while undecided, up to 800), and the chain bound: the 1 - delta
  quantile of task gap + short error + model gap at each input's best witness, the long-error
  bound the certificate states; with
- the measured long error |f(x) - g(x)| at T on a fresh sample (512 inputs drawn with a seed
  of their own, independent of the checker's inputs): its mean and its 95th percentile.

It reports how the chain bound ranks against the mean and the 95th-percentile long error
(Spearman, next to that of the simulation error eps* of the old criterion eps* <= eps),
whether every certified model's chain bound holds on the fresh inputs, confusion tables of
the outcome against measured generalization (95th percentile of the long error <= eps, the
measurement that matches delta=0.05) at each eps, and the models where certification and
measurement disagree, each with the numbers that explain it. Finished run directories under
``--out`` are reused, so a rerun only redoes the checks.

    python examples/simulation_sweep.py [--out runs/simulation_sweep] [--steps 3000]
        [--seeds 0,1] [--test-len 1024] [--samples 100] [--eval-samples 512]
        [--results examples/results] [--quick]

Writes ``simulation_sweep.csv``, ``simulation_sweep.md`` and ``simulation_sweep.png`` into
``examples/results/`` (``--quick``: into the run directory ``--out``, with 300 steps, a first
look of M=20 and 128 inputs for the long error). Training the 18 models takes about 7
minutes on 2 CPU cores with OMP_NUM_THREADS=1 (the four 2-layer k-gram models about half of
it); the two checks per model at T=1024 take longer the more of them stay undecided and draw
up to 800 inputs; a rerun that reuses the trained models only redoes them.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import simcheck
from simcheck._util.io import library_versions, source_revision, write_text
from simcheck._util.plotting import save_figure
from simcheck.api.check import check
from simcheck.checking.outcomes import (
    FAILS_SHORT,
    NOT_SIMULATABLE,
    UNDECIDED,
    UNEXPLAINED_PASS,
    Outcome,
)
from simcheck.checking.statistics import simulation_error
from simcheck.errors import SimcheckError
from simcheck.model.build import last_outputs
from simcheck.report.check_report import CheckReport

MODP = "modp:p=3"
SIMPLE = "simple:omega=3"
KGRAM = "kgram:S=3,k=2"
GRID: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    (MODP, "periodic", (16, 32)),
    (MODP, "learned", (16, 32)),
    (SIMPLE, "none", (4, 8, 32)),
    (KGRAM, "periodic", (32, 64)),
)
"""(task, positional encoding, training lengths N) of the sweep."""
EPS = 0.1
"""The eps whose check gives the table's eps*, floor, chain bound and the headline."""
DELTA = 0.05
EPS_LEVELS = (0.05, 0.1)
EVAL_SAMPLES = 512
EVAL_SEED = 1
"""Seed of the measured long error's inputs; the checker draws its inputs from seed 0."""
AT_FLOOR = 1.1
"""A model whose eps* is within this factor of the task floor is simulated as well as the
task allows at this N."""
FULL = {"steps": 3000, "samples": 100, "eval_samples": EVAL_SAMPLES}
QUICK = {"steps": 300, "samples": 20, "eval_samples": 128}
RESULTS = Path(__file__).resolve().parent / "results"
STEM = "simulation_sweep"


@dataclass(frozen=True)
class Model:
    """One point of the sweep."""

    task: str
    pos: str
    train_len: int
    seed: int

    @property
    def name(self) -> str:
        """The run directory's name, e.g. ``modp-periodic-N16-s0``."""
        task = self.task.split(":")[0]
        return f"{task}-{self.pos}-N{self.train_len}-s{self.seed}"


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1)."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers like '0,1', got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def sweep_models(seeds: tuple[int, ...]) -> list[Model]:
    """Every (task, encoding, N) of `GRID` with every seed."""
    return [
        Model(task, pos, train_len, seed)
        for task, pos, lengths in GRID
        for train_len in lengths
        for seed in seeds
    ]


def check_test_length(models: list[Model], test_len: int) -> None:
    """Refuse a test length some model cannot take before anything is trained."""
    for model in models:
        spec = simcheck.ModelSpec.for_task(simcheck.get_task(model.task), pos=model.pos)
        if test_len > spec.max_length:
            raise SimcheckError(
                f"--test-len {test_len} exceeds what {model.pos} positions take "
                f"({spec.max_length}); choose --test-len <= {spec.max_length}"
            )


def trained_run(model: Model, out: Path, steps: int) -> tuple[simcheck.Run, bool]:
    """The finished run of ``model`` under ``out`` with ``steps`` steps, trained unless one is
    already there; returns the run and whether it was reused."""
    run_dir = out / model.name
    if (run_dir / "status.json").is_file():
        try:
            run = simcheck.load_run(run_dir)
        except SimcheckError:
            run = None
        if run is not None and run.finished and run.spec["training"]["steps"] == steps:
            return run, True
    run = simcheck.train(
        model.task,
        run_dir,
        pos=model.pos,
        train_len=model.train_len,
        steps=steps,
        seed=model.seed,
        data_seed=model.seed,
        overwrite=True,
        progress=False,
    )
    return run, False


def long_errors(run: simcheck.Run, length: int, samples: int) -> np.ndarray:
    """|f(x) - g(x)| of the model on ``samples`` fresh inputs of ``length`` tokens."""
    rng = np.random.default_rng([EVAL_SEED, length])
    batch = run.task.batch(samples, length, rng)
    with torch.no_grad():
        output = last_outputs(run.model, batch.tokens)
    return run.task.metric(output.cpu(), batch.targets).numpy()


def check_columns(report: CheckReport, eps: float) -> dict[str, Any]:
    """The CSV columns of the check at ``eps``: outcome, inputs drawn, the uncovered
    fraction and its interval, the chain bound, the long-error and short-error fractions
    above eps, and the diagnosis (dominant term and the kinds of its causes)."""
    result = report.results[0]
    chain, long = result.chain_interval, result.long_interval
    short = report.config["reference"]["short"]["error_above_eps"]
    diagnosis = result.diagnosis
    return {
        f"outcome@{eps}": result.outcome,
        f"certified@{eps}": result.certified,
        f"chain_bound@{eps}": result.chain_bound,
        f"M@{eps}": result.samples,
        f"looks@{eps}": result.looks,
        f"uncovered@{eps}": chain.fraction,
        f"uncovered_failures@{eps}": chain.failures,
        f"uncovered_low@{eps}": chain.low,
        f"uncovered_high@{eps}": chain.high,
        f"long_above@{eps}": long.fraction,
        f"long_above_low@{eps}": long.low,
        f"long_above_high@{eps}": long.high,
        f"short_above@{eps}": short["fraction"],
        f"short_above_low@{eps}": short["low"],
        f"short_above_high@{eps}": short["high"],
        f"eps_star@{eps}": result.eps_star,
        f"simulatable@{eps}": result.simulatable,
        f"dominant_term@{eps}": diagnosis.dominant_term if diagnosis else "",
        f"causes@{eps}": ";".join(dict.fromkeys(c.kind for c in diagnosis.causes))
        if diagnosis
        else "",
    }


def measure(model: Model, run: simcheck.Run, args: argparse.Namespace) -> dict[str, Any]:
    """One CSV row: the checks at each eps of `EPS_LEVELS` and the measured long error of
    ``run``; eps*, the floor and the error terms come from the check at `EPS`."""
    reports = {
        eps: check(
            run, test_lengths=[args.test_len], eps=eps, delta=DELTA, samples=args.samples, seed=0
        )
        for eps in EPS_LEVELS
    }
    result = reports[EPS].results[0]
    errors = long_errors(run, args.test_len, args.eval_samples)
    row: dict[str, Any] = {
        "task": model.task,
        "pos": model.pos,
        "N": model.train_len,
        "seed": model.seed,
        "eps_star": result.eps_star,
        "task_floor": result.task_floor,
        "ratio": result.ratio,
        "excess": result.eps_star - result.task_floor,
        "model_gap_mean": float(result.model_gap.mean()),
        "short_error_q95": simulation_error(result.short_error, DELTA),
        "matched_short_error_mean": float(result.matched_terms["short_error"].mean()),
        "matched_model_gap_mean": float(result.matched_terms["model_gap"].mean()),
        "check_long_error_mean": float(result.long_error.mean()),
        "long_error_mean": float(errors.mean()),
        "long_error_q95": simulation_error(errors, DELTA),
    }
    for eps, report in reports.items():
        row.update(check_columns(report, eps))
        row[f"fresh_above@{eps}"] = float((errors > eps).mean())
        row[f"generalizes_q95@{eps}"] = row["long_error_q95"] <= eps
        row[f"generalizes_mean@{eps}"] = row["long_error_mean"] <= eps
    return row


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the average of the ranks they span."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average-tie ranks, over
    the pairs where both values are finite (NaN with fewer than 3 such pairs or a constant
    side)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def measured_label(frame: pd.DataFrame, eps: float) -> pd.Series:
    """Per model, whether the measured q95 long error is within ``eps``, as a column label."""
    return frame[f"generalizes_q95@{eps}"].map({True: f"q95 <= {eps}", False: f"q95 > {eps}"})


def outcome_confusion(frame: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Counts of each outcome at ``eps`` (rows, all five) against measured generalization
    (columns), with row totals."""
    columns = [f"q95 <= {eps}", f"q95 > {eps}"]
    table = pd.crosstab(frame[f"outcome@{eps}"], measured_label(frame, eps))
    table = table.reindex(index=[o.value for o in Outcome], columns=columns)
    table = table.fillna(0).astype(int)
    table["models"] = table.sum(axis=1)
    table.index.name, table.columns.name = f"outcome at eps={eps}", None
    return table


def verdict_confusion(frame: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Certified or not, and the old criterion eps* <= eps or not (rows), against measured
    generalization (columns) at ``eps``."""
    columns = [f"q95 <= {eps}", f"q95 > {eps}"]
    measured = measured_label(frame, eps)
    verdicts = {
        "certified": frame[f"certified@{eps}"],
        "not certified": ~frame[f"certified@{eps}"],
        f"eps* <= {eps} (old criterion)": frame[f"simulatable@{eps}"],
        f"eps* > {eps}": ~frame[f"simulatable@{eps}"],
    }
    table = pd.DataFrame(
        {column: [int((chosen & (measured == column)).sum()) for chosen in verdicts.values()]
         for column in columns},
        index=list(verdicts),
    )  # fmt: skip
    table.index.name = "verdict"
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` (its index as the first column) as a GitHub markdown table, floats to 4
    significant digits (NaN as '-'), pipes in cells escaped."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            text = "-" if math.isnan(value) else f"{value:.4g}"
        else:
            text = str(value)
        return text.replace("|", "\\|")

    header = [frame.index.name or "", *map(str, frame.columns)]
    body = [[cell(value) for value in row] for row in frame.itertuples()]
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def interval_text(row: pd.Series, key: str, eps: float) -> str:
    """``0.050 in [0.010, 0.140]`` for the fraction ``key`` at ``eps`` and its interval."""
    return (
        f"{row[f'{key}@{eps}']:.3f} in [{row[f'{key}_low@{eps}']:.3f}, "
        f"{row[f'{key}_high@{eps}']:.3f}]"
    )


def diagnosis_text(row: pd.Series, eps: float) -> str:
    """The diagnosis of the check at ``eps`` in a few words: dominant term and cause kinds."""
    causes = row[f"causes@{eps}"]
    causes = causes.replace(";", ", ") if isinstance(causes, str) and causes else "none recognised"
    return f"diagnosis: dominant term {row[f'dominant_term@{eps}']}; causes: {causes}"


def disagreement_reason(row: pd.Series, eps: float) -> str:
    """Why certification and measurement differ for ``row`` at ``eps``, from its numbers."""
    outcome, bound = row[f"outcome@{eps}"], row[f"chain_bound@{eps}"]
    floor, q95, samples = row["task_floor"], row["long_error_q95"], row[f"M@{eps}"]
    uncovered = f"the chain leaves {interval_text(row, 'uncovered', eps)} of M={samples} uncovered"
    if row[f"certified@{eps}"]:
        return (
            f"certified ({uncovered}, at or below delta; chain bound {bound:.3f}) yet the fresh "
            f"inputs' q95 long error is {q95:.3f} > eps: {row[f'fresh_above@{eps}']:.1%} of "
            f"them exceed eps, against {interval_text(row, 'long_above', eps)} of the checker's "
            "inputs. The chain bounds each input's long error, so the fresh sample goes beyond "
            "the certified bound: a miss the confidence allows, or inputs the checker's sample "
            "did not reach"
        )
    head = f"{outcome}, q95 long error {q95:.3f} <= eps"
    if outcome == FAILS_SHORT:
        return (
            f"{head}: the model errs by more than eps on "
            f"{interval_text(row, 'short_above', eps)} of the inputs of lengths <= N={row['N']} "
            f"(above delta), so the check does not speak of length generalization ({uncovered}; "
            f"chain bound {bound:.3f}); {diagnosis_text(row, eps)}"
        )
    if outcome == UNEXPLAINED_PASS:
        if floor > eps / 2:
            why = (
                f"task floor {floor:.3f} > eps/2 = {eps / 2:.3g}, so the chain stays above eps "
                "there"
            )
        else:
            why = (
                f"task floor {floor:.3f} <= eps/2 = {eps / 2:.3g}: witnesses can match the task, "
                "so the excess lies in the chain's other terms"
            )
        return (
            f"{head} (the checker's inputs exceed eps on "
            f"{interval_text(row, 'long_above', eps)}), but {uncovered}, above delta, and the "
            f"chain bound is {bound:.3f}: {why}; {diagnosis_text(row, eps)}"
        )
    if outcome == UNDECIDED:
        return (
            f"{head}: after M={samples} inputs the uncovered fraction "
            f"{interval_text(row, 'uncovered', eps)} still straddles delta (chain bound "
            f"{bound:.3f}, task floor {floor:.3f}); {diagnosis_text(row, eps)}"
        )
    if outcome == NOT_SIMULATABLE:
        return (
            f"{head}: on the checker's M={samples} inputs the long error exceeds eps on "
            f"{interval_text(row, 'long_above', eps)} (above delta), on the fresh ones on "
            f"{row[f'fresh_above@{eps}']:.1%}: the two samples disagree ({uncovered}; chain "
            f"bound {bound:.3f}, task floor {floor:.3f}); {diagnosis_text(row, eps)}"
        )
    return f"{head}; {uncovered}; chain bound {bound:.3f}"


def scatter(frame: pd.DataFrame, test_len: int) -> Figure:
    """The chain bound (check at `EPS`) against the mean long error, log-log, one color per
    task and encoding, one marker per N; certified models filled, others hollow."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    markers = {4: "v", 8: "s", 16: "o", 32: "D", 64: "^"}
    bound = f"chain_bound@{EPS}"
    for index, (group, part) in enumerate(frame.groupby(["task", "pos"], sort=False)):
        for train_len, points in part.groupby("N"):
            certified = points[f"certified@{EPS}"].astype(bool)
            for filled, chosen in ((True, points[certified]), (False, points[~certified])):
                if chosen.empty:
                    continue
                ax.scatter(
                    chosen[bound],
                    chosen["long_error_mean"],
                    facecolors=f"C{index}" if filled else "none",
                    edgecolors=f"C{index}",
                    marker=markers.get(int(train_len), "o"),
                    s=36,
                )
            ax.scatter([], [], color=f"C{index}", marker=markers.get(int(train_len), "o"), s=36,
                       label=f"{group[0]} / {group[1]}, N={train_len}")  # fmt: skip
    values = np.concatenate([frame[bound], frame["long_error_mean"]])
    values = values[values > 0]
    low, high = values.min() / 2, values.max() * 2
    ax.plot([low, high], [low, high], "k--", lw=1, label="y = x")
    handles, labels = ax.get_legend_handles_labels()
    for filled, text in ((True, f"certified at eps={EPS}"), (False, "not certified")):
        handles.append(Line2D([], [], ls="", marker="o", color="0.3",
                              markerfacecolor="0.3" if filled else "none"))  # fmt: skip
        labels.append(text)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"chain bound at T={test_len} (check at eps={EPS}, delta={DELTA})")
    ax.set_ylabel(f"mean |f(x) - g(x)| at T={test_len} (fresh inputs)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles, labels, fontsize=7, loc="upper left")
    return fig


def floor_note(frame: pd.DataFrame) -> str:
    """How many models sit at the task floor, and how the part of eps* above the floor ranks
    the models."""
    rho_excess = spearman(frame["excess"], frame["long_error_mean"])
    rho_ratio = spearman(frame["ratio"], frame["long_error_mean"])
    at_floor = frame[frame["ratio"] <= AT_FLOOR]
    note = f"{len(at_floor)} of {len(frame)} models have eps* within {AT_FLOOR}x of the task floor"
    if len(at_floor):
        note += (
            f" (their mean long errors: {at_floor['long_error_mean'].min():.2g} to "
            f"{at_floor['long_error_mean'].max():.2g}; their floors: "
            f"{at_floor['task_floor'].min():.3g} to {at_floor['task_floor'].max():.3g}). For "
            "them eps* says how closely witnesses of length <= N can match the task, which "
            "depends on the task and N rather than on the model's error"
        )
    return (
        f"{note}. Spearman of the mean long error with the part of eps* above the floor, "
        f"eps* - floor: {rho_excess:.3f}; with eps* / floor: {rho_ratio:.3f}."
    )


def bound_holds(frame: pd.DataFrame, eps: float) -> tuple[int, int, list[str]]:
    """Among the models certified at ``eps``: how many, how many have chain bound >= the
    fresh q95 long error, and the names of those that do not."""
    certified = frame[frame[f"certified@{eps}"].astype(bool)]
    holds = certified[f"chain_bound@{eps}"] >= certified["long_error_q95"]
    misses = [
        f"{row['task']} {row['pos']} N={row['N']} seed={row['seed']} (bound "
        f"{row[f'chain_bound@{eps}']:.3g} < q95 {row['long_error_q95']:.3g})"
        for _, row in certified[~holds].iterrows()
    ]
    return len(certified), int(holds.sum()), misses


def headline(frame: pd.DataFrame) -> list[str]:
    """Spearman of the chain bound and of eps* with the long error, and whether the
    certified bounds hold on the fresh inputs: markdown lines."""
    bound = frame[f"chain_bound@{EPS}"]
    rho_mean = spearman(bound, frame["long_error_mean"])
    rho_q95 = spearman(bound, frame["long_error_q95"])
    old_mean = spearman(frame["eps_star"], frame["long_error_mean"])
    old_q95 = spearman(frame["eps_star"], frame["long_error_q95"])
    lines = [
        f"**Spearman rank correlation** of the chain bound (check at eps={EPS}) with the mean "
        f"long error: **{rho_mean:.3f}**, with the q95 long error: **{rho_q95:.3f}**. For "
        f"comparison, eps* (the old criterion's statistic): {old_mean:.3f} and {old_q95:.3f}. "
        f"Ranks with average ties, n={len(frame)}.",
        "",
    ]
    for eps in EPS_LEVELS:
        count, held, misses = bound_holds(frame, eps)
        if not count:
            lines.append(f"- eps={eps}: no model is certified.")
            continue
        text = (
            f"- eps={eps}: {count} of {len(frame)} models certified; for **{held} of {count}** "
            "the chain bound is >= the q95 long error measured on the fresh inputs"
        )
        lines.append(text + (f"; not for {', '.join(misses)}." if misses else "."))
    lines += [
        "",
        "The chain bound is what a certificate states: the long error is at most the bound on "
        "all but delta of the inputs. A certified model has chain bound <= eps (at most a "
        "delta fraction of its chains exceed eps), and since the chain bounds each input's "
        "long error, the bound should hold on fresh inputs too.",
    ]
    return lines


def markdown(frame: pd.DataFrame, args: argparse.Namespace, info: dict[str, Any]) -> str:
    """The report: table, headline, confusion tables, disagreements, command, versions."""
    columns = {
        "task": "task",
        "pos": "pos",
        "N": "N",
        "seed": "seed",
        f"outcome@{EPS}": f"outcome (eps={EPS})",
        f"M@{EPS}": "M",
        f"uncovered@{EPS}": "uncovered",
        f"chain_bound@{EPS}": "chain bound",
        "eps_star": "eps*",
        "task_floor": "task floor",
        "ratio": "ratio",
        "model_gap_mean": "model gap (mean)",
        "check_long_error_mean": "long err (check)",
        "long_error_mean": f"long err mean ({args.eval_samples})",
        "long_error_q95": f"long err q95 ({args.eval_samples})",
    }
    table = frame[list(columns)].rename(columns=columns).set_index("task")
    calls = " and ".join(f"eps={eps}" for eps in EPS_LEVELS)
    lines = [
        f"# The certificate against measured length generalization (T={args.test_len})",
        "",
        f"{len(frame)} models; each checked twice, with `check(run, test_lengths="
        f"[{args.test_len}], eps=eps, delta={DELTA}, samples={args.samples}, seed=0)` at "
        f"{calls} (witnesses types, blocks, search). The check draws {args.samples} long "
        "inputs at its first look and doubles them while its outcome is undecided, up to "
        f"800 (column M). The table shows the check at eps={EPS}: its outcome, M, the "
        "fraction of its inputs the chain leaves uncovered (chain > eps), the chain bound "
        "(the 1 - delta quantile of task gap + short error + model gap at each input's best "
        "witness), eps*, the task floor and their ratio, the mean model gap and the mean long "
        "error on its own inputs. The measured long error |f(x) - g(x)| is taken on "
        f"{args.eval_samples} fresh inputs of length {args.test_len} drawn with seed "
        f"{EVAL_SEED}, independent of the checker's inputs.",
        "",
        markdown_table(table),
        "",
        "## How the certified bound ranks against the long error",
        "",
        *headline(frame),
        "",
        floor_note(frame),
        "",
        "## Confusion tables",
        "",
        f"Outcome of the check at each eps (delta={DELTA}) against measured generalization: "
        "the 95th percentile of |f(x) - g(x)| at T on the fresh inputs <= eps, the quantity "
        "that matches delta (both percentiles are the ceil(0.95 n)-th smallest value, "
        "`simcheck.checking.statistics.simulation_error`). Certified: the fraction of long "
        "inputs whose "
        "chain exceeds eps is below delta at the check's confidence. The second table sets "
        "certified against the old criterion eps* <= eps.",
        "",
    ]
    for eps in EPS_LEVELS:
        lines += [
            f"### eps = {eps}",
            "",
            markdown_table(outcome_confusion(frame, eps)),
            "",
            markdown_table(verdict_confusion(frame, eps)),
            "",
        ]
    lines += [
        "## Disagreements",
        "",
        "Certified but q95 long error > eps, or not certified but q95 <= eps. An interval "
        "is the observed fraction with its exact binomial interval. Where the task floor "
        "exceeds eps/2, more than delta of the inputs have no witness whose task gap is "
        "within eps/2; at such a witness a model that follows the task has a model gap about "
        "as large as the task gap, and the chain adds both, so it exceeds eps on those inputs "
        "however small the model's long error.",
        "",
    ]
    any_disagreement = False
    for eps in EPS_LEVELS:
        rows = frame[frame[f"certified@{eps}"] != frame[f"generalizes_q95@{eps}"]]
        for _, row in rows.iterrows():
            any_disagreement = True
            name = f"{row['task']} {row['pos']} N={row['N']} seed={row['seed']}"
            lines.append(f"- eps={eps}, {name}: {disagreement_reason(row, eps)}.")
    if not any_disagreement:
        lines.append("None: certification and measurement agree for every model at both eps.")
    lines += [
        "",
        "Certification is sufficient, not necessary: a model can generalize while no witness "
        "of length <= N bounds its chain within eps (unexplained-pass: the task floor, or the "
        "task gap and model gap adding up in the chain), or while it already errs at lengths "
        "<= N on more than delta of the inputs (fails-short).",
        "",
        "## Provenance",
        "",
        f"Command: `{info['command']}`",
        "",
        f"Running time: {info['seconds']:.0f} s ({info['seconds'] / 60:.1f} min) on "
        f"{info['cpus']} CPU cores with {info['threads']} torch thread(s); "
        f"{info['trained']} models trained, {info['reused']} reused from `{args.out}`.",
        "",
        f"Source: git {info['revision']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run directories")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=parse_seeds, default=(0, 1))
    parser.add_argument("--test-len", type=int, default=1024)
    parser.add_argument(
        "--samples", type=int, default=None, help="checker inputs M at the first look"
    )
    parser.add_argument("--eval-samples", type=int, default=None, help="inputs of the long error")
    parser.add_argument("--results", type=Path, default=None, help="where the report goes")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps and samples")
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.out is None:
        args.out = Path("runs/simulation_sweep-quick" if args.quick else "runs/simulation_sweep")
    if args.results is None:
        args.results = args.out if args.quick else RESULTS

    started = time.perf_counter()
    models = sweep_models(args.seeds)
    check_test_length(models, args.test_len)
    rows, reused = [], 0
    for model in models:
        run, was_reused = trained_run(model, args.out, args.steps)
        reused += was_reused
        row = measure(model, run, args)
        rows.append(row)
        checks = "  ".join(
            f"eps={eps}: {row[f'outcome@{eps}']} (M={row[f'M@{eps}']}, "
            f"bound={row[f'chain_bound@{eps}']:.4f})"
            for eps in EPS_LEVELS
        )
        print(
            f"{model.name:<24} {'reused ' if was_reused else 'trained'}  {checks}  "
            f"eps*={row['eps_star']:.4f}  floor={row['task_floor']:.4f}  "
            f"long err mean={row['long_error_mean']:.4f} q95={row['long_error_q95']:.4f}",
            flush=True,
        )
    frame = pd.DataFrame(rows)
    info = {
        "command": shlex.join(["python", "examples/simulation_sweep.py", *sys.argv[1:]]),
        "seconds": time.perf_counter() - started,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "trained": len(models) - reused,
        "reused": reused,
        "revision": source_revision(Path(__file__).resolve().parent),
        "versions": {
            **library_versions(),
            **{name: metadata.version(name) for name in ("pandas", "matplotlib")},
        },
    }
    report = markdown(frame, args, info)
    args.results.mkdir(parents=True, exist_ok=True)
    write_text(args.results / f"{STEM}.csv", frame.to_csv(index=False, float_format="%.6g"))
    write_text(args.results / f"{STEM}.md", report)
    save_figure(scatter(frame, args.test_len), args.results / f"{STEM}.png")
    print()
    print("\n".join(line for line in headline(frame)[:-2] if line))
    print(floor_note(frame))
    for eps in EPS_LEVELS:
        print(f"\neps={eps}:\n{outcome_confusion(frame, eps).to_string()}")
        print(verdict_confusion(frame, eps).to_string())
    print(f"\n{info['seconds']:.0f} s; results in {args.results}/{STEM}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
