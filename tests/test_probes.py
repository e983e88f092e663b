"""Probes read the same values as a full cache, keep only query rows, and reject bad input."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from float32 import assert_paths_close

import simcheck
from simcheck.probes import (
    AttentionLogits,
    AttentionMass,
    AttentionRow,
    HeadOutput,
    Output,
    Probe,
    Residual,
)


@pytest.fixture(scope="module")
def model():
    model = simcheck.build_model(simcheck.get_task("kgram:S=3,k=2"), n_heads=2, d_model=16, seed=3)
    with torch.no_grad():  # the local bias starts at zero; make it matter
        for block in model.blocks:
            block.attn.local_bias.normal_(generator=torch.Generator().manual_seed(1))
    return model


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 3, (3, 11), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def cache(model, tokens):
    _, cache = model.run_with_cache(tokens)
    return cache


def test_probes_match_the_full_cache(model, tokens, cache):
    probes = [Residual(1, "pre"), AttentionRow(1), AttentionLogits(0), HeadOutput(1), Output()]
    recording = simcheck.record(model, tokens, probes, positions=[-1, 4])
    rows = torch.tensor([10, 4])
    assert recording.positions == (10, 4)
    # the chunked engine against TransformerLens's forward: two float32 paths
    length = tokens.shape[1]
    assert_paths_close(recording["resid_pre.L1"], cache["blocks.1.hook_resid_pre"][:, rows],
                       model, length)  # fmt: skip
    pattern = cache["blocks.1.attn.hook_pattern"][:, :, rows].transpose(1, 2)
    assert_paths_close(recording["attn_row.L1"], pattern, model, length)
    scores = cache["blocks.0.attn.hook_attn_scores"][:, :, rows].transpose(1, 2)
    assert_paths_close(recording["attn_logits.L0"], scores, model, length)
    z = cache["blocks.1.attn.hook_z"][:, rows]
    per_head = torch.einsum("bqhd,hdm->bqhm", z, model.blocks[1].attn.W_O)
    assert_paths_close(recording["head_out.L1"], per_head, model, length)
    # the heads' outputs plus the attention bias make up the attention block's output
    assert_paths_close(
        per_head.sum(2) + model.blocks[1].attn.b_O,
        cache["blocks.1.hook_attn_out"][:, rows],
        model,
        length,
    )
    assert_paths_close(recording["output"], model(tokens)[:, rows], model, length)


def test_probe_values_hold_only_the_query_rows(model, tokens):
    probes = [Residual(0), AttentionRow(0), AttentionMass(0, "token"), Output()]
    recording = simcheck.record(model, tokens, probes, positions=[2, 7])
    assert recording["resid_post.L0"].shape == (3, 2, 16)
    assert recording["attn_row.L0"].shape == (3, 2, 2, 11)
    assert recording["attn_mass_token.L0"].shape == (3, 2, 2, 3)
    assert recording["output"].shape == (3, 2, 3)


def test_attention_rows_sum_to_one_and_respect_causality(model, tokens):
    row = simcheck.record(model, tokens, [AttentionRow(0)], positions=[4])["attn_row.L0"]
    torch.testing.assert_close(row.sum(-1), torch.ones(3, 1, 2))
    assert torch.all(row[..., 5:] == 0)
    assert torch.all(row[..., :5] > 0)
    logits = simcheck.record(model, tokens, [AttentionLogits(0)], positions=[4])
    assert torch.all(logits["attn_logits.L0"][..., 5:] == float("-inf"))


def test_user_defined_probe_needs_only_hook_names(model, tokens, cache):
    @dataclass(frozen=True)
    class MlpOut(Probe):
        layer: int

        def hook_names(self, model):
            return [f"blocks.{self.layer}.hook_mlp_out"]

    recording = simcheck.record(model, tokens, [MlpOut(0)], positions=[-1, 3])
    torch.testing.assert_close(
        recording["mlpout.layer=0"], cache["blocks.0.hook_mlp_out"][:, [10, 3]]
    )


def test_a_probe_without_hook_names_says_what_to_implement(model, tokens):
    @dataclass(frozen=True)
    class Nothing(Probe):
        pass

    with pytest.raises(NotImplementedError, match="Nothing must implement hook_names"):
        simcheck.record(model, tokens, [Nothing()])


def test_bad_layer_position_and_probe_lists_are_clear_errors(model, tokens):
    with pytest.raises(simcheck.SimcheckError, match="layer 5 does not exist"):
        simcheck.record(model, tokens, [Residual(5)])
    with pytest.raises(simcheck.SimcheckError, match="layer -1 does not exist"):
        simcheck.record(model, tokens, [AttentionRow(-1)])
    with pytest.raises(simcheck.SimcheckError, match="residual point must be pre, mid or post"):
        simcheck.record(model, tokens, [Residual(0, "middle")])  # type: ignore[arg-type]
    with pytest.raises(simcheck.SimcheckError, match="by='tokens' is unknown"):
        simcheck.record(model, tokens, [AttentionMass(0, "tokens")])  # type: ignore[arg-type]
    for positions in ([11], [-12], [3, 3], [-1, 10], []):
        with pytest.raises(simcheck.SimcheckError, match="not distinct positions of an input"):
            simcheck.record(model, tokens, [Output()], positions=positions)
    with pytest.raises(simcheck.SimcheckError, match="distinct probes"):
        simcheck.record(model, tokens, [Output(), Output()])
    with pytest.raises(simcheck.SimcheckError, match="at least one probe"):
        simcheck.record(model, tokens, [])


def test_unknown_probe_name_lists_the_recorded_ones(model, tokens):
    recording = simcheck.record(model, tokens, [Output()])
    with pytest.raises(KeyError, match=r"no probe named 'resid'; recorded: \['output'\]"):
        recording["resid"]


def test_probe_names_tell_apart_mass_settings_and_rebuild_refuses_biases(model, tokens):
    """Masses with different periods are different probes; rebuilding logits from q and k
    on a model with a local bias would silently drop it, so it is refused."""
    masses = [AttentionMass(0, "residue", period=2), AttentionMass(0, "residue", period=3)]
    recording = simcheck.record(model, tokens, masses)
    assert recording["attn_mass_residue.L0.period=3"].shape[-1] == 3
    with pytest.raises(simcheck.SimcheckError, match="local attention bias"):
        simcheck.record(model, tokens, [AttentionLogits(0, rebuild=True)])
