"""`simcheck.record`: the chunked attention engine reproduces a full `run_with_cache` for every
positional encoding, the attention summaries match hand computations, finite-precision
attention turns hard exactly where the paper says, and bad input fails with a clear error."""

from __future__ import annotations

import math

import pytest
import torch
from float32 import assert_paths_close
from handmade import blank_modp_head

import simcheck
import simcheck.model.chunked
import simcheck.model.recording
from simcheck.errors import TokenError
from simcheck.model.build import SimcheckTransformer
from simcheck.probes import (
    AttentionEntropy,
    AttentionLogits,
    AttentionMass,
    AttentionRow,
    HeadOutput,
    LogitMargin,
    Output,
    Residual,
    TopWeight,
    default_probes,
)

LENGTH = 16
POSITIONS = [-1, 0, 5, 6, 7, 11]
"""Query positions: unsorted, a contiguous run (5, 6, 7) and isolated ones."""
ROWS = torch.tensor([15, 0, 5, 6, 7, 11])

REFERENCE = {
    "resid_mid.L0": "blocks.0.hook_resid_mid",
    "resid_pre.L1": "blocks.1.hook_resid_pre",
    "resid_post.L1": "blocks.1.hook_resid_post",
    "attn_row.L0": "blocks.0.attn.hook_pattern",
    "attn_row.L1": "blocks.1.attn.hook_pattern",
    "attn_logits.L1": "blocks.1.attn.hook_attn_scores",
    "output": "unembed.hook_out",
}
"""Probe name -> the `run_with_cache` hook holding the same value for every position."""
PROBES = [
    Residual(0, "mid"),
    Residual(1, "pre"),
    Residual(1, "post"),
    AttentionRow(0),
    AttentionRow(1),
    AttentionLogits(1),
    Output(),
]


def two_layer(pos: str, task: str = "modp:p=3") -> SimcheckTransformer:
    """A small random 2-layer model; a local attention bias, if any, is made non-zero."""
    model = simcheck.build_model(
        simcheck.get_task(task), pos=pos, n_layers=2, n_heads=2, d_model=16, d_mlp=16, seed=1
    )
    with torch.no_grad():
        for block in model.blocks:
            if hasattr(block.attn, "local_bias"):
                block.attn.local_bias.normal_(generator=torch.Generator().manual_seed(2))
    return model


def random_tokens(vocab: int, batch: int = 3, length: int = LENGTH, seed: int = 0) -> torch.Tensor:
    """Seeded uniform token ids [batch, length]."""
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def full_cache_rows(model: torch.nn.Module, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """What every probe of `PROBES` should hold, cut from a full `run_with_cache`."""
    _, cache = model.run_with_cache(tokens)
    rows = {}
    for name, hook in REFERENCE.items():
        value = cache[hook]
        attention = hook.endswith(("hook_pattern", "hook_attn_scores"))
        rows[name] = value[:, :, ROWS].transpose(1, 2) if attention else value[:, ROWS]
    return rows


def assert_states_close(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], model: torch.nn.Module
) -> None:
    """Every expected state is recorded, equal up to the float32 rounding of two paths
    through ``model`` (`float32.forward_tolerance`)."""
    assert actual.keys() >= expected.keys()
    for name, value in expected.items():
        assert_paths_close(actual[name], value, model, LENGTH, msg=name)


MODELS = [("modp:p=3", pos) for pos in simcheck.POSITIONAL_ENCODINGS] + [
    ("kgram:S=3,k=2", "periodic")  # periodic positions plus a local attention bias
]


@pytest.mark.parametrize(("task", "pos"), MODELS)
def test_chunked_engine_equals_run_with_cache(task, pos, monkeypatch):
    model = two_layer(pos, task)
    tokens = random_tokens(model.cfg.d_vocab)
    expected = full_cache_rows(model, tokens)
    assert simcheck.model.chunked.supports_chunked_attention(model)
    recording = simcheck.record(model, tokens, PROBES, positions=POSITIONS)
    assert recording.positions == tuple(ROWS.tolist())
    assert_states_close(recording.states, expected, model)
    # one row per block of attention, and one input per forward pass
    monkeypatch.setattr(simcheck.model.chunked, "SCORE_BUDGET", 1)
    blocked = simcheck.record(model, tokens, PROBES, positions=POSITIONS, batch_size=2)
    assert_states_close(blocked.states, expected, model)


def count_weight_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the engine to count the attention rows it computes; return the live counter."""
    rows: list[int] = []
    weights = simcheck.model.chunked.attention_weights

    def counting(scores, query_pos, mode):
        rows.append(len(query_pos))
        return weights(scores, query_pos, mode)

    monkeypatch.setattr(simcheck.model.chunked, "attention_weights", counting)
    return rows


def test_small_score_budget_computes_rows_in_many_blocks(monkeypatch):
    model = two_layer("periodic")
    tokens = random_tokens(2, batch=1)
    expected = full_cache_rows(model, tokens)
    monkeypatch.setattr(simcheck.model.chunked, "SCORE_BUDGET", 2 * LENGTH * 3)  # 3 rows a block
    rows = count_weight_rows(monkeypatch)
    recording = simcheck.record(model, tokens, PROBES, positions=POSITIONS)
    assert_states_close(recording.states, expected, model)
    # every layer computes its rows fused, then the 6 query rows it reports explicitly, in
    # runs 0 | 5-7 | 11 | 15 (layer 0's other rows reach the last layer through the fused z)
    assert rows == [1, 3, 1, 1, 1, 3, 1, 1]


def test_layers_past_the_deepest_probe_are_not_run(monkeypatch):
    model = two_layer("none")
    tokens = random_tokens(2)
    rows = count_weight_rows(monkeypatch)
    fused: list[tuple[int, list[tuple[int, int]]]] = []  # no probe reads attention: fused
    fused_rows = simcheck.model.chunked._fused_rows
    monkeypatch.setattr(
        simcheck.model.chunked,
        "_fused_rows",
        lambda attn, layer, runs, *rest: (
            fused.append((layer, runs)) or fused_rows(attn, layer, runs, *rest)
        ),
    )
    recording = simcheck.record(model, tokens, [Residual(0)], positions=[3, 9])
    # one pass over the batch: layer 0, its two query rows only
    assert rows == [] and fused == [(0, [(3, 4), (9, 10)])]
    _, cache = model.run_with_cache(tokens)
    assert_paths_close(
        recording["resid_post.L0"], cache["blocks.0.hook_resid_post"][:, [3, 9]], model, LENGTH
    )


def test_batches_split_by_size_and_by_token_budget(monkeypatch):
    model = two_layer("rotary")
    tokens = random_tokens(2, batch=5)
    whole = simcheck.record(model, tokens, PROBES, positions=POSITIONS, batch_size=5)
    by_two = simcheck.record(model, tokens, PROBES, positions=POSITIONS, batch_size=2)
    monkeypatch.setattr(simcheck.model.recording, "TOKEN_BUDGET", LENGTH)  # one input per pass
    by_budget = simcheck.record(model, tokens, PROBES, positions=POSITIONS)
    for name in whole.states:
        assert whole[name].shape[0] == 5
        # batches of other sizes may take other kernels
        assert_paths_close(by_two[name], whole[name], model, LENGTH, msg=name)
        assert_paths_close(by_budget[name], whole[name], model, LENGTH, msg=name)


@pytest.mark.parametrize("pos", ["none", "learned", "periodic", "rotary"])
def test_rebuilt_logits_equal_the_real_ones(pos):
    model = two_layer(pos)
    tokens = random_tokens(2)
    probes = [AttentionLogits(1), AttentionLogits(1, rebuild=True), LogitMargin(0, rebuild=True)]
    recording = simcheck.record(model, tokens, probes, positions=POSITIONS)
    real = recording["attn_logits.L1"]
    assert_paths_close(recording["attn_logits_qk.L1"], real, model, LENGTH)
    assert torch.isinf(real).sum() > 0  # the masked keys are compared too
    margin = simcheck.record(model, tokens, [LogitMargin(0)], positions=POSITIONS)
    assert_paths_close(recording["logit_margin_qk.L0"], margin["logit_margin.L0"], model, LENGTH)


def test_hooks_engine_gives_the_same_states(monkeypatch):
    model = two_layer("periodic", "kgram:S=3,k=2")
    tokens = random_tokens(3)
    probes = [*default_probes(model, period=2, window=1), *PROBES[3:6]]
    chunked = simcheck.record(model, tokens, probes, positions=POSITIONS)
    monkeypatch.setattr(simcheck.model.recording, "supports_chunked_attention", lambda model: False)
    hooked = simcheck.record(model, tokens, probes, positions=POSITIONS, batch_size=2)
    assert chunked.keys() == hooked.keys()
    assert_states_close(hooked.states, chunked.states, model)
    with pytest.raises(simcheck.SimcheckError, match="finite-precision attention needs"):
        simcheck.record(model, tokens, probes, attention="hardmax")


@pytest.fixture(scope="module")
def summaries():
    """A random periodic model's attention rows and logits with every summary probe."""
    model = two_layer("periodic")
    tokens = random_tokens(2, batch=4)
    probes = [
        AttentionRow(1),
        AttentionLogits(1),
        AttentionMass(1, "type"),
        AttentionMass(1, "token"),
        AttentionMass(1, "residue"),
        AttentionMass(1, "window", window=2),
        AttentionEntropy(1),
        TopWeight(1),
        LogitMargin(1),
    ]
    return tokens, simcheck.record(model, tokens, probes, positions=[0, 1, 6, 15])


def test_attention_mass_matches_the_row(summaries):
    tokens, recording = summaries
    row = recording["attn_row.L1"]  # [batch, query, head, key]
    mass = recording["attn_mass_type.L1"]
    assert mass.shape == (4, 4, 2, 2 * 3)  # types: token * period + residue
    expected = torch.zeros_like(mass)
    for b in range(4):
        for key in range(LENGTH):
            expected[b, :, :, int(tokens[b, key]) * 3 + key % 3] += row[b, :, :, key]
    torch.testing.assert_close(mass, expected)
    torch.testing.assert_close(
        recording["attn_mass_token.L1"], expected.unflatten(-1, (2, 3)).sum(-1)
    )
    torch.testing.assert_close(
        recording["attn_mass_residue.L1"], expected.unflatten(-1, (2, 3)).sum(-2)
    )
    window = recording["attn_mass_window.L1.window=2"]
    inside = torch.stack(
        [row[:, i, :, max(0, q - 2) : q + 1].sum(-1) for i, q in enumerate([0, 1, 6, 15])], 1
    )
    torch.testing.assert_close(window[..., 0], inside)
    for name in ("type", "token", "residue", "window.L1.window=2"):
        total = recording[f"attn_mass_{name}" if "." in name else f"attn_mass_{name}.L1"].sum(-1)
        torch.testing.assert_close(total, torch.ones_like(total), msg=name)


def test_entropy_top_weight_and_margin_match_the_row(summaries):
    _, recording = summaries
    row, logits = recording["attn_row.L1"], recording["attn_logits.L1"]
    plogp = torch.where(row > 0, row * row.log(), torch.zeros_like(row))
    torch.testing.assert_close(recording["attn_entropy.L1"], -plogp.sum(-1))
    torch.testing.assert_close(recording["attn_top.L1"], row.max(-1).values)
    top2 = logits.topk(2, dim=-1).values  # random logits: no ties
    margin = recording["logit_margin.L1"]
    torch.testing.assert_close(margin[:, 1:], (top2[..., 0] - top2[..., 1])[:, 1:])
    assert torch.all(margin[:, 0] == math.inf)  # query 0 sees a single key
    assert torch.all(recording["attn_entropy.L1"][:, 0] == 0)


def hard_head_model(gap: float) -> SimcheckTransformer:
    """One head whose logit is ``gap`` on keys at positions 0 mod 3 and 0 elsewhere, for
    every query; its values copy the token (residual dimension 1) into the output.

    Residual dimensions: 0 flags positions 0 mod 3, 1 holds the token id, 3 is constant.
    """
    model = blank_modp_head()
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.embed.W_E[1, 1] = 1.0
        model.pos_embed.W_pos[:, 3] = 1.0
        model.pos_embed.W_pos[0, 0] = 1.0
        attn.W_Q[0, 3, 0] = 2.0 * gap  # q = 2 gap e_0; / sqrt(d_head = 4) makes the logit gap
        attn.W_K[0, 0, 0] = 1.0
        attn.W_V[0] = torch.eye(4)
        attn.W_O[0] = torch.eye(4)
    return model


@pytest.mark.parametrize(("gap", "bits"), [(1.0, 4), (0.5, 3), (2.0, 6)])
def test_finite_precision_attention_is_hard_past_the_threshold(gap, bits):
    threshold = 2 ** (bits / gap)  # the prefix length past which other keys round to 0
    model = hard_head_model(gap)
    tokens = random_tokens(2, batch=2, length=int(2 * threshold), seed=4)
    # prefix lengths n = i + 1 just past the threshold and at the end of the input; at
    # n = 2^(bits/gap) exactly the other keys keep their weight 2^-bits
    positions = [int(threshold) + k - 1 for k in (1, 2, 5)] + [tokens.shape[1] - 1]
    probes = [AttentionRow(0), HeadOutput(0), LogitMargin(0)]
    recording = simcheck.record(model, tokens, probes, positions, attention=f"hardmax:{bits}")
    assert recording.attention == f"hardmax:{bits}"
    for index, query in enumerate(positions):
        row = recording["attn_row.L0"][:, index, 0, : query + 1]
        in_class = torch.arange(query + 1) % 3 == 0
        uniform = torch.tensor(1.0) / int(in_class.sum())
        assert torch.all(row[:, in_class] == uniform) and torch.all(row[:, ~in_class] == 0)
        # the forward pass uses those weights: the head outputs the class's mean token
        mean_token = tokens[:, : query + 1][:, in_class].float().mean(-1)
        torch.testing.assert_close(recording["head_out.L0"][:, index, 0, 1], mean_token)
    torch.testing.assert_close(
        recording["logit_margin.L0"], torch.full((2, len(positions), 1), gap)
    )


@pytest.mark.parametrize(("gap", "bits"), [(1.0, 4), (0.5, 3)])
def test_finite_precision_attention_is_soft_well_below_the_threshold(gap, bits):
    model = hard_head_model(gap)
    tokens = random_tokens(2, batch=2, length=12, seed=5)
    positions = [1, 3, 7]  # prefix lengths 2, 4 and 8, below 2^(bits/gap) = 16 and 64
    recording = simcheck.record(
        model, tokens, [AttentionRow(0)], positions, attention=f"hardmax:{bits}"
    )
    for index, query in enumerate(positions):
        n = query + 1
        in_class = torch.arange(n) % 3 == 0
        row = recording["attn_row.L0"][:, index, 0, :n]
        other = n**-gap / (int(in_class.sum()) + int((~in_class).sum()) * n**-gap)
        assert torch.all(row[:, ~in_class] > 0)
        torch.testing.assert_close(row[:, ~in_class], torch.full_like(row[:, ~in_class], other))
    softmax = simcheck.record(model, tokens, [AttentionRow(0)], positions=[-1])
    assert torch.all(softmax["attn_row.L0"] > 0)


def test_attention_modes_parse():
    parse = simcheck.model.chunked.parse_attention
    assert parse("hardmax:8") == simcheck.FinitePrecision(8)
    assert parse("hardmax") == simcheck.FinitePrecision(8)
    assert parse(simcheck.FinitePrecision(3)) == simcheck.FinitePrecision(3)
    assert parse("softmax") == "softmax" == parse(None)
    for bad, message in [
        ("hardmax:x", "write hardmax:P"),
        ("hardmax:8:2", "write hardmax:P"),
        ("hardmax:0", "bits must be in 1..64"),
        ("hardmax:65", "bits must be in 1..64"),
        ("hard", "unknown attention mode"),
    ]:
        with pytest.raises(simcheck.SimcheckError, match=message):
            parse(bad)


@pytest.fixture(scope="module")
def small():
    return simcheck.build_model(simcheck.get_task("modp:p=3"), d_model=8, d_mlp=8, seed=2)


def test_records_the_last_position_by_default_and_is_deterministic(small):
    tokens = random_tokens(2, batch=2, length=9)
    first = simcheck.record(small, tokens.tolist(), [Residual(0), Output()])
    second = simcheck.record(small, tokens, [Residual(0), Output()])
    assert first.positions == (8,) and first.length == 9 and first.attention == "softmax"
    assert first["output"].shape == (2, 1, 1)
    assert_paths_close(first["output"], small(tokens)[:, [-1]], small, 9)
    for name in first.states:
        assert torch.equal(first[name], second[name])
    single = simcheck.record(small, tokens[0], [Output()])  # one input without a batch axis
    torch.testing.assert_close(single["output"], first["output"][:1])


def test_bad_inputs_are_clear_errors():
    learned = simcheck.build_model(simcheck.get_task("modp:p=3"), pos="learned", n_ctx=8)
    simcheck.record(learned, torch.zeros(1, 8, dtype=torch.long), [Output()])
    with pytest.raises(simcheck.LengthError, match="input length 9 exceeds the 8 positions"):
        simcheck.record(learned, torch.zeros(1, 9, dtype=torch.long), [Output()])
    with pytest.raises(TokenError, match=r"token id 2 is outside the model's vocabulary 0\.\.1"):
        simcheck.record(learned, torch.tensor([[0, 1, 2]]), [Output()])
    with pytest.raises(TokenError, match="token id -1 is outside"):
        simcheck.record(learned, torch.tensor([[0, -1]]), [Output()])
    for floats in (torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool)):
        with pytest.raises(simcheck.SimcheckError, match="tokens must be integer ids"):
            simcheck.record(learned, floats, [Output()])
    for empty in (
        [],
        [[]],
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(0, 4, dtype=torch.long),
    ):
        with pytest.raises(simcheck.SimcheckError, match="batch >= 1 and length >= 1"):
            simcheck.record(learned, empty, [Output()])
    with pytest.raises(simcheck.SimcheckError, match=r"shape \[batch, length\]"):
        simcheck.record(learned, torch.zeros(2, 2, 2, dtype=torch.long), [Output()])
