"""Does the simulation criterion predict length generalization? A sweep of 18 models.

Trains ModPTask(p=3) with periodic and learned positions at N in {16, 32},
SimpleTask(omega=3) without positions at N in {4, 8, 32} and the in-context 2-gram task
(S=3, two layers, periodic positions with a local bias) at N in {32, 64}, two seeds each,
and for every model compares

- the checker's eps* at the test length T (``simcheck.checker.check`` with eps=0.1,
  delta=0.05 and M long inputs), and
- the measured long error |f(x) - g(x)| at T on a fresh, larger sample (512 inputs drawn
  with a seed of their own, independent of the checker's M inputs): its mean and its 95th
  percentile.

It reports the Spearman rank correlation of eps* with the mean long error, confusion tables
of the verdict (eps* <= eps) against measured generalization (95th percentile of the long
error <= eps, the measurement that matches delta=0.05) at eps in {0.05, 0.1}, and the
models where the two disagree, each with the numbers that explain it. Finished run
directories under ``--out`` are reused, so a rerun only redoes the checks.

    python examples/simulation_sweep.py [--out runs/simulation_sweep] [--steps 3000]
        [--seeds 0,1] [--test-len 1024] [--samples 100] [--eval-samples 512]
        [--results examples/results] [--quick]

Writes ``simulation_sweep.csv``, ``simulation_sweep.md`` and ``simulation_sweep.png`` into
``examples/results/`` (``--quick``: into the run directory ``--out``, with 300 steps, M=20
and 128 inputs for the long error). Training the 18 models takes about 7 minutes on 2 CPU
cores with OMP_NUM_THREADS=1 (the four 2-layer k-gram models about half of it); the checks
at T=1024 about 2 minutes more; a rerun that reuses the trained models only redoes them.
"""

from __future__ import annotations

import argparse
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

import simcheck
from simcheck.checker import check
from simcheck.errors import SimcheckError
from simcheck.models import last_outputs
from simcheck.plotting import save_figure
from simcheck.runs import library_versions, source_revision, write_text
from simcheck.simstats import simulation_error

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
    return run.task.metric(output, batch.targets).numpy()


def measure(model: Model, run: simcheck.Run, args: argparse.Namespace) -> dict[str, Any]:
    """One CSV row: the checker's numbers and the measured long error of ``run``."""
    report = check(
        run, test_lengths=[args.test_len], eps=EPS, delta=DELTA, samples=args.samples, seed=0
    )
    result = report.results[0]
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
    for eps in EPS_LEVELS:
        row[f"simulatable@{eps}"] = result.eps_star <= eps
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
    """Spearman's rank correlation: Pearson's correlation of the average-tie ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def confusion(frame: pd.DataFrame, eps: float, measured: str) -> pd.DataFrame:
    """Counts of verdict (rows) against measured generalization (columns) at ``eps``."""
    verdict = frame[f"simulatable@{eps}"].map({True: "simulatable", False: "not simulatable"})
    label = f"{measured} long error <= {eps}"
    truth = frame[f"generalizes_{measured}@{eps}"].map({True: label, False: f"{measured} > {eps}"})
    table = pd.crosstab(verdict, truth).reindex(
        index=["simulatable", "not simulatable"], columns=[label, f"{measured} > {eps}"]
    )
    table = table.fillna(0).astype(int)
    table.index.name, table.columns.name = f"verdict (eps*<={eps})", None
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` (its index as the first column) as a GitHub markdown table, floats to 4
    significant digits, pipes in cells escaped."""

    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    header = [frame.index.name or "", *map(str, frame.columns)]
    body = [[cell(value) for value in row] for row in frame.itertuples()]
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def disagreement_reason(row: pd.Series, eps: float) -> str:
    """Why verdict and measurement differ for ``row`` at ``eps``, from its numbers."""
    eps_star, floor, q95 = row["eps_star"], row["task_floor"], row["long_error_q95"]
    if row[f"simulatable@{eps}"]:
        bound = 2 * eps_star + row["short_error_q95"]
        return (
            f"simulatable (eps*={eps_star:.3f}) yet q95 long error {q95:.3f} > eps: the chain "
            f"only bounds |f-g| by task gap + short error + model gap, here up to 2 eps* + "
            f"q95 short error = {bound:.3f}, so a certified model may still exceed eps"
        )
    if floor > eps:
        return (
            f"generalizes (q95 {q95:.3f}) but the task's own floor at N={row['N']} is "
            f"{floor:.3f} > eps: for more than delta of the inputs none of the checker's "
            f"witnesses (length <= N) matches the task within eps, so no model is certified "
            f"here (eps*={eps_star:.3f}, ratio {row['ratio']:.2f})"
        )
    if row["matched_short_error_mean"] > row["matched_model_gap_mean"]:
        culprit = (
            f"the model's error on the task-matched short witnesses (mean "
            f"{row['matched_short_error_mean']:.3f}) exceeds its model gap there "
            f"({row['matched_model_gap_mean']:.3f}): it errs on short inputs the task treats "
            "like the long ones"
        )
    else:
        culprit = (
            f"the model gap at the task-matched witnesses (mean "
            f"{row['matched_model_gap_mean']:.3f}) dominates: the model treats the long "
            "input differently from short inputs the task treats alike"
        )
    return (
        f"generalizes (q95 {q95:.3f}) but eps*={eps_star:.3f} > eps with a task floor of only "
        f"{floor:.3f}; {culprit}"
    )


def scatter(frame: pd.DataFrame, test_len: int) -> Figure:
    """eps* against the mean long error, log-log, one color per task and encoding."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    markers = {4: "v", 8: "s", 16: "o", 32: "D"}
    for index, (group, part) in enumerate(frame.groupby(["task", "pos"], sort=False)):
        for train_len, points in part.groupby("N"):
            ax.scatter(
                points["eps_star"],
                points["long_error_mean"],
                color=f"C{index}",
                marker=markers.get(int(train_len), "o"),
                s=36,
                label=f"{group[0]} / {group[1]}, N={train_len}",
            )
    values = np.concatenate([frame["eps_star"], frame["long_error_mean"]])
    values = values[values > 0]
    low, high = values.min() / 2, values.max() * 2
    ax.plot([low, high], [low, high], "k--", lw=1, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"eps* at T={test_len} (checker, delta={DELTA})")
    ax.set_ylabel(f"mean |f(x) - g(x)| at T={test_len} (fresh inputs)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
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


def markdown(frame: pd.DataFrame, args: argparse.Namespace, info: dict[str, Any]) -> str:
    """The report: table, Spearman, confusion tables, disagreements, command, versions."""
    rho = spearman(frame["eps_star"], frame["long_error_mean"])
    rho_q95 = spearman(frame["eps_star"], frame["long_error_q95"])
    columns = {
        "task": "task",
        "pos": "pos",
        "N": "N",
        "seed": "seed",
        "eps_star": "eps*",
        "task_floor": "task floor",
        "ratio": "ratio",
        "excess": "eps* - floor",
        "model_gap_mean": "model gap (mean)",
        "check_long_error_mean": f"long err (check, M={args.samples})",
        "long_error_mean": f"long err mean ({args.eval_samples})",
        "long_error_q95": f"long err q95 ({args.eval_samples})",
    }
    table = frame[list(columns)].rename(columns=columns).set_index("task")
    lines = [
        f"# Simulation criterion against measured length generalization (T={args.test_len})",
        "",
        f"{len(frame)} models; each checked with `check(run, test_lengths=[{args.test_len}], "
        f"eps={EPS}, delta={DELTA}, samples={args.samples}, seed=0)` (witnesses types, blocks, "
        f"search). The measured long error |f(x) - g(x)| is taken on {args.eval_samples} fresh "
        f"inputs of length {args.test_len} drawn with seed {EVAL_SEED}, independent of the "
        f"checker's {args.samples} inputs (whose mean is the `long err (check)` column).",
        "",
        markdown_table(table),
        "",
        f"**Spearman rank correlation** of eps* with the mean long error: **{rho:.3f}** "
        f"(with the q95 long error: {rho_q95:.3f}); ranks with average ties, n={len(frame)}.",
        "",
        floor_note(frame),
        "",
        "## Confusion tables",
        "",
        f"Verdict: simulatable when eps* <= eps (the checker's eps* is the (1 - delta) quantile "
        f"of the simulation error, delta={DELTA}). Measurement: the 95th percentile of "
        "|f(x) - g(x)| at T <= eps, the quantity that matches delta (both percentiles are "
        "the ceil(0.95 n)-th smallest value, `simcheck.simstats.simulation_error`).",
        "",
    ]
    for eps in EPS_LEVELS:
        q95 = confusion(frame, eps, "q95")
        mean = confusion(frame, eps, "mean")
        lines += [f"### eps = {eps}", "", markdown_table(q95), ""]
        if not np.array_equal(q95.to_numpy(), mean.to_numpy()):
            lines += ["With the mean long error instead of q95:", "", markdown_table(mean), ""]
        else:
            lines += ["(The table with the mean long error instead of q95 is the same.)", ""]
    lines += ["## Disagreements", ""]
    any_disagreement = False
    for eps in EPS_LEVELS:
        rows = frame[frame[f"simulatable@{eps}"] != frame[f"generalizes_q95@{eps}"]]
        for _, row in rows.iterrows():
            any_disagreement = True
            name = f"{row['task']} {row['pos']} N={row['N']} seed={row['seed']}"
            lines.append(f"- eps={eps}, {name}: {disagreement_reason(row, eps)}.")
    if not any_disagreement:
        lines.append("None: verdict and measurement agree for every model at both eps.")
    lines += [
        "",
        "The criterion is sufficient, not necessary: a model can generalize while no witness "
        "of length <= N simulates it within eps (the task floor bounds eps* from below), and a "
        "simulatable model's long error is bounded by task gap + short error + model gap, "
        "which may exceed eps itself.",
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
    parser.add_argument("--samples", type=int, default=None, help="checker inputs M")
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
        print(
            f"{model.name:<24} {'reused ' if was_reused else 'trained'}  "
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
    rho = spearman(frame["eps_star"], frame["long_error_mean"])
    print(f"\nSpearman(eps*, mean long error) = {rho:.3f} over {len(frame)} models")
    print(floor_note(frame))
    for eps in EPS_LEVELS:
        print(f"\neps={eps}:\n{confusion(frame, eps, 'q95').to_string()}")
    print(f"\n{info['seconds']:.0f} s; results in {args.results}/{STEM}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
