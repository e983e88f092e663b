"""`simcheck.record` runs the attention layers whose scores and weights no probe reads through
``scaled_dot_product_attention`` (`simcheck.model.chunked._fused_rows`) and the others explicitly
(`_explicit_rows`); both give `run_with_cache`'s values, for every supported model."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from float32 import assert_paths_close

import simcheck
import simcheck.model.chunked
import simcheck.model.recording
from simcheck.probes import AttentionLogits, AttentionRow, HeadOutput, Output, Probe, Residual

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # TransformerLens 3.9 deprecates HookedTransformer
    from transformer_lens import HookedTransformer, HookedTransformerConfig

LENGTH = 24
POSITIONS = [0, 5, 6, 7, -1]
ROWS = [0, 5, 6, 7, LENGTH - 1]


def simcheck_model(pos: str, **options: Any) -> torch.nn.Module:
    """A random 2-layer, 2-head simcheck model; a local bias, if any, made non-zero."""
    model = simcheck.build_model(
        simcheck.get_task("modp:p=3"), pos=pos, n_layers=2, n_heads=2, d_model=16, d_mlp=16,
        seed=1, **options,
    )  # fmt: skip
    with torch.no_grad():
        for block in model.blocks:
            if hasattr(block.attn, "local_bias"):
                block.attn.local_bias.normal_(generator=torch.Generator().manual_seed(2))
    return model.eval()


def tl_model(**options: Any) -> HookedTransformer:
    """A seeded random plain TransformerLens model: 2 layers, 4 heads, d_model 16."""
    settings = {"n_layers": 2, "d_model": 16, "n_heads": 4, "d_head": 4, "d_mlp": 32}
    settings.update(d_vocab=5, n_ctx=64, act_fn="gelu", seed=0, device="cpu", **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HookedTransformer(HookedTransformerConfig(**settings)).eval()


MODELS = {
    "periodic": lambda: simcheck_model("periodic"),
    "periodic-local-bias": lambda: simcheck_model("periodic", locality=2),
    "periodic-local-bias-constant": lambda: simcheck_model(
        "periodic", locality=1, local_scale="constant"
    ),
    "learned": lambda: simcheck_model("learned"),
    "rotary": lambda: simcheck_model("rotary"),
    "alibi": lambda: simcheck_model("alibi"),
    "tl-alibi": lambda: tl_model(positional_embedding_type="alibi"),
    "tl-rotary": lambda: tl_model(positional_embedding_type="rotary", normalization_type="RMS"),
    "tl-gqa": lambda: tl_model(n_key_value_heads=2),
    "tl-gqa-rotary": lambda: tl_model(n_key_value_heads=1, positional_embedding_type="rotary"),
    "tl-gqa-alibi": lambda: tl_model(n_key_value_heads=2, positional_embedding_type="alibi"),
    "tl-shortformer": lambda: tl_model(positional_embedding_type="shortformer"),
    "tl-no-attn-scale": lambda: tl_model(use_attn_scale=False),
    "tl-attn-scale-by-layer": lambda: tl_model(
        attn_scale=3.0, scale_attn_by_inverse_layer_idx=True
    ),
}


def tokens_for(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, model.cfg.d_vocab, (batch, LENGTH), generator=generator)


def plain_probes(model: torch.nn.Module) -> list[Probe]:
    """Probes that read no attention scores or weights: residuals, head outputs, output."""
    probes: list[Probe] = [Output()]
    for layer in range(model.cfg.n_layers):
        probes += [Residual(layer, "pre"), Residual(layer, "mid"), HeadOutput(layer)]
    return probes


def expected_rows(model: torch.nn.Module, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """`plain_probes`' values cut from a full `run_with_cache`."""
    _, cache = model.run_with_cache(tokens)
    expected = {"output": cache["unembed.hook_out"][:, ROWS]}
    for layer in range(model.cfg.n_layers):
        for point in ("pre", "mid"):
            expected[f"resid_{point}.L{layer}"] = cache[f"blocks.{layer}.hook_resid_{point}"][
                :, ROWS
            ]
        z = cache[f"blocks.{layer}.attn.hook_z"][:, ROWS]
        w_o = model.blocks[layer].attn.W_O
        expected[f"head_out.L{layer}"] = torch.einsum("bqhd,hdm->bqhm", z, w_o)
    return expected


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int, list]]]:
    """Count which engine path computed which layer's rows: (layer, rows) per call."""
    calls: dict[str, list[tuple[int, list]]] = {"fused": [], "explicit": []}
    for kind in calls:
        original = getattr(simcheck.model.chunked, f"_{kind}_rows")

        def counting(attn, layer, rows, *args, kind=kind, original=original):
            calls[kind].append((layer, list(rows)))
            return original(attn, layer, rows, *args)

        monkeypatch.setattr(simcheck.model.chunked, f"_{kind}_rows", counting)
    return calls


def explicit_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `record` compute every layer explicitly, as before the fused path."""
    chunked = simcheck.model.recording.chunked_attention

    def no_fusion(*args, fused_layers=(), read_rows=None):
        return chunked(*args, fused_layers=(), read_rows=None)

    monkeypatch.setattr(simcheck.model.recording, "chunked_attention", no_fusion)


def assert_close(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], model: torch.nn.Module
) -> None:
    """Two paths (SDPA and explicit rows, or the recording and run_with_cache) agree within
    the float32 tolerance of the model's forward pass (`float32`)."""
    for name, value in expected.items():
        assert_paths_close(actual[name], value, model, LENGTH, msg=name)


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_layers_equal_explicit_ones_and_run_with_cache(name, paths, monkeypatch):
    model = MODELS[name]()
    assert simcheck.model.chunked.supports_chunked_attention(model)
    tokens = tokens_for(model)
    probes = plain_probes(model)
    fused = simcheck.record(model, tokens, probes, positions=POSITIONS)
    # every layer fused, the last one on the query rows only
    runs = [(0, 1), (5, 8), (LENGTH - 1, LENGTH)]
    assert paths == {"fused": [(0, [(0, LENGTH)]), (1, runs)], "explicit": []}
    expected = expected_rows(model, tokens)
    assert_close(fused.states, expected, model)
    # blocks of 3 rows with their own masks give the same values
    monkeypatch.setattr(simcheck.model.chunked, "SCORE_BUDGET", 2 * 4 * LENGTH * 3)
    again = simcheck.record(model, tokens, probes, positions=POSITIONS)
    assert_close(again.states, expected, model)
    explicit_only(monkeypatch)
    paths["fused"].clear()
    explicit = simcheck.record(model, tokens, probes, positions=POSITIONS)
    assert paths["fused"] == [] and [layer for layer, _ in paths["explicit"]] == [0, 1]
    assert_close(fused.states, explicit.states, model)


@pytest.mark.parametrize("name", ["periodic-local-bias", "tl-gqa-rotary", "tl-alibi"])
@pytest.mark.parametrize("probed", [0, 1])
def test_only_layers_whose_rows_are_probed_run_explicitly(name, probed, paths):
    model = MODELS[name]()
    tokens = tokens_for(model)
    probes = [*plain_probes(model), AttentionRow(probed), AttentionLogits(probed)]
    recording = simcheck.record(model, tokens, probes, positions=POSITIONS)
    # every row of every layer fused; the probed rows of the probed layer again explicitly
    runs = [(0, 1), (5, 8), (LENGTH - 1, LENGTH)]
    assert paths["explicit"] == [(probed, runs)]
    assert [layer for layer, _ in paths["fused"]] == [0, 1]
    assert_close(recording.states, expected_rows(model, tokens), model)
    _, cache = model.run_with_cache(tokens)
    for probe, hook in ((AttentionRow, "hook_pattern"), (AttentionLogits, "hook_attn_scores")):
        assert_paths_close(
            recording[probe(probed).name],
            cache[f"blocks.{probed}.attn.{hook}"][:, :, ROWS].transpose(1, 2),
            model,
            LENGTH,
        )


def test_finite_precision_never_fuses(paths):
    model = MODELS["periodic-local-bias"]()
    simcheck.record(model, tokens_for(model), plain_probes(model), attention="hardmax")
    assert paths["fused"] == [] and [layer for layer, _ in paths["explicit"]] == [0, 1]
