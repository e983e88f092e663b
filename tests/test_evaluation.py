"""Evaluation: per-length numbers against an independent recomputation, the
plateau, files, determinism and refusals."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from float32 import forward_tolerance, path_tolerance, squared_error_tolerance

import simcheck
from simcheck import Run, build_model, evaluate, get_task

LENGTHS = [4, 8, 16, 32, 64, 128]  # N = 8: four lengths beyond it
SAMPLES = 48


# ------------------------------------------------------------------ a trained run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, modp_run_dir) -> Path:
    """A private copy of the session's trained ModPTask run (N=8), to evaluate into."""
    out = tmp_path_factory.mktemp("eval") / "run"
    shutil.copytree(modp_run_dir, out)
    return out


@pytest.fixture(scope="module")
def result(run_dir):
    assert not (run_dir / "eval.json").exists()
    return evaluate(run_dir, LENGTHS, samples=SAMPLES, seed=0, progress=False)


def recompute(run: Run, length: int, samples: int, seed: int):
    """Loss, metric and baseline loss per sample, from the documented recipe through the
    HookedTransformer's own forward (`evaluate` reads outputs through the fused forward),
    and the per-sample tolerance of the loss between those two float32 paths."""
    task = run.task
    batch = task.batch(samples, length, np.random.default_rng([seed, length]))
    with torch.no_grad():
        output = run.model(batch.tokens)[:, -1, :]
    base = task.baseline(batch.tokens)
    output_tol = forward_tolerance(run.model, length, float(output.abs().max())).atol
    error = task.metric(output, batch.targets).double().numpy()  # |g - f| for scalars
    return (
        task.loss(output, batch.targets).double().numpy(),
        task.metric(output, batch.targets).double().numpy(),
        None if base is None else task.loss(base, batch.targets).double().numpy(),
        batch,
        squared_error_tolerance(output_tol, error),
        output_tol,
    )


def test_one_row_per_length(result):
    assert [row["length"] for row in result.rows] == LENGTHS
    assert all(row["samples"] == SAMPLES for row in result.rows)
    assert result.train_len == 8
    assert result.meta["task"] == "modp:p=3,k=0,alpha=1.0"
    assert result.meta["pos"] == "periodic"
    assert result.meta["metric"] == "abs_err"


def test_plateau_is_the_mean_over_the_last_three_lengths_beyond_n(result):
    assert result.plateau_lengths == [32, 64, 128]
    loss = {row["length"]: row["loss_mean"] for row in result.rows}
    assert result.plateau == pytest.approx((loss[32] + loss[64] + loss[128]) / 3, rel=1e-12)


@pytest.mark.parametrize(
    ("lengths", "plateau_lengths"), [([4, 8, 16], [16]), ([4, 8], []), ([16, 32], [16, 32])]
)
def test_plateau_with_few_lengths_beyond_n(run_dir, lengths, plateau_lengths):
    res = evaluate(run_dir, lengths, samples=8, progress=False, save=False)
    assert res.plateau_lengths == plateau_lengths
    if plateau_lengths:
        loss = {row["length"]: row["loss_mean"] for row in res.rows}
        assert res.plateau == pytest.approx(np.mean([loss[n] for n in plateau_lengths]))
    else:
        assert res.plateau is None


def test_rows_match_an_independent_recomputation(result, run_dir):
    """The fused and the hooked forward agree to `forward_tolerance`, carried through the
    squared error (`squared_error_tolerance`) into each statistic of the per-sample loss:
    a mean moves by at most the mean tolerance, an order statistic or a standard deviation
    by at most the largest (times sqrt(n / (n - 1)) for the sample deviation)."""
    run = simcheck.load_run(run_dir)
    for row in result.rows:
        loss, metric, base, batch, loss_tol, output_tol = recompute(
            run, row["length"], SAMPLES, seed=0
        )
        # the baseline of ModPTask is the global fraction of 1s: recompute it by hand too
        fraction = batch.tokens.double().mean(1).numpy()
        hand_base = (fraction - batch.targets.double().numpy()) ** 2
        std = loss.std(ddof=1)
        widest = loss_tol.max() * math.sqrt(SAMPLES / (SAMPLES - 1))
        assert row["loss_mean"] == pytest.approx(loss.mean(), abs=loss_tol.mean())
        assert row["loss_std"] == pytest.approx(std, abs=widest)
        assert row["loss_sem"] == pytest.approx(std / math.sqrt(SAMPLES), abs=widest)
        assert row["loss_median"] == pytest.approx(
            np.sort(loss)[(SAMPLES - 1) // 2], abs=loss_tol.max()
        )
        assert row["loss_p95"] == pytest.approx(np.quantile(loss, 0.95), abs=loss_tol.max())
        assert row["metric_mean"] == pytest.approx(metric.mean(), abs=output_tol)
        # the baseline involves no model: float32 sums of the length's tokens against float64
        base_tol = path_tolerance(row["length"], depth=2)
        assert row["baseline_loss"] == pytest.approx(base.mean(), abs=base_tol)
        assert row["baseline_loss"] == pytest.approx(hand_base.mean(), abs=base_tol)


def test_distribution_task_recomputation(tmp_path):
    task = get_task("kgram:S=3,k=2")
    model = build_model(task, d_model=16, d_mlp=16, seed=2)
    run = Run(path=tmp_path, task=task, model=model, spec={"training": {"train_len": 8}})
    res = evaluate(run, [2, 8, 24], samples=32, seed=5, progress=False, save=False)
    assert res.meta["metric"] == "tv"
    for row in res.rows:
        loss, metric, base, *_ = recompute(run, row["length"], 32, seed=5)
        # KL and total variation move by at most twice the logit tolerance (log-softmax is
        # 1-Lipschitz in each logit under the max norm; total variation at most as much)
        tol = 2 * forward_tolerance(model, row["length"], scale=10.0).atol
        assert row["loss_mean"] == pytest.approx(loss.mean(), abs=tol)
        assert row["metric_mean"] == pytest.approx(metric.mean(), abs=tol)
        assert row["baseline_loss"] == pytest.approx(base.mean(), abs=tol)
        assert 0 <= row["metric_mean"] <= 1
    assert not list(tmp_path.iterdir())  # save=False writes nothing


def test_evaluation_files(result, run_dir):
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result.rows))
    assert saved["plateau"] == pytest.approx(result.plateau)
    assert saved["plateau_lengths"] == [32, 64, 128]
    assert saved["train_len"] == 8
    assert saved["meta"]["samples"] == SAMPLES
    assert saved["meta"]["seed"] == 0
    assert len(saved["meta"]["weights_sha256"]) == 64
    table = pd.read_csv(run_dir / "eval.csv", index_col="length")
    assert list(table.index) == LENGTHS
    np.testing.assert_allclose(table["loss_mean"], [r["loss_mean"] for r in result.rows])
    assert (run_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_numbers(run_dir, result):
    again = evaluate(run_dir, LENGTHS, samples=SAMPLES, seed=0, progress=False, save=False)
    assert again.rows == result.rows
    assert again.plateau == result.plateau
    assert again.meta["weights_sha256"] == result.meta["weights_sha256"]
    other = evaluate(run_dir, LENGTHS, samples=SAMPLES, seed=1, progress=False, save=False)
    assert [r["loss_mean"] for r in other.rows] != [r["loss_mean"] for r in result.rows]


def test_adding_a_length_leaves_the_others_unchanged(run_dir, result):
    fewer = evaluate(run_dir, "16,64", samples=SAMPLES, seed=0, progress=False, save=False)
    by_length = {row["length"]: row for row in result.rows}
    assert fewer.rows == [by_length[16], by_length[64]]


def test_chunked_forward_passes_give_the_same_numbers(run_dir, result):
    chunked = evaluate(run_dir, LENGTHS, samples=SAMPLES, batch_size=5, progress=False, save=False)
    model = simcheck.load_run(run_dir).model
    for a, b in zip(chunked.rows, result.rows, strict=True):
        # batches of another size may take other kernels: the loss of outputs within the
        # forward tolerance (outputs and errors of size <= 1 for ModPTask)
        tol = squared_error_tolerance(forward_tolerance(model, a["length"]).atol, 1.0)
        assert a["loss_mean"] == pytest.approx(b["loss_mean"], abs=tol)


def test_table_is_a_dataframe_indexed_by_length(result):
    table = result.table()
    assert isinstance(table, pd.DataFrame)
    assert table.index.name == "length"
    assert list(table.index) == LENGTHS
    assert table.loc[16, "loss_mean"] == result.rows[2]["loss_mean"]
    assert {"loss_mean", "loss_sem", "loss_median", "loss_p95", "metric_mean"} <= set(table)


def test_format_table_marks_lengths_beyond_n(result):
    text = result.format_table()
    lengths = [re.match(r"\s*(\d+)(\*?) ", line) for line in text.splitlines()]
    marked = {int(m[1]): m[2] == "*" for m in lengths if m}
    assert marked == {n: n > 8 for n in LENGTHS}
    assert "plateau" in text
    assert str(result) == text


# ------------------------------------------------------------------ refusals


@pytest.fixture(scope="module")
def learned_run_dir(tmp_path_factory, tiny) -> Path:
    out = tmp_path_factory.mktemp("learned") / "run"
    simcheck.train("modp:p=3", out, pos="learned", n_ctx=16, train_len=8, steps=5, **tiny)
    return out


def test_lengths_beyond_a_learned_table_are_refused_before_writing(learned_run_dir):
    before = sorted(p.name for p in learned_run_dir.iterdir())
    with pytest.raises(simcheck.LengthError, match="16"):
        evaluate(learned_run_dir, [8, 16, 32], samples=4, progress=False)
    assert sorted(p.name for p in learned_run_dir.iterdir()) == before
    assert not (learned_run_dir / "eval.json").exists()
    ok = evaluate(learned_run_dir, [8, 16], samples=4, progress=False, save=False)
    assert [row["length"] for row in ok.rows] == [8, 16]


@pytest.mark.parametrize(
    "kwargs",
    [{"lengths": []}, {"lengths": [0, 8]}, {"lengths": [8, -1]}, {"lengths": "x"},
     {"samples": 0}, {"samples": 2.5}, {"seed": -1}, {"seed": True}, {"batch_size": 0}],
)  # fmt: skip
def test_bad_evaluation_arguments(run_dir, kwargs):
    with pytest.raises(simcheck.SimcheckError) as info:
        evaluate(run_dir, **{"lengths": [8], "samples": 4, **kwargs}, progress=False, save=False)
    assert "\n" not in str(info.value)


def test_an_evaluation_directory_that_is_a_file_is_refused_before_the_work(run_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker, blocker / "eval"):
        with pytest.raises(simcheck.SimcheckError, match="is a file"):
            evaluate(run_dir, [8], samples=4, progress=False, out=out)


def test_evaluate_a_missing_run(tmp_path):
    with pytest.raises(simcheck.RunDirError):
        evaluate(tmp_path / "nothing", [8], progress=False)
