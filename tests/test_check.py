"""The simulation check: hand-set models whose simulatability is known, the error
decomposition, eps*, certificates, witness methods inside `check`, bad input and the CLI.

The hand-set models are one attention-only layer on ModPTask(p=3) with residual coordinates
``TOKEN`` (1 for token 1), ``CLASS`` (1 at positions of residue 0) and ``OUTPUT`` (what the
unembedding reads). A constant query gives keys of residue 0 a logit ``c`` above the others,
so in ``hardmax:8`` mode attention is exactly uniform over residue 0 once n > 2^(8/c), and a
value copying ``TOKEN`` into ``OUTPUT`` makes the output the task's oracle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from handmade import CLASS, hand_set_model, jumping_model

import simcheck
from simcheck import LengthError, SimcheckError, build_model, get_task, record
from simcheck.api.check import check
from simcheck.checking.config import CheckConfig
from simcheck.checking.statistics import simulation_error
from simcheck.cli import main
from simcheck.probes import LogitMargin, Output
from simcheck.report.check_report import (
    CERTIFICATE_FILE,
    CERTIFICATE_VERSION,
    FIGURES,
    HTML_FILE,
    SUMMARY_FILE,
)
from simcheck.storage.runs import save_weights

MODP = "modp:p=3"
HARD = "hardmax:8"
SMALL = {"samples": 30, "reference_samples": 64}


def modp_sample(count: int, length: int, seed: int = 0) -> torch.Tensor:
    """``count`` ModPTask(p=3) inputs of ``length`` tokens, [count, length]."""
    return torch.as_tensor(get_task(MODP).sample(count, length, np.random.default_rng(seed)))


def hard_check(model):
    """The finite-precision check of ``model`` at T=256 from N=32 with types witnesses."""
    return check(
        model,
        task=MODP,
        train_len=32,
        test_lengths=[256],
        attention=HARD,
        witnesses=["types"],
        **SMALL,
    )


@pytest.fixture(scope="module")
def exact_report():
    """The check of the exact hand-set model."""
    return hard_check(hand_set_model())


@pytest.fixture(scope="module")
def jumping_report():
    """The check of the jumping model."""
    return hard_check(jumping_model())


@pytest.fixture(scope="module")
def random_modp():
    """An untrained periodic ModPTask model (softmax attention, an MLP, LayerNorm)."""
    return build_model(get_task(MODP), pos="periodic", d_model=16, d_mlp=32, seed=1)


@pytest.fixture(scope="module")
def random_report(random_modp):
    """The check of the untrained model at T=64 from N=16 with types and blocks witnesses."""
    return check(
        random_modp,
        task=MODP,
        train_len=16,
        test_lengths=[64],
        witnesses=["types", "blocks"],
        blocks_candidates=4,
        **SMALL,
    )


# ------------------------------------------------------------------ 1. known simulatability


@pytest.mark.parametrize("length", [3, 32, 256])
def test_hand_set_model_computes_the_oracle_in_hardmax_mode(length):
    tokens = modp_sample(16, length)
    recording = record(hand_set_model(), tokens, [Output()], attention=HARD)
    oracle = get_task(MODP).oracle(tokens)
    assert torch.allclose(recording["output"][:, 0, 0], oracle, atol=1e-6)


def test_exact_model_is_certified_with_eps_star_at_the_task_floor(exact_report):
    result = exact_report.result(256)
    assert exact_report.certified and exact_report.outcome == {256: "certified"}
    assert exact_report.simulatable and result.simulatable
    assert exact_report.verdict.startswith("certified at T=256 from N=32")
    assert result.long_error.max() < 1e-6
    assert result.short_error.max() < 1e-6
    np.testing.assert_allclose(result.model_gap, result.task_gap, atol=1e-6)
    assert result.eps_star == pytest.approx(result.task_floor, abs=1e-6)
    assert result.task_floor > 0  # 86 class positions cannot be matched exactly by <= 11
    assert result.ratio == pytest.approx(1.0, rel=1e-4)
    assert result.chain_bound == pytest.approx(simulation_error(result.chain, 0.05))
    assert result.chain_bound <= 2 * result.eps_star + 1e-6  # short error 0, model gap = task gap
    assert result.chain_interval.high <= 0.05 < result.chain_interval.fraction + 0.05
    assert result.samples == exact_report.config["looks"][result.looks - 1]
    assert result.diagnosis is None


def test_positions_past_training_are_not_simulatable_and_diagnosed(jumping_report):
    report = jumping_report
    result = report.result(256)
    assert not report.simulatable and not report.certified
    assert report.outcome == {256: "not-simulatable"}
    assert report.verdict.startswith("T=256: not-simulatable")
    assert result.long_error.min() == pytest.approx(5.0, abs=1e-5)
    assert result.short_error.max() < 1e-6
    assert result.eps_star > 4.0
    assert result.long_interval.failures == result.samples
    diagnosis = result.diagnosis
    assert diagnosis.outcome == "not-simulatable"
    assert diagnosis.dominant_term == "model_gap"
    assert diagnosis.first_divergence["probe"] == "resid_pre.L0"
    kinds = [cause.kind for cause in diagnosis.causes]
    assert "positions_beyond_training" in kinds
    assert any("32..255" in line for line in diagnosis.lines())


# ------------------------------------------------------------------ 2. decomposition


@pytest.mark.parametrize("which", ["random", "jumping"])
def test_signed_terms_sum_to_the_long_error_and_the_triangle_holds(
    which, random_report, jumping_report
):
    result = random_report.result(64) if which == "random" else jumping_report.result(256)
    terms = result.signed_terms
    assert terms.shape == (result.samples, 3)
    np.testing.assert_allclose(np.abs(terms.sum(axis=1)), result.long_error, atol=1e-5)
    gaps = np.stack([result.task_gap, result.short_error, result.model_gap], axis=1)
    np.testing.assert_allclose(np.abs(terms), gaps, atol=1e-6)
    bound = result.task_gap + result.short_error + result.model_gap
    assert np.all(result.long_error <= bound + 1e-6)


def test_triangle_inequality_holds_in_total_variation_for_kgram():
    task = get_task("kgram")
    model = build_model(task, d_model=16, d_mlp=32, seed=0)
    report = check(
        model,
        task=task,
        train_len=16,
        test_lengths=[48],
        witnesses=["types", "blocks"],
        blocks_candidates=4,
        **SMALL,
    )
    result = report.result(48)
    assert result.signed_terms is None
    assert report.config["structure"] == {"period": 1, "window": 1}
    for name in ("long_error", "task_gap", "short_error", "model_gap"):
        values = getattr(result, name)
        assert np.all((values >= 0) & (values <= 1 + 1e-6)), name
    bound = result.task_gap + result.short_error + result.model_gap
    assert np.all(result.long_error <= bound + 1e-6)


# ------------------------------------------------------------------ 3. eps*


def test_simulation_error_is_the_needed_order_statistic():
    errors = np.random.default_rng(0).permutation(np.arange(1.0, 21.0))  # 1..20, shuffled
    assert simulation_error(errors, 0.05) == 19.0
    assert simulation_error(errors, 0.0) == 20.0
    assert simulation_error(errors, 0.5) == 10.0
    assert simulation_error(np.array([0.3]), 0.9) == 0.3
    with pytest.raises(ValueError):
        simulation_error(np.array([]), 0.05)


def test_chain_joint_and_floor_are_minima_over_the_witnesses(random_report):
    result = random_report.result(64)
    at_chain = result.task_gap + result.short_error + result.model_gap
    np.testing.assert_allclose(result.chain, at_chain, atol=1e-6)
    assert np.all(result.joint <= np.maximum(result.task_gap, result.model_gap) + 1e-7)
    assert np.all(result.joint <= result.chain + 1e-7)
    assert np.all(result.long_error <= result.chain + 1e-5)
    assert result.eps_star == simulation_error(result.joint, 0.05)
    assert set(result.by_method) == {"types", "blocks"}
    for method, eps_star in result.by_method.items():
        assert result.eps_star <= eps_star, method
    assert np.all(result.floor_gap <= result.task_gap)
    assert result.task_floor <= result.eps_star
    assert set(result.witness_methods) <= {"types", "blocks"}


# ------------------------------------------------------------------ 4. certificate


def test_certificates_are_deterministic_and_the_report_saves(tmp_path, random_modp):
    options = {
        "task": MODP,
        "train_len": 16,
        "test_lengths": [32, 64],
        "witnesses": ["types", "blocks", "search"],
        "blocks_candidates": 4,
        "search_rounds": 2,
        "search_proposals": 4,
        "samples": 20,
        "reference_samples": 64,
    }
    first = check(random_modp, seed=3, **options)
    again = check(random_modp, seed=3, **options)
    other = check(random_modp, seed=4, **options)
    assert first.to_json() == again.to_json()
    assert first.certificate()["results"] != other.certificate()["results"]

    certificate = json.loads(first.to_json())
    assert certificate["format"] == "simcheck-certificate"
    assert certificate["version"] == CERTIFICATE_VERSION
    assert len(certificate["config"]["model"]["weights_sha256"]) == 64
    assert certificate["config"]["task"]["spec"] == "modp:p=3,k=0,alpha=1.0"
    assert certificate["outcome"] == {str(t): o for t, o in first.outcome.items()}
    first_result = certificate["results"][0]
    assert first_result["outcome"] == first.outcome[32]
    m = first_result["counts"]["inputs"]
    assert m == first_result["uncovered"]["samples"] == first.result(32).samples
    assert m in certificate["config"]["looks"]
    assert sum(first_result["counts"]["best_witness_methods"].values()) == m

    assert list(first.table().index) == [32, 64]
    assert not first.probe_table().empty and not first.coverage_table().empty
    assert first.verdict in first.summary() and first.verdict in first._repr_html_()

    out = first.save(tmp_path / "report")
    for name in (CERTIFICATE_FILE, SUMMARY_FILE, HTML_FILE, *FIGURES):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / CERTIFICATE_FILE).read_text() == first.to_json()
    page = (out / HTML_FILE).read_text()
    attention = [f"attention-T{t}.png" for t in (32, 64)]
    assert all((out / name).is_file() for name in attention)
    assert page.count("data:image/png;base64") == len(FIGURES) + len(attention)
    assert 'src="http' not in page and "src='http" not in page


# ------------------------------------------------------------------ 5. witness methods


def tail_witness(x: np.ndarray, max_length: int, structure, rng) -> list[np.ndarray]:
    """A user witness: x's last tokens, as many as fit and keep n's residue mod Delta."""
    length = max_length - (max_length - len(x)) % structure.period
    return [x[-length:]]


def too_long(x: np.ndarray, max_length: int, structure, rng) -> list[np.ndarray]:
    """A broken user witness: longer than the training length."""
    return [x[: max_length + 3]]


def test_user_witness_function_is_used_and_named(random_modp):
    report = check(
        random_modp,
        task=MODP,
        train_len=16,
        test_lengths=[64],
        witnesses=["types", tail_witness],
        **SMALL,
    )
    result = report.result(64)
    assert set(result.by_method) == {"types", "tail_witness"}
    assert report.config["witnesses"] == ["types", "tail_witness"]
    assert result.eps_star <= result.by_method["tail_witness"]


def test_bad_witness_methods_are_refused(random_modp):
    options = {"task": MODP, "train_len": 16, "test_lengths": [64], **SMALL}
    with pytest.raises(SimcheckError, match="too_long"):
        check(random_modp, witnesses=["types", too_long], **options)
    with pytest.raises(SimcheckError, match="unknown witness method 'typo'"):
        check(random_modp, witnesses=["types", "typo"], **options)
    with pytest.raises(SimcheckError, match="'search' starts from a construction"):
        check(random_modp, witnesses=["search"], **options)
    with pytest.raises(SimcheckError, match="at least one witness method"):
        check(random_modp, witnesses=[], **options)


def test_worst_case_climb_only_raises_errors_with_deterministic_witnesses(random_modp):
    options = {
        "task": MODP,
        "train_len": 16,
        "test_lengths": [64],
        "witnesses": ["types"],
        "seed": 1,
        **SMALL,
    }
    sampled = check(random_modp, max_samples=SMALL["samples"], **options).result(64)
    climbed = check(random_modp, worst_case=2, **options).result(64)
    trace = climbed.worst_case_trace
    assert len(trace) == 3
    assert np.all(np.diff(trace) >= 0)
    assert trace[0] == pytest.approx(float(sampled.chain.mean()), abs=1e-6)
    assert float(climbed.chain.mean()) == pytest.approx(trace[-1], abs=1e-6)
    assert np.all(climbed.chain >= sampled.chain - 1e-7)
    assert climbed.chain_bound >= sampled.chain_bound
    assert climbed.samples == sampled.samples == SMALL["samples"]
    assert climbed.to_dict(0.05)["worst_case_trace"] == trace


def test_worst_case_climb_only_raises_errors_with_blocks_witnesses(random_modp):
    """Randomised witnesses are seeded by the input, so the climbed inputs are re-checked
    with the witnesses the climb measured them with."""
    options = {
        "task": MODP,
        "train_len": 16,
        "test_lengths": [64],
        "witnesses": ["types", "blocks"],
        "blocks_candidates": 4,
        "seed": 11,
        **SMALL,
    }
    sampled = check(random_modp, max_samples=SMALL["samples"], **options).result(64)
    climbed = check(random_modp, worst_case=2, **options).result(64)
    assert float(climbed.chain.mean()) == pytest.approx(climbed.worst_case_trace[-1], abs=1e-6)
    assert np.all(climbed.chain >= sampled.chain - 1e-7)
    assert climbed.chain_bound >= sampled.chain_bound


# ------------------------------------------------------------------ 6. bad input


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps": 0.0}, "eps must be positive"),
        ({"eps": -1.0}, "eps must be positive"),
        ({"eps": 1.0}, r"eps=1.0 is not below 1, the largest value the task's abs_err"),
        ({"eps": 1.5}, "pick eps in \\(0, 1\\)"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\)"),
        ({"delta": 0.0}, r"delta must be in \(0, 1\)"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
        ({"samples": 0}, "samples must be >= 1|1 <= samples"),
        ({"max_samples": 10}, "samples <= max_samples"),
        ({"test_lengths": [0]}, "test lengths must be positive"),
        ({"test_lengths": [8]}, r"test length\(s\) \[8\] are not beyond the training length N=16"),
        ({"test_lengths": [16]}, "not beyond the training length N=16"),
        ({"train_len": 64}, "not beyond the training length N=64"),
        ({"train_len": 1000}, "not beyond the training length N=1000"),
        ({"train_len": 0}, "train_len must be >= 1"),
        ({"train_len": -2}, "train_len must be >= 1"),
        ({"worst_case": -1}, "worst_case must be >= 0"),
        ({"attention": "argmax"}, "unknown attention mode"),
        ({"class_metric": "kl"}, "class_metric must be one of decision, tv"),
        ({"epsilon": 0.1}, r"unknown settings \['epsilon'\]"),
    ],
)
def test_vacuous_or_bad_settings_are_refused_in_one_line(options, message):
    settings = {"task": MODP, "train_len": 16, "test_lengths": [64], **SMALL, **options}
    with pytest.raises(SimcheckError, match=message) as caught:
        check(hand_set_model(), **settings)
    assert "\n" not in str(caught.value)


def test_a_run_checked_with_train_len_zero_is_refused_not_replaced(trained_run):
    with pytest.raises(SimcheckError, match="train_len must be >= 1"):
        check(trained_run, train_len=0, test_lengths=[64], **SMALL)


def test_settings_come_from_one_check_config(trained_run):
    """Keywords and a CheckConfig are the same settings; defaults are CheckConfig's."""
    config = CheckConfig(test_lengths=(64,), witnesses=("types",), **SMALL)
    by_config = check(trained_run, config=config)
    by_keywords = check(trained_run, test_lengths=[64], witnesses=["types"], **SMALL)
    assert by_config.to_json() == by_keywords.to_json()
    assert by_config.config["eps"] == CheckConfig().eps
    assert by_config.config["max_samples"] == CheckConfig().max_samples
    default_length = check(trained_run, witnesses=["types"], **SMALL)
    assert default_length.config["test_lengths"] == [8 * 16]


def test_bad_subjects_raise_clear_errors(tmp_path):
    learned = hand_set_model(pos="learned", n_ctx=64)
    with pytest.raises(LengthError, match="input length 128 exceeds the 64 positions"):
        check(learned, task=MODP, train_len=16, test_lengths=[128], **SMALL)
    with pytest.raises(SimcheckError, match="needs task= and train_len="):
        check(hand_set_model(), test_lengths=[64])
    with pytest.raises(SimcheckError, match="needs task= and train_len="):
        check(hand_set_model(), task=MODP, test_lengths=[64])
    with pytest.raises(SimcheckError, match="does not fit the model"):
        check(hand_set_model(), task="kgram:S=3,k=2", train_len=16, test_lengths=[64])
    with pytest.raises(simcheck.RunDirError):
        check(tmp_path / "no-such-run", test_lengths=[64])


# ------------------------------------------------------------------ 7. command line


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """ModPTask(p=3), periodic positions, N=16, 200 steps of a tiny model."""
    out = tmp_path_factory.mktemp("check") / "run"
    simcheck.train(
        MODP,
        out,
        pos="periodic",
        train_len=16,
        steps=200,
        d_model=16,
        d_mlp=32,
        batch_size=8,
        progress=False,
    )
    return out


CLI_CHECK = ["--test-len", "64", "--samples", "20", "--reference-samples", "64", "--quiet"]


def test_cli_check_writes_the_certificate(trained_run, tmp_path, capsys):
    out = tmp_path / "ck"
    argv = ["check", str(trained_run), *CLI_CHECK, "--witnesses", "types,blocks"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    certificate = json.loads((out / CERTIFICATE_FILE).read_text())
    assert certificate["verdict"] in printed
    assert certificate["config"]["train_len"] == 16
    assert certificate["config"]["test_lengths"] == [64]
    assert certificate["config"]["witnesses"] == ["types", "blocks"]
    assert certificate["config"]["source"] == str(trained_run)
    assert (out / HTML_FILE).is_file()


def test_cli_check_strict_fails_unless_certified(trained_run, tmp_path, capsys):
    argv = ["check", str(trained_run), *CLI_CHECK, "--witnesses", "types", "--eps", "1e-6"]
    assert main([*argv, "--out", str(tmp_path / "loose")]) == 0
    assert main([*argv, "--out", str(tmp_path / "strict"), "--strict"]) == 1
    printed = capsys.readouterr().out
    certificate = json.loads((tmp_path / "strict" / CERTIFICATE_FILE).read_text())
    outcome = certificate["outcome"]["64"]
    assert outcome != "certified" and f"T=64: {outcome}" in printed
    assert "what to do:" in printed


def test_cli_check_of_an_exact_model_is_certified_and_strict_passes(tmp_path, capsys):
    """A run directory holding the exact hand-set model: certified, --strict exits 0."""
    out = tmp_path / "hand"
    simcheck.train(
        MODP, out, pos="periodic", n_layers=1, n_heads=1, d_model=4, d_mlp=0,
        normalization="none", train_len=32, steps=1, batch_size=2, progress=False,
    )  # fmt: skip
    save_weights(out / "model.safetensors", hand_set_model())
    argv = ["check", str(out), "--test-len", "256", "--attention", "hardmax:8", "--strict"]
    assert main([*argv, "--witnesses", "types", "--samples", "30", "--quiet"]) == 0
    assert "certified at T=256 from N=32" in capsys.readouterr().out


def test_cli_check_train_len_zero_is_a_one_line_error(trained_run, capsys):
    assert main(["check", str(trained_run), "--train-len", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_len must be >= 1" in err[0]


def test_cli_check_refuses_a_test_length_within_training(trained_run, capsys):
    assert main(["check", str(trained_run), "--test-len", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not beyond the training length N=16" in err


def test_cli_show_lists_the_checks_saved_in_the_run(trained_run, capsys):
    """`simcheck check RUN` saves into RUN/check/<settings> by default; `simcheck show`
    reports it, and flags it once the weights no longer match."""
    argv = ["check", str(trained_run), *CLI_CHECK, "--witnesses", "types"]
    assert main(argv) == 0
    (path,) = (trained_run / "check").glob(f"*/{CERTIFICATE_FILE}")
    certificate = json.loads(path.read_text())
    capsys.readouterr()
    assert main(["show", str(trained_run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("check"))
    assert f"T=64: {certificate['outcome']['64']}" in line and "weights changed" not in line
    certificate["config"]["model"]["weights_sha256"] = "0" * 64
    path.write_text(json.dumps(certificate))
    assert main(["show", str(trained_run)]) == 0
    assert "[weights changed since]" in capsys.readouterr().out
    certificate["version"] = 1  # written before outcomes existed
    path.write_text(json.dumps(certificate))
    assert main(["show", str(trained_run)]) == 0
    assert "certificate version 1" in capsys.readouterr().out


def test_cli_check_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simcheck: error:")


# ------------------------------------------------------------------ 8. finite precision


@pytest.mark.parametrize("margin", [8.0, 0.5])
def test_logit_margin_probe_reads_the_hand_set_gap(margin):
    recording = record(hand_set_model(margin), modp_sample(8, 64), [LogitMargin(0)], attention=HARD)
    np.testing.assert_allclose(recording["logit_margin.L0"].numpy(), margin, rtol=1e-5)


def test_small_margin_copy_model_is_simulatable_but_fails_short():
    """With margin 0.5 attention is not hard at T=64 (it needs n >= 2^16): the output is
    a_n f + (1 - a_n) h, with a_n the mass on residue 0 (0.74 at n=32, 0.8 at 64) and h the
    fraction of 1s elsewhere. It drifts smoothly with length, so witnesses near N simulate
    it (eps* <= eps), but it is already off by more than eps at lengths <= N: fails-short."""
    model = hand_set_model(margin=0.5)
    tokens = modp_sample(16, 64)
    output = record(model, tokens, [Output()], attention=HARD)["output"][:, 0, 0]
    assert (output - get_task(MODP).oracle(tokens)).abs().mean() > 0.03
    report = check(
        model,
        task=MODP,
        train_len=32,
        test_lengths=[64],
        attention=HARD,
        witnesses=["types"],
        **SMALL,
    )
    assert report.simulatable
    assert report.outcome == {64: "fails-short"}
    kinds = [cause.kind for cause in report.result(64).diagnosis.causes]
    assert kinds[0] == "fails_at_training_length"
    assert report.result(64).diagnosis.lines()[0].startswith("cause: fails at training length")


def test_small_margin_is_named_when_the_output_reads_the_soft_attention():
    """A head whose output is its attention mass on residue 0: with margin 0.5 that mass is
    about 1 / (1 + 2 n^-0.5), 0.67 at N=16 but 0.8 at T=64, so long outputs leave every
    short one."""
    report = check(
        hand_set_model(margin=0.5, value=CLASS),
        task=MODP,
        train_len=16,
        test_lengths=[64],
        attention=HARD,
        witnesses=["types"],
        **SMALL,
    )
    result = report.result(64)
    assert not report.simulatable and report.outcome[64] == "fails-short"
    assert result.attention[0]["margin"] == pytest.approx([0.5])
    assert result.diagnosis.first_divergence["probe"] == "head_out.L0"
    causes = {cause.kind: cause.message for cause in result.diagnosis.causes}
    assert "fails_at_training_length" in causes and "small_logit_margin" in causes
    assert "2^(8/gamma) = 2^16.0" in causes["small_logit_margin"]
    assert "positions_beyond_training" not in causes


def test_hard_attention_at_the_test_length_names_no_margin_cause(jumping_report):
    kinds = [cause.kind for cause in jumping_report.result(256).diagnosis.causes]
    assert "small_logit_margin" not in kinds
