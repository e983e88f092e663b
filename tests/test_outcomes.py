"""The five outcomes of the check, on hand-set models whose answer is known: certified,
fails-short, not-simulatable, unexplained-pass and undecided; the sequential looks; the
class gaps (decisions and total variation); the causes the diagnosis adds; the check's own
input streams.

The majority models are one attention-only layer without positions or normalisation on
Majority(V=2): every query attends uniformly, so the head reads r, the fraction of 1s, into
a residual coordinate, and the unembedding gives class 1 the logit k (r - 1/2 - b) against 0
for class 0. With b = 0 every decision is right, with any k; k sets the confidence.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_check import HARD, MODP, hand_set_model

import simcheck
from simcheck.api.check import check
from simcheck.checking.chain import ChainTerms
from simcheck.checking.outcomes import Outcome
from simcheck.tasks import NO_CLASS, get_task

MAJORITY = "majority:V=2"
TOKEN, OUTPUT = 0, 2


def majority_model(k: float, bias: float = 0.0) -> simcheck.model.build.SimcheckTransformer:
    """The hand-set majority model (module docstring) with confidence ``k`` and threshold
    shift ``bias``."""
    model = simcheck.build_model(
        get_task(MAJORITY), pos="none", n_layers=1, n_heads=1, d_model=4, d_mlp=0,
        normalization="none",
    )  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.W_E[1, TOKEN] = 1.0
        model.blocks[0].attn.W_V[0, TOKEN, 0] = 1.0
        model.blocks[0].attn.W_O[0, 0, OUTPUT] = 1.0
        model.W_U[OUTPUT, 1] = k
        model.b_U[1] = -k * (0.5 + bias)
    return model


def majority_check(model, **settings):
    options = {"task": MAJORITY, "train_len": 16, "test_lengths": [128], "samples": 50}
    return check(model, **{**options, **settings})


# ------------------------------------------------------------------ the hand-set models


def test_the_majority_model_decides_every_input_right():
    task = get_task(MAJORITY)
    tokens = torch.as_tensor(task.sample(200, 37, np.random.default_rng(0)))
    logits = majority_model(k=2.0)(tokens)[:, -1]
    targets = task.oracle(tokens)
    valid = targets != NO_CLASS
    assert torch.equal(logits.argmax(-1)[valid], targets[valid])
    assert torch.softmax(logits, -1).max(-1).values.max() < 0.75  # right but not confident


# ------------------------------------------------------------------ each outcome


def test_certified_right_but_unconfident_classifier():
    """Decisions are judged, not confidence: every decision is right, so it is certified."""
    report = majority_check(majority_model(k=2.0))
    result = report.result(128)
    assert report.outcome == {128: "certified"}
    assert result.chain_interval.failures == 0 and result.chain_interval.high <= 0.05
    assert result.chain_bound == 0.0 and result.long_error.max() == 0.0
    assert np.isnan(result.ratio)  # the floor is 0: some witness always has x's class
    assert result.diagnosis is None


def test_total_variation_judges_the_same_classifier_by_its_confidence():
    report = majority_check(majority_model(k=2.0), class_metric="tv")
    assert report.outcome == {128: "fails-short"}
    assert report.config["class_metric"] == "tv"
    assert report.result(128).short_error.min() > 0.1


def test_fails_short_untrained_model_is_never_certified():
    """An untrained model barely depends on its input: it would be trivially simulatable,
    but it errs at training length."""
    task = get_task(MODP)
    report = check(
        simcheck.build_model(task, pos="none"), task=task, train_len=32, test_lengths=[512],
        samples=50, witnesses=["types", "blocks"],
    )  # fmt: skip
    result = report.result(512)
    assert report.outcome == {512: "fails-short"}
    assert result.diagnosis.causes[0].kind == "fails_at_training_length"
    assert result.diagnosis.lines()[0].startswith("cause: fails at training length")
    assert report.config["reference"]["short"]["error_above_eps"]["low"] > 0.05


@pytest.mark.parametrize("task_spec", [MODP, MAJORITY])
def test_a_constant_output_is_named(task_spec):
    task = get_task(task_spec)
    model = simcheck.build_model(
        task, pos="none", n_layers=1, d_model=4, d_mlp=0, normalization="none"
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    report = check(model, task=task, train_len=16, test_lengths=[64], samples=30,
                   witnesses=["types"])  # fmt: skip
    causes = [c.kind for c in report.result(64).diagnosis.causes]
    assert report.outcome[64] == "fails-short"
    assert causes[:2] == ["fails_at_training_length", "constant_output"]


def test_not_simulatable_near_the_decision_boundary_names_witness_resolution():
    """Threshold shifted by b = 0.065: at N = 8 no input has 1/2 < r < 0.565 (the closest is
    4/7), so every short input is decided right, while 6.5% of long ones fall in between
    and are decided wrong: an extrapolation failure that only inputs finer than 1/N show."""
    report = check(
        majority_model(k=50.0, bias=0.065), task=MAJORITY, train_len=8, test_lengths=[256],
        delta=0.02, samples=100, witnesses=["types", "blocks"],
    )  # fmt: skip
    result = report.result(256)
    assert report.outcome == {256: "not-simulatable"}
    assert report.config["reference"]["short"]["error_above_eps"]["failures"] == 0
    assert result.chain_interval.low > 0.02 and result.long_interval.low > 0.02
    diagnosis = result.diagnosis
    assert diagnosis.dominant_term == "model_gap"
    causes = {c.kind: c.message for c in diagnosis.causes}
    assert "witness_resolution" in causes
    assert "lead of the top token" in causes["witness_resolution"]
    assert "smallest 0.143" in causes["witness_resolution"]  # 4 against 3 at length 7


def test_unexplained_pass_exact_model_below_the_task_floor():
    """The exact ModPTask model errs nowhere, but at eps = 0.05 the witnesses of length <=
    32 cannot match the task to eps / 2, and a model that follows the task repeats the task
    gap in the model gap: the chain cannot explain the pass."""
    report = check(
        hand_set_model(), task=MODP, train_len=32, test_lengths=[256], eps=0.05,
        attention=HARD, witnesses=["types"], samples=50,
    )  # fmt: skip
    result = report.result(256)
    assert report.outcome == {256: "unexplained-pass"}
    assert result.long_error.max() < 1e-6 and result.long_interval.failures == 0
    assert result.chain_interval.low > 0.05
    causes = {c.kind: c.message for c in result.diagnosis.causes}
    assert "witness_resolution" in causes and "task floor" in causes["witness_resolution"]
    assert result.diagnosis.note.startswith("the measured long error is within eps")


def test_undecided_when_the_budget_cannot_separate_the_fraction_from_delta():
    """10 inputs, no failure: the fraction could still be 0.3 at 95% confidence."""
    report = check(
        hand_set_model(), task=MODP, train_len=32, test_lengths=[256], attention=HARD,
        witnesses=["types"], samples=10, max_samples=10,
    )  # fmt: skip
    result = report.result(256)
    assert report.outcome == {256: "undecided"}
    assert result.samples == 10 and result.chain_interval.high > 0.05
    assert result.diagnosis.note.startswith("undecided after 10 long inputs")


def test_sequential_looks_draw_more_inputs_until_decided():
    """The exact ModPTask model at eps = 0.15: its chain (twice a task gap of at most 0.06)
    covers every input, and no failure in M inputs is certified once M >= 107 at the
    per-look level 1 - 0.05 / 6: the check stops at the fourth look, M = 160."""
    options = {
        "task": MODP, "train_len": 32, "test_lengths": [256], "attention": HARD,
        "witnesses": ["types"], "eps": 0.15,
    }  # fmt: skip
    report = check(hand_set_model(), samples=20, max_samples=640, **options)
    result = report.result(256)
    assert report.config["looks"] == [20, 40, 80, 160, 320, 640]
    assert report.config["look_level"] == pytest.approx(1 - 0.05 / 6)
    assert report.outcome == {256: "certified"}
    assert result.chain_interval.failures == 0
    assert result.samples == 160 and result.looks == 4
    defaults = check(hand_set_model(), **options).result(256)  # looks 100, 200, 400, 800
    assert defaults.outcome == "certified" and defaults.samples == 100  # 1 - 0.00625^0.01


def test_the_outcomes_are_the_five_documented_ones():
    names = {"certified", "fails-short", "not-simulatable", "unexplained-pass", "undecided"}
    assert set(Outcome) == names


# ------------------------------------------------------------------ class gaps


def test_class_gaps_compare_decisions():
    terms = ChainTerms.for_task(get_task(MAJORITY))
    f_x = torch.tensor([1, 1, 0, 1])
    f_z = torch.tensor([1, 0, 0, NO_CLASS])
    g_x = torch.tensor([[0.4, 0.6], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    g_z = torch.tensor([[0.45, 0.55], [0.1, 0.9], [0.3, 0.7], [0.5, 0.5]])
    np.testing.assert_array_equal(terms.task_gap(f_x, f_z), [0, 1, 0, 1])
    np.testing.assert_array_equal(terms.model_gap(g_x, g_z), [0, 1, 1, 1])
    np.testing.assert_array_equal(terms.error(f_z, g_z), [0, 1, 1, 1])  # no class: an error
    np.testing.assert_array_equal(terms.error(f_x, g_x), [0, 1, 0, 0])
    np.testing.assert_allclose(terms.surrogate(g_x, g_z), [0.05, 0.8, 0.3, 0.3], atol=1e-6)


def test_class_gaps_in_total_variation():
    terms = ChainTerms.for_task(get_task(MAJORITY), "tv")
    f = torch.tensor([1, 0, NO_CLASS])
    g = torch.tensor([[0.4, 0.6], [0.9, 0.1], [0.5, 0.5]])
    np.testing.assert_allclose(terms.error(f, g), [0.4, 0.1, 1.0], atol=1e-6)
    np.testing.assert_allclose(terms.model_gap(g[:2], g[1:]), [0.5, 0.4], atol=1e-6)
    assert not terms.surrogate(g, g).any()


def test_scalar_gaps_are_the_tasks_distance():
    terms = ChainTerms.for_task(get_task(MODP))
    a, b = torch.tensor([0.1, 0.5]), torch.tensor([0.3, 0.5])
    np.testing.assert_allclose(terms.task_gap(a, b), [0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(terms.model_gap(a, b), [0.2, 0.0], atol=1e-6)


def test_long_inputs_without_a_class_are_left_out():
    """Even lengths have ties; the check draws until it has M inputs with a class."""
    report = majority_check(majority_model(k=2.0), test_lengths=[64], samples=40)
    result = report.result(64)
    targets = get_task(MAJORITY).oracle(torch.as_tensor(np.stack([w.x for w in result.worst])))
    assert result.samples >= 40 and (targets != NO_CLASS).all()


# ------------------------------------------------------------------ streams and tables


def test_check_and_evaluate_draw_different_inputs(tmp_path):
    run = simcheck.train(
        MAJORITY, tmp_path / "run", pos="none", train_len=16, steps=1, d_model=16, d_mlp=32,
        batch_size=8, progress=False,
    )  # fmt: skip
    report = check(run, test_lengths=[64], samples=100, max_samples=100, witnesses=["types"])
    checked = {w.x.tobytes() for w in report.result(64).worst}
    rng = np.random.default_rng([0, 64])  # evaluate(seed=0)'s stream at length 64
    evaluated = run.task.batch(200, 64, rng).tokens.numpy()
    assert not checked & {row.tobytes() for row in evaluated}


def test_ratio_with_a_zero_floor_prints_as_a_dash():
    report = majority_check(majority_model(k=2.0))
    row = next(line for line in report.summary().splitlines() if line.startswith("128 "))
    assert " - " in row and "inf" not in report.summary()
    assert report.certificate()["results"][0]["ratio_to_floor"] is None


# ------------------------------------------------------------------ diagnosis from evidence


def _evidence(stats, attention, attention_at_n, **changes):
    """Evidence of one uncovered input at T = 256 from N = 16, with the given probe
    statistics and attention summaries."""
    from simcheck.checking.confidence import clopper_pearson
    from simcheck.checking.diagnosis import Evidence, ShortBehaviour

    interval = clopper_pearson(1, 1, 0.05)
    fields = {
        "length": 256, "train_len": 16, "eps": 0.1, "delta": 0.05,
        "outcome": "not-simulatable", "chain": interval, "long": interval,
        "uncovered": np.array([True]),
        "matched": {"task_gap": np.zeros(1), "short_error": np.zeros(1),
                    "model_gap": np.ones(1)},
        "floor_gap": np.zeros(1), "probes": tuple(stats), "coverage": {},
        "attention": attention, "attention_at_n": attention_at_n,
        "short": ShortBehaviour(clopper_pearson(0, 100, 0.05), 0.0, 1.0, 1.0),
        "margin": None, "learned_positions": False, "trained_positions": 16, "prefix": 0,
        "mode": "softmax", "diverge_at": 0.5,
    }  # fmt: skip
    return Evidence(**{**fields, **changes})


def test_a_diverging_attention_mass_probe_counts_as_evidence_of_dilution():
    """The default mass probe is named attn_mass_type.L0.period=3: it is matched to its
    layer as an object, not by the end of its name."""
    from simcheck.checking.diagnosis import ProbeStat, diagnose
    from simcheck.probes import AttentionMass

    mass = AttentionMass(0, "type", period=3)
    assert mass.name == "attn_mass_type.L0.period=3"
    stats = [ProbeStat(mass, head=0, median=2.0, mean=2.0, max=3.0)]
    at_n = {0: {"entropy": [1.0], "top": [0.6]}}
    diluted = {0: {"entropy": [4.5], "top": [0.05]}}
    diagnosis = diagnose(_evidence(stats, diluted, at_n))
    assert [c.kind for c in diagnosis.causes] == ["attention_dilution"]
    assert diagnosis.first_divergence == {"probe": mass.name, "head": 0, "median": 2.0}
    calm = [ProbeStat(mass, head=0, median=0.1, mean=0.1, max=0.2)]
    assert diagnose(_evidence(calm, diluted, at_n)).causes == []


def test_mechanisms_are_named_only_where_some_input_is_uncovered():
    """An undecided length with every input covered has nothing for a mechanism to explain,
    even with a learned-position model whose embedding-level state differs."""
    from simcheck.checking.diagnosis import EMBEDDING_STATE, ProbeStat, diagnose

    stats = [ProbeStat(EMBEDDING_STATE, None, 0.9, 0.9, 1.5)]
    failing = _evidence(stats, {}, {}, learned_positions=True, outcome="undecided")
    assert [c.kind for c in diagnose(failing).causes] == ["positions_beyond_training"]
    covered = _evidence(
        stats, {}, {}, learned_positions=True, outcome="undecided", uncovered=np.array([False])
    )
    assert diagnose(covered).causes == []


def test_no_recognised_cause_points_at_the_largest_discrepancy():
    from simcheck.checking.diagnosis import ProbeStat, diagnose
    from simcheck.probes import HeadOutput, Residual

    stats = [
        ProbeStat(Residual(0, "pre"), None, 0.1, 0.1, 0.1),
        ProbeStat(HeadOutput(0), 0, 0.3, 0.3, 0.4),
    ]
    diagnosis = diagnose(_evidence(stats, {}, {}))
    assert diagnosis.causes == [] and diagnosis.first_divergence is None
    assert diagnosis.largest_divergence["probe"] == "head_out.L0"
    assert (
        "no recognised cause; the largest discrepancy is in head_out.L0 head 0"
        in (diagnosis.lines()[-1])
    )


def test_certified_lengths_get_no_diagnosis():
    from simcheck.checking.diagnosis import diagnose

    assert diagnose(_evidence([], {}, {}, outcome="certified")) is None
