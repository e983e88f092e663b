"""The fused training forward computes the HookedTransformer's function, values and gradients."""

from __future__ import annotations

import pytest
import torch
from float32 import backward_tolerance, forward_tolerance

from simcheck.model.build import ModelSpec, last_outputs, model_from_spec
from simcheck.model.fused import fast_path_problem, member_views, stacked_logits
from simcheck.training.trainer import _shifted_positions

CONFIGS = {
    "learned": dict(pos="learned"),
    "periodic": dict(pos="periodic", period=3),
    "local-log": dict(pos="periodic", period=2, locality=2),
    "local-constant": dict(pos="periodic", period=1, locality=1, local_scale="constant"),
    "nope": dict(pos="none"),
    "rotary": dict(pos="rotary"),
    "alibi-2-heads": dict(pos="alibi", n_heads=2),
    "rms-gelu-new-2-layers": dict(
        pos="learned", normalization="RMS", act_fn="gelu_new", n_layers=2, n_heads=2
    ),
    "attention-only-no-norm": dict(pos="none", normalization="none", d_mlp=0),
    "rotary-4-heads-silu": dict(pos="rotary", n_heads=4, n_layers=2, act_fn="silu", d_head=4),
    "gelu-fast": dict(pos="learned", act_fn="gelu_fast"),
    "gelu-local-2-layers": dict(pos="periodic", period=3, locality=1, n_layers=2, act_fn="gelu"),
}


def _model(seed: int = 1, **options):
    """A model whose parameters are all away from their initial values (LayerNorm gains,
    biases and local biases start at constants that hide mistakes)."""
    model = model_from_spec(ModelSpec(d_vocab=4, d_vocab_out=3, seed=seed, **options)).train()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_outputs_and_gradients_equal_the_hooked_transformer(options):
    model = _model(**options)
    tokens = torch.randint(0, 4, (5, 13), generator=torch.Generator().manual_seed(0))
    weights = torch.randn(5, 3)
    expected = model(tokens)
    every = stacked_logits(model, member_views(model), tokens[None])[0]
    last = stacked_logits(model, member_views(model), tokens[None], torch.tensor([12]))[0]
    tol = forward_tolerance(model, 13, float(expected.abs().max()))
    torch.testing.assert_close(every, expected, **tol.kwargs)
    torch.testing.assert_close(last, expected[:, -1], **tol.kwargs)

    reference = _grads(model, (expected[:, -1] * weights).sum())
    fused = _grads(model, (last * weights).sum())
    assert reference.keys() == fused.keys()
    scale = max(g.abs().max().item() for g in reference.values())
    grad_tol = backward_tolerance(model, 13, batch=5, scale=scale)
    for name, grad in reference.items():
        # b_K's true gradient is 0 (a constant per query row): both are rounding noise,
        # within the tolerance like every other gradient
        torch.testing.assert_close(fused[name], grad, **grad_tol.kwargs, msg=name)


@pytest.mark.parametrize(
    "options", [CONFIGS["periodic"], CONFIGS["local-log"], CONFIGS["rms-gelu-new-2-layers"]]
)
def test_members_of_a_stack_each_equal_their_own_model_at_their_own_length(options):
    models = [_model(seed=seed, **options) for seed in range(3)]
    params = {
        name: torch.stack([m.get_parameter(name).detach() for m in models])
        for name, _ in models[0].named_parameters()
    }
    lengths = [9, 4, 7]
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 4, (3, 6, max(lengths)), generator=generator)
    out = stacked_logits(models[0], params, tokens, read_at=torch.tensor(lengths) - 1)
    for k, (model, length) in enumerate(zip(models, lengths, strict=True)):
        # the padding after each member's length is never read back
        expected = model(tokens[k, :, :length])[:, -1]
        tol = forward_tolerance(model, length, float(expected.abs().max()))
        torch.testing.assert_close(out[k], expected, **tol.kwargs)


def test_position_offsets_read_the_rows_the_hooked_model_reads():
    model = _model(pos="learned", n_ctx=40)
    tokens = torch.randint(0, 4, (4, 8), generator=torch.Generator().manual_seed(2))
    hook = _shifted_positions(model, 17, 8)
    expected = model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", hook)])[:, -1]
    out = stacked_logits(
        model, member_views(model), tokens[None], torch.tensor([7]), torch.tensor([17])
    )
    tol = forward_tolerance(model, 8, float(expected.abs().max()))
    torch.testing.assert_close(out[0], expected, **tol.kwargs)


def test_models_the_fused_path_does_not_compute_are_named():
    assert fast_path_problem(_model()) is None
    assert "solu" in fast_path_problem(_model(act_fn="solu"))
    plain = model_from_spec(ModelSpec(d_vocab=4, d_vocab_out=3))
    del plain.simcheck_spec
    assert "ModelSpec" in fast_path_problem(plain)


@pytest.mark.parametrize(
    "options",
    [CONFIGS["periodic"], CONFIGS["local-log"], CONFIGS["rotary-4-heads-silu"], {"act_fn": "solu"}],
    ids=["periodic", "local-log", "rotary-2-layers", "solu-hooked"],
)
def test_evaluation_outputs_equal_the_hooked_forward(options):
    """`last_outputs` (what `evaluate` reads) takes the fused path where it can, in chunks."""
    model = _model(**options).eval()
    tokens = torch.randint(0, 4, (7, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(tokens)[:, -1]
    tol = forward_tolerance(model, 40, float(expected.abs().max()))
    torch.testing.assert_close(last_outputs(model, tokens, batch_size=3), expected, **tol.kwargs)
