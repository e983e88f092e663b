"""`simcheck.record` on a TransformerLens `TransformerBridge` matches the HuggingFace model it
wraps: a tiny random GPT-2 saved to a temporary directory and booted from there (no network).

A booted bridge hands each hook function the canonical name of an aliased hook point
(``blocks.0.attn.k.hook_out`` for ``blocks.0.attn.hook_k``); `record` keys what it captures by
the name the probe asked for, so the key-indexed ``hook_k`` is kept whole and the logits
rebuilt from q and k have the full key axis. See docs/transformer_lens_4.md."""

from __future__ import annotations

import math

import pytest
import torch
from float32 import path_tolerance

import simcheck
from simcheck.errors import SimcheckError
from simcheck.probes import (
    AttentionEntropy,
    AttentionLogits,
    AttentionRow,
    HeadOutput,
    Output,
    Residual,
)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
model_bridge = pytest.importorskip("transformer_lens.model_bridge")

N_LAYERS, N_HEADS, D_MODEL, VOCAB = 2, 2, 32, 8
LENGTH = 24
POSITIONS = (0, 5, 11, -1)
QUERY = torch.tensor([0, 5, 11, LENGTH - 1])
PROBES = [
    *(Residual(layer, point) for layer in range(N_LAYERS) for point in ("pre", "mid", "post")),
    *(
        kind(layer)
        for layer in range(N_LAYERS)
        for kind in (HeadOutput, AttentionRow, AttentionLogits, AttentionEntropy)
    ),
    Output(),
]


def save_tiny_gpt2(directory) -> None:
    """A 2-layer GPT-2 with random weights and a word-level tokenizer over "0".."7"."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        n_embd=D_MODEL,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    vocab = {str(i): i for i in range(VOCAB)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    last = str(VOCAB - 1)
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="0", bos_token=last, eos_token=last, pad_token="0"
    ).save_pretrained(directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny_gpt2(directory)
    return directory


@pytest.fixture(scope="module")
def bridge(model_dir):
    """The saved model booted as a `TransformerBridge` (not in compatibility mode)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        hub = pytest.importorskip("huggingface_hub.constants")
        mp.setattr(hub, "HF_HUB_OFFLINE", True, raising=False)  # read once, at import
        try:
            booted = model_bridge.TransformerBridge.boot_transformers(str(model_dir), device="cpu")
        except Exception as error:  # an environment that cannot boot from a local path
            pytest.skip(f"cannot boot a TransformerBridge from a local path here: {error!r}")
    booted.eval()
    return booted


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, VOCAB, (3, LENGTH), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def hf(model_dir, tokens):
    """The same checkpoint as a plain HuggingFace model (eager attention): residual stream
    before, between and after each block's sublayers, per-head attention output, the
    pre-softmax logits q k^T / sqrt(d_head), attention weights and output logits."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager"
    )
    model.eval()
    kept: dict[str, torch.Tensor] = {}

    def keep(name, inputs=False):
        def hook(module, args, output=None):
            value = args[0] if inputs else output
            kept[name] = value[0] if isinstance(value, tuple) else value

        return hook

    handles = []
    for layer, block in enumerate(model.transformer.h):
        handles += [
            block.ln_2.register_forward_pre_hook(keep(f"resid_mid.L{layer}", inputs=True)),
            block.register_forward_hook(keep(f"resid_post.L{layer}")),
            block.attn.c_attn.register_forward_hook(keep(f"qkv.L{layer}")),
            block.attn.c_proj.register_forward_pre_hook(keep(f"z.L{layer}", inputs=True)),
        ]
    with torch.no_grad():
        out = model(tokens, output_attentions=True, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    d_head = D_MODEL // N_HEADS
    future = torch.ones(LENGTH, LENGTH, dtype=torch.bool).triu(1)
    for layer, block in enumerate(model.transformer.h):
        q, k, _ = kept.pop(f"qkv.L{layer}").split(D_MODEL, dim=-1)
        q, k = (x.reshape(*x.shape[:2], N_HEADS, d_head) for x in (q, k))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d_head)
        kept[f"logits.L{layer}"] = scores.masked_fill(future, -math.inf)
        z = kept.pop(f"z.L{layer}").reshape(*tokens.shape, N_HEADS, d_head)
        w_o = block.attn.c_proj.weight.reshape(N_HEADS, d_head, D_MODEL)  # Conv1D: [in, out]
        kept[f"head_out.L{layer}"] = torch.einsum("bphd,hdm->bphm", z, w_o)
        kept[f"attn_bias.L{layer}"] = block.attn.c_proj.bias
        kept[f"pattern.L{layer}"] = out.attentions[layer]
        kept[f"resid_pre.L{layer}"] = out.hidden_states[layer]  # the input of block `layer`
    kept["output"] = out.logits
    return kept


@pytest.fixture(scope="module")
def recording(bridge, tokens):
    return simcheck.record(bridge, tokens, PROBES, positions=POSITIONS)


def rows(pattern: torch.Tensor) -> torch.Tensor:
    """[batch, head, query, key] -> the query rows, [batch, query, head, key]."""
    return pattern[:, :, QUERY].transpose(1, 2)


def close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """The bridge's recording against Hugging Face's own forward: two float32 paths through
    a 2-layer, 2-head, 32-wide GPT-2 (MLP 4 x 32), within `float32.path_tolerance`."""
    reduction = max(4 * D_MODEL, LENGTH)
    depth = N_LAYERS * 10 + 3  # per layer: 2 norms, q/k/v, scores, weights @ v, W_O, 2 MLP
    finite = expected.detach()[torch.isfinite(expected.detach())]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    tol = path_tolerance(reduction, depth, scale)
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=tol, msg=name)


def test_residual_stream_and_output_match_huggingface(recording, hf):
    assert recording.positions == tuple(QUERY.tolist())
    for layer in range(N_LAYERS):
        for point in ("pre", "mid", "post"):
            name = f"resid_{point}.L{layer}"
            close(recording[name], hf[name][:, QUERY], name)
    close(recording["output"], hf["output"][:, QUERY], "output")


def test_head_outputs_match_huggingface_per_head(recording, hf, bridge):
    for layer in range(N_LAYERS):
        name = f"head_out.L{layer}"
        assert recording[name].shape == (3, len(QUERY), N_HEADS, D_MODEL)
        close(recording[name], hf[name][:, QUERY], name)
        close(bridge.blocks[layer].attn.b_O, hf[f"attn_bias.L{layer}"], f"b_O L{layer}")


def test_attention_rows_and_entropy_match_huggingface(recording, hf):
    for layer in range(N_LAYERS):
        pattern = rows(hf[f"pattern.L{layer}"])
        close(recording[f"attn_row.L{layer}"], pattern, f"attn_row.L{layer}")
        logs = torch.where(pattern > 0, pattern.log(), torch.zeros_like(pattern))
        entropy = -(pattern * logs).sum(-1)
        close(recording[f"attn_entropy.L{layer}"], entropy, f"attn_entropy.L{layer}")


def test_attention_logits_have_every_key_and_give_the_attention(recording, hf):
    """The regression test for keying captures by the asked-for name: before, ``hook_k``
    was cut to the query rows and the logits had a key axis of len(QUERY)."""
    future = torch.arange(LENGTH)[None, :] > QUERY[:, None]  # [query, key]
    for layer in range(N_LAYERS):
        logits = recording[f"attn_logits.L{layer}"]
        assert logits.shape == (3, len(QUERY), N_HEADS, LENGTH)
        masked = future[None, :, None, :].expand_as(logits)
        assert torch.equal(torch.isinf(logits), masked)
        assert bool((logits[masked] == -math.inf).all())
        close(logits, rows(hf[f"logits.L{layer}"]), f"attn_logits.L{layer}")
        close(logits.softmax(-1), rows(hf[f"pattern.L{layer}"]), f"softmax L{layer}")


def test_recording_does_not_depend_on_the_batch_size(recording, bridge, tokens):
    again = simcheck.record(bridge, tokens, PROBES, positions=POSITIONS, batch_size=1)
    assert again.keys() == recording.keys()
    for name, value in recording.states.items():
        close(again[name], value, name)  # batches of another size: other kernels


def test_finite_precision_is_refused_on_a_bridge(bridge, tokens):
    with pytest.raises(SimcheckError, match="finite-precision"):
        simcheck.record(bridge, tokens, [AttentionRow(0)], attention="hardmax")
    with pytest.raises(SimcheckError, match="finite-precision"):
        simcheck.record(bridge, tokens, [AttentionRow(0)], attention="hardmax:4")
