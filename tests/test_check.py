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
import math

import numpy as np
import pytest
import torch
from handmade import blank_modp_head

import simcheck
from simcheck import LengthError, SimcheckError, build_model, get_task, record
from simcheck.checker import check
from simcheck.cli import main
from simcheck.models import SimcheckTransformer
from simcheck.probes import LogitMargin, Output
from simcheck.report import CERTIFICATE_FILE, FIGURES, HTML_FILE, SUMMARY_FILE
from simcheck.simstats import simulation_error

TOKEN, CLASS, OUTPUT = 0, 1, 2
MODP = "modp:p=3"
HARD = "hardmax:8"
SMALL = {"samples": 30, "reference_samples": 64}


def hand_set_model(
    margin: float = 8.0,
    pos: str = "periodic",
    n_ctx: int = 512,
    value: int = TOKEN,
) -> SimcheckTransformer:
    """The hand-set model (module docstring) with logit gap ``margin``; its head copies the
    residual coordinate ``value`` (TOKEN: the task's answer; CLASS: the attention mass on
    residue 0) into OUTPUT. With ``pos="learned"`` every row of the n_ctx-row table marks
    its residue."""
    model = blank_modp_head(pos, **({"n_ctx": n_ctx} if pos == "learned" else {}))
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.W_E[1, TOKEN] = 1.0
        rows = torch.arange(model.W_pos.shape[0])
        model.W_pos[:, CLASS] = (rows % 3 == 0).float()
        attn.W_K[0, CLASS, 0] = 1.0
        attn.b_Q[0, 0] = margin * math.sqrt(attn.cfg.d_head)  # scores are q.k / sqrt(d_head)
        attn.W_V[0, value, 0] = 1.0
        attn.W_O[0, 0, OUTPUT] = 1.0
        model.W_U[OUTPUT, 0] = 1.0
    return model


def jumping_model(train_len: int = 32, jump: float = 5.0) -> SimcheckTransformer:
    """The hand-set model with learned positions whose rows >= ``train_len`` add ``jump`` to
    the output: exact on short inputs, off by ``jump`` on long ones."""
    model = hand_set_model(pos="learned", n_ctx=512)
    with torch.no_grad():
        model.W_pos[train_len:, OUTPUT] = jump
    return model


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


def test_exact_model_is_simulatable_with_eps_star_at_the_task_floor(exact_report):
    result = exact_report.result(256)
    assert exact_report.simulatable and result.simulatable
    assert exact_report.verdict.startswith("simulatable at T=256 from N=32")
    assert result.long_error.max() < 1e-6
    assert result.short_error.max() < 1e-6
    np.testing.assert_allclose(result.model_gap, result.task_gap, atol=1e-6)
    assert result.eps_star == pytest.approx(result.task_floor, abs=1e-6)
    assert result.task_floor > 0  # 86 class positions cannot be matched exactly by <= 11
    assert result.ratio == pytest.approx(1.0, rel=1e-4)
    assert result.diagnosis is None


def test_positions_past_training_are_not_simulatable_and_diagnosed(jumping_report):
    report = jumping_report
    result = report.result(256)
    assert not report.simulatable
    assert report.verdict.startswith("NOT simulatable at T=256")
    assert result.long_error.min() == pytest.approx(5.0, abs=1e-5)
    assert result.short_error.max() < 1e-6
    assert result.eps_star > 4.0
    diagnosis = result.diagnosis
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
    assert terms.shape == (SMALL["samples"], 3)
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


def test_joint_error_is_the_larger_gap_and_eps_star_beats_every_method(random_report):
    result = random_report.result(64)
    np.testing.assert_array_equal(result.joint, np.maximum(result.task_gap, result.model_gap))
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
    assert certificate["version"] == 1
    assert len(certificate["config"]["model"]["weights_sha256"]) == 64
    assert certificate["config"]["task"]["spec"] == "modp:p=3,k=0,alpha=1.0"
    counts = certificate["results"][0]["counts"]
    assert counts["inputs"] == 20 and counts["needed_within_eps"] == 19
    assert sum(counts["best_witness_methods"].values()) == 20

    assert list(first.table().index) == [32, 64]
    assert not first.probe_table().empty and not first.coverage_table().empty
    assert first.verdict in first.summary() and first.verdict in first._repr_html_()

    out = first.save(tmp_path / "report")
    for name in (CERTIFICATE_FILE, SUMMARY_FILE, HTML_FILE, *FIGURES):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / CERTIFICATE_FILE).read_text() == first.to_json()
    page = (out / HTML_FILE).read_text()
    assert page.count("data:image/png;base64") == len(FIGURES)
    assert 'src="http' not in page and "src='http" not in page


# ------------------------------------------------------------------ 5. witness methods


def tail_witness(x: np.ndarray, max_length: int, structure) -> list[np.ndarray]:
    """A user witness: x's last tokens, as many as fit and keep n's residue mod Delta."""
    length = max_length - (max_length - len(x)) % structure.period
    return [x[-length:]]


def too_long(x: np.ndarray, max_length: int, structure) -> list[np.ndarray]:
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
    sampled = check(random_modp, **options).result(64)
    climbed = check(random_modp, worst_case=2, **options).result(64)
    trace = climbed.worst_case_trace
    assert len(trace) == 3
    assert np.all(np.diff(trace) >= 0)
    assert trace[0] == pytest.approx(float(sampled.joint.mean()), abs=1e-6)
    assert float(climbed.joint.mean()) == pytest.approx(trace[-1], abs=1e-6)
    assert np.all(climbed.joint >= sampled.joint - 1e-7)
    assert climbed.eps_star >= sampled.eps_star
    assert climbed.to_dict(30, 0.05)["worst_case_trace"] == trace


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
    sampled = check(random_modp, **options).result(64)
    climbed = check(random_modp, worst_case=2, **options).result(64)
    assert float(climbed.joint.mean()) == pytest.approx(climbed.worst_case_trace[-1], abs=1e-6)
    assert np.all(climbed.joint >= sampled.joint - 1e-7)
    assert climbed.eps_star >= sampled.eps_star


# ------------------------------------------------------------------ 6. bad input


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps": 0.0}, "eps must be positive"),
        ({"eps": -1.0}, "eps must be positive"),
        ({"delta": 1.0}, r"delta must be in \[0, 1\)"),
        ({"delta": -0.1}, r"delta must be in \[0, 1\)"),
        ({"samples": 0}, "samples must be >= 1"),
        ({"test_lengths": []}, "test lengths must be positive"),
        ({"worst_case": -1}, "worst_case is a number of rounds"),
        ({"attention": "argmax"}, "unknown attention mode"),
        ({"train_len": 0}, "below the shortest input"),
    ],
)
def test_bad_settings_raise_clear_errors(options, message):
    settings = {"task": MODP, "train_len": 16, "test_lengths": [64], **SMALL, **options}
    with pytest.raises(SimcheckError, match=message):
        check(hand_set_model(), **settings)


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


def test_cli_check_strict_fails_when_not_simulatable(trained_run, tmp_path, capsys):
    argv = ["check", str(trained_run), *CLI_CHECK, "--witnesses", "types", "--eps", "1e-6"]
    assert main([*argv, "--out", str(tmp_path / "loose")]) == 0
    assert main([*argv, "--out", str(tmp_path / "strict"), "--strict"]) == 1
    assert "NOT simulatable" in capsys.readouterr().out


def test_cli_show_lists_the_checks_saved_in_the_run(trained_run, capsys):
    """`simcheck check RUN` saves into RUN/check by default; `simcheck show` reports it, and
    flags it once the weights no longer match."""
    argv = ["check", str(trained_run), *CLI_CHECK, "--witnesses", "types"]
    assert main(argv) == 0
    certificate = json.loads((trained_run / "check" / CERTIFICATE_FILE).read_text())
    capsys.readouterr()
    assert main(["show", str(trained_run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("check"))
    assert certificate["verdict"] in line and "weights changed" not in line
    certificate["config"]["model"]["weights_sha256"] = "0" * 64
    (trained_run / "check" / CERTIFICATE_FILE).write_text(json.dumps(certificate))
    assert main(["show", str(trained_run)]) == 0
    assert "[weights changed since]" in capsys.readouterr().out


def test_cli_check_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simcheck: error:")


# ------------------------------------------------------------------ 8. finite precision


@pytest.mark.parametrize("margin", [8.0, 0.5])
def test_logit_margin_probe_reads_the_hand_set_gap(margin):
    recording = record(hand_set_model(margin), modp_sample(8, 64), [LogitMargin(0)], attention=HARD)
    np.testing.assert_allclose(recording["logit_margin.L0"].numpy(), margin, rtol=1e-5)


def test_small_margin_copy_model_stays_simulatable():
    """With margin 0.5 attention is not hard at T=64 (it needs n >= 2^16): the output leaves
    the oracle, but it drifts smoothly with length, so witnesses near N still simulate it."""
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
    assert report.result(64).eps_star == pytest.approx(report.result(64).task_floor, rel=1e-3)


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
    assert not report.simulatable
    assert result.attention["L0"]["margin"] == pytest.approx([0.5])
    assert result.diagnosis.first_divergence["probe"] == "head_out.L0"
    causes = {cause.kind: cause.message for cause in result.diagnosis.causes}
    assert "small_logit_margin" in causes
    assert "2^(8/gamma) = 2^16.0" in causes["small_logit_margin"]
    assert "positions_beyond_training" not in causes


def test_hard_attention_at_the_test_length_names_no_margin_cause(jumping_report):
    kinds = [cause.kind for cause in jumping_report.result(256).diagnosis.causes]
    assert "small_logit_margin" not in kinds
