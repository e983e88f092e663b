"""Probes read the same values as a full cache, keep only query rows, and reject bad input."""

from __future__ import annotations

import pytest
import torch

import simcheck
from simcheck.probes import (
    AttentionLogits,
    AttentionRow,
    HeadOutput,
    Output,
    Probe,
    Residual,
    read_probes,
)


@pytest.fixture(scope="module")
def model():
    return simcheck.build_model(simcheck.get_task("kgram:S=3,k=2"), n_heads=2, d_model=16, seed=3)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 3, (3, 11), generator=torch.Generator().manual_seed(0))


def test_probes_match_the_full_cache(model, tokens):
    probes = [Residual(1, "pre"), AttentionRow(1), AttentionLogits(0), HeadOutput(1), Output()]
    positions = [-1, 4]
    values = read_probes(model, tokens, probes, positions=positions)
    _, cache = model.run_with_cache(tokens)
    rows = torch.tensor([10, 4])
    torch.testing.assert_close(values["resid_pre.L1"], cache["blocks.1.hook_resid_pre"][:, rows])
    pattern = cache["blocks.1.attn.hook_pattern"][:, :, rows].transpose(1, 2)
    torch.testing.assert_close(values["attn_row.L1"], pattern)
    scores = cache["blocks.0.attn.hook_attn_scores"][:, :, rows].transpose(1, 2)
    torch.testing.assert_close(values["attn_logits.L0"], scores)
    z = cache["blocks.1.attn.hook_z"][:, rows]
    per_head = torch.einsum("bqhd,hdm->bqhm", z, model.blocks[1].attn.W_O)
    torch.testing.assert_close(values["head_out.L1"], per_head)
    # the heads' outputs plus the attention bias make up the attention block's output
    torch.testing.assert_close(
        per_head.sum(2) + model.blocks[1].attn.b_O,
        cache["blocks.1.hook_attn_out"][:, rows],
        rtol=1e-5,
        atol=1e-6,
    )
    torch.testing.assert_close(values["output"], model(tokens)[:, rows])


def test_attention_rows_sum_to_one_and_respect_causality(model, tokens):
    row = read_probes(model, tokens, [AttentionRow(0)], positions=[4])["attn_row.L0"]
    torch.testing.assert_close(row.sum(-1), torch.ones(3, 1, 2))
    assert torch.all(row[..., 5:] == 0)


def test_user_defined_probe(model, tokens):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class MlpOut(Probe):
        layer: int

        def hook_names(self, model):
            return [f"blocks.{self.layer}.hook_mlp_out"]

        def capture(self, hook_name, value, positions):
            return value[:, positions]

    values = read_probes(model, tokens, [MlpOut(0)])
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(values["mlpout.layer=0"], cache["blocks.0.hook_mlp_out"][:, [-1]])


def test_bad_layer_and_position_are_clear_errors(model, tokens):
    with pytest.raises(simcheck.SimcheckError, match="layer 5 does not exist"):
        read_probes(model, tokens, [Residual(5)])
    with pytest.raises(simcheck.SimcheckError, match="not in an input of length 11"):
        read_probes(model, tokens, [Output()], positions=[11])
    with pytest.raises(simcheck.SimcheckError, match="distinct"):
        read_probes(model, tokens, [Output(), Output()])
