"""`ModelSpec` and `TrainConfig`: field types and values refused alike from Python and the
command line, RMSNorm and the activations, records of earlier versions, and modules light
enough for the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import simcheck
from simcheck import ModelSpec, SimcheckError, TrainConfig, build_model, get_task
from simcheck.settings.model import ACT_FNS

SPEC = {"d_vocab": 2, "d_vocab_out": 1}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"d_model": 16.0}, "d_model must be an integer"),
        ({"n_layers": True}, "n_layers must be an integer"),
        ({"d_head": 0}, "d_head must be >= 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"pos": "none", "period": 3}, "belongs to the 'periodic' encoding"),
        ({"pos": 3}, "pos must be a string"),
        ({"act_fn": "tanh"}, "unknown act_fn"),
        ({"normalization": "LNPre"}, "unknown normalization"),
    ],
)
def test_model_spec_refuses_wrong_types_and_values(fields, fragment):
    with pytest.raises(SimcheckError) as info:
        ModelSpec(**SPEC, **fields)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"train_len": "32"}, "train_len must be an integer, got '32'"),
        ({"steps": 2.5}, "steps must be an integer, got 2.5"),
        ({"steps": True}, "steps must be an integer, got True"),
        ({"min_len": 2.0}, "min_len must be an integer or None"),
        ({"lr": "0.1"}, "lr must be a number"),
        ({"pos_offsets": 1}, "pos_offsets must be true or false"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"weight_decay": math.inf}, "weight_decay must be >= 0 and finite"),
        ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
        ({"grad_clip": math.nan}, "grad_clip must be >= 0 and finite"),
        ({"lr": math.nan}, "lr must be positive and finite"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio must be in [0, 1]"),
        ({"data_seed": -1}, "data_seed must be >= 0"),
    ],
)
def test_train_config_refuses_wrong_types_and_values(fields, fragment):
    with pytest.raises(SimcheckError) as info:
        TrainConfig(**fields)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "options",
    [{"train_len": "32"}, {"steps": 2.5}, {"steps": True}, {"grad_clip": math.nan},
     {"seed": -1}, {"d_head": 0}, {"pos": "none", "period": 3}],
)  # fmt: skip
def test_train_refuses_them_before_writing(tmp_path, options):
    with pytest.raises(SimcheckError):
        simcheck.train("modp:p=3", tmp_path / "run", progress=False, **options)
    assert not (tmp_path / "run").exists()


def test_numpy_numbers_are_stored_as_python_ones():
    spec = ModelSpec(d_vocab=np.int64(2), d_vocab_out=1, d_model=np.int32(16))
    config = TrainConfig(steps=np.int64(5), lr=np.float32(0.5), weight_decay=0)
    assert type(spec.d_model) is int and type(config.steps) is int
    assert type(config.lr) is float and type(config.weight_decay) is float
    json.dumps({"model": spec.to_dict(), "training": config.to_dict()})


def test_period_belongs_to_periodic_positions_only():
    task = get_task("modp:p=3")
    assert ModelSpec.for_task(task, pos="periodic").period == 3
    assert ModelSpec.for_task(task, pos="learned").period == 1
    with pytest.raises(SimcheckError, match="period"):
        ModelSpec.for_task(task, pos="none", period=3)


def test_records_of_earlier_versions_still_load():
    """simcheck 0.1.0 recorded the task's period for every encoding."""
    old = {**ModelSpec(**SPEC, pos="none").to_dict(), "period": 3}
    assert ModelSpec.from_dict(old) == ModelSpec(**SPEC, pos="none")
    periodic = ModelSpec(**SPEC, pos="periodic", period=3)
    assert ModelSpec.from_dict(periodic.to_dict()) == periodic


def test_rms_norm_builds_and_trains(tmp_path, quick_train):
    model = build_model(get_task("modp:p=3"), normalization="RMS", d_model=16, d_mlp=32)
    assert model.cfg.normalization_type == "RMS"
    assert type(model.blocks[0].ln1).__name__ == "RMSNorm"
    run = quick_train(
        "modp:p=3", tmp_path / "rms", normalization="RMS", train_len=8, steps=60, log_every=10
    )
    assert run.model.cfg.normalization_type == "RMS"
    losses = [json.loads(line)["loss"] for line in (run.path / "metrics.jsonl").open()]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("act_fn", ACT_FNS)
def test_every_activation_builds(act_fn):
    model = build_model(get_task("modp:p=3"), act_fn=act_fn, d_model=8, d_mlp=8)
    assert model.cfg.act_fn == act_fn
    assert torch.isfinite(model(torch.zeros(2, 5, dtype=torch.long))).all()


def test_settings_modules_import_neither_torch_nor_transformer_lens():
    code = (
        "import sys\n"
        "import simcheck.settings.model, simcheck.settings.train, simcheck.checking.config\n"
        "import simcheck.settings.adapter, simcheck.settings.lengths, simcheck.tasks\n"
        "import simcheck\n"
        "simcheck.ModelSpec, simcheck.TrainConfig, simcheck.ModelAdapter, simcheck.parse_lengths\n"
        "simcheck.tasks.get_task('modp:p=3')\n"
        "print(sorted(m for m in ('torch', 'transformer_lens') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
