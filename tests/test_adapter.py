"""`simcheck.model.subject`: what a `ModelAdapter` fills in from the model, how a `Subject`
feeds the
model (prefix, output ids) and the one-line refusals of adapters that do not fit."""

from __future__ import annotations

import warnings

import pytest
import torch
from float32 import assert_paths_close

import simcheck
from simcheck.errors import LengthError, SimcheckError
from simcheck.settings.adapter import ModelAdapter
from simcheck.storage.subjects import resolve

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # TransformerLens 3.9 deprecates HookedTransformer
    from transformer_lens import HookedTransformer, HookedTransformerConfig

MODP = "modp:p=3"
MAJORITY = "majority:V=2"


def tl_model(positions: str = "standard", d_vocab: int = 3, n_ctx: int = 32) -> HookedTransformer:
    """A plain TransformerLens model with the default unembedding (d_vocab_out = d_vocab)."""
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=16, d_vocab=d_vocab, n_ctx=n_ctx,
        act_fn="relu", positional_embedding_type=positions, seed=0, device="cpu",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HookedTransformer(cfg).eval()


@pytest.mark.parametrize(
    ("kind", "expected", "learned"),
    [
        ("standard", "learned", True),
        ("shortformer", "shortformer", True),
        ("rotary", "rotary", False),
        ("alibi", "alibi", False),
    ],
)
def test_positions_come_from_the_transformer_lens_config(kind, expected, learned):
    subject = resolve(tl_model(kind), MODP, 8, ModelAdapter(outputs=0))
    assert subject.adapter.positions == expected
    assert subject.adapter.learned_absolute is learned
    assert (subject.adapter.period, subject.adapter.window) == (1, 0)
    assert subject.adapter.trained_positions == 8


def test_simcheck_models_fill_the_adapter_from_their_spec():
    model = simcheck.build_model(simcheck.get_task(MODP), pos="periodic", period=6, locality=2)
    subject = resolve(model, MODP, 16)
    assert subject.adapter.positions == "periodic"
    assert (subject.adapter.period, subject.adapter.window) == (6, 2)
    # the user's values win over the model's
    told = resolve(model, MODP, 16, ModelAdapter(period=3, positions="none"))
    assert (told.adapter.period, told.adapter.positions, told.adapter.window) == (3, "none", 2)


def test_a_run_trained_with_position_offsets_has_seen_its_whole_table(tmp_path):
    run = simcheck.train(
        MODP, tmp_path / "run", pos="learned", n_ctx=48, pos_offsets=True, train_len=8,
        steps=1, d_model=16, d_mlp=16, batch_size=4, progress=False,
    )  # fmt: skip
    assert resolve(run).adapter.trained_positions == 48
    assert resolve(tmp_path / "run").adapter.trained_positions == 48
    assert resolve(run, train_len=6).train_len == 6


def test_the_prefix_goes_in_front_and_the_outputs_are_picked_in_task_order():
    model = tl_model(d_vocab=4)
    subject = resolve(model, MAJORITY, 8, ModelAdapter(outputs=(1, 0), prefix=(3, 2)))
    tokens = torch.tensor([[0, 1, 1], [1, 0, 0]])
    fed = subject.model_input(tokens)
    assert fed.tolist() == [[3, 2, 0, 1, 1], [3, 2, 1, 0, 0]]
    raw = model(fed)[:, -1]
    assert_paths_close(subject.last_outputs(tokens), raw[:, [1, 0]], model, fed.shape[1])
    # lengths count task tokens: the prefix takes two of the 32 positions
    assert subject.max_length == 30
    subject.check_length(30)
    with pytest.raises(LengthError, match=r"30 positions this model can take with its 2-token"):
        subject.check_length(31)


@pytest.mark.parametrize(
    ("adapter", "task", "message"),
    [
        (ModelAdapter(), MODP, r"reads 1 output\(s\) but the model gives 3.*outputs"),
        (ModelAdapter(outputs=(0, 1, 2)), MAJORITY, "reads 2 output"),
        (ModelAdapter(outputs=(0, 5)), MAJORITY, r"output ids \[5\] are outside"),
        (ModelAdapter(outputs=0, prefix=(7,)), MODP, r"prefix tokens \[7\] are outside"),
        (ModelAdapter(outputs=0), "majority:V=5", "does not fit the model: it uses tokens"),
    ],
)
def test_adapters_that_do_not_fit_are_refused_in_one_line(adapter, task, message):
    with pytest.raises(SimcheckError, match=message) as caught:
        resolve(tl_model(), task, 8, adapter)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"outputs": ()}, "outputs is empty"),
        ({"outputs": (-1,)}, "token ids >= 0"),
        ({"prefix": ("bos",)}, "must be token ids"),
        ({"period": 0}, "period must be an integer >= 1"),
        ({"window": -1}, "window must be an integer >= 0"),
        ({"positions": "sinusoidal"}, "unknown positions 'sinusoidal'"),
    ],
)
def test_bad_adapter_fields_are_refused(options, message):
    with pytest.raises(SimcheckError, match=message):
        ModelAdapter(**options)


def test_subjects_that_cannot_be_resolved_say_what_is_missing():
    with pytest.raises(SimcheckError, match="missing: train_len"):
        resolve(tl_model(), MODP, adapter=ModelAdapter(outputs=0))
    with pytest.raises(SimcheckError, match="expected a run directory, a Run or a Hooked"):
        resolve(object(), MODP, 8)
    with pytest.raises(SimcheckError, match="train_len=40 exceeds what the model takes"):
        resolve(tl_model(), MODP, 40, ModelAdapter(outputs=0))
    with pytest.raises(SimcheckError, match="unknown device"):
        resolve(tl_model(), MODP, 8, ModelAdapter(outputs=0), device="gpu-please")


def test_the_device_moves_the_model(device):
    subject = resolve(tl_model(), MODP, 8, ModelAdapter(outputs=0), device=device)
    assert subject.device.type == torch.device(device).type
    out = subject.last_outputs(torch.zeros(2, 5, dtype=torch.long))
    assert out.device.type == "cpu" and out.shape == (2, 1)


def test_length_errors_for_models_built_elsewhere_give_no_training_advice():
    model = tl_model(n_ctx=16)
    with pytest.raises(LengthError) as caught:
        model_input = torch.zeros(1, 20, dtype=torch.long)
        simcheck.record(model, model_input, [simcheck.probes.Output()])
    assert "--n-ctx" not in str(caught.value) and "n_ctx=16" in str(caught.value)
