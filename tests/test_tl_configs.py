"""`simcheck.record` on plain TransformerLens 3.9 `HookedTransformer` models of many
configurations (positions, normalization, MLP kinds, depth, heads, grouped-query attention):
the chunked engine gives `run_with_cache`'s values at the query positions, on every device
present; finite-precision attention and `simcheck.check` run on grouped-query models."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from float32 import assert_paths_close

import simcheck
from simcheck.checking.outcomes import Outcome
from simcheck.model.chunked import FinitePrecision, attention_weights, supports_chunked_attention
from simcheck.probes import (
    AttentionLogits,
    AttentionRow,
    HeadOutput,
    Output,
    Probe,
    ProbeContext,
    Residual,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # TransformerLens 3.9 deprecates HookedTransformer
    from transformer_lens import HookedTransformer, HookedTransformerConfig

LENGTH = 24
POSITIONS = [0, 5, 6, 7, -1]
"""Query positions: the first (one visible key), a contiguous run and the last."""
ROWS = [0, 5, 6, 7, LENGTH - 1]

BASE = {
    "n_layers": 2,
    "d_model": 16,
    "n_heads": 4,
    "d_mlp": 32,
    "d_vocab": 5,
    "n_ctx": 64,
    "act_fn": "relu",
    "seed": 0,
}

CONFIGS = {
    "standard-LN-relu": {},
    "standard-none-1layer-1head": {"normalization_type": None, "n_layers": 1, "n_heads": 1},
    "standard-gated-gelu-4layers-1head": {
        "gated_mlp": True,
        "act_fn": "gelu",
        "n_layers": 4,
        "n_heads": 1,
        "d_model": 24,
    },
    "rotary-RMS-gated-silu-2heads": {
        "positional_embedding_type": "rotary",
        "normalization_type": "RMS",
        "gated_mlp": True,
        "act_fn": "silu",
        "n_heads": 2,
    },
    "rotary-LN-1head": {"positional_embedding_type": "rotary", "n_heads": 1, "d_model": 32},
    "alibi-LNPre-gelu-3layers": {
        "positional_embedding_type": "alibi",
        "normalization_type": "LNPre",
        "act_fn": "gelu",
        "n_layers": 3,
    },
    "alibi-RMS-silu-2heads": {
        "positional_embedding_type": "alibi",
        "normalization_type": "RMS",
        "act_fn": "silu",
        "n_heads": 2,
    },
    "shortformer-LN-2heads": {"positional_embedding_type": "shortformer", "n_heads": 2},
    "shortformer-RMSPre-silu-3layers": {
        "positional_embedding_type": "shortformer",
        "normalization_type": "RMSPre",
        "act_fn": "silu",
        "n_layers": 3,
    },
    "attn-only-standard-4layers-2heads": {"attn_only": True, "n_layers": 4, "n_heads": 2},
    "attn-only-rotary-RMSPre-1layer": {
        "attn_only": True,
        "positional_embedding_type": "rotary",
        "normalization_type": "RMSPre",
        "n_layers": 1,
    },
    "gqa2-standard-LN-gelu": {"n_key_value_heads": 2, "act_fn": "gelu"},
    "gqa1-standard-RMSPre-gated-gelu-4layers": {
        "n_key_value_heads": 1,
        "normalization_type": "RMSPre",
        "gated_mlp": True,
        "act_fn": "gelu",
        "n_layers": 4,
        "d_model": 32,
    },
    "gqa2-rotary-RMS-gated-silu": {
        "n_key_value_heads": 2,
        "positional_embedding_type": "rotary",
        "normalization_type": "RMS",
        "gated_mlp": True,
        "act_fn": "silu",
    },
    "gqa1-rotary-qk-norm": {
        "n_key_value_heads": 1,
        "positional_embedding_type": "rotary",
        "use_qk_norm": True,
    },
    "gqa2-alibi-LNPre-3layers": {
        "n_key_value_heads": 2,
        "positional_embedding_type": "alibi",
        "normalization_type": "LNPre",
        "n_layers": 3,
    },
    "gqa2-shortformer-LN": {"n_key_value_heads": 2, "positional_embedding_type": "shortformer"},
    "gqa1-2heads-shortformer-none-attn-only": {
        "n_key_value_heads": 1,
        "n_heads": 2,
        "positional_embedding_type": "shortformer",
        "normalization_type": None,
        "attn_only": True,
    },
    "gqa2-ungrouped": {"n_key_value_heads": 2, "ungroup_grouped_query_attention": True},
}
"""Each option at least once, not their cross product: positions standard / rotary / alibi /
shortformer; normalization LN / LNPre / RMS / RMSPre / None; attention-only; relu / gelu /
silu, plain and gated MLPs; 1-4 layers; 1, 2 and 4 heads; grouped-query attention with 2 and
1 key/value heads."""


def tl_model(options: dict[str, Any], device: str = "cpu") -> HookedTransformer:
    """A seeded random `HookedTransformer` of ``BASE`` updated by ``options``, on ``device``."""
    settings = {**BASE, **options}
    settings["d_head"] = settings["d_model"] // settings["n_heads"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(HookedTransformerConfig(**settings, device=device))
    return model.eval()


def tokens_for(model: HookedTransformer, batch: int = 3, length: int = LENGTH) -> torch.Tensor:
    """Seeded uniform token ids [batch, length] on the model's device."""
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, model.cfg.d_vocab, (batch, length), generator=generator)
    return tokens.to(model.cfg.device)


@dataclass(frozen=True)
class KeysValues(Probe):
    """Key-indexed values, kept whole: ``hook_k`` and ``hook_v`` (and ``hook_rot_k``) of a
    layer, each [batch, key, key/value head, d_head], so grouped-query models keep their
    n_key_value_heads heads."""

    layer: int
    comparable: ClassVar[bool] = False

    def hook_names(self, model: Any) -> list[str]:
        rotary = model.cfg.positional_embedding_type == "rotary"
        kinds = ("k", "v", "rot_k") if rotary else ("k", "v")
        return [f"blocks.{self.layer}.attn.hook_{kind}" for kind in kinds]

    def finalize(self, captured: dict[str, torch.Tensor], context: ProbeContext) -> torch.Tensor:
        return torch.stack(list(captured.values()))  # [kind, batch, key, head, d_head]


def probes_for(model: HookedTransformer) -> tuple[list[Probe], dict[str, Any]]:
    """Probes of every layer, and for each probe name how to read its value out of a
    `run_with_cache` cache."""
    cfg = model.cfg
    probes: list[Probe] = [Output()]
    expected: dict[str, Any] = {"output": lambda cache: cache["unembed.hook_out"][:, ROWS]}

    def query_rows(hook: str):
        return lambda cache: cache[hook][:, ROWS]

    def attention_rows(hook: str):
        return lambda cache: cache[hook][:, :, ROWS].transpose(1, 2)

    for layer in range(cfg.n_layers):
        points = ("pre", "post") if cfg.attn_only else ("pre", "mid", "post")
        for point in points:
            probes.append(Residual(layer, point))
            expected[f"resid_{point}.L{layer}"] = query_rows(f"blocks.{layer}.hook_resid_{point}")
        probes += [HeadOutput(layer), AttentionRow(layer), AttentionLogits(layer)]
        w_o = model.blocks[layer].attn.W_O

        def head_out(cache, layer=layer, w_o=w_o):
            return torch.einsum(
                "bqhd,hdm->bqhm", cache[f"blocks.{layer}.attn.hook_z"][:, ROWS], w_o
            )

        expected[f"head_out.L{layer}"] = head_out
        expected[f"attn_row.L{layer}"] = attention_rows(f"blocks.{layer}.attn.hook_pattern")
        expected[f"attn_logits.L{layer}"] = attention_rows(f"blocks.{layer}.attn.hook_attn_scores")
    keys = KeysValues(0)
    probes.append(keys)
    expected[keys.name] = lambda cache: torch.stack(
        [cache[name] for name in keys.hook_names(model)]
    )
    return probes, expected


def assert_on_cpu_close(
    actual: torch.Tensor, expected: torch.Tensor, name: str, model: HookedTransformer
) -> None:
    """Equal, once both are on the CPU, within the float32 tolerance of two paths through
    ``model`` (`float32.forward_tolerance`); infinite (masked) entries must match."""
    assert_paths_close(actual.detach().cpu(), expected.detach().cpu(), model, LENGTH, msg=name)


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_record_equals_run_with_cache(options, device):
    model = tl_model(options, device)
    assert supports_chunked_attention(model)
    tokens = tokens_for(model)
    probes, expected = probes_for(model)
    recording = simcheck.record(model, tokens, probes, positions=POSITIONS)
    assert recording.positions == tuple(ROWS)
    _, cache = model.run_with_cache(tokens)
    assert recording.keys() == list(expected)
    for name, read in expected.items():
        assert_on_cpu_close(recording[name], read(cache), name, model)
    # a shallow probe stops the forward pass early: the last layer run computes only the
    # query rows, and the layers past it are not run
    shallow = simcheck.record(model, tokens, [Residual(0), AttentionRow(0)], positions=POSITIONS)
    first = cache["blocks.0.hook_resid_post"][:, ROWS]
    assert_on_cpu_close(shallow["resid_post.L0"], first, "L0", model)
    assert_on_cpu_close(shallow["attn_row.L0"], expected["attn_row.L0"](cache), "row L0", model)


def finite_precision_reference(
    model: HookedTransformer, tokens: torch.Tensor, mode: FinitePrecision
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """TransformerLens's own forward pass with each layer's softmax pattern replaced by the
    finite-precision weights of its (hooked) logits: (output, patterns by hook name)."""
    scores: dict[int, torch.Tensor] = {}
    patterns: dict[str, torch.Tensor] = {}
    query_pos = torch.arange(tokens.shape[1], device=tokens.device)

    def keep_scores(value, hook):
        scores[hook.layer()] = value

    def replace_pattern(value, hook):
        weights = attention_weights(scores[hook.layer()], query_pos, mode)
        patterns[hook.name] = weights
        return weights

    hooks = [
        (lambda name: name.endswith("hook_attn_scores"), keep_scores),
        (lambda name: name.endswith("hook_pattern"), replace_pattern),
    ]
    output = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return output, patterns


@pytest.mark.parametrize(
    "name", ["gqa2-standard-LN-gelu", "gqa1-rotary-qk-norm", "gqa2-alibi-LNPre-3layers"]
)
def test_finite_precision_attention_on_grouped_query_models(name, device):
    model = tl_model(CONFIGS[name], device)
    tokens = tokens_for(model)
    mode = FinitePrecision(4)
    layers = range(model.cfg.n_layers)
    probes = [Output(), *(AttentionRow(layer) for layer in layers)]
    recording = simcheck.record(model, tokens, probes, positions=POSITIONS, attention=mode)
    assert recording.attention == "hardmax:4"
    output, patterns = finite_precision_reference(model, tokens, mode)
    assert_on_cpu_close(recording["output"], output[:, ROWS], "output", model)
    for layer in layers:
        row = recording[f"attn_row.L{layer}"]
        reference = patterns[f"blocks.{layer}.attn.hook_pattern"][:, :, ROWS].transpose(1, 2)
        assert_on_cpu_close(row, reference, f"row L{layer}", model)
        assert torch.all(row.sum(-1).sub(1).abs() < 1e-5)
    assert bool((recording["attn_row.L0"] == 0).any())  # 4 bits round small weights to 0
    # "hardmax" by name is 8 bits
    default = simcheck.record(model, tokens, [Output()], attention="hardmax")
    assert default.attention == "hardmax:8"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_check_runs_on_every_configuration(name):
    """The check on each configuration, read through an adapter: TransformerLens's default
    unembedding (logit 0 is the ModPTask value) and a BOS-like prefix token."""
    model = tl_model(CONFIGS[name])
    adapter = simcheck.ModelAdapter(outputs=0, prefix=(4,))
    report = simcheck.check(
        model,
        task="modp:p=3",
        train_len=8,
        adapter=adapter,
        test_lengths=[24],
        witnesses=["types"],
        samples=8,
        max_samples=8,
        reference_samples=16,
    )
    assert report.outcome[24] in set(Outcome)
    assert report.result(24).eps_star >= 0


def test_rebuilt_logits_on_grouped_query_models():
    """Logits rebuilt from hook_q and hook_k (fewer key heads than query heads) equal
    TransformerLens's attention scores."""
    model = tl_model({"n_heads": 4, "n_key_value_heads": 2})
    tokens = tokens_for(model)
    recording = simcheck.record(model, tokens, [AttentionLogits(0, rebuild=True)], POSITIONS)
    _, cache = model.run_with_cache(tokens)
    expected = cache["blocks.0.attn.hook_attn_scores"][:, :, ROWS].transpose(1, 2)
    rebuilt = recording["attn_logits_qk.L0"]
    assert torch.equal(torch.isinf(rebuilt), torch.isinf(expected))
    finite = torch.isfinite(expected)
    assert_paths_close(rebuilt[finite], expected[finite], model, LENGTH)
