"""Ensembles: each member trains as it would alone, in an ordinary run directory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from float32 import backward_tolerance, forward_tolerance

import simcheck
from simcheck.errors import TrainingDiverged
from simcheck.model.build import ModelSpec
from simcheck.settings.train import TrainConfig
from simcheck.sweeps.runner import ensemble_groups
from simcheck.sweeps.spec import Point
from simcheck.tasks import Batch, ModPTask
from simcheck.training.ensemble import Member, ensemble_key, train_ensemble

TASK = ModPTask(p=3)
SPEC = dict(pos="periodic", d_model=16, d_mlp=32)


def _member(tmp_path, name: str, seed: int, task=TASK, **config) -> Member:
    options = dict(train_len=8, steps=30, batch_size=16, log_every=10, checkpoint_every=20)
    return Member(
        task,
        tmp_path / name,
        ModelSpec.for_task(task, seed=seed, **SPEC),
        TrainConfig(data_seed=seed, **{**options, **config}),
    )


MEMBERS = {
    "a": dict(seed=0),
    "b": dict(seed=1, lr=5e-3, weight_decay=0.1, train_len=12),
    "c": dict(seed=2, grad_clip=0.0, steps=20, warmup=0.2),
    "d": dict(seed=3, grad_clip=0.05, min_len=3),
}


ADAM_STEP = (1 - 0.9) / (1 - 0.999) ** 0.5
"""The largest |m / sqrt(v)| of Adam's step with torch's default betas (Kingma & Ba 2015,
sec. 2.1): a relative change of the gradients by d changes a step by at most 2 d of this."""


def weight_tolerance(run, config: TrainConfig, batch: int) -> float:
    """How far a member's weights may drift from the same model trained alone: each step's
    gradients agree to `float32.backward_tolerance` (relative: at scale 1), which moves
    Adam's step by at most 2 x that x `ADAM_STEP` x lr; the steps add up (first order)."""
    relative = backward_tolerance(run.model, config.train_len, batch).atol
    return config.steps * config.lr * 2 * relative * ADAM_STEP


def output_tolerance(model, tokens: torch.Tensor, weights: float) -> float:
    """How far the outputs may move when every weight moves by at most ``weights``: the
    largest over outputs of sum_i |d out / d theta_i| x ``weights``, plus the forward
    pass's own tolerance."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(tokens)
    largest = 0.0
    for value in out.reshape(-1):
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        largest = max(largest, sum(float(g.abs().sum()) for g in grads if g is not None))
    scale = float(out.abs().max())
    return largest * weights + forward_tolerance(model, tokens.shape[1], scale).atol


def test_each_member_equals_the_same_model_trained_alone(tmp_path):
    """Within the float32 drift of two training paths (`weight_tolerance`) on every weight
    but b_K, whose true gradient is 0 (it adds a constant to a query's logits), so AdamW
    moves it by rounding noise in any two runs; the outputs, which b_K does not change,
    within what that drift can do to them (`output_tolerance`)."""
    members = [_member(tmp_path / "ensemble", name, **opts) for name, opts in MEMBERS.items()]
    runs = train_ensemble(members)
    probe = TASK.batch(32, 10, np.random.default_rng(5))
    for member, run in zip(members, runs, strict=True):
        alone = simcheck.train(
            member.task, tmp_path / "alone" / member.out.name, model=member.spec,
            config=member.config, progress=False,
        )  # fmt: skip
        assert run.finished and run.spec["training"] == alone.spec["training"]
        weights = weight_tolerance(run, member.config, member.config.batch_size)
        for (name, weight), other in zip(
            run.model.state_dict().items(), alone.model.state_dict().values(), strict=True
        ):
            if weight.dtype.is_floating_point and not name.endswith("b_K"):
                torch.testing.assert_close(weight, other, atol=weights, rtol=0, msg=name)
        outputs = output_tolerance(alone.model, probe.tokens, weights)
        with torch.no_grad():
            torch.testing.assert_close(
                run.model(probe.tokens), alone.model(probe.tokens), atol=outputs, rtol=0
            )
        steps = [json.loads(line)["step"] for line in (member.out / "metrics.jsonl").open()]
        assert steps == [10, 20, 30][: member.config.steps // 10]


@dataclass(frozen=True)
class _PoisonedModP(ModPTask):
    """ModPTask whose targets are NaN: training on it diverges at its first step."""

    def batch(self, batch, length, generator):
        tokens = super().batch(batch, length, generator).tokens
        return Batch(tokens, torch.full((batch,), float("nan")))


def test_a_diverging_member_stops_alone(tmp_path):
    members = [
        _member(tmp_path, "good", seed=0),
        _member(tmp_path, "poisoned", seed=1, task=_PoisonedModP(p=3)),
        _member(tmp_path, "also-good", seed=2),
    ]
    good, poisoned, also_good = train_ensemble(members)
    assert good.finished and also_good.finished
    assert isinstance(poisoned, TrainingDiverged) and "step 1" in str(poisoned)
    status = json.loads((tmp_path / "poisoned" / "status.json").read_text())
    assert status["state"] == "diverged" and status["diverged_at"] == 1
    for name in ("good", "also-good"):
        status = json.loads((tmp_path / name / "status.json").read_text())
        assert status["state"] == "finished" and status["step"] == 30


def test_members_that_all_diverge_each_get_their_error(tmp_path):
    poisoned = _PoisonedModP(p=3)
    members = [_member(tmp_path, f"m{seed}", seed=seed, task=poisoned) for seed in range(2)]
    assert all(isinstance(result, TrainingDiverged) for result in train_ensemble(members))


def test_a_member_checkpoint_is_the_one_simcheck_train_writes(tmp_path):
    """The optimizer state in train_state.pt loads into torch's AdamW as the trainer
    builds it, so `simcheck train --resume` can continue a member alone."""
    member = _member(tmp_path, "m", seed=0)
    train_ensemble([member, _member(tmp_path, "n", seed=1)])
    state = torch.load(member.out / "train_state.pt", weights_only=True)
    run = simcheck.load_run(member.out)
    params = [p for p in run.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1.0)
    optimizer.load_state_dict(state["optimizer"])
    moments = [optimizer.state[p]["exp_avg"] for p in params]
    assert all(m.shape == p.shape for m, p in zip(moments, params, strict=True))
    assert any(m.abs().sum() > 0 for m in moments)
    assert all(float(optimizer.state[p]["step"]) == 30 for p in params)
    assert simcheck.training.trainer.resume_training(member.out, progress=False).finished


def test_finished_members_are_returned_without_training(tmp_path):
    member = _member(tmp_path, "m", seed=0, steps=10)
    train_ensemble([member])
    before = (member.out / "model.safetensors").read_bytes()
    (again,) = train_ensemble([member])
    assert again.finished and (member.out / "model.safetensors").read_bytes() == before
    assert json.loads((member.out / "status.json").read_text())["step"] == 10


def test_which_points_share_an_ensemble():
    spec = ModelSpec.for_task(TASK, **SPEC)
    assert ensemble_key(spec, TrainConfig()) == ensemble_key(
        ModelSpec.for_task(TASK, seed=4, **SPEC), TrainConfig(lr=1e-2, train_len=9)
    )
    assert ensemble_key(spec, TrainConfig(forward="hooked")) is None
    assert ensemble_key(ModelSpec.for_task(TASK, act_fn="solu"), TrainConfig()) is None
    assert ensemble_key(spec, TrainConfig(batch_size=8)) != ensemble_key(spec, TrainConfig())

    one_layer = [
        Point("modp:p=3", (("seed", s),), (("steps", 10), ("train_len", 8 * (5 - s))))
        for s in range(5)
    ]
    two_layer = [Point("modp:p=3", (("n_layers", 2), ("seed", s)), ()) for s in range(2)]
    groups = ensemble_groups(one_layer + two_layer, size=4, workers=2)
    assert sorted(len(g) for g in groups) == [1, 1, 2, 3]  # 5 one-layer points over 2 groups
    lengths = [[p.train_config().train_len for p in g] for g in groups if len(g) > 1]
    assert sorted(lengths) == [[8, 16], [24, 32, 40]]  # grouped by training length
    assert [p for g in groups for p in g if p in two_layer] == two_layer  # alone, in order
    assert {p for g in groups for p in g} == set(one_layer + two_layer)
    assert all(len(g) == 1 for g in ensemble_groups(one_layer, size=1, workers=2))
