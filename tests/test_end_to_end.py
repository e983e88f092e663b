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


@pytest.mark.slow
def test_the_check_certifies_what_generalizes_and_diagnoses_what_does_not(tmp_path):
    """ResidueMajority(p=3) trained at N=16: periodic positions are certified at T=128 and
    stay accurate there; a learned table is not-simulatable, for its untrained rows."""
    reports, accuracy = {}, {}
    for pos in ("periodic", "learned"):
        run = simcheck.train(
            "residue_majority:p=3", tmp_path / pos, pos=pos, n_ctx=256, train_len=16,
            steps=2000, progress=False,
        )  # fmt: skip
        reports[pos] = simcheck.check(run, test_lengths=[128], witnesses=["types", "blocks"])
        rows = simcheck.evaluate(run, [16, 128], samples=256, progress=False, save=False).rows
        accuracy[pos] = {row["length"]: row["accuracy"] for row in rows}
    assert accuracy["periodic"][16] > 0.97 and accuracy["learned"][16] > 0.97
    assert reports["periodic"].outcome == {128: "certified"}
    assert accuracy["periodic"][128] > 0.95
    assert reports["learned"].outcome == {128: "not-simulatable"}
    assert accuracy["learned"][128] < 0.9
    causes = [c.kind for c in reports["learned"].result(128).diagnosis.causes]
    assert "positions_beyond_training" in causes
