"""Interventions: effects and their intervals, interchange with the witness, repairs per
cause, their confirmation in the diagnosis, range checks and the forecast."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from handmade import jumping_model, sink_majority_model

import simcheck
from simcheck import check, get_task
from simcheck.checking.chain import ChainTerms
from simcheck.checking.config import CheckConfig
from simcheck.checking.diagnosis import Cause, Diagnosis
from simcheck.checking.effects import CONFIRM_SHARE, Effect, Repair, measure_effect
from simcheck.checking.forecast import crossing
from simcheck.checking.interventions import (
    Change,
    Interchange,
    Runner,
    _HookValue,
    _record_last,
    _replace_last,
    class_mass,
    dilution_repair,
    key_classes,
    longer_inputs,
    position_repairs,
    precision_repair,
    redistributed,
    residue_rows,
    shifted_rows,
)
from simcheck.errors import SimcheckError
from simcheck.model.chunked import FinitePrecision
from simcheck.report.check_report import CheckReport, PatchingFrame
from simcheck.storage.subjects import resolve

SMALL = {"samples": 40, "reference_samples": 64, "witnesses": ["types", "task"]}


# ------------------------------------------------------------------ effects


def test_effect_is_the_removed_share_of_the_total_error_with_an_interval():
    before = np.tile([1.0, 1.0, 0.0, 2.0], 10)
    after = np.tile([0.0, 1.0, 0.0, 0.0], 10)
    effect = measure_effect(before, after, np.random.default_rng(0), 0.95)
    assert effect.removed == pytest.approx(1 - 1 / 4)
    assert 0 < effect.low <= effect.removed <= effect.high < 1
    assert effect.before == pytest.approx(1.0) and effect.after == pytest.approx(0.25)
    assert effect.inputs == 40 and effect.confirms
    worse = measure_effect(before, before * 2, np.random.default_rng(0), 0.95)
    assert worse.removed == pytest.approx(-1.0) and not worse.confirms
    nothing = measure_effect(np.zeros(3), np.ones(3), np.random.default_rng(0), 0.95)
    assert math.isnan(nothing.removed) and not nothing.confirms
    assert "no long error to remove" in nothing.describe("the long error")


def test_confirmation_needs_half_the_error_and_an_interval_above_zero():
    def effect(removed: float, low: float) -> Effect:
        return Effect(10, 1.0, 1.0 - removed, removed, low, 1.0, 0.95)

    assert effect(CONFIRM_SHARE, 0.1).confirms
    assert not effect(CONFIRM_SHARE - 0.01, 0.1).confirms
    assert not effect(0.9, 0.0).confirms


def test_effect_and_repair_round_trip_through_json():
    effect = measure_effect(np.ones(5), np.zeros(5), np.random.default_rng(1), 0.9)
    repair = Repair("attention_dilution", "L0 head 1", "scaled", effect, effect, 0, 1)
    again = Repair.from_dict(json.loads(json.dumps(repair.to_dict())))
    assert again == repair and again.confirmed


# ------------------------------------------------------------------ key classes


def test_key_classes_are_types_outside_the_window_and_offsets_inside():
    tokens = torch.tensor([[1, 0, 1, 1, 0]])
    classes = key_classes(tokens, period=2, window=1, vocab=2)
    # positions 0..2 by (token, position mod 2); positions 3, 4 by offset 1, 0 from the query
    assert classes.tolist() == [[1 * 2 + 0, 0 * 2 + 1, 1 * 2 + 0, 2 * 2 + 1, 2 * 2 + 0]]


def test_redistribution_gives_each_class_the_witness_mass_and_keeps_proportions():
    weights = torch.tensor([[0.1, 0.3, 0.2, 0.4]])  # one head, four keys
    classes = torch.tensor([0, 0, 1, 2])
    mass_z = torch.tensor([[0.5, 0.5, 0.0]])
    new = redistributed(weights, classes, mass_z, 3)
    assert torch.allclose(class_mass(new, classes, 3), mass_z)
    assert new[0, 1] / new[0, 0] == pytest.approx(3.0)  # x's proportions within class 0
    lost = redistributed(weights, classes, torch.tensor([[0.25, 0.25, 0.0, 0.5]])[:, :3], 3)
    assert lost.sum() == pytest.approx(1.0)  # a class z has and x lacks: renormalised


# ------------------------------------------------------------------ position rows


def test_residue_rows_keep_the_residue_and_shifted_rows_keep_offsets():
    positions = torch.arange(12)
    rows = residue_rows(positions, trained=8, period=3)
    assert rows[:8].tolist() == list(range(8))
    assert all(r < 8 and r % 3 == p % 3 for p, r in zip(range(12), rows.tolist(), strict=True))
    shifted = shifted_rows(positions, trained=8, period=2, prefix=1)
    assert shifted[0] == 0  # the prefix keeps its row
    assert shifted[-1] < 8 and shifted[-1] % 2 == 11 % 2
    assert (shifted[-6:] - shifted[-7:-1]).tolist() == [1] * 6  # offsets kept at the end
    assert shifted[1:4].max() < 3  # far positions: the first rows of their residue


@pytest.fixture(scope="module")
def jumping_report():
    return check(
        jumping_model(train_len=32),
        task="modp:p=3",
        train_len=32,
        test_lengths=[128],
        attention="hardmax:8",
        **SMALL,
    )


def test_the_position_repair_confirms_the_positional_cause(jumping_report):
    result = jumping_report.result(128)
    cause = result.diagnosis.causes[0]
    assert cause.kind == "positions_beyond_training" and cause.confirmed
    assert cause.repair.error.removed > 0.99
    assert "residue mod Delta=3" in cause.repair.action
    assert any(line.startswith("cause, confirmed by intervention") for line in
               result.diagnosis.lines())  # fmt: skip
    repairs = jumping_report.repairs(128)
    assert set(repairs.cause) >= {"positions_beyond_training", "attention_dilution"}


def test_the_interchange_table_covers_every_site(jumping_report):
    frame = jumping_report.patching(128)
    assert isinstance(frame, PatchingFrame)
    # one layer, one head, no MLP: resid_pre, head_out, attn_types
    assert sorted(frame.kind) == ["attn_types", "head_out", "resid_pre"]
    assert ((frame.low <= frame.removed) & (frame.removed <= frame.high)).all()
    # the head output at the query carries the jump's error away only through the residual:
    # patching the residual stream before the layer (which holds the position row) fixes it
    assert frame.loc["L0 resid_pre", "removed"] > 0.99
    figure = frame.plot()
    assert figure.axes and "removed" in figure.axes[0].get_title()


def test_interventions_can_be_switched_off(jumping_report):
    quiet = check(
        jumping_model(train_len=32),
        task="modp:p=3",
        train_len=32,
        test_lengths=[128],
        attention="hardmax:8",
        interventions=False,
        **SMALL,
    )
    result = quiet.result(128)
    assert result.patching == [] and result.repairs == []
    assert quiet.patching(128).empty
    assert all(c.repair is None for c in result.diagnosis.causes)
    assert any(line.startswith("cause: position") for line in result.diagnosis.lines())
    assert quiet.outcome == jumping_report.outcome


# ------------------------------------------------------------------ runner


def test_the_runner_without_a_change_gives_the_models_own_output():
    task = get_task("modp:p=3")
    model = simcheck.build_model(task, pos="periodic", d_model=16, d_mlp=32, seed=4)
    subject = resolve(model, task, 8)
    tokens = np.asarray(task.sample(6, 20, np.random.default_rng(0)))
    raw = Runner(subject, "softmax").raw(tokens)
    with torch.no_grad():
        expected = model(torch.as_tensor(tokens))[:, -1]
    # a d_model-16 forward: float32 rounding of a few reductions of <= 32 terms
    torch.testing.assert_close(raw, expected, atol=1e-4, rtol=1e-4)


def test_a_patch_from_the_input_itself_changes_nothing():
    task = get_task("modp:p=3")
    model = simcheck.build_model(task, pos="periodic", d_model=16, d_mlp=32, seed=4)
    subject = resolve(model, task, 8)
    runner = Runner(subject, "softmax")
    tokens = np.asarray(task.sample(5, 24, np.random.default_rng(1)))
    same = Interchange.build(
        runner, ChainTerms.for_task(task), tokens, list(tokens), np.random.default_rng(0),
        0.95, 3, 0,
    )  # fmt: skip
    for row in same.sites():
        assert row.error.after == pytest.approx(row.error.before, abs=1e-5), row.site


def test_a_head_output_patch_in_an_attention_only_model_gives_the_witness_output():
    """With no MLP and no normalisation, the output at the query is the token and position
    embeddings plus the head's output: patching the head from z, with z's last token, gives
    exactly g(z) at x."""
    task = get_task("majority:V=2")
    model = simcheck.build_model(task, pos="none", d_model=8, d_mlp=0, normalization="none", seed=2)
    subject = resolve(model, task, 8)
    runner = Runner(subject, "softmax")
    x = np.array([[1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1]])
    z = np.array([[0, 0, 1]])
    z_state = _record_last(subject, list(z), [_HookValue("blocks.0.attn.hook_z")], "softmax")
    change = _replace_last("blocks.0.attn.hook_z", z_state["blocks.0.attn.hook_z"][:, 0], 0)
    torch.testing.assert_close(runner.raw(x, change), runner.raw(z), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ dilution and emulation


def needle_head(advantage: float = 3.0):
    """A NoPE, attention-only head over needle:V=4 that gives the needle (token 3) a logit
    ``advantage`` above the others; class 1's logit is the weight it puts on the needle less
    1/2: right at lengths n where e^a / (e^a + n - 1) > 1/2, diluted beyond."""
    task = get_task("needle:V=4")
    model = simcheck.build_model(
        task, pos="none", n_heads=1, d_model=4, d_mlp=0, normalization="none", seed=0
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.W_E[3, 0] = 1.0  # needle indicator
        model.W_E[:, 1] = 1.0  # constant
        attn = model.blocks[0].attn
        attn.W_Q[0, 1, 0] = advantage * math.sqrt(attn.cfg.d_head)
        attn.W_K[0, 0, 0] = 1.0
        attn.W_V[0, 0, 0] = 1.0
        attn.W_O[0, 0, 2] = 1.0
        model.W_U[2, 1] = 1.0  # class 1's logit: the weight on the needle ...
        model.b_U[1] = -0.5  # ... less a half
    return task, model


def test_emulating_longer_inputs_dilutes_a_unique_key_by_the_softmax_law():
    task, model = needle_head(3.0)
    subject = resolve(model, task, 16)
    runner = Runner(subject, "softmax")
    n = 20
    tokens = np.zeros((1, n), dtype=np.int64)
    tokens[0, 5] = 3  # one needle among n keys
    for factor in (1.0, 4.0, 32.0):
        raw = runner.raw(tokens, longer_inputs(subject, tokens, factor, 1, 0))
        weight = float(raw[0, 1]) + 0.5
        # the query (token 0) is its own key and does not repeat; the other n - 2 do
        expected = math.exp(3.0) / (math.exp(3.0) + 1 + factor * (n - 2))
        assert weight == pytest.approx(expected, rel=1e-4), factor


def test_the_dilution_repair_scales_logits_with_the_log_of_the_query_position():
    repair = dilution_repair(0, 1, trained=16)
    (edit,) = repair.change.score_edits(slice(0, 1)).values()
    scores = torch.ones(1, 2, 3, 64)
    out = edit(scores, 60)  # queries 60, 61, 62
    factors = torch.log1p(torch.tensor([60.0, 61.0, 62.0])) / math.log(16)
    torch.testing.assert_close(out[0, 1, :, 0], factors)
    torch.testing.assert_close(out[0, 0], scores[0, 0])  # the other head untouched
    assert float(edit(torch.ones(1, 2, 1, 8), 5)[0, 1, 0, 0]) == 1.0  # inside N: unchanged


def test_a_diluted_needle_model_is_diagnosed_and_its_end_forecast():
    task, model = needle_head(4.0)
    report = check(model, task=task, train_len=16, up_to=256, **SMALL)
    span = report.length_range()
    assert span.first_failure is not None
    result = report.result(span.first_failure)
    top = result.diagnosis.causes[0]
    assert top.kind == "attention_dilution" and top.confirmed, result.diagnosis.lines()
    assert span.longest_certified is not None and span.longest_certified < span.first_failure
    forecast = report.forecast
    assert forecast is not None and forecast.length is not None
    assert span.first_failure / 2 <= forecast.length <= 2 * span.first_failure
    assert "forecast (an extrapolation, not a check)" in report.summary()


def test_forecast_crossing_interpolates_in_log_factor():
    assert crossing([2, 4, 8], [3.0, 1.0, -1.0]) == pytest.approx(2**2.5)
    assert crossing([2, 4], [1.0, 0.5]) is None
    assert crossing([2, 4], [-1.0, -2.0]) == 2.0


# ------------------------------------------------------------------ precision


def test_the_precision_repair_confirms_a_small_logit_margin():
    model, adapter = sink_majority_model(vocab=2, gamma=0.5)
    report = check(
        model, task="majority:V=2", train_len=32, adapter=adapter, attention="hardmax:3",
        test_lengths=[256], **SMALL,
    )  # fmt: skip
    result = report.result(256)
    assert result.outcome == "not-simulatable"
    top = result.diagnosis.causes[0]
    assert top.kind == "small_logit_margin" and top.confirmed
    assert "2^6.0, beyond the training length N = 32" in top.message
    assert "rerun with" in top.repair.action
    dilution = [c for c in result.repairs if c.cause == "attention_dilution"]
    assert dilution and not dilution[0].confirmed


def test_more_bits_are_the_fewest_that_round_nothing_within_the_margin():
    repair = precision_repair(FinitePrecision(4), [0.5, math.inf, 2.0], length=1000)
    assert repair.change.mode == FinitePrecision(max(8, math.ceil(2.0 * math.log2(1000)) + 1))
    capped = precision_repair(FinitePrecision(40), [10.0], length=1 << 20)
    assert capped.change.mode.bits == 64


# ------------------------------------------------------------------ diagnosis


def _repair(cause: str, removed: float, layer=None, head=None, target="t") -> Repair:
    effect = Effect(20, 1.0, 1.0 - removed, removed, removed - 0.1, removed + 0.1, 0.95)
    return Repair(cause, target, "did", effect, effect, layer, head)


def test_causes_are_ordered_by_effect_and_unconfirmed_ones_say_so():
    diagnosis = Diagnosis(
        "not-simulatable", "model_gap", {"task_gap": 0.0, "short_error": 0.0, "model_gap": 1.0},
        None, None,
        causes=[
            Cause("positions_beyond_training", "positions msg"),
            Cause("attention_dilution", "dilution msg", 0, 0),
            Cause("witness_resolution", "resolution msg"),
        ],
    )  # fmt: skip
    repairs = [
        _repair("positions_beyond_training", 0.1, target="rows a"),
        _repair("positions_beyond_training", 0.3, target="rows b"),
        _repair("attention_dilution", 0.8, 0, 0),
        _repair("attention_dilution", 0.7, 1, 0),
        Repair("witness_resolution", "witnesses", "no repair exists", None, None),
    ]
    done = diagnosis.with_repairs(repairs)
    kinds = [(c.kind, c.head, c.layer) for c in done.causes]
    assert kinds[0] == ("attention_dilution", 0, 0)
    assert done.causes[0].confirmed
    assert kinds[1] == ("attention_dilution", 0, 1)  # found by intervention
    assert "found by intervention" in done.causes[1].message
    positions = next(c for c in done.causes if c.kind == "positions_beyond_training")
    assert positions.repair.target == "rows b" and not positions.confirmed
    assert done.causes[-1].kind == "witness_resolution"
    lines = done.lines()
    assert any(line.startswith("also observed, not confirmed") for line in lines)
    assert any(line.startswith("cause (no repair exists") for line in lines)
    again = Cause.from_dict(json.loads(json.dumps(done.causes[0].to_dict())))
    assert again.confirmed and again.repair == done.causes[0].repair


# ------------------------------------------------------------------ range checks


def test_up_to_checks_doublings_and_splits_the_confidence_over_them():
    config = CheckConfig(up_to=100)
    assert config.lengths_for(12) == [24, 48, 96]
    with pytest.raises(SimcheckError, match="not both"):
        CheckConfig(up_to=64, test_lengths=(64,))
    with pytest.raises(SimcheckError, match="below 2N"):
        CheckConfig(up_to=20).validate_for(1.0, "error", 12)
    with pytest.raises(SimcheckError, match="up_to must be >= 2"):
        CheckConfig(up_to=1)


def test_a_range_check_stops_at_the_first_failure_and_saves_it(tmp_path):
    task, model = needle_head(4.0)
    report = check(model, task=task, train_len=16, up_to=1024, interventions=False, **SMALL)
    span = report.length_range()
    looks = len(report.config["looks"])
    assert report.config["look_level"] == pytest.approx(1 - 0.05 / (looks * 6))
    assert span.lengths[-1] == span.first_failure < 1024
    assert report.forecast is None  # a forecast runs the model: only with interventions
    saved = CheckReport.load(report.save(tmp_path / "range", figures=False))
    assert saved.length_range() == span
    certificate = json.loads((tmp_path / "range" / "certificate.json").read_text())
    assert certificate["range"]["first_failure"] == span.first_failure


def test_a_saved_check_keeps_its_interventions(jumping_report, tmp_path):
    out = jumping_report.save(tmp_path / "saved")
    loaded = CheckReport.load(out)
    pd.testing.assert_frame_equal(
        loaded.patching(128)[["removed"]], jumping_report.patching(128)[["removed"]], atol=1e-5
    )
    assert [c.confirmed for c in loaded.result(128).diagnosis.causes] == [
        c.confirmed for c in jumping_report.result(128).diagnosis.causes
    ]
    page = (out / "report.html").read_text()
    assert "patching-T128" not in page or "Interchange interventions" in page
    assert "Repairs: an intervention on the model per suspected cause" in page
    assert (out / "patching-T128.png").is_file()


def test_position_repairs_need_a_learned_table_past_its_trained_rows():
    task = get_task("modp:p=3")
    periodic = simcheck.build_model(task, pos="periodic", d_model=8, d_mlp=8)
    assert position_repairs(resolve(periodic, task, 8), 3, 64) == []
    learned = simcheck.build_model(task, pos="learned", n_ctx=128, d_model=8, d_mlp=8)
    assert position_repairs(resolve(learned, task, 8), 3, 8) == []
    two = position_repairs(resolve(learned, task, 8), 3, 64)
    targets = [r.target for r in two]
    assert targets == ["position table (residue rows)", "position table (shifted rows)"]
    assert all(isinstance(r.change, Change) for r in two)


def test_an_empty_patching_table_still_plots():
    task, model = needle_head(4.0)
    report = check(model, task=task, train_len=16, test_lengths=[32], **SMALL)
    assert report.certified and report.patching(32).empty
    assert report.patching(32).plot()._repr_png_().startswith(b"\x89PNG")
