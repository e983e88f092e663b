"""Figure 3's data: the last-position attention of layer 0 of the trained ModPTask(p=5)
models with the largest N, and how close it is to hardmax on the residue class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import simcheck
from simcheck.probes import AttentionRow

ATTENTION_LENGTH = 200
ATTENTION_SAMPLES = 64
ATTENTION_SEED = 7
CLASS_MASS_MIN = 0.9
OFF_CLASS_MAX = 0.01
UNIFORM_RANGE = (0.5, 2.0)
"""Figure 3's thresholds: near-hardmax means at least CLASS_MASS_MIN of the mass on the class,
no off-class key above OFF_CLASS_MAX, and the 5th-95th percentiles of the in-class weights,
relative to 1/|class|, inside UNIFORM_RANGE."""


def attention_rows(run: simcheck.Run, length: int, samples: int) -> tuple[torch.Tensor, Any]:
    """Last-position attention of layer 0 on ``samples`` inputs: [batch, head, key] (on the
    CPU), and the inputs' tokens."""
    rng = np.random.default_rng([ATTENTION_SEED, length])
    batch = run.task.batch(samples, length, rng)
    rec = simcheck.record(run.model, batch.tokens, probes=[AttentionRow(layer=0)], positions=(-1,))
    return rec[AttentionRow(layer=0).name][:, 0].detach().cpu(), batch.tokens


def residue_class(task: Any, length: int) -> np.ndarray:
    """Mask of the positions t (0-based) with t = k (mod p)."""
    return np.arange(length) % task.p == task.k


def attention_stats(
    weights: torch.Tensor, tokens: torch.Tensor, in_class: np.ndarray
) -> dict[str, float]:
    """Class mass, in-class weights relative to uniform over the class (all keys, and those
    holding a 0 or a 1), off-class weights."""
    w = weights.detach().cpu().double().numpy()
    on, off = w[:, in_class], w[:, ~in_class]
    relative = on * in_class.sum()
    key_tokens = tokens.detach().cpu().numpy()[:, in_class]
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


def near_hardmax(stats: dict[str, float]) -> dict[str, bool]:
    """Figure 3's three checks on one head's `attention_stats`: the class holds the mass,
    no off-class key stands out, the in-class weights are near uniform."""
    lo, hi = UNIFORM_RANGE
    return {
        "mass": stats["class_mass_mean"] >= CLASS_MASS_MIN,
        "off": stats["off_class_max"] <= OFF_CLASS_MAX,
        "uniform": lo <= stats["relative_p5"] and stats["relative_p95"] <= hi,
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
