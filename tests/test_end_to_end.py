"""End to end: the library reproduces the contrast it exists to measure.

ModPTask(p=3) trained at N=16: a model with the limit transformer's periodic positions keeps
its accuracy at 32x the training length, one with a learned position table does not.
"""

from __future__ import annotations

import pytest

import simcheck

TRAINING = {"train_len": 16, "steps": 1000, "batch_size": 32, "progress": False}


@pytest.mark.slow
def test_periodic_positions_generalize_and_learned_ones_do_not(tmp_path):
    results = {}
    for pos in ("periodic", "learned"):
        run = simcheck.train("modp:p=3", tmp_path / pos, pos=pos, n_ctx=512, **TRAINING)
        results[pos] = simcheck.evaluate(run, [16, 512], samples=128, progress=False)
    periodic, learned = (results[p].table()["loss_mean"] for p in ("periodic", "learned"))
    baseline = results["periodic"].table()["baseline_loss"]  # the global fraction of 1s
    # both fit the training lengths far better than a position-blind predictor
    assert periodic[16] < 0.01 * baseline[16] and learned[16] < 0.1 * baseline[16]
    assert periodic[512] < 1e-3  # the periodic model keeps its accuracy at 32x N
    assert learned[512] > 10 * periodic[512]
    assert learned[512] > 0.1 * baseline[512]  # the learned one is near the blind baseline
