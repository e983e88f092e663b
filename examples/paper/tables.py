"""A sweep's finished rows, with the training time and trivial baseline of each run beside
them, and the running times of the sweeps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from simcheck.storage.runs import EVAL_JSON, METRICS_FILE, read_json
from simcheck.sweeps.runner import RESULTS_PARQUET, TIMING_COLUMNS, finished_row, load_sweep
from simcheck.sweeps.spec import SweepSpec


def read_table(spec: SweepSpec, sweep_dir: Path) -> tuple[pd.DataFrame, int]:
    """The finished rows of a sweep and the number of points it has in all. Reads
    ``results.parquet`` when the sweep wrote one, else the finished points' records
    (a sweep still running)."""
    if (sweep_dir / RESULTS_PARQUET).is_file():
        table = load_sweep(sweep_dir)
    else:
        rows = [finished_row(sweep_dir, p, spec) for p in spec.points] if sweep_dir.is_dir() else []
        table = pd.DataFrame([row for row in rows if row is not None])
    if len(table):
        table = table[table["status"] == "ok"].reset_index(drop=True)
        table["baseline_plateau"] = [baseline_plateau(sweep_dir / run) for run in table["run"]]
        table["trained_s"] = [training_seconds(sweep_dir / run) for run in table["run"]]
    return table, len(spec.points)


def training_seconds(run_dir: Path) -> float:
    """The training time the run logged (``seconds`` of the last line of ``metrics.jsonl``):
    the cost of training even when the sweep re-evaluated a model trained earlier."""
    lines = (run_dir / METRICS_FILE).read_text().splitlines()
    return float(json.loads(lines[-1])["seconds"]) if lines else float("nan")


def baseline_plateau(run_dir: Path) -> float:
    """The task's trivial predictor (constant 0 for SimpleTask, the global fraction of 1s for
    ModPTask, the unigram histogram for the k-gram) scored like the plateau: its mean loss
    over the run's plateau lengths, from the run's ``eval.json``."""
    result = read_json(run_dir / EVAL_JSON)
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


def timing(table: pd.DataFrame) -> dict[str, float]:
    """Sums of the timing columns and of the training times the runs logged, and how many
    points reused weights trained earlier: a train_s of at most 2 s (reopening a finished
    run) where the run logged more than 10 s of training. An ensemble member's train_s is its
    share of the ensemble's time, and its logged time the whole ensemble's; it is not a
    reuse."""
    sums = {c: float(table[c].sum()) for c in (*TIMING_COLUMNS, "trained_s")}
    reused = int(((table["train_s"] <= 2.0) & (table["trained_s"] > 10.0)).sum())
    return {"points": len(table), "reused_training": reused, **sums}
