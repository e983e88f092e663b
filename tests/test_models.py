"""Models: output shapes, positional encodings against independent constructions, the local
attention bias against a hand-written reference, seeding and the input guard."""

from __future__ import annotations

import math

import pytest
import torch
from float32 import assert_paths_close
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

import simcheck
from simcheck import ModelSpec, build_model, get_task
from simcheck.errors import TokenError
from simcheck.model.build import POSITION_FREE_CTX

SMALL = {"d_model": 16, "d_mlp": 16}


def randomize_local_bias(model: HookedTransformer, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            bias = block.attn.local_bias
            bias.copy_(torch.randn(bias.shape, generator=generator) * 2)


@pytest.mark.parametrize("pos", simcheck.POSITIONAL_ENCODINGS)
@pytest.mark.parametrize(("spec", "width"), [("simple", 1), ("modp:p=3", 1), ("kgram:S=4", 4)])
def test_output_shape_for_every_encoding(pos, spec, width):
    task = get_task(spec)
    model = build_model(task, pos=pos, **SMALL)
    assert isinstance(model, HookedTransformer)
    assert model.cfg.d_vocab == task.vocab_size
    assert model.cfg.d_vocab_out == width
    tokens = torch.randint(0, task.vocab_size, (3, 7))
    assert model(tokens).shape == (3, 7, width)
    assert model.simcheck_spec.pos == pos
    assert not model.training


def test_task_defaults_shape_the_model():
    kgram = build_model(get_task("kgram:S=3,k=3"))
    assert kgram.cfg.n_layers == 2
    assert kgram.simcheck_spec.pos == "periodic"
    assert kgram.simcheck_spec.locality == 2
    assert kgram.blocks[0].attn.local_bias.shape == (1, 3)
    modp = build_model(get_task("modp:p=5"))
    assert modp.pos_embed.W_pos.shape == (5, 32)
    assert build_model(get_task("simple")).simcheck_spec.pos == "none"
    learned = build_model(get_task("kgram"), pos="learned")
    assert learned.simcheck_spec.locality is None


# ------------------------------------------------------------------ NoPE


def test_nope_has_a_frozen_zero_position_table():
    model = build_model(get_task("simple"), pos="none", **SMALL)
    W_pos = model.pos_embed.W_pos
    assert not W_pos.requires_grad
    assert torch.count_nonzero(W_pos) == 0
    _, cache = model.run_with_cache(torch.randint(0, 2, (2, 6)))
    assert torch.count_nonzero(cache["hook_pos_embed"]) == 0


def _permuted_prefix(tokens: torch.Tensor, seed: int) -> torch.Tensor:
    n = tokens.shape[1]
    perm = torch.randperm(n - 1, generator=torch.Generator().manual_seed(seed))
    return torch.cat([tokens[:, :-1][:, perm], tokens[:, -1:]], dim=1)


def test_one_layer_nope_last_output_is_permutation_invariant():
    task = get_task("kgram:S=5")
    model = build_model(task, pos="none", n_layers=1, seed=3, **SMALL)
    tokens = torch.randint(0, 5, (4, 12), generator=torch.Generator().manual_seed(0))
    shuffled = _permuted_prefix(tokens, seed=1)
    assert not torch.equal(shuffled, tokens)
    last = model(tokens)[:, -1]
    # the same sums in another order: equal within the float32 tolerance of the forward
    assert_paths_close(model(shuffled)[:, -1], last, model, 12)
    # the same check is sensitive: with a learned position table the output moves
    learned = build_model(task, pos="learned", n_layers=1, seed=3, **SMALL)
    assert not torch.allclose(learned(shuffled)[:, -1], learned(tokens)[:, -1], atol=1e-4)


# ------------------------------------------------------------------ periodic positions


def test_periodic_position_embedding_repeats_with_the_period():
    model = build_model(get_task("modp:p=3"), pos="periodic", **SMALL)
    W_pos = model.pos_embed.W_pos
    assert W_pos.shape == (3, 16)
    assert W_pos.requires_grad
    assert torch.count_nonzero(W_pos) == W_pos.numel()  # initialised, not zero
    _, cache = model.run_with_cache(torch.randint(0, 2, (2, 11)))
    pos_embed = cache["hook_pos_embed"]
    assert pos_embed.shape == (2, 11, 16)
    for t in range(11):
        assert torch.equal(pos_embed[0, t], W_pos[t % 3])
        assert torch.equal(pos_embed[1, t], W_pos[t % 3])


def test_periodic_model_equals_learned_model_with_a_tiled_table():
    task = get_task("modp:p=3")
    n = 14
    periodic = build_model(task, pos="periodic", n_layers=2, seed=5, **SMALL)
    learned = build_model(task, pos="learned", n_layers=2, n_ctx=n, seed=9, **SMALL)
    with torch.no_grad():
        for name, param in learned.named_parameters():
            if name == "pos_embed.W_pos":
                source = periodic.pos_embed.W_pos
                param.copy_(torch.stack([source[t % 3] for t in range(n)]))
            else:
                param.copy_(dict(periodic.named_parameters())[name])
    tokens = torch.randint(0, 2, (5, n), generator=torch.Generator().manual_seed(0))
    assert_paths_close(periodic(tokens), learned(tokens), periodic, n)


def test_one_layer_periodic_output_depends_on_positions_mod_period_only():
    model = build_model(get_task("modp:p=3"), pos="periodic", n_layers=1, seed=1, **SMALL)
    tokens = torch.randint(0, 2, (6, 13), generator=torch.Generator().manual_seed(2))
    n = tokens.shape[1]
    # shuffle the prefix within each residue class mod 3: same (token, t mod 3) multiset
    order = list(range(n))
    generator = torch.Generator().manual_seed(3)
    for r in range(3):
        members = [t for t in range(n - 1) if t % 3 == r]
        shuffled = [members[i] for i in torch.randperm(len(members), generator=generator)]
        for t, source in zip(members, shuffled, strict=True):
            order[t] = source
    within = tokens[:, order]
    assert_paths_close(model(within)[:, -1], model(tokens)[:, -1], model, n)
    # moving tokens across residue classes does change it
    across = _permuted_prefix(tokens, seed=4)
    assert not torch.allclose(model(across)[:, -1], model(tokens)[:, -1], atol=1e-4)


# ------------------------------------------------------------------ local attention bias


def reference_scores(q, k, bias, locality, scale):
    """Pre-softmax logits by loops: q.k/sqrt(d_head), plus scale(i)*bias[h, i-j] for
    0 <= i-j <= tau, and -inf where j > i."""
    batch, length, heads, d_head = q.shape
    out = torch.empty(batch, heads, length, length, dtype=torch.float64)
    q, k, bias = q.double(), k.double(), bias.double()
    for b in range(batch):
        for h in range(heads):
            for i in range(length):
                weight = math.log(i + 1) if scale == "log" else 1.0
                for j in range(length):
                    if j > i:
                        out[b, h, i, j] = -math.inf
                        continue
                    value = float(q[b, i, h] @ k[b, j, h]) / math.sqrt(d_head)
                    if i - j <= locality:
                        value += weight * float(bias[h, i - j])
                    out[b, h, i, j] = value
    return out


@pytest.mark.parametrize("scale", ["log", "constant"])
def test_local_bias_matches_reference(scale):
    task = get_task("kgram:S=3,k=3")
    model = build_model(
        task, pos="periodic", n_heads=2, n_layers=2, local_scale=scale, seed=1, **SMALL
    )
    assert model.simcheck_spec.locality == 2
    randomize_local_bias(model)
    tokens = torch.randint(0, 3, (2, 9), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    for layer in range(2):
        attn = model.blocks[layer].attn
        got = cache[f"blocks.{layer}.attn.hook_attn_scores"].double()
        expected = reference_scores(
            cache[f"blocks.{layer}.attn.hook_q"],
            cache[f"blocks.{layer}.attn.hook_k"],
            attn.local_bias.detach(),
            locality=2,
            scale=scale,
        )
        masked = torch.isinf(expected)
        assert torch.equal(torch.isinf(got), masked)
        assert (got[masked] < 0).all()
        torch.testing.assert_close(got[~masked], expected[~masked], atol=1e-5, rtol=1e-5)


def test_local_bias_changes_the_logits_only_inside_the_window():
    model = build_model(get_task("kgram:S=3,k=2"), pos="periodic", n_layers=1, **SMALL)
    tokens = torch.randint(0, 3, (1, 8), generator=torch.Generator().manual_seed(0))
    _, before = model.run_with_cache(tokens)
    randomize_local_bias(model)
    _, after = model.run_with_cache(tokens)
    delta = after["blocks.0.attn.hook_attn_scores"] - before["blocks.0.attn.hook_attn_scores"]
    delta = torch.nan_to_num(delta, nan=0.0)[0, 0]  # -inf - -inf above the diagonal
    offsets = torch.arange(8)[:, None] - torch.arange(8)[None, :]
    inside = (offsets >= 0) & (offsets <= 1) & (torch.arange(8)[:, None] > 0)  # log(1) = 0
    assert (delta[inside] != 0).all()
    assert (delta[~inside] == 0).all()


def test_local_bias_with_a_kv_cache_matches_the_full_forward():
    model = build_model(get_task("kgram:S=3,k=3"), pos="periodic", n_heads=2, period=2, **SMALL)
    randomize_local_bias(model)
    tokens = torch.randint(0, 3, (2, 9), generator=torch.Generator().manual_seed(1))
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, "cpu", 2)
    ones = torch.ones_like(tokens)
    first = model(tokens[:, :5], past_kv_cache=cache, attention_mask=ones[:, :5])
    rest = model(tokens[:, 5:], past_kv_cache=cache, attention_mask=ones[:, 5:])
    assert_paths_close(torch.cat([first, rest], 1), model(tokens), model, 9)


def test_gradients_reach_local_bias_and_periodic_table():
    model = build_model(get_task("kgram:S=3,k=2"), pos="periodic", period=2, **SMALL)
    names = {name for name, _ in model.named_parameters()}
    assert {"blocks.0.attn.local_bias", "blocks.1.attn.local_bias", "pos_embed.W_pos"} <= names
    tokens = torch.randint(0, 3, (4, 10), generator=torch.Generator().manual_seed(0))
    model(tokens)[:, -1].pow(2).sum().backward()
    for block in model.blocks:
        grad = block.attn.local_bias.grad
        assert grad is not None
        assert torch.count_nonzero(grad) == grad.numel()
    assert torch.count_nonzero(model.pos_embed.W_pos.grad) > 0


# ------------------------------------------------------------------ seeding


@pytest.mark.parametrize(
    ("spec", "pos"), [("kgram:S=3,k=3", "periodic"), ("modp", "learned"), ("simple", "rotary")]
)
def test_same_seed_same_weights(spec, pos):
    task = get_task(spec)
    a = build_model(task, pos=pos, seed=7, **SMALL)
    b = build_model(task, pos=pos, seed=7, **SMALL)
    c = build_model(task, pos=pos, seed=8, **SMALL)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert pa.keys() == pb.keys() == pc.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["embed.W_E"], pc["embed.W_E"])
    assert not torch.equal(pa["blocks.0.attn.W_Q"], pc["blocks.0.attn.W_Q"])


def test_building_a_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    build_model(get_task("modp"), pos="periodic", seed=1, **SMALL)
    assert torch.equal(torch.rand(5), expected)


# ------------------------------------------------------------------ input guard


def test_learned_model_refuses_inputs_longer_than_n_ctx():
    model = build_model(get_task("modp"), pos="learned", n_ctx=16, **SMALL)
    assert model.cfg.n_ctx == 16
    assert model(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 16, 1)
    with pytest.raises(simcheck.LengthError) as info:
        model(torch.zeros(1, 17, dtype=torch.long))
    message = str(info.value)
    assert "17" in message
    assert "16" in message
    assert "n_ctx" in message
    with pytest.raises(simcheck.LengthError):
        model.run_with_cache(torch.zeros(2, 20, dtype=torch.long))


@pytest.mark.parametrize("bad", [2, -1])
def test_model_refuses_tokens_outside_its_vocabulary(bad):
    model = build_model(get_task("modp"), pos="periodic", **SMALL)
    tokens = torch.tensor([[0, 1, bad]])
    with pytest.raises(TokenError, match=str(bad)):
        model(tokens)
    with pytest.raises(TokenError):
        model.run_with_cache(tokens)


def test_run_with_hooks_refuses_inputs_longer_than_n_ctx():
    model = build_model(get_task("modp"), pos="learned", n_ctx=16, **SMALL)
    with pytest.raises(simcheck.LengthError):
        model.run_with_hooks(torch.zeros(1, 17, dtype=torch.long), fwd_hooks=[])


@pytest.mark.parametrize("bad", [2, -1])
def test_run_with_hooks_refuses_tokens_outside_the_vocabulary(bad):
    model = build_model(get_task("modp"), pos="periodic", **SMALL)
    with pytest.raises(TokenError):
        model.run_with_hooks(torch.tensor([[0, 1, bad]]), fwd_hooks=[])


@pytest.mark.parametrize("pos", ["none", "periodic", "rotary", "alibi"])
def test_position_free_encodings_take_long_inputs(pos):
    model = build_model(get_task("simple"), pos=pos, d_model=8, d_mlp=8)
    assert model.cfg.n_ctx == POSITION_FREE_CTX
    out = model(torch.randint(0, 2, (1, 3000), generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 3000, 1)
    assert torch.isfinite(out).all()


def test_alibi_model_has_no_position_table():
    alibi = build_model(get_task("simple"), pos="alibi")
    rotary = build_model(get_task("simple"), pos="rotary")
    n_alibi = sum(p.numel() for p in alibi.parameters())
    n_rotary = sum(p.numel() for p in rotary.parameters())
    # neither encoding has learned positions: at most a vestigial row may differ
    assert n_alibi - n_rotary <= alibi.cfg.d_model


# ------------------------------------------------------------------ ModelSpec validation


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"pos": "sinusoidal"}, "positional encoding"),
        ({"pos": "learned", "locality": 2}, "locality"),
        ({"d_model": 30, "n_heads": 4}, "divisible"),
        ({"init": "orthogonal"}, "unknown init"),
        ({"period": 0}, "period"),
        ({"locality": -1, "pos": "periodic"}, "locality"),
        ({"n_layers": 0}, "n_layers"),
        ({"d_mlp": -1}, "d_mlp"),
        ({"normalization": "BatchNorm"}, "normalization"),
        ({"local_scale": "linear"}, "local_scale"),
    ],
)
def test_model_spec_validation(overrides, match):
    with pytest.raises(simcheck.SimcheckError, match=match):
        ModelSpec(d_vocab=2, d_vocab_out=1, **overrides)
    with pytest.raises(simcheck.SimcheckError):
        build_model(get_task("modp"), **overrides)


def test_model_spec_round_trips_and_explicit_d_head():
    spec = ModelSpec(d_vocab=3, d_vocab_out=3, pos="periodic", d_model=30, n_heads=4, d_head=8)
    assert spec.head_dim == 8
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(simcheck.SimcheckError, match="unknown fields"):
        ModelSpec.from_dict({**spec.to_dict(), "dropout": 0.1})
    assert ModelSpec(d_vocab=2, d_vocab_out=1, pos="learned", n_ctx=64).max_length == 64
    assert ModelSpec(d_vocab=2, d_vocab_out=1, pos="rotary").max_length == POSITION_FREE_CTX


def test_mup_initialisation_scales_weights_by_fan_in():
    gpt2 = build_model(get_task("modp"), d_model=64, seed=0)
    mup = build_model(get_task("modp"), d_model=64, init="muP", seed=0)
    assert mup.simcheck_spec.init == "muP"
    # hidden weights: muP std 1/sqrt(fan_in) = 1/8; GPT-2 std 0.8/sqrt(d_model) = 0.1
    assert mup.blocks[0].mlp.W_in.std().item() == pytest.approx(1 / 8, rel=0.1)
    assert gpt2.blocks[0].mlp.W_in.std().item() == pytest.approx(0.1, rel=0.1)
