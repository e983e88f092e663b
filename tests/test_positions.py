"""Tasks with targets at many positions: training, evaluation per token and bin, the check
per target role, and their command-line options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from float32 import forward_tolerance

import simcheck
from simcheck.api.roles import check_positions, default_roles
from simcheck.checking.outcomes import Outcome
from simcheck.cli import main
from simcheck.evaluation.evaluation import parse_bins
from simcheck.model.fused import member_views, stacked_logits
from simcheck.sweeps.runner import ensemble_groups
from simcheck.sweeps.spec import Point
from simcheck.tasks import TargetRole, get_task
from simcheck.training import trainer as training

COPY = "repeat_copy:V=3"


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """A two-layer repeat-copy model trained for 60 steps at N=12 (read-only)."""
    out = tmp_path_factory.mktemp("runs") / "copy"
    return simcheck.train(
        COPY, out, n_layers=2, d_model=16, d_mlp=32, n_ctx=48, pos_offsets=True,
        train_len=12, steps=60, batch_size=8, progress=False,
    )  # fmt: skip


def test_fused_and_hooked_training_outputs_agree_at_every_position(tmp_path):
    """The loss of a per-position task reads every position, in both forwards."""
    task = get_task("dyck:k=2")
    spec = simcheck.ModelSpec.for_task(task, n_layers=2, d_model=16, d_mlp=32, n_ctx=32)
    outputs = {}
    for forward in ("fused", "hooked"):
        config = simcheck.TrainConfig(train_len=10, forward=forward, pos_offsets=True)
        trainer = training.Trainer(tmp_path / forward, task, spec, config)
        batch, offset = trainer.draw_batch()
        outputs[forward] = trainer.last_output(batch.tokens, offset)
        assert outputs[forward].shape == (*batch.tokens.shape, task.num_classes)
    scale = float(outputs["hooked"].abs().max())
    tol = forward_tolerance(trainer.model, batch.tokens.shape[1], scale)
    torch.testing.assert_close(outputs["fused"], outputs["hooked"], **tol.kwargs)


def test_training_sums_the_loss_over_target_positions(tmp_path, monkeypatch):
    """The first logged loss is the mean over sequences of the summed cross-entropy; a
    copy model's loss falls as it learns."""
    run = simcheck.train(
        COPY, tmp_path / "run", n_layers=2, d_model=16, d_mlp=32, n_ctx=32, train_len=10,
        steps=150, batch_size=16, lr=1e-2, log_every=1, progress=False,
    )  # fmt: skip
    losses = [json.loads(line)["loss"] for line in (run.path / "metrics.jsonl").open()]
    # at initialisation each target costs about log(3); a sequence of length L has
    # L - ceil(L / 2) targets, so the first summed loss is several times log(3)
    assert losses[0] > 1.5 * math.log(3)
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])


def test_evaluate_reports_token_accuracy_and_exact_match(copy_run):
    result = simcheck.evaluate(
        copy_run, lengths=[9, 12], samples=40, bins="1-12,13-20", progress=False, save=False
    )
    task = copy_run.task
    for row in result.rows:
        rng = np.random.default_rng([0, row["length"]])
        batch = task.batch(40, row["length"], rng)
        params = member_views(copy_run.model)
        logits = stacked_logits(copy_run.model, params, batch.tokens[None])[0]
        has = batch.targets >= 0
        right = (logits.argmax(-1) == batch.targets) & has
        assert row["token_accuracy"] == pytest.approx(float(right.sum() / has.sum()))
        exact = (right.sum(-1) == has.sum(-1)).double().mean()
        assert row["exact_match"] == pytest.approx(float(exact))
        assert row["samples"] == 40
    assert [b["bin"] for b in result.bins] == ["1-12", "13-20"]
    assert all(b["samples"] == 40 for b in result.bins)
    assert result.to_dict()["bins"] == result.bins
    assert "exact" in result.format_table()


def test_last_position_tasks_report_accuracy_as_token_accuracy(modp_run_dir, tmp_path):
    run = simcheck.train("majority:V=2", tmp_path / "m", train_len=8, steps=30,
                         d_model=16, d_mlp=32, batch_size=8, progress=False)  # fmt: skip
    result = simcheck.evaluate(run, lengths=[8], samples=64, bins=[(4, 8)], progress=False,
                               save=False)  # fmt: skip
    row = result.rows[0]
    assert row["token_accuracy"] == pytest.approx(row["accuracy"])
    assert row["exact_match"] == pytest.approx(row["accuracy"])
    assert result.bins[0]["low"] == 4 and result.bins[0]["high"] == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1-50,abc", "not low-high"),
        ("50", "not low-high"),
        ("9-3", "low <= high"),
        ("", "no length"),
    ],
)
def test_bad_bins_are_refused(text, message):
    with pytest.raises(simcheck.SimcheckError, match=message):
        parse_bins(text)


def test_bins_beyond_the_model_are_refused_before_work(copy_run):
    with pytest.raises(simcheck.LengthError, match="exceeds"):
        simcheck.evaluate(copy_run, lengths=[8], bins="1-10,40-60", progress=False, save=False)


def test_position_check_checks_each_role_at_its_prefix(copy_run):
    result = check_positions(copy_run, test_lengths=[40], max_samples=100, samples=50)
    assert [r.role for r in result.roles] == ["first", "middle", "last"]
    task = copy_run.task
    for role in result.roles:
        problem = TargetRole(task, role.role)
        assert role.train_len == problem.role_position(12) + 1
        assert role.prefix_lengths[40] == problem.role_position(40) + 1
        assert role.report.config["train_len"] == role.train_len
        assert role.report.config["test_lengths"] == [role.prefix_lengths[40]]
        assert role.outcome(40) in set(Outcome)
    worst_role, worst = result.worst(40)
    outcomes = result.outcomes(40)
    assert all(Outcome(worst).rank <= Outcome(o).rank for o in outcomes.values())
    assert outcomes[worst_role] == worst
    assert result.outcome(40) == ("certified" if result.certified else worst)
    assert result.to_dict()["roles"][0]["prefix_lengths"] == result.roles[0].prefix_lengths
    assert "T=40" in result.summary()


def test_position_check_refuses_lengths_that_do_not_reach_past_n(copy_run):
    with pytest.raises(simcheck.SimcheckError, match="nothing to extrapolate"):
        check_positions(copy_run, test_lengths=[12], roles=["first"])
    with pytest.raises(simcheck.SimcheckError, match="unknown target roles"):
        check_positions(copy_run, test_lengths=[40], roles=["second"])


def test_default_roles():
    assert default_roles(get_task("sort"), 50) == ("first", "middle", "last")
    assert default_roles(get_task("tomita:n=3"), 50) == ("middle", "last")


def test_position_check_of_a_last_position_task_is_its_check(modp_run_dir):
    result = check_positions(modp_run_dir, test_lengths=[24], max_samples=100, samples=50)
    assert [r.role for r in result.roles] == ["last"]
    assert result.roles[0].prefix_lengths == {24: 24}


def test_per_position_tasks_train_alone_in_sweeps():
    points = [
        Point(task=task, model=(("seed", seed),), train=(("train_len", 8),))
        for task in ("majority:V=2", "tomita:n=4")
        for seed in (0, 1)
    ]
    groups = ensemble_groups(points, size=8, workers=1)
    sizes = {tuple(p.task for p in g): len(g) for g in groups}
    assert sizes[("majority:V=2", "majority:V=2")] == 2
    assert sum(1 for g in groups if g[0].task == "tomita:n=4") == 2


def test_cli_lists_the_new_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("unique_copy", "repeat_copy", "sort", "reverse", "addition",
                 "interleaved_majority", "tomita", "dyck"):  # fmt: skip
        assert name in out


def test_cli_eval_bins_and_check_positions(copy_run, tmp_path, capsys):
    evaluated = tmp_path / "eval"
    args = ["--bins", "1-12,13-24", "--out", str(evaluated), "--quiet"]
    assert main(["eval", str(copy_run.path), "--lengths", "12", "--samples", "16", *args]) == 0
    out = capsys.readouterr().out
    assert "13-24" in out and "exact" in out
    saved = json.loads((evaluated / "eval.json").read_text())
    assert [b["bin"] for b in saved["bins"]] == ["1-12", "13-24"]
    folder = tmp_path / "check"
    settings = ["--test-len", "30", "--max-samples", "100", "--samples", "50"]
    code = main(["check", str(copy_run.path), "--target-roles", *settings, "--out", str(folder)])
    assert code == 0
    positions = json.loads((folder / "positions.json").read_text())
    assert [r["role"] for r in positions["roles"]] == ["first", "middle", "last"]
    assert all((folder / role / "certificate.json").is_file() for role in ("first", "last"))
    assert "all positions" in capsys.readouterr().out


SHORT_INSTANCE_TASKS = [
    "unique_copy:V=70", "repeat_copy:V=3", "sort:V=70", "reverse:V=3", "interleaved_majority",
    *(f"tomita:n={n}" for n in range(1, 8)), "dyck:k=1", "dyck:k=2",
]  # fmt: skip


@pytest.mark.parametrize("spec", SHORT_INSTANCE_TASKS)
def test_short_instances_keep_the_answer_and_fit(spec):
    """Every short instance fits and, except interleaved majority near a tie, answers as the
    long input at its last position; transductions also end on the same token."""
    task = get_task(spec)
    rng = np.random.default_rng(0)
    kept = made = 0
    for role in ("first", "middle", "last"):
        problem = TargetRole(task, role)
        x = problem.sample(12, 61, rng)
        answers = problem.oracle(torch.as_tensor(x))
        limit = problem.role_position(20) + 1
        for row, answer in zip(x, answers.tolist(), strict=True):
            for z in task.short_instances(row, limit, rng):
                made += 1
                assert 1 <= len(z) <= limit
                kept += int(task.oracle(torch.as_tensor(z[None]))[0]) == answer
                if not spec.startswith(("interleaved", "tomita", "dyck")):
                    assert z[-1] == row[-1]
    assert made >= 12
    if spec.startswith("interleaved"):
        assert kept >= 0.7 * made  # near a tie a residue's majority can flip
    else:
        assert kept == made


def test_tasks_without_structure_give_no_short_instances():
    rng = np.random.default_rng(0)
    for spec in ("majority:V=2", "parity", "addition"):
        task = get_task(spec)
        x = task.sample(1, 30, rng)[0]
        assert task.short_instances(np.asarray(x), 10, rng) == []


def test_dyck_pumping_cuts_balanced_stretches():
    task = get_task("dyck:k=2")
    x = np.array([0, 2, 3, 0, 1, 2, 0, 2, 3, 1])  # ( [ ] ( ) [ ( [ ] )  -> open: ( [
    for z in task.short_instances(x, 6, np.random.default_rng(1)):
        assert len(z) <= 6
        assert int(task.oracle(torch.as_tensor(z[None]))[0]) == int(
            task.oracle(torch.as_tensor(x[None]))[0]
        )


def test_target_roles_hand_on_the_task_witnesses():
    task = get_task("sort:V=70")
    rng = np.random.default_rng(3)
    for role in ("first", "middle", "last"):
        problem = TargetRole(task, role)
        x = problem.sample(1, 61, rng)[0]
        limit = problem.role_position(20) + 1
        shorts = problem.short_instances(x, limit, rng)
        assert shorts
        answer = int(problem.oracle(torch.as_tensor(x[None]))[0])
        for z in shorts:
            assert len(z) <= limit
            assert int(problem.oracle(torch.as_tensor(z[None]))[0]) == answer


def test_the_check_tries_the_task_witnesses(copy_run):
    report = simcheck.check(copy_run, test_lengths=[30], max_samples=100, samples=50)
    assert "task" in report.config["witnesses"]
    assert "task" in report.results[0].by_method
    positions = check_positions(copy_run, test_lengths=[30], max_samples=100, samples=50)
    assert all("task" in r.report.results[0].by_method for r in positions.roles)
    without = simcheck.check(copy_run, test_lengths=[30], max_samples=100, samples=50,
                             witnesses=("types", "blocks", "search"))  # fmt: skip
    assert "task" not in without.config["witnesses"]
    with pytest.raises(simcheck.SimcheckError, match="unknown witness method"):
        simcheck.check(copy_run, test_lengths=[30], witnesses=("pumping",))


def test_a_sweep_over_tasks_with_targets_at_many_positions(tmp_path):
    spec = {
        "name": "languages",
        "grid": {"task": ["tomita:n=4", "sort:V=30"], "seed": [0]},
        "model": {"d_model": 8, "d_mlp": 16, "n_ctx": 64, "n_layers": 2},
        "train": {"train_len": 10, "steps": 10, "batch_size": 8},
        "eval": {"lengths": [10, 20], "samples": 16},
        "check": {"test_lengths": [20], "samples": 4, "max_samples": 8,
                  "reference_samples": 16},
    }  # fmt: skip
    result = simcheck.sweep(spec, tmp_path / "sweep", workers=1, progress=False)
    table = result.table
    assert set(table.status) == {"ok"}
    assert set(table.task_name) == {"tomita", "sort"}
    assert table["outcome@20"].notna().all()
    assert (table["error@20"].between(0, 1)).all()
